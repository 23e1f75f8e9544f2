"""Routes, per-route timeouts, balancing, passive health and per-pool
keep-alive, all driven by the configuration file (--config)."""

import asyncio
import re
import threading
import time

import pytest

from conftest import (assert_window, free_port, ok_handler, request_bytes,
                      silent_handler, wait_until)


# --------------------------------------------------------------------------
# helpers

def start_with(proxy_factory, tmp_path, text, name="hourglass.yaml"):
    """Writes the configuration and starts the proxy with it. proxy_factory
    adds --listen and --access-log (they replace the file's), and no
    --upstream: the pools are the file's."""
    path = tmp_path / name
    path.write_text(text)
    return proxy_factory("--config", path)


def get(p, target="/", host="example.test", timeout=3.0):
    """One request on a fresh client connection; returns the Response."""
    c = p.client(timeout=timeout)
    try:
        c.send(request_bytes("GET", target, host=host))
        r = c.read_response()
    finally:
        c.close()
    assert r is not None, f"no response to GET {target} (Host: {host})"
    return r


def refusing_addr():
    """A loopback address where nothing listens: connect() is refused."""
    return f"127.0.0.1:{free_port()}"


def ejections(p):
    return [l for l in p.stderr_text().splitlines() if "ejected from pool" in l]


def gated_handler(name, gate):
    """Keep-alive upstream answering `name`; a request whose path starts with
    /slow is held until the threading.Event gate is set."""
    async def handler(reader, writer, ctx):
        async def respond(ctx, req):
            if req.target.startswith("/slow"):
                while not gate.is_set():
                    await asyncio.sleep(0.01)
            await ctx.respond(200, name)
        await ctx.serve_forever(respond)
    return handler


def scripted_handler(actions):
    """One request per connection: actions[i] for connection #i is "reset"
    (RST after reading the request, before any response byte) or "ok" (200
    and Connection: close). Connections past the list answer ok."""
    async def handler(reader, writer, ctx):
        req = await ctx.read_request()
        if req is None:
            return
        act = actions[ctx.index] if ctx.index < len(actions) else "ok"
        if act == "reset":
            ctx.reset_conn()
        else:
            await ctx.respond(200, b"ok", headers=[("Connection", "close")])
            ctx.close()
    return handler


# --------------------------------------------------------------------------
# routes

ROUTE_POOLS = ["root", "api", "apiv2", "wild", "wildstatic", "exact", "exactapi"]


@pytest.fixture
def routed(proxy_factory, upstream, tmp_path):
    ups = {n: upstream(ok_handler(n.encode())) for n in ROUTE_POOLS}
    pools = "".join(f"  {n}:\n    servers: [\"{u.addr}\"]\n" for n, u in ups.items())
    p = start_with(proxy_factory, tmp_path, f"""
pools:
{pools}
routes:
  - path: /
    pool: root
  - path: /api
    pool: api
  - path: /api/v2
    pool: apiv2
  - host: "*.example.com"
    path: /
    pool: wild
  - host: "*.example.com"
    path: /static
    pool: wildstatic
  - host: h.example.com
    path: /
    pool: exact
  - host: h.example.com
    path: /api
    pool: exactapi
""")
    return p, ups


ROUTE_CASES = [
    # (Host, target, pool)
    ("other.test", "/", "root"),
    ("other.test", "/index.html", "root"),
    ("other.test", "/ap", "root"),
    ("other.test", "/API", "root"),              # paths are case-sensitive
    ("other.test", "/api", "api"),
    ("other.test", "/api/x", "api"),
    ("other.test", "/api?q=1", "api"),
    ("other.test", "/apix", "api"),              # a plain string prefix
    ("other.test", "/api/v", "api"),
    ("other.test", "/api/v2", "apiv2"),
    ("other.test", "/api/v2/users?x=1", "apiv2"),
    ("other.test", "/api/v2x", "apiv2"),
    ("other.test:8080", "/api/v2", "apiv2"),
    # wildcard: any subdomain, not the domain itself
    ("a.example.com", "/", "wild"),
    ("deep.sub.example.com", "/x", "wild"),
    ("a.example.com", "/api/v2/x", "wild"),      # host class before path length
    ("a.example.com", "/static/img.png", "wildstatic"),
    ("A.EXAMPLE.COM:8080", "/static/x", "wildstatic"),
    ("example.com", "/static/x", "root"),
    ("xexample.com", "/", "root"),
    ("example.com.evil.test", "/", "root"),
    # exact host beats the wildcard, whatever the path lengths
    ("h.example.com", "/", "exact"),
    ("h.example.com", "/static/x", "exact"),
    ("H.Example.COM:80", "/api/x", "exactapi"),
    ("h.example.com", "/api/v2/x", "exactapi"),
    ("h.example.com", "/apix", "exactapi"),
    ("hh.example.com", "/api", "wild"),
]


