"""Active health checks: `health.active` takes a failing server out of its pool
and puts it back once it answers again."""

import re
import time

import pytest

from conftest import free_port, ok_handler, request_bytes, wait_until

DOWN = r"upstream {addr} marked down by health check of pool web: {why}"
UP = r"upstream {addr} back up by health check of pool web"


def write_config(tmp_path, servers, interval="100ms", timeout="50ms", healthy=2, unhealthy=2):
    path = tmp_path / "health.yaml"
    path.write_text(f"""
pools:
  web:
    servers: [{", ".join(servers)}]
    health:
      active: {{path: /healthz, interval: {interval}, timeout: {timeout},
               healthy: {healthy}, unhealthy: {unhealthy}}}
routes:
  - path: /
    pool: web
""")
    return path


def flaky_handler(name, state):
    """Answers requests with `name`; answers /healthz by state["mode"]: "ok"
    (200), "fail" (503) or "silent" (reads the request, never answers)."""
    async def handler(reader, writer, ctx):
        while True:
            req = await ctx.read_request()
            if req is None:
                return
            if req.target != "/healthz":
                await ctx.respond(200, name.encode())
                continue
            mode = state["mode"]
            if mode == "silent":
                await ctx.wait_lost(10.0)
                return
            if mode == "ok":
                await ctx.respond(200, b"fine\n")
            else:
                await ctx.respond(503, b"sick\n", reason="Service Unavailable")
            return   # the proxy closes the connection
    return handler


def bodies(p, n):
    """n requests, each on its own connection: the bodies received."""
    out = []
    for i in range(n):
        c = p.client()
        try:
            c.send(request_bytes("GET", f"/r{i}"))
            r = c.read_response()
            assert r.status == 200, r
            out.append(r.body)
        finally:
            c.close()
    return out


def health_conns(up):
    return [c for c in list(up.conns) for r in c.requests if r.target == "/healthz"]


def checks(p, bad, state, why):
    """The common script: the bad server is taken out within ~300 ms; then all
    requests go to the good one; answering 200 brings it back."""
    t0 = time.monotonic()
    p.wait_stderr(DOWN.format(addr=re.escape(bad.addr), why=why), timeout=3.0)
    took = time.monotonic() - t0
    # first check within one interval (jitter), the second one interval later
    assert took < 0.6, f"marked down after {took * 1000:.0f} ms"
    assert bodies(p, 6) == [b"good"] * 6

    state["mode"] = "ok"
    t1 = time.monotonic()
    n_before = len(health_conns(bad))
    p.wait_stderr(UP.format(addr=re.escape(bad.addr)), timeout=3.0)
    took = time.monotonic() - t1
    assert took < 0.6, f"back up after {took * 1000:.0f} ms"
    assert len(health_conns(bad)) - n_before >= 2   # healthy: 2
    got = bodies(p, 6)
    assert sorted(got) == [b"bad"] * 3 + [b"good"] * 3, got   # round-robin again


@pytest.mark.parametrize("mode,why", [("fail", r"status 503"),
                                      ("silent", r"no status line within 50 ms")])
def test_failing_server_taken_out_and_back(proxy_factory, upstream, tmp_path, mode, why):
    state = {"mode": mode}
    good = upstream(flaky_handler("good", {"mode": "ok"}))
    bad = upstream(flaky_handler("bad", state))
    cfg = write_config(tmp_path, [good.addr, bad.addr])
    p = proxy_factory("--config", cfg)
    checks(p, bad, state, why)

    err = p.stderr_text()
    assert good.addr + " marked down" not in err
    assert len(re.findall("marked down", err)) == 1, err

    # the check request, exactly
    reqs = [r for r in bad.requests() if r.target == "/healthz"]
    assert reqs
    r = reqs[0]
    assert r.method == "GET" and r.version == "HTTP/1.1"
    assert r.headers == [("Host", bad.addr), ("User-Agent", "hourglass-health"),
                         ("Connection", "close")]
    # every check's connection is closed by the proxy, never pooled, and the
    # checks of one server never overlap
    conns = health_conns(bad)
    for c in conns[:-1]:
        c.wait_proxy_closed(1.0)
    for a, b in zip(conns, conns[1:]):
        assert a.proxy_closed_at <= b.accepted_at + 0.002, (a.index, b.index)


def test_refused_server_taken_out(proxy_factory, upstream, tmp_path):
    good = upstream(ok_handler(b"good"))
    dead = f"127.0.0.1:{free_port()}"   # nothing listens there
    cfg = write_config(tmp_path, [good.addr, dead])
    p = proxy_factory("--config", cfg)
    p.wait_stderr(DOWN.format(addr=re.escape(dead), why="connect: Connection refused"),
                  timeout=3.0)
    assert bodies(p, 4) == [b"good"] * 4
    assert "no_healthy_upstream" not in p.stderr_text()


def test_checks_keep_their_interval(proxy_factory, upstream, tmp_path):
    """interval 100ms for ~1 s: about ten checks per server, first ones spread."""
    state = {"mode": "ok"}
    ups = [upstream(flaky_handler(f"s{i}", state)) for i in range(4)]
    cfg = write_config(tmp_path, [u.addr for u in ups])
    p = proxy_factory("--config", cfg)
    time.sleep(1.0)
    counts = [len(health_conns(u)) for u in ups]
    for n in counts:
        assert 7 <= n <= 12, counts
    assert "marked down" not in p.stderr_text()


def test_no_checks_without_active_health(proxy_factory, upstream, tmp_path):
    up = upstream(ok_handler(b"x"))
    path = tmp_path / "plain.yaml"
    path.write_text(f"pools:\n  web:\n    servers: [{up.addr}]\n")
    p = proxy_factory("--config", path)
    time.sleep(0.3)
    assert not up.conns
    assert bodies(p, 1) == [b"x"]
    wait_until(lambda: len(up.requests()) == 1, 1.0)
    assert all(r.target != "/healthz" for r in up.requests())


def test_whole_pool_down_is_503(proxy_factory, upstream, tmp_path):
    state = {"mode": "fail"}
    bad = upstream(flaky_handler("bad", state))
    cfg = write_config(tmp_path, [bad.addr])
    p = proxy_factory("--config", cfg)
    p.wait_stderr(DOWN.format(addr=re.escape(bad.addr), why="status 503"), timeout=3.0)
    c = p.client()
    c.send(request_bytes("GET", "/x"))
    r = c.read_response()
    assert r.status == 503, r
    assert p.wait_log(1)[-1]["reason"] == "no_healthy_upstream"
    assert all(r.target == "/healthz" for r in bad.requests())
