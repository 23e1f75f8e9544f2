"""Admission by the time left (issue 18): a pool's queue bounded by the
route's queue timeout and the request's time left, per-server
max_requests, a route's min_budget (deadline_unmeetable), retries and
hedges skipped when too little time is left, and the adaptive hedge delay
(hedge.delay: pNN)."""
import time

from conftest import answering as slow
from conftest import concurrent_gets, request_bytes, wait_until
from conftest import start_with_config as start_with


def by_path(delays, strip_query=False):
    """Answers each target after delays.get(target, 0) seconds."""
    async def handler(reader, writer, ctx):
        async def respond(ctx, req):
            t = req.target.split("?")[0] if strip_query else req.target
            d = delays.get(t, 0)
            if d:
                await ctx.delay(d)
            await ctx.respond(200, req.target.encode())
        await ctx.serve_forever(respond)
    return handler


def get(p, target, timeout=5.0, headers=None):
    c = p.client(timeout=timeout)
    t0 = time.monotonic()
    c.send(request_bytes("GET", target, headers=headers))
    r = c.read_response()
    dt = time.monotonic() - t0
    c.close()
    return r, dt


# --------------------------------------------------------------------------
# the queue

def test_queue_timeout_key_bounds_the_wait(proxy_factory, upstream, tmp_path):
    up = upstream(slow(1.0))
    p = start_with(proxy_factory, tmp_path, f"""
timeouts: {{connect: 2s, queue: 250ms}}
pools:
  app:
    servers: [{up.addr}]
    max_connections: 1
routes:
  - {{path: /, pool: app}}
""")
    res = concurrent_gets(p, ["/a", "/b"])
    (ra, _), (rb, tb) = res["/a"], res["/b"]
    assert ra.status == 200
    assert rb.status == 503 and 0.24 <= tb < 0.5, (rb.status, tb)
    b = [l for l in p.wait_log(2) if l["target"] == "/b"][0]
    assert b["reason"] == "queue_timeout", b
    assert "the queue timeout ran out" in p.stderr_text()
    assert len(up.requests()) == 1, "the queued request reached the upstream"


def test_queue_wait_is_bounded_by_the_time_left(proxy_factory, upstream, tmp_path):
    # a queue timeout of 5 s, but a total of 300 ms: the request leaves the
    # queue when its time is up, shed with 503 queue_timeout (not a 504: no
    # upstream timed out)
    up = upstream(slow(1.0))
    p = start_with(proxy_factory, tmp_path, f"""
timeouts: {{queue: 5s, total: 2s}}
pools:
  app:
    servers: [{up.addr}]
    max_connections: 1
routes:
  - {{path: /a, pool: app}}
  - {{path: /b, pool: app, timeouts: {{total: 300ms}}}}
""")
    res = concurrent_gets(p, ["/a", "/b"])
    (ra, _), (rb, tb) = res["/a"], res["/b"]
    assert ra.status == 200
    assert rb.status == 503 and 0.29 <= tb < 0.55, (rb.status, tb)
    b = [l for l in p.wait_log(2) if l["target"] == "/b"][0]
    assert b["reason"] == "queue_timeout", b
    assert "its time left ran out" in p.stderr_text()


def test_max_requests_per_server_queues(proxy_factory, upstream, tmp_path):
    # one server, at most 2 requests in flight to it: the third waits for
    # the first to end, then goes (no refusal, and never 3 at once)
    up = upstream(slow(0.4))
    p = start_with(proxy_factory, tmp_path, f"""
timeouts: {{queue: 2s}}
pools:
  app:
    servers: [{up.addr}]
    max_requests: 2
routes:
  - {{path: /, pool: app}}
""")
    res = concurrent_gets(p, ["/a", "/b", "/c"])
    assert all(r.status == 200 for r, _ in res.values()), res
    ta, tc = res["/a"][1], res["/c"][1]
    assert ta < 0.7 and 0.7 <= tc < 1.3, (ta, tc)   # c waited for a's end
    assert len(up.conns) <= 2, "more than max_requests in flight to the server"


