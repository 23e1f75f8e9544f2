"""Retries from a route's policy (configuration file): which failures are
tried again, on which server, after what wait, within which budget, and
never beyond the total deadline or after a response byte was sent."""
import time

import pytest

from conftest import free_port, ok_handler, request_bytes, silent_handler


def start_with(proxy_factory, tmp_path, text):
    path = tmp_path / "hourglass.yaml"
    path.write_text(text)
    return proxy_factory("--config", path)


def send(p, method="GET", target="/", body=None, timeout=5.0):
    c = p.client(timeout=timeout)
    try:
        headers = [("Content-Length", str(len(body)))] if body is not None else []
        t0 = c.send(request_bytes(method, target, headers=headers) + (body or b""))
        r = c.read_response()
        return r, time.monotonic() - t0
    finally:
        c.close()


def status_handler(status, body=b"no"):
    async def handler(reader, writer, ctx):
        async def respond(ctx, req):
            await ctx.respond(status, body)
        await ctx.serve_forever(respond)
    return handler


def reset_handler():
    async def handler(reader, writer, ctx):
        await ctx.read_request()
        ctx.reset_conn()
    return handler


def config(servers, retry, extra_pool="", timeouts=""):
    lines = "\n".join(f"      - {s}" for s in servers)
    return f"""
{timeouts}
pools:
  app:
    servers:
{lines}
    health: {{passive: {{failures: 1000}}}}
{extra_pool}
routes:
  - path: /
    pool: app
    retry: {retry}
"""


def test_connect_failure_retried_on_the_other_server(proxy_factory, upstream, tmp_path):
    good = upstream(ok_handler(b"good"))
    dead = f"127.0.0.1:{free_port()}"
    p = start_with(proxy_factory, tmp_path, config(
        [dead, good.addr], "{attempts: 2, on: [connect_failure], backoff: {base: 1ms, max: 1ms}}"))
    for i in range(4):
        r, _ = send(p, target=f"/r{i}")
        assert r.status == 200 and r.body == b"good", r
    lines = p.wait_log(4)
    assert all(l["reason"] == "ok" and l["upstream"] == good.addr for l in lines), lines
    # (the retry takes the next round-robin turn, so each request meets the
    # dead server first: passive health is off here, failures: 1000)
    assert [l["attempts"] for l in lines] == ["2"] * 4, lines
    assert "retrying after a connect failure" in p.stderr_text()


def test_status_retried_when_listed(proxy_factory, upstream, tmp_path):
    busy = upstream(status_handler(503))
    good = upstream(ok_handler(b"good"))
    p = start_with(proxy_factory, tmp_path, config(
        [busy.addr, good.addr], "{attempts: 2, on: ['503'], backoff: {base: 1ms, max: 1ms}}"))
    for i in range(2):
        r, _ = send(p, target=f"/s{i}")
        assert r.status == 200 and r.body == b"good", r
    lines = p.wait_log(2)
    assert [l["attempts"] for l in lines] == ["2", "2"]
    assert len(busy.requests()) == 2 and len(good.requests()) == 2


def test_status_not_listed_is_relayed(proxy_factory, upstream, tmp_path):
    busy = upstream(status_handler(503))
    p = start_with(proxy_factory, tmp_path, config(
        [busy.addr], "{attempts: 3, on: [connect_failure]}"))
    r, _ = send(p)
    assert r.status == 503 and r.body == b"no"
    (line,) = p.wait_log(1)
    assert line["attempts"] == "1"


def test_post_not_retried_by_default(proxy_factory, upstream, tmp_path):
    rst = upstream(reset_handler())
    good = upstream(ok_handler(b"good"))
    p = start_with(proxy_factory, tmp_path, config(
        [rst.addr, good.addr], "{attempts: 2, on: [reset], backoff: {base: 1ms, max: 1ms}}"))
    r, _ = send(p, "POST", "/p", body=b"payload")
    assert r.status == 502, r
    (line,) = p.wait_log(1)
    assert line["reason"] == "upstream_reset" and line["attempts"] == "1"
    assert not good.requests()


def test_post_retried_with_its_body_when_allowed(proxy_factory, upstream, tmp_path):
    rst = upstream(reset_handler())

    async def echo(reader, writer, ctx):
        async def respond(ctx, req):
            await ctx.respond(200, b"got:" + req.body)
        await ctx.serve_forever(respond)
    good = upstream(echo)
    p = start_with(proxy_factory, tmp_path, config(
        [rst.addr, good.addr],
        "{attempts: 2, on: [reset], methods: all, backoff: {base: 1ms, max: 1ms}}"))
    body = b"x" * 3000 + b"END"
    r, _ = send(p, "POST", "/p", body=body)
    assert r.status == 200 and r.body == b"got:" + body, r
    (line,) = p.wait_log(1)
    assert line["attempts"] == "2"


