"""Running out of file descriptors is the proxy's overload, not the
upstream's fault (issue 21, item 2): 503 proxy_overloaded, no passive health
failure, no retry onto another server, a rate-limited accept message, and a
start-up warning when the open file limit cannot hold max_connections."""
import re
import resource
import subprocess
import time

from conftest import (BIN, free_port, ok_handler, request_bytes, scrape, wait_port,
                      wait_until)

CONFIG = """
listen: [127.0.0.1:{port}]
pools:
  app:
    servers: [{a}, {b}]
    health: {{passive: {{failures: 2}}}}
routes:
  - path: /
    pool: app
    retry: {{attempts: 3, on: [connect_failure, reset], backoff: {{base: 1ms, max: 1ms}}}}
"""


def metric(text, name, **labels):
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    m = re.search(r"^" + re.escape(name) + r"\{" + re.escape(want) + r"\} (\S+)$", text, re.M)
    assert m, f"{name}{{{want}}} missing"
    return float(m.group(1))


def test_emfile_is_503_proxy_overloaded_and_ejects_nothing(proxy_factory, upstream, tmp_path):
    a, b = upstream(ok_handler(b"a")), upstream(ok_handler(b"b"))
    port, admin = free_port(), free_port()
    path = tmp_path / "hourglass.yaml"
    path.write_text(CONFIG.format(port=port, a=a.addr, b=b.addr))
    p = proxy_factory("--config", path, "--admin", f"127.0.0.1:{admin}", "--idle-timeout", "30s",
                      listen=f"127.0.0.1:{port}")
    # A low limit on the running server (it raised its soft limit to the
    # hard one at start: both are lowered here, as a low `ulimit -n` would).
    time.sleep(0.3)   # the start-up probe's connection (wait_port) is closed
    base = p.fd_count()
    n_req, n_hog = 6, 4
    resource.prlimit(p.pid, resource.RLIMIT_NOFILE, (base + n_req + n_hog,) * 2)
    reqs = [p.client(timeout=5) for _ in range(n_req)]   # accepted, silent yet
    hogs = [p.client(timeout=5) for _ in range(n_hog)]
    wait_until(lambda: p.fd_count() == base + n_req + n_hog, 3.0, msg="clients accepted")
    # More clients meet EMFILE at accept: they wait in the listen queue, and
    # the proxy retries every 100 ms; its sentence about it is rate-limited.
    queued = [p.client(timeout=5) for _ in range(3)]
    p.wait_stderr(r"accept on 127\.0\.0\.1:%d: Too many open files" % port)
    # Every descriptor is taken: each request finds no socket for its upstream.
    for i, c in enumerate(reqs):
        c.send(request_bytes("GET", f"/over{i}"))
    rs = [c.read_response(timeout=5) for c in reqs]
    assert [r.status if r else None for r in rs] == [503] * n_req, rs
    assert all(b"proxy_overloaded" in r.body for r in rs), rs
    lines = p.wait_log(n_req)
    assert {(l["status"], l["reason"], l["attempts"]) for l in lines} == \
        {("503", "proxy_overloaded", "1")}, lines   # one attempt each: never retried
    assert all(l["tries"].endswith("/proxy_overloaded/0") for l in lines), lines
    assert a.conns == [] and b.conns == [], "no server was asked"
    time.sleep(1.5)   # the accept retries go on meanwhile (15 of them)
    err = p.stderr_text()
    assert len(re.findall(r"accept on .*Too many open files", err)) == 1, err
    assert len(re.findall(r"no socket for upstream", err)) <= 2, err   # 1 per second
    assert "ejected" not in err, err
    for c in reqs + hogs + queued:
        c.close()
    # Descriptors back: both servers are still in service (two failures in
    # a row would have ejected each), and the drop was counted as shed.
    wait_until(lambda: p.fd_count() <= base + 1, 3.0, msg="descriptors released")
    bodies = set()
    for i in range(4):
        c = p.client()
        c.send(request_bytes("GET", f"/after{i}"))
        r = c.read_response()
        assert r is not None and r.status == 200, r
        bodies.add(r.body)
        c.close()
    assert bodies == {b"a", b"b"}, bodies
    _, text = scrape(admin)
    assert metric(text, "hourglass_requests_shed_total", reason="proxy_overloaded") == n_req
    assert "ejected" not in p.stderr_text()


def _start_raw(args, soft, hard):
    port = free_port()
    proc = subprocess.Popen(
        [BIN, "--single-process", "--listen", f"127.0.0.1:{port}", "--access-log", "off"] + args,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)))
    assert wait_port("127.0.0.1", port, 10.0, proc), "proxy did not start"
    return proc


def _stop_raw(proc):
    limit = resource.prlimit(proc.pid, resource.RLIMIT_NOFILE)
    proc.terminate()
    _, err = proc.communicate(timeout=10)
    return limit, err.decode()


def test_start_raises_soft_limit_and_warns_when_max_connections_cannot_fit():
    proc = _start_raw(["--upstream", "127.0.0.1:9", "--max-connections", "100"], 64, 200)
    limit, err = _stop_raw(proc)
    assert limit == (200, 200), limit   # the soft limit raised to the hard one
    # 100 clients + 100 upstream + 1 listener + 32 spare = 233 > 200
    assert re.search(r"warn: the open file limit is 200 descriptors \(hard limit 200\), below "
                     r"the 233 that max_connections 100 may need", err), err


def test_no_warning_when_max_connections_fits():
    proc = _start_raw(["--upstream", "127.0.0.1:9", "--max-connections", "80"], 64, 200)
    limit, err = _stop_raw(proc)
    assert limit == (200, 200), limit
    assert "open file limit" not in err, err   # 80 + 80 + 1 + 32 = 193 fit