def test_max_requests_sheds_after_the_queue_timeout(proxy_factory, upstream, tmp_path):
    a, b = upstream(slow(1.0)), upstream(slow(1.0))
    p = start_with(proxy_factory, tmp_path, f"""
timeouts: {{queue: 200ms}}
pools:
  app:
    servers: [{a.addr}, {b.addr}]
    max_requests: 1
routes:
  - {{path: /, pool: app}}
""")
    res = concurrent_gets(p, ["/1", "/2", "/3"])
    assert res["/1"][0].status == 200 and res["/2"][0].status == 200
    r3, t3 = res["/3"]
    assert r3.status == 503 and 0.19 <= t3 < 0.45, (r3.status, t3)
    assert "max_requests 1" in p.stderr_text()
    assert len(a.conns) == 1 and len(b.conns) == 1   # one each, never two


def test_queue_drains_when_clients_leave(proxy_factory, upstream, tmp_path):
    # 5 requests queue behind a held one; their clients go: each leaves the
    # queue at once (logged client_abort while the held one still runs),
    # and a request after them is not queued behind ghosts
    up = upstream(by_path({"/held": 1.5}))
    p = start_with(proxy_factory, tmp_path, f"""
timeouts: {{queue: 10s, total: 10s}}
pools:
  app:
    servers: [{up.addr}]
    max_connections: 1
routes:
  - {{path: /, pool: app}}
""")
    held = p.client(timeout=5)
    held.send(request_bytes("GET", "/held"))
    up.wait_requests(1)
    queued = []
    for i in range(5):
        c = p.client(timeout=5)
        c.send(request_bytes("GET", f"/q{i}"))
        queued.append(c)
    time.sleep(0.1)
    t0 = time.monotonic()
    for c in queued:
        c.close()
    lines = p.wait_log(5, timeout=1.0)
    left = time.monotonic() - t0
    assert left < 0.5, f"queued clients were logged {left:.2f}s after they left"
    assert sorted(l["target"] for l in lines) == [f"/q{i}" for i in range(5)]
    assert all(l["reason"] == "client_abort" for l in lines), lines
    r = held.read_response()
    assert r.status == 200
    held.close()
    r2, dt = get(p, "/after")
    assert r2.status == 200 and dt < 0.3, dt
    assert [q.target for q in up.requests()] == ["/held", "/after"]


# --------------------------------------------------------------------------
# min_budget

def test_min_budget_answers_unmeetable_without_the_upstream(proxy_factory, upstream, tmp_path):
    up = upstream(slow(0.01))
    p = start_with(proxy_factory, tmp_path, f"""
timeouts: {{total: 5s}}
pools:
  app:
    servers: [{up.addr}]
routes:
  - {{path: /, pool: app, min_budget: 200ms}}
""", "--trust-deadline-header")
    r, dt = get(p, "/short", headers=[("X-Request-Deadline-Ms", "100")])
    assert r.status == 504 and dt < 0.1, (r.status, dt)
    line = p.wait_log(1)[0]
    assert line["reason"] == "deadline_unmeetable", line
    assert "below the route's min_budget 200 ms" in p.stderr_text()
    assert len(up.conns) == 0, "deadline_unmeetable touched the upstream"
    # enough time left: served
    r, _ = get(p, "/long", headers=[("X-Request-Deadline-Ms", "1000")])
    assert r.status == 200
    # the route's own total is the budget when the client sends none
    r, _ = get(p, "/plain")
    assert r.status == 200
    assert [q.target for q in up.requests()] == ["/long", "/plain"]


def test_min_budget_off_by_default(proxy_factory, upstream, tmp_path):
    up = upstream(slow(0.01))
    p = start_with(proxy_factory, tmp_path, f"""
pools:
  app:
    servers: [{up.addr}]
routes:
  - {{path: /, pool: app}}
""", "--trust-deadline-header")
    r, _ = get(p, "/x", headers=[("X-Request-Deadline-Ms", "50")])
    assert r.status == 200