def test_route_choice(routed):
    p, ups = routed
    c = p.client()
    for host, target, want in ROUTE_CASES:
        c.send(request_bytes("GET", target, host=host))
        r = c.read_response()
        assert r is not None and r.status == 200, (host, target, r)
        assert r.body == want.encode(), f"Host {host} {target}: went to {r.body!r}, want {want}"
    c.close()
    lines = p.wait_log(len(ROUTE_CASES))
    for (host, target, want), line in zip(ROUTE_CASES, lines):
        assert line["target"] == target
        assert line["status"] == "200"
        assert line["upstream"] == ups[want].addr, (host, target, line)
    # each upstream saw exactly the requests routed to it, target unchanged
    for name, u in ups.items():
        got = [r.target for r in u.requests()]
        assert got == [t for h, t, w in ROUTE_CASES if w == name], name


def test_route_absolute_form(routed):
    p, ups = routed
    cases = [
        # the authority of an absolute-form target routes it, not Host
        ("http://h.example.com/api/z", "other.test", "exactapi", "/api/z"),
        ("http://a.example.com:8080/static/y", "h.example.com", "wildstatic", "/static/y"),
        ("http://other.test/api/v2/q", "h.example.com", "apiv2", "/api/v2/q"),
        ("http://H.EXAMPLE.COM/", "h.example.com", "exact", "/"),
        ("http://h.example.com", "h.example.com", "exact", "/"),
    ]
    c = p.client()
    for target, host, want, path in cases:
        c.send(request_bytes("GET", target, host=host))
        r = c.read_response()
        assert r is not None and r.status == 200, (target, r)
        assert r.body == want.encode(), f"{target}: went to {r.body!r}, want {want}"
        assert ups[want].requests()[-1].target == path
    c.close()
    lines = p.wait_log(len(cases))
    assert [l["upstream"] for l in lines] == [ups[w].addr for _, _, w, _ in cases]


def test_route_absolute_form_query_without_path(routed):
    # "http://h.example.com?q" has the path "/" (the proxy forwards "/?q")
    p, ups = routed
    r = get(p, "http://h.example.com?q=1", host="h.example.com")
    assert r.status == 200, r
    assert r.body == b"exact", r
    assert [q.target for q in ups["exact"].requests()] == ["/?q=1"]


def test_route_without_host_header(routed):
    # HTTP/1.0 without Host: only routes without a host can match
    p, ups = routed
    c = p.client()
    c.send(b"GET /static/x HTTP/1.0\r\n\r\n")
    r = c.read_response()
    c.close()
    assert r.status == 200 and r.body == b"root", r
    (line,) = p.wait_log(1)
    assert line["upstream"] == ups["root"].addr


