"""The configuration file: --config, --check-config / -t, flags over the file."""

import re
import subprocess
from pathlib import Path

import pytest

from conftest import (BIN, Proxy, free_port, ok_handler, request_bytes, silent_handler)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hourglass.yaml"


def run(*args, timeout=5):
    return subprocess.run([BIN, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def write(tmp_path, text, name="hourglass.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def started(tmp_path):
    """start(args, port) -> Proxy started with exactly these flags (plus the
    access log), so that --listen can come from the file."""
    procs = []

    def start(args, port):
        p = Proxy(list(map(str, args)), tmp_path, "127.0.0.1", port)
        procs.append(p)
        if not p.start():
            p.stopped = True
            p._err.close()
            p._out.close()
            pytest.fail(f"proxy exited at start-up ({p.proc.returncode}):\n{p.stderr_text()}")
        return p
    yield start
    problems = []
    for p in procs:
        problems += p.stop()
    if problems:
        pytest.fail("\n".join(problems))


def test_runs_from_config_file(started, upstream, tmp_path):
    up1 = upstream(ok_handler(b"one"))
    up2 = upstream(ok_handler(b"two"))
    other = upstream(ok_handler(b"other"))
    port = free_port()
    cfg = write(tmp_path, f"""
listen: [127.0.0.1:{port}]
timeouts: {{connect: 1s, read: 2s, total: 5s}}
limits: {{max_headers: 50}}
pools:
  other:
    servers: [{other.addr}]
  web:
    servers:
      - address: {up1.addr}
      - address: {up2.addr}
    balance: round_robin
routes:
  - host: other.example.com
    pool: other
  - path: /
    pool: web
""")
    p = started(["--config", cfg], port)
    bodies = []
    c = p.client()
    for i in range(4):
        c.send(request_bytes("GET", f"/r{i}"))
        bodies.append(c.read_response().body)
    # the default pool (route "/" without host), round-robin over its servers
    assert sorted(bodies) == [b"one", b"one", b"two", b"two"], bodies
    assert not other.conns
    lines = p.wait_log(4)
    assert {l["upstream"] for l in lines} == {up1.addr, up2.addr}


def test_file_timeouts_apply(started, upstream, tmp_path):
    up = upstream(silent_handler())
    port = free_port()
    cfg = write(tmp_path, f"""
listen: ["127.0.0.1:{port}"]
timeouts:
  read: 300ms
  total: 5s
pools: {{web: {{servers: ["{up.addr}"]}}}}
""")
    p = started(["--config", cfg], port)
    c = p.client()
    c.send(request_bytes("GET", "/slow"))
    r = c.read_response()
    assert r.status == 504
    assert r.body == b"504 Gateway Timeout: read_timeout after 300 ms\n"
    (line,) = p.wait_log(1)
    assert line["reason"] == "read_timeout"


def test_flags_override_the_file(proxy_factory, upstream, tmp_path):
    up = upstream(silent_handler())
    dead = f"127.0.0.1:{free_port()}"
    cfg = write(tmp_path, f"""
listen: ["127.0.0.1:{free_port()}"]
timeouts: {{read: 10s, total: 400ms}}
pools: {{web: {{servers: ["{dead}"]}}}}
""")
    # proxy_factory adds --listen and --upstream: both replace the file's
    p = proxy_factory("--config", cfg, "--read-timeout", "250ms", upstreams=[up])
    c = p.client()
    c.send(request_bytes("GET", "/x"))
    r = c.read_response()
    assert r.status == 504
    # the flag's read timeout (250ms) won over the file's 10s, before the
    # file's total (400ms) could fire
    assert r.body == b"504 Gateway Timeout: read_timeout after 250 ms\n"
    (line,) = p.wait_log(1)
    assert line["upstream"] == up.addr

    # without the flag the file's total (400ms) is what fires
    p2 = proxy_factory("--config", cfg, upstreams=[up])
    c2 = p2.client()
    c2.send(request_bytes("GET", "/y"))
    r2 = c2.read_response()
    assert r2.status == 504
    assert r2.body == b"504 Gateway Timeout: total_timeout after 400 ms\n"


def test_check_config_ok(tmp_path):
    cfg = write(tmp_path, "timeouts: {read: 2s}\npools: {a: {servers: [127.0.0.1:9001]}}\n")
    for flag in ("--check-config", "-t"):
        r = run(flag, cfg)
        assert r.returncode == 0, r.stderr
        assert r.stdout == f"{cfg}: ok\n"
        assert r.stderr == ""


def test_check_config_example():
    r = run("--check-config", EXAMPLE)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{EXAMPLE}: ok\n"


BAD = [
    # (file text, expected error after "FILE:")
    ("pools:\n  web:\n    servers: [127.0.0.1:9001]\nroutes:\n  - path: /api\n    pool: api\n",
     '6:11: routes[0].pool: no pool named "api" (pools: web)'),
    ("timeouts:\n  read: 1s\n  raed: 2s\n",
     "3:3: timeouts.raed: unknown key (expected one of: connect, write, read, total, header, "
     "body, send, idle, upstream_idle, dns, tunnel_idle, tunnel_max, handshake, queue)"),
    ("timeouts:\n  connect: 0\n",
     '2:12: timeouts.connect: expected a duration longer than 0, got "0"'),
    ("timeouts:\n  total: soon\n",
     "2:10: timeouts.total: expected a duration such as 250ms, 1.5s, 2m or 30 (seconds), "
     'got "soon"'),
    ("listen: 127.0.0.1:8080\n",
     "1:9: listen: expected a list of ADDR:PORT such as 127.0.0.1:8080 or [::]:80, got "
     '"127.0.0.1:8080"'),
    ("pools:\n  web: {balance: p2c}\n",
     "2:3: pools.web.servers: missing; a pool needs at least one server"),
    ("pools:\n  web:\n    servers:\n      - {address: 127.0.0.1:1, weight: 5000}\n",
     '4:40: pools.web.servers[0].weight: expected a whole number from 1 to 1000, got "5000"'),
    ("pools: {web: {servers: [127.0.0.1:1]}}\nroutes:\n  - {path: /a, pool: web}\n"
     "  - {path: /a, pool: web}\n",
     "4:5: routes[1]: same host and path as routes[0] (line 3): host (any), path /a"),
    ("limits: {max_concurrent_streams: 0}\n",
     '1:34: limits.max_concurrent_streams: expected a whole number from 1 to 10000, got "0"'),
    ("limits:\n  max_concurrent_streams: 100k\n",
     '2:27: limits.max_concurrent_streams: expected a whole number from 1 to 10000, got "100k"'),
    ("listen:\n  - {address: 127.0.0.1:1, http2: maybe}\n",
     '2:35: listen[0].http2: expected true or false, got "maybe"'),
    ("listen:\n  - {address: 127.0.0.1:1, mode: forward, http2: true}\n",
     "2:50: listen[0].http2: a forward proxy listener (mode: forward) does not offer HTTP/2"),
    ("timeouts: [1s\n",
     "2:1: syntax: did not find expected ',' or ']' while parsing a flow sequence that starts "
     "on line 1"),
]


@pytest.mark.parametrize("text,want", BAD)
def test_check_config_errors(tmp_path, text, want):
    cfg = write(tmp_path, text)
    r = run("--check-config", cfg)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == ""
    assert r.stderr == f"{cfg}:{want}\n"


def test_check_config_lists_every_error_in_file_order(tmp_path):
    cfg = write(tmp_path, "timeouts:\n  read: x\n  write: 0\nlimits: {max_headers: 0}\n"
                          "routes: [{pool: nope}]\n")
    r = run("-t", cfg)
    assert r.returncode == 2
    lines = r.stderr.splitlines()
    assert len(lines) == 4, r.stderr
    assert [int(re.match(rf"^{re.escape(str(cfg))}:(\d+):\d+: ", l).group(1))
            for l in lines] == [2, 3, 4, 5]
    assert "timeouts.read:" in lines[0]
    assert "timeouts.write:" in lines[1]
    assert "limits.max_headers:" in lines[2]
    assert 'routes[0].pool: no pool named "nope"' in lines[3]


def test_bad_config_does_not_start(tmp_path):
    port = free_port()
    cfg = write(tmp_path, f"listen: [127.0.0.1:{port}]\nroutes: [{{pool: web}}]\n")
    r = run("--config", cfg)
    assert r.returncode == 2
    assert r.stderr == f'{cfg}:2:17: routes[0].pool: no pool named "web" ' \
                       f"(the file declares no pools)\n"


def test_missing_config_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    r = run("--config", missing)
    assert r.returncode == 2
    assert r.stderr == f"{missing}: cannot read: No such file or directory\n"
    r = run("-t", missing)
    assert r.returncode == 2


def test_config_flag_errors(tmp_path):
    cfg = write(tmp_path, "timeouts: {read: 2s}\n")
    r = run("--config")
    assert r.returncode == 2 and "config" in r.stderr
    r = run("--config", cfg, "--check-config", cfg)
    assert r.returncode == 2 and "only one" in r.stderr
    # a good file does not excuse a bad flag
    r = run("-t", cfg, "--read-timeout", "5x")
    assert r.returncode == 2 and "read-timeout" in r.stderr
    assert r.stdout == ""


def test_help_lists_config_flags():
    r = run("--help")
    assert r.returncode == 0
    for flag in ("--config", "--check-config", "-t"):
        assert flag in r.stdout