# --------------------------------------------------------------------------
# retries and hedges need time left

def test_retry_skipped_when_too_little_time_is_left(proxy_factory, upstream, tmp_path):
    # each try times out at 200 ms; a retry needs 300 ms left. With a total
    # of 400 ms the retry is skipped (the try's reason is the answer, at
    # ~200 ms, not a total timeout at 400); with 2 s it happens.
    a = upstream(slow(5.0))
    b = upstream(slow(5.0))
    p = start_with(proxy_factory, tmp_path, f"""
pools:
  app:
    servers: [{a.addr}, {b.addr}]
routes:
  - path: /short
    pool: app
    timeouts: {{total: 400ms}}
    retry: {{attempts: 3, on: [read_timeout], per_try_timeout: 200ms, min_time_left: 300ms,
             backoff: {{base: 1ms, max: 1ms}}}}
  - path: /long
    pool: app
    timeouts: {{total: 2s}}
    retry: {{attempts: 2, on: [read_timeout], per_try_timeout: 200ms, min_time_left: 300ms,
             backoff: {{base: 1ms, max: 1ms}}}}
""")
    r, dt = get(p, "/short")
    assert r.status == 504 and 0.19 <= dt < 0.35, (r.status, dt)
    line = p.wait_log(1)[0]
    assert line["reason"] == "try_timeout", line
    assert "retry skipped: 19" in p.stderr_text() or "retry skipped: 20" in p.stderr_text(), \
        p.stderr_text()
    assert len(a.requests()) + len(b.requests()) == 1
    r, dt = get(p, "/long")
    assert r.status == 504 and 0.39 <= dt < 0.6, (r.status, dt)   # two tries
    assert len(a.requests()) + len(b.requests()) == 3


def test_retry_skipped_below_the_live_median(proxy_factory, upstream, tmp_path):
    # the route's answers take ~200 ms (30 of them warm its estimate); each
    # try of /stuck is cut at 250 ms. The first retry starts with ~350 ms
    # left (above the median); the second would start with ~100 ms: skipped,
    # so the answer is the try's timeout at ~500 ms, not the total's at 600
    a = upstream(by_path({"/w": 0.2, "/stuck": 5.0}, strip_query=True))
    b = upstream(by_path({"/w": 0.2, "/stuck": 5.0}, strip_query=True))
    p = start_with(proxy_factory, tmp_path, f"""
pools:
  app:
    servers: [{a.addr}, {b.addr}]
routes:
  - path: /
    pool: app
    timeouts: {{total: 600ms}}
    retry: {{attempts: 3, on: [read_timeout], per_try_timeout: 250ms,
             backoff: {{base: 1ms, max: 1ms}}}}
""")
    res = concurrent_gets(p, [f"/w?{i}" for i in range(30)], gap=0.002)
    assert all(r.status == 200 for r, _ in res.values())
    r, dt = get(p, "/stuck")
    assert r.status == 504 and 0.48 <= dt < 0.58, (r.status, dt)
    line = [l for l in p.wait_log(31) if l["target"] == "/stuck"][0]
    assert line["reason"] == "try_timeout" and line["attempts"] == "2", line
    assert "its median first-byte latency" in p.stderr_text()


# --------------------------------------------------------------------------
# adaptive hedging

