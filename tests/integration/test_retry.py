"""Retries from a route's policy (configuration file): which failures are
tried again, on which server, after what wait, within which budget, and
never beyond the total deadline or after a response byte was sent."""
import time

import pytest

from conftest import (free_port, ok_handler, request_bytes, scrape, silent_handler,
                      wait_until)
from test_forward import ws_handler, ws_request   # the tunnel tests' WebSocket server


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


def reset_first_then_answer(reset_after, answer_after):
    """Per target: the first request is reset after reset_after seconds, the
    next one answered 200 after answer_after seconds."""
    seen = set()

    async def handler(reader, writer, ctx):
        req = await ctx.read_request()
        if req is None:
            return
        if req.target not in seen:
            seen.add(req.target)
            await ctx.delay(reset_after)
            ctx.reset_conn()
            return
        await ctx.delay(answer_after)
        await ctx.respond(200, b"second")
    return handler


def concurrent(p, targets):
    """Sends one GET per target at once; {target: status (None: no answer)}."""
    import threading
    out = {}

    def one(t):
        r, _ = send(p, target=t)
        out[t] = r.status if r is not None else None
    ths = [threading.Thread(target=one, args=(t,)) for t in targets]
    for t in ths:
        t.start()
    for t in ths:
        t.join(10)
    return out


def test_budget_percent_of_requests_in_flight(proxy_factory, upstream, tmp_path):
    # 10 requests in flight, each reset on its first attempt after 300 ms (so
    # that all 10 are dispatched before the first reset), and answered 500 ms
    # into its retry (so that the retries overlap). budget {percent: 50,
    # min: 1}: up to max(1, 50% of 10) = 5 may retry at once; when 1 is the
    # cap, the percent term is not counted.
    up = upstream(reset_first_then_answer(0.3, 0.5))
    p = start_with(proxy_factory, tmp_path, config(
        [up.addr], "{attempts: 2, on: [reset], backoff: {base: 1ms, max: 1ms}}",
        extra_pool="    budget: {percent: 50, min: 1}"))
    statuses = concurrent(p, [f"/b{i}" for i in range(10)])
    lines = p.wait_log(10)
    retried = [l for l in lines if l["attempts"] == "2"]
    assert 2 <= len(retried) <= 5, [l["attempts"] for l in lines]
    assert all(l["status"] == "200" for l in retried), retried
    assert sorted(statuses.values()) == sorted(int(l["status"]) for l in lines), statuses
    assert len(up.requests()) == 10 + len(retried)


def pool_gauges(admin):
    """{(metric, pool): value} of the per-pool gauges of /metrics."""
    import re
    code, text = scrape(admin)
    assert code == 200
    return {(m.group(1), m.group(2)): int(m.group(3)) for m in re.finditer(
        r'^(hourglass_pool_\w+)\{pool="([^"]+)"\} (\d+)$', text, re.M)}


IN_FLIGHT = ("hourglass_pool_requests_in_flight", "hourglass_pool_retries_in_flight",
             "hourglass_pool_waiting_requests")