def test_per_try_timeout_then_other_server(proxy_factory, upstream, tmp_path):
    slow = upstream(silent_handler())
    good = upstream(ok_handler(b"good"))
    p = start_with(proxy_factory, tmp_path, config(
        [slow.addr, good.addr],
        "{attempts: 2, on: [read_timeout], per_try_timeout: 200ms, backoff: {base: 1ms, max: 1ms}}"))
    r, dt = send(p, target="/first")   # smooth round-robin: the silent one first
    assert r.status == 200 and r.body == b"good", r
    assert 0.195 <= dt < 0.6, dt
    (line,) = p.wait_log(1)
    assert line["attempts"] == "2"
    (conn,) = slow.conns
    conn.wait_proxy_closed(1.0)      # the abandoned attempt is cancelled


def test_total_deadline_bounds_every_attempt(proxy_factory, upstream, tmp_path):
    a = upstream(silent_handler())
    b = upstream(silent_handler())
    p = start_with(proxy_factory, tmp_path, config(
        [a.addr, b.addr],
        "{attempts: 5, on: [read_timeout], per_try_timeout: 200ms, backoff: {base: 1ms, max: 1ms}}",
        timeouts="timeouts: {total: 300ms}"))
    r, dt = send(p)
    assert r.status == 504, r
    assert 0.295 <= dt < 0.6, dt
    (line,) = p.wait_log(1)
    assert line["reason"] == "total_timeout" and line["attempts"] == "2", line


def test_backoff_waits_within_its_bounds(proxy_factory, upstream, tmp_path):
    good = upstream(ok_handler(b"good"))
    dead = f"127.0.0.1:{free_port()}"
    p = start_with(proxy_factory, tmp_path, config(
        [dead, good.addr], "{attempts: 2, on: [connect_failure], backoff: {base: 150ms, max: 150ms}}"))
    r, dt = send(p)
    assert r.status == 200
    assert dt < 0.5, dt                # full jitter: within [0, 150 ms] plus work
    m = [l for l in p.stderr_text().splitlines() if "retrying after" in l]
    assert m and int(m[0].split(" in ")[1].split(" ms")[0]) <= 150, m


def test_budget_stops_retries(proxy_factory, upstream, tmp_path):
    dead = f"127.0.0.1:{free_port()}"
    p = start_with(proxy_factory, tmp_path, config(
        [dead], "{attempts: 3, on: [connect_failure]}",
        extra_pool="    budget: {percent: 0, min: 0}"))
    r, _ = send(p)
    assert r.status == 502
    (line,) = p.wait_log(1)
    assert line["attempts"] == "1"
    assert "retry budget of pool app spent" in p.stderr_text()


def test_no_retry_after_response_bytes(proxy_factory, upstream, tmp_path):
    async def cut(reader, writer, ctx):
        await ctx.read_request()
        await ctx.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await ctx.delay(0.1)   # (an RST at once could destroy the unread bytes)
        ctx.reset_conn()
    a = upstream(cut)
    b = upstream(ok_handler(b"good"))
    p = start_with(proxy_factory, tmp_path, config(
        [a.addr, b.addr], "{attempts: 3, on: [reset], backoff: {base: 1ms, max: 1ms}}"))
    r, _ = send(p)
    assert r.status == 200 and not r.complete, r
    (line,) = p.wait_log(1)
    assert line["attempts"] == "1"
    assert not b.requests()


def test_budget_caps_a_retry_storm(proxy_factory, upstream, tmp_path):
    # 20 requests at once to servers that never answer, each allowed 3
    # attempts: without a budget that is 40 more requests on a sick pool.
    # With budget {percent: 0, min: 2}, at most 2 exchanges retry at a time,
    # and each holds its slot until it ends.
    import threading
    a = upstream(silent_handler())
    b = upstream(silent_handler())
    p = start_with(proxy_factory, tmp_path, config(
        [a.addr, b.addr],
        "{attempts: 3, on: [read_timeout], per_try_timeout: 200ms, backoff: {base: 1ms, max: 1ms}}",
        extra_pool="    budget: {percent: 0, min: 2}",
        timeouts="timeouts: {total: 2s}"))
    codes = []

    def one(i):
        r, _ = send(p, target=f"/storm{i}")
        codes.append(r.status)
    ths = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for t in ths:
        t.start()
    for t in ths:
        t.join(5)
    assert codes.count(504) == 20, codes
    lines = p.wait_log(20)
    retried = [l for l in lines if l["attempts"] != "1"]
    assert 1 <= len(retried) <= 2, [l["attempts"] for l in lines]
    upstream_requests = len(a.requests()) + len(b.requests())
    assert upstream_requests <= 20 + 2 * 2, upstream_requests
    assert "retry budget of pool app spent" in p.stderr_text()