def test_adaptive_hedge_delay_follows_the_latency(proxy_factory, upstream, tmp_path):
    # both servers answer in ~5 ms, but /stuck takes 3 s on the first:
    # after a warm-up the route's p90 is a few ms, so /stuck is hedged
    # after about that (not after max_delay, 1 s) and answered by the other
    a = upstream(by_path({"/stuck": 3.0, "/w": 0.005}))
    b = upstream(by_path({"/w": 0.005}))
    p = start_with(proxy_factory, tmp_path, f"""
pools:
  app:
    servers: [{a.addr}, {b.addr}]
routes:
  - path: /
    pool: app
    hedge: {{delay: p90, min_delay: 2ms, max_delay: 1s, max_percent: 50}}
""")
    c = p.client(timeout=5)
    for _ in range(60):   # warm-up: 60 samples of ~5 ms
        c.send(request_bytes("GET", "/w"))
        assert c.read_response().status == 200
    c.close()
    # round robin: one of two /stuck lands on a first
    times = []
    for _ in range(2):
        r, dt = get(p, "/stuck")
        assert r.status == 200
        times.append(dt)
    assert max(times) < 0.25, times
    err = p.stderr_text()
    assert "hedging to" in err, err
    import re
    delays = [int(m) for m in re.findall(r"after (\d+) ms: hedging to", err)]
    assert delays and all(2 <= d <= 100 for d in delays), delays


def test_adaptive_hedge_waits_max_delay_without_an_estimate(proxy_factory, upstream, tmp_path):
    a = upstream(by_path({"/stuck": 3.0}))
    b = upstream(by_path({}))
    p = start_with(proxy_factory, tmp_path, f"""
pools:
  app:
    servers: [{a.addr}, {b.addr}]
routes:
  - path: /
    pool: app
    hedge: {{delay: p95, max_delay: 300ms}}
""")
    r, dt = get(p, "/stuck")   # the first request: no estimate; lands on a
    assert r.status == 200 and 0.29 <= dt < 0.6, dt
    assert "after 300 ms: hedging to" in p.stderr_text()


def test_hedge_max_percent_caps_the_extra_load(proxy_factory, upstream, tmp_path):
    # every request to a is slow; with a fixed 20 ms delay and max_percent
    # 10, at most about 10% of the requests (plus a burst of 10) are hedged
    a = upstream(slow(0.08))
    b = upstream(slow(0.08))
    p = start_with(proxy_factory, tmp_path, f"""
pools:
  app:
    servers: [{a.addr}, {b.addr}]
    budget: {{percent: 100, min: 100}}
routes:
  - path: /
    pool: app
    hedge: {{delay: 20ms, max_percent: 10}}
""")
    c = p.client(timeout=5)
    n = 60
    for i in range(n):
        c.send(request_bytes("GET", f"/{i}"))
        assert c.read_response().status == 200
    c.close()
    hedges = p.stderr_text().count("hedging to")
    # one to start with, and 0.1 earned a request: 7 in 60 requests
    assert 3 <= hedges <= 8, hedges
    wait_until(lambda: len(a.requests()) + len(b.requests()) == n + hedges, 1.0)


def test_config_errors(tmp_path):
    import subprocess
    from conftest import _binary
    cases = [
        ("hedge: {delay: p101}", "routes[0].hedge.delay"),
        ("hedge: {delay: p10}", "routes[0].hedge.delay"),
        ("hedge: {delay: 50ms, min_delay: 5ms}", "routes[0].hedge.min_delay"),
        ("hedge: {delay: p95, min_delay: 50ms, max_delay: 10ms}", "routes[0].hedge.max_delay"),
        ("hedge: {delay: p95, max_percent: 0}", "routes[0].hedge.max_percent"),
        ("min_budget: soon", "routes[0].min_budget"),
        ("retry: {min_time_left: x}", "routes[0].retry.min_time_left"),
        ("timeouts: {queue: x}", "routes[0].timeouts.queue"),
    ]
    for extra, key in cases:
        cfg = tmp_path / "bad.yaml"
        cfg.write_text(f"""pools:
  app:
    servers: [127.0.0.1:9]
    max_requests: 0
routes:
  - {{path: /, pool: app, {extra}}}
""")
        r = subprocess.run([_binary(), "--check-config", str(cfg)], capture_output=True, text=True)
        assert r.returncode == 2, (extra, r.stderr)
        assert key in r.stderr, (extra, r.stderr)
        assert "pools.app.max_requests" in r.stderr, r.stderr