def test_no_route_is_404(proxy_factory, upstream, tmp_path):
    api = upstream(ok_handler(b"api"))
    other = upstream(ok_handler(b"other"))
    p = start_with(proxy_factory, tmp_path, f"""
pools:
  api: {{servers: ["{api.addr}"]}}
  other: {{servers: ["{other.addr}"]}}
routes:
  - host: h.example.com
    path: /api
    pool: api
  - host: "*.other.test"
    path: /
    pool: other
""")
    misses = [("other.test", "/"), ("other.test", "/api"), ("h.example.com", "/"),
              ("h.example.com", "/ap"), ("h.example.com", "/API"),
              ("x.h.example.com", "/api")]
    for host, target in misses:
        # like the proxy's other own errors, the 404 closes the connection
        r = get(p, target, host=host)
        assert r.status == 404, (host, target, r)
        assert r.body == b"404 Not Found: no route matches this host and path\n", r
    # matching requests go through
    c = p.client()
    c.send(request_bytes("GET", "/api/1", host="h.example.com"))
    r = c.read_response()
    assert r.status == 200 and r.body == b"api", r
    c.send(request_bytes("GET", "/x", host="A.Other.Test"))
    r = c.read_response()
    assert r.status == 200 and r.body == b"other", r
    c.close()
    lines = p.wait_log(len(misses) + 2)
    for line in lines[:len(misses)]:
        assert line["status"] == "404"
        assert line["reason"] == "no_route", line
        assert line["upstream"] == "-", line
    assert lines[-2]["upstream"] == api.addr and lines[-1]["upstream"] == other.addr
    # no upstream was contacted for the 404s
    assert [q.target for q in api.requests()] == ["/api/1"]
    assert len(api.conns) == 1
    assert [q.target for q in other.requests()] == ["/x"]
    assert len(other.conns) == 1


# --------------------------------------------------------------------------
# per-route timeouts

def test_route_timeouts_override_key_by_key(proxy_factory, upstream, tmp_path):
    up = upstream(silent_handler())
    p = start_with(proxy_factory, tmp_path, f"""
timeouts:
  read: 2s
  total: 3s
pools:
  silent: {{servers: ["{up.addr}"]}}
routes:
  - path: /
    pool: silent
  - path: /fast
    pool: silent
    timeouts: {{read: 200ms}}
  - path: /short
    pool: silent
    timeouts: {{total: 300ms}}
""")
    clients = {}
    for name in ("slow", "fast", "short"):
        clients[name] = p.client(timeout=5.0)
    t0 = time.monotonic()
    for name, c in clients.items():
        c.send(request_bytes("GET", f"/{name}"))
    up.wait_requests(3)

    r = clients["fast"].read_response()
    assert r.status == 504, r
    assert r.body == b"504 Gateway Timeout: read_timeout after 200 ms\n"
    assert_window(r.t_head - clients["fast"].t_sent, 0.200, what="read timeout of /fast")

    r = clients["short"].read_response()
    assert r.status == 504, r
    # the route's total (300 ms), with the inherited read (2 s) still far
    assert r.body == b"504 Gateway Timeout: total_timeout after 300 ms\n"
    assert_window(r.t_head - clients["short"].t_sent, 0.300, what="total timeout of /short")

    # the route without overrides inherits read: 2s: still pending at 600 ms
    slow = clients["slow"]
    left = 0.6 - (time.monotonic() - t0)
    if left > 0:
        with pytest.raises(TimeoutError):
            slow.read_head(timeout=left)
    assert not slow.buf and not slow.eof
    r = slow.read_response()
    assert r.status == 504, r
    assert r.body == b"504 Gateway Timeout: read_timeout after 2000 ms\n"
    assert_window(r.t_head - slow.t_sent, 2.0, what="read timeout of /slow")
    for c in clients.values():
        c.close()

    lines = {l["target"]: l for l in p.wait_log(3)}
    assert lines["/fast"]["reason"] == "read_timeout"
    assert lines["/short"]["reason"] == "total_timeout"
    assert lines["/slow"]["reason"] == "read_timeout"
    assert {l["upstream"] for l in lines.values()} == {up.addr}


# --------------------------------------------------------------------------
# balancing

def test_round_robin_is_smooth_and_weighted(proxy_factory, upstream, tmp_path):
    a = upstream(ok_handler(b"A"))
    b = upstream(ok_handler(b"B"))
    p = start_with(proxy_factory, tmp_path, f"""
pools:
  web:
    servers:
      - address: {a.addr}
        weight: 3
      - address: {b.addr}
""")
    c = p.client()
    order = []
    for i in range(8):
        c.send(request_bytes("GET", f"/r{i}"))
        r = c.read_response()
        assert r.status == 200, r
        order.append(r.body.decode())
    c.close()
    seq = "".join(order)
    assert seq.count("A") == 6 and seq.count("B") == 2, seq
    assert "BB" not in seq, seq
    assert "AAAA" not in seq, seq
    # smooth: every 4 requests in a row hold exactly one B (A A B A, repeating)
    for i in range(len(seq) - 3):
        assert seq[i:i + 4].count("B") == 1, seq
    assert len(a.requests()) == 6 and len(b.requests()) == 2
    lines = p.wait_log(8)
    assert "".join("A" if l["upstream"] == a.addr else "B" if l["upstream"] == b.addr else "?"
                   for l in lines) == seq