def test_requests_in_flight_return_to_zero(proxy_factory, upstream, tmp_path):
    # Every way a request ends gives its place back: an answer, a retry that
    # ends in an answer, a connect failure after a retry, a timeout, a client
    # abort, a hedge dropped, a wait for a connection that ends in pool_full,
    # and a WebSocket tunnel (answered: it stops counting at the 101).
    import socket
    import threading
    ok = upstream(ok_handler(b"ok"))
    silent = upstream(silent_handler())
    flaky = upstream(reset_first_then_answer(0.1, 0.4))

    def slow(delay):
        async def handler(reader, writer, ctx):
            async def respond(ctx, req):
                await ctx.delay(delay)
                await ctx.respond(200, b"slow")
            await ctx.serve_forever(respond)
        return handler
    first, hedged, narrow = upstream(slow(0.5)), upstream(slow(0.8)), upstream(slow(0.6))

    tunnel = upstream(ws_handler())
    dead = f"127.0.0.1:{free_port()}"
    admin = free_port()
    path = tmp_path / "hourglass.yaml"
    path.write_text(f"""
pools:
  ok: {{servers: [{ok.addr}]}}
  flaky: {{servers: [{flaky.addr}], health: {{passive: {{failures: 1000}}}}}}
  dead: {{servers: [{dead}], health: {{passive: {{failures: 1000}}}}}}
  silent: {{servers: [{silent.addr}], health: {{passive: {{failures: 1000}}}}}}
  race: {{servers: [{first.addr}, {hedged.addr}]}}
  narrow: {{servers: [{narrow.addr}], max_connections: 1}}
  ws: {{servers: [{tunnel.addr}]}}
routes:
  - {{path: /ok, pool: ok}}
  - {{path: /flaky, pool: flaky, retry: {{attempts: 2, on: [reset], backoff: {{base: 1ms, max: 1ms}}}}}}
  - {{path: /dead, pool: dead, retry: {{attempts: 2, on: [connect_failure], backoff: {{base: 1ms, max: 1ms}}}}}}
  - {{path: /silent, pool: silent, timeouts: {{read: 500ms}}}}
  - {{path: /race, pool: race, hedge: {{delay: 50ms}}}}
  - {{path: /narrow, pool: narrow, timeouts: {{connect: 400ms}}}}
  - {{path: /ws, pool: ws}}
""")
    p = proxy_factory("--config", path, "--admin", f"127.0.0.1:{admin}")
    statuses = {}

    def one(target):
        r, _ = send(p, target=target)
        statuses[target] = r.status if r is not None else None
    targets = ["/ok", "/flaky/1", "/flaky/2", "/dead", "/silent", "/race",
               "/narrow/1", "/narrow/2"]
    ths = [threading.Thread(target=one, args=(t,)) for t in targets]
    for t in ths:
        t.start()
    aborted = p.client()
    aborted.send(request_bytes("GET", "/silent/abort"))
    ws_client = p.client()
    ws_client.send(ws_request("dGhlIHNhbXBsZSBub25jZQ==", path="/ws"))
    head, _ = ws_client.read_head()
    assert head.startswith(b"HTTP/1.1 101"), head

    # In flight (from 100 to 400 ms): counted, the hedged one and the two
    # retried ones among the retries, one waiting.
    def busy():
        g = pool_gauges(admin)
        return (g[IN_FLIGHT[0], "silent"] == 2 and g[IN_FLIGHT[1], "race"] == 1 and
                g[IN_FLIGHT[1], "flaky"] == 2 and g[IN_FLIGHT[2], "narrow"] == 1 and g)
    g = wait_until(busy, 2.0, msg="the requests counted while in flight")
    assert g[IN_FLIGHT[0], "narrow"] == 2 and g[IN_FLIGHT[0], "ws"] == 0, g
    aborted.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
    aborted.close()
    for t in ths:
        t.join(5)
    narrowed = sorted((statuses.pop("/narrow/1"), statuses.pop("/narrow/2")))
    assert narrowed == [200, 503], narrowed   # one served, one waited in vain
    assert statuses == {"/ok": 200, "/flaky/1": 200, "/flaky/2": 200, "/dead": 502,
                        "/silent": 504, "/race": 200}, statuses
    lines = p.wait_log(len(targets) + 1)
    assert {l["target"]: l["reason"] for l in lines}["/silent/abort"] == "client_abort", lines

    # Ended, every one: nothing counted any more, and the tunnel never was.
    def idle():
        g = pool_gauges(admin)
        return all(v == 0 for (name, _), v in g.items() if name in IN_FLIGHT) and g
    g = wait_until(idle, 2.0, msg="every gauge in flight back to 0")
    assert len([k for k in g if k[0] in IN_FLIGHT]) == 3 * 7, g
    ws_client.close()
