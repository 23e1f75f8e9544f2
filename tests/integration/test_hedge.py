"""Hedging: an idempotent request with no response head after the route's
hedge delay is also sent to a second server; the first response head wins
and the other attempt is cancelled at once (closed, never pooled)."""
import time

from conftest import request_bytes


def start_with(proxy_factory, tmp_path, text):
    path = tmp_path / "hourglass.yaml"
    path.write_text(text)
    return proxy_factory("--config", path)


def delayed(name, delay):
    """Keep-alive upstream answering `name` after `delay` seconds."""
    async def handler(reader, writer, ctx):
        async def respond(ctx, req):
            if delay:
                await ctx.delay(delay)
            await ctx.respond(200, name)
        await ctx.serve_forever(respond)
    return handler


def config(a, b, hedge="100ms", budget=""):
    return f"""
pools:
  app:
    servers: [{a}, {b}]
{budget}
routes:
  - path: /
    pool: app
    hedge: {{delay: {hedge}}}
"""


def get(p, method="GET", body=None, timeout=5.0):
    c = p.client(timeout=timeout)
    try:
        headers = [("Content-Length", str(len(body)))] if body is not None else []
        t0 = c.send(request_bytes(method, "/h", headers=headers) + (body or b""))
        r = c.read_response()
        return r, time.monotonic() - t0
    finally:
        c.close()


def test_hedge_wins_when_first_is_slow(proxy_factory, upstream, tmp_path):
    slow = upstream(delayed(b"slow", 1.0))
    fast = upstream(delayed(b"fast", 0))
    p = start_with(proxy_factory, tmp_path, config(slow.addr, fast.addr))
    r, dt = get(p)            # smooth round-robin: the slow one is first
    assert r.status == 200 and r.body == b"fast", r
    assert 0.095 <= dt < 0.5, dt
    (line,) = p.wait_log(1)
    assert line["attempts"] == "2" and line["upstream"] == fast.addr, line
    (conn,) = slow.conns
    conn.wait_proxy_closed(0.5)   # the losing attempt is cancelled at once
    assert "hedging to " + fast.addr in p.stderr_text()


def test_no_hedge_when_first_answers_in_time(proxy_factory, upstream, tmp_path):
    a = upstream(delayed(b"a", 0))
    b = upstream(delayed(b"b", 0))
    p = start_with(proxy_factory, tmp_path, config(a.addr, b.addr, hedge="300ms"))
    r, _ = get(p)
    assert r.status == 200 and r.body == b"a"
    time.sleep(0.4)           # (past the hedge delay: nothing may be sent)
    assert not b.requests()
    (line,) = p.wait_log(1)
    assert line["attempts"] == "1"


def test_first_attempt_wins_after_hedge_sent(proxy_factory, upstream, tmp_path):
    first = upstream(delayed(b"first", 0.2))
    second = upstream(delayed(b"second", 1.5))
    p = start_with(proxy_factory, tmp_path, config(first.addr, second.addr))
    r, dt = get(p)
    assert r.status == 200 and r.body == b"first", r
    assert 0.195 <= dt < 0.6, dt
    second.wait_requests(1)
    (conn,) = second.conns
    conn.wait_proxy_closed(0.5)   # the hedge lost: cancelled
    (line,) = p.wait_log(1)
    assert line["attempts"] == "2" and line["upstream"] == first.addr


def test_post_is_not_hedged(proxy_factory, upstream, tmp_path):
    slow = upstream(delayed(b"slow", 0.4))
    other = upstream(delayed(b"other", 0))
    p = start_with(proxy_factory, tmp_path, config(slow.addr, other.addr))
    r, _ = get(p, "POST", body=b"data")
    assert r.status == 200 and r.body == b"slow"
    assert not other.requests()


def test_hedge_carries_on_when_first_fails(proxy_factory, upstream, tmp_path):
    async def reset_late(reader, writer, ctx):
        await ctx.read_request()
        await ctx.delay(0.2)
        ctx.reset_conn()
    bad = upstream(reset_late)
    good = upstream(delayed(b"good", 0.3))
    p = start_with(proxy_factory, tmp_path, config(bad.addr, good.addr))
    r, dt = get(p)
    assert r.status == 200 and r.body == b"good", r
    assert 0.39 <= dt < 0.9, dt   # hedge at 100 ms + 300 ms
    (line,) = p.wait_log(1)
    assert line["reason"] == "ok" and line["upstream"] == good.addr


def test_budget_stops_hedging(proxy_factory, upstream, tmp_path):
    slow = upstream(delayed(b"slow", 0.3))
    other = upstream(delayed(b"other", 0))
    p = start_with(proxy_factory, tmp_path, config(
        slow.addr, other.addr, budget="    budget: {percent: 0, min: 0}"))
    r, _ = get(p)
    assert r.status == 200 and r.body == b"slow"
    assert not other.requests()