def test_round_robin_equal_weights_alternate(proxy_factory, upstream, tmp_path):
    ups = [upstream(ok_handler(n)) for n in (b"A", b"B", b"C")]
    p = start_with(proxy_factory, tmp_path, f"""
pools:
  web:
    servers: [{", ".join(u.addr for u in ups)}]
    balance: round_robin
""")
    c = p.client()
    seq = []
    for i in range(9):
        c.send(request_bytes("GET", f"/r{i}"))
        seq.append(c.read_response().body)
    c.close()
    # every window of 3 consecutive requests covers the 3 servers
    for i in range(len(seq) - 2):
        assert sorted(seq[i:i + 3]) == [b"A", b"B", b"C"], seq
    assert [len(u.requests()) for u in ups] == [3, 3, 3]


def test_least_conn_prefers_the_less_loaded(proxy_factory, upstream, tmp_path):
    gate = threading.Event()
    a = upstream(gated_handler(b"A", gate))
    b = upstream(gated_handler(b"B", gate))
    by_name = {b"A": a, b"B": b}
    p = start_with(proxy_factory, tmp_path, f"""
pools:
  web:
    servers: ["{a.addr}", "{b.addr}"]
    balance: least_conn
""")
    slow_clients = []
    try:
        def held():
            return [len(a.requests()), len(b.requests())]

        # slow 1 goes anywhere; slow 2 to the other (0 < 1); slow 3 anywhere
        c1 = p.client(timeout=5.0)
        slow_clients.append(c1)
        c1.send(request_bytes("GET", "/slow1"))
        wait_until(lambda: sum(held()) == 1, 2.0, msg="slow request 1 upstream")
        first = a if held()[0] == 1 else b
        other = b if first is a else a
        c2 = p.client(timeout=5.0)
        slow_clients.append(c2)
        c2.send(request_bytes("GET", "/slow2"))
        wait_until(lambda: sum(held()) == 2, 2.0, msg="slow request 2 upstream")
        assert [q.target for q in other.requests()] == ["/slow2"], \
            "least_conn sent the 2nd request to the busy server"
        c3 = p.client(timeout=5.0)
        slow_clients.append(c3)
        c3.send(request_bytes("GET", "/slow3"))
        wait_until(lambda: sum(held()) == 3, 2.0, msg="slow request 3 upstream")
        loaded = a if held()[0] == 2 else b
        light = b if loaded is a else a
        assert len(light.requests()) == 1

        # now 2 in flight on `loaded`, 1 on `light`: quick requests go to light
        c = p.client()
        for i in range(6):
            c.send(request_bytes("GET", f"/quick{i}"))
            r = c.read_response()
            assert r.status == 200, r
            assert by_name[r.body] is light, f"quick {i} went to the busier server"
        c.close()
        assert len(loaded.requests()) == 2
        assert len(light.requests()) == 7
        lines = p.wait_log(6)
        assert {l["upstream"] for l in lines} == {light.addr}
    finally:
        gate.set()
    for c in slow_clients:
        r = c.read_response()
        assert r.status == 200, r
        c.close()
    p.wait_log(9)


def test_p2c_spreads_and_avoids_busy(proxy_factory, upstream, tmp_path):
    gate = threading.Event()
    a = upstream(gated_handler(b"A", gate))
    b = upstream(gated_handler(b"B", gate))
    by_name = {b"A": a, b"B": b}
    p = start_with(proxy_factory, tmp_path, f"""
pools:
  web:
    servers: ["{a.addr}", "{b.addr}"]
    balance: p2c
""")
    c = p.client()
    got = {a: 0, b: 0}
    for i in range(40):
        c.send(request_bytes("GET", f"/q{i}"))
        r = c.read_response()
        assert r.status == 200, r
        got[by_name[r.body]] += 1
    assert got[a] >= 8 and got[b] >= 8, {u.addr: n for u, n in got.items()}

    slow = p.client(timeout=5.0)
    try:
        slow.send(request_bytes("GET", "/slow"))
        wait_until(lambda: len(a.requests()) + len(b.requests()) == 41, 2.0,
                   msg="the slow request upstream")
        busy = a if any(q.target == "/slow" for q in a.requests()) else b
        idle = b if busy is a else a
        to_idle = 0
        for i in range(20):
            c.send(request_bytes("GET", f"/after{i}"))
            r = c.read_response()
            assert r.status == 200, r
            to_idle += by_name[r.body] is idle
        assert to_idle >= 16, f"only {to_idle}/20 requests avoided the busy server"
    finally:
        gate.set()
    r = slow.read_response()
    assert r.status == 200, r
    slow.close()
    c.close()


# --------------------------------------------------------------------------
# passive health

def test_passive_ejection_and_return(proxy_factory, upstream, tmp_path):
    good = upstream(ok_handler(b"good"))
    bad = refusing_addr()
    p = start_with(proxy_factory, tmp_path, f"""
pools:
  web:
    servers: ["{bad}", "{good.addr}"]
    health:
      passive: {{failures: 2, ejection: 1s}}
""")
    # equal weights alternate: within 4 requests the refusing server gets 2
    statuses = []
    while statuses.count(502) < 2:
        assert len(statuses) < 4, statuses
        if statuses.count(502) == 1:
            assert not ejections(p), "ejected after one failure"
        statuses.append(get(p, f"/a{len(statuses)}").status)
    t_ejected = time.monotonic()
    assert sorted(statuses) == [200] * (len(statuses) - 2) + [502, 502]
    p.wait_stderr(r"ejected from pool")
    (ej,) = ejections(p)
    assert bad in ej and "1000 ms" in ej, ej

    n_good = len(good.requests())
    for i in range(10):
        r = get(p, f"/b{i}")
        assert r.status == 200 and r.body == b"good", r
    assert len(good.requests()) == n_good + 10

    # after the 1 s cool-down the refusing server is tried again
    left = t_ejected + 1.05 - time.monotonic()
    if left > 0:
        time.sleep(left)
    again = []
    while again.count(502) < 2:
        assert len(again) < 4, again
        again.append(get(p, f"/c{len(again)}").status)
    assert again.count(502) == 2 and set(again) <= {200, 502}, again
    # two more failures in a row: ejected again, for twice as long
    p.wait_stderr(r"ejected from pool.*2000 ms")

    n = len(statuses) + 10 + len(again)
    lines = p.wait_log(n)
    for l in lines:
        if l["status"] == "502":
            assert l["reason"] == "upstream_refused", l
            assert l["upstream"] == bad, l
        else:
            assert l["status"] == "200" and l["upstream"] == good.addr, l
    assert [l["status"] for l in lines[len(statuses):len(statuses) + 10]] == ["200"] * 10


def test_max_ejected_percent_keeps_a_server(proxy_factory, tmp_path):
    bad1, bad2 = refusing_addr(), refusing_addr()
    p = start_with(proxy_factory, tmp_path, f"""
pools:
  web:
    servers: ["{bad1}", "{bad2}"]
    health:
      passive:
        failures: 1
        ejection: 10s
        max_ejected_percent: 50
""")
    for i in range(8):
        r = get(p, f"/r{i}")
        assert r.status == 502, r
    lines = p.wait_log(8)
    assert all(l["reason"] == "upstream_refused" for l in lines), lines
    assert len(ejections(p)) == 1, ejections(p)
    ejected = bad1 if bad1 in ejections(p)[0] else bad2
    kept = bad2 if ejected is bad1 else bad1
    assert lines[0]["upstream"] == ejected
    assert {l["upstream"] for l in lines[1:]} == {kept}


def test_max_ejected_percent_zero_never_ejects(proxy_factory, tmp_path):
    bad = refusing_addr()
    p = start_with(proxy_factory, tmp_path, f"""
pools:
  web:
    servers: ["{bad}"]
    health: {{passive: {{failures: 1, max_ejected_percent: 0}}}}
""")
    for i in range(4):
        assert get(p, f"/r{i}").status == 502
    lines = p.wait_log(4)
    assert [l["reason"] for l in lines] == ["upstream_refused"] * 4
    assert not ejections(p)


def test_no_server_in_service_is_503(proxy_factory, tmp_path):
    bad = refusing_addr()
    p = start_with(proxy_factory, tmp_path, f"""
pools:
  web:
    servers: ["{bad}"]
    health:
      passive:
        failures: 1
        ejection: 1s
        max_ejected_percent: 100
""")
    r = get(p, "/first")
    t_ejected = time.monotonic()
    assert r.status == 502, r
    p.wait_stderr(r"ejected from pool")
    for i in range(3):
        r = get(p, f"/none{i}")
        assert r.status == 503, r
    assert time.monotonic() - t_ejected < 0.9, "too slow to test inside the ejection"
    lines = p.wait_log(4)
    assert lines[0]["reason"] == "upstream_refused" and lines[0]["upstream"] == bad
    assert [l["reason"] for l in lines[1:]] == ["no_healthy_upstream"] * 3, lines
    # the cool-down over, the server is tried again
    left = t_ejected + 1.05 - time.monotonic()
    if left > 0:
        time.sleep(left)
    r = get(p, "/again")
    assert r.status == 502, r
    line = p.wait_log(5)[4]
    assert line["reason"] == "upstream_refused" and line["upstream"] == bad


def test_success_resets_the_failure_count(proxy_factory, upstream, tmp_path):
    actions = ["reset", "ok", "reset", "ok", "reset", "ok", "reset", "reset"]
    up = upstream(scripted_handler(actions))
    p = start_with(proxy_factory, tmp_path, f"""
pools:
  web:
    servers: ["{up.addr}"]
    health:
      passive:
        failures: 2
        ejection: 10s
        max_ejected_percent: 100
""")
    for i, act in enumerate(actions):
        if i == len(actions) - 1:
            assert not ejections(p), f"ejected before two failures in a row: {ejections(p)}"
        r = get(p, f"/r{i}")
        assert r.status == (502 if act == "reset" else 200), (i, act, r)
    p.wait_stderr(r"ejected from pool")
    assert up.addr in ejections(p)[0]
    r = get(p, "/after")
    assert r.status == 503, r
    assert len(up.conns) == len(actions), "the ejected server was contacted"
    lines = p.wait_log(len(actions) + 1)
    for act, l in zip(actions, lines):
        if act == "reset":
            assert l["status"] == "502" and l["reason"] == "upstream_reset", l
        else:
            assert l["status"] == "200", l
        assert l["upstream"] == up.addr
    assert lines[-1]["reason"] == "no_healthy_upstream"


# --------------------------------------------------------------------------
# keep-alive per pool

def test_keepalive_max_idle_zero(proxy_factory, upstream, tmp_path):
    pooled = upstream(ok_handler(b"pooled"))
    unpooled = upstream(ok_handler(b"unpooled"))
    p = start_with(proxy_factory, tmp_path, f"""
pools:
  pooled:
    servers: ["{pooled.addr}"]
  unpooled:
    servers: ["{unpooled.addr}"]
    keepalive: {{max_idle: 0}}
routes:
  - path: /
    pool: pooled
  - path: /nokeep
    pool: unpooled
""")
    c = p.client()
    for target, body in [("/a", b"pooled"), ("/nokeep/a", b"unpooled"),
                         ("/b", b"pooled"), ("/nokeep/b", b"unpooled")]:
        c.send(request_bytes("GET", target))
        r = c.read_response()
        assert r.status == 200 and r.body == body, r
    c.close()
    assert len(pooled.conns) == 1, "the default pool did not reuse its connection"
    assert [len(k.requests) for k in pooled.conns] == [2]
    assert len(unpooled.conns) == 2, "max_idle: 0 still reused a connection"
    assert [len(k.requests) for k in unpooled.conns] == [1, 1]
    # the proxy closed the first unpooled connection after its response
    unpooled.conns[0].wait_proxy_closed()
    assert pooled.conns[0].proxy_closed_at is None
