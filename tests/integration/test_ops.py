"""Operating the proxy: the deadline header across hops, SIGTERM draining,
SIGUSR1 log reopening, and the error log level."""
import os
import signal
import socket
import time

from conftest import ok_handler, request_bytes, silent_handler


def reap(p, timeout=5.0):
    """Waits for the proxy to exit on its own (after a signal); returns its
    status and tells the fixture not to count the exit as a crash."""
    rc = p.proc.wait(timeout)
    p.stopped = True
    for f in (p._err, p._out):
        f.close()
    err = p.stderr_text()
    assert "AddressSanitizer" not in err and "runtime error:" not in err, err[-4000:]
    return rc


def delayed(delay, body=b"done"):
    async def handler(reader, writer, ctx):
        async def respond(ctx, req):
            await ctx.delay(delay)
            await ctx.respond(200, body)
        await ctx.serve_forever(respond)
    return handler


def test_deadline_header_sent_with_time_left(proxy_factory, upstream):
    up = upstream(ok_handler(b"ok"))
    p = proxy_factory("--total-timeout", "2s", upstreams=[up])
    c = p.client()
    c.send(request_bytes("GET", "/d", headers=[("X-Request-Deadline-Ms", "5")]))
    assert c.read_response().status == 200
    (req,) = up.wait_requests(1)
    values = [v for k, v in req.headers if k.lower() == "x-request-deadline-ms"]
    assert len(values) == 1, req.headers            # the client's untrusted value is gone
    assert 1900 <= int(values[0]) <= 1995, values   # 2000 - 5 ms kept for this hop


def test_deadline_header_off(proxy_factory, upstream):
    up = upstream(ok_handler(b"ok"))
    p = proxy_factory("--deadline-header", "off", upstreams=[up])
    c = p.client()
    c.send(request_bytes("GET", "/d"))
    assert c.read_response().status == 200
    (req,) = up.wait_requests(1)
    assert not [k for k, _ in req.headers if k.lower() == "x-request-deadline-ms"]


def test_two_hops_inner_times_out_first(proxy_factory, upstream):
    # client -> outer (total 1 s) -> inner (trusts the header, total 30 s)
    # -> a silent upstream: the inner one must give up before the outer one.
    silent = upstream(silent_handler())
    inner = proxy_factory("--trust-deadline-header", "--total-timeout", "30s",
                          "--read-timeout", "30s", upstreams=[silent])
    outer = proxy_factory("--total-timeout", "1s", "--read-timeout", "30s",
                          upstreams=[f"127.0.0.1:{inner.port}"])
    c = outer.client(timeout=5)
    t0 = c.send(request_bytes("GET", "/chain"))
    r = c.read_response()
    dt = time.monotonic() - t0
    assert r.status == 504 and b"total_timeout" in r.body, r
    assert 0.95 <= dt < 1.3, dt
    (li,) = inner.wait_log(1)
    (lo,) = outer.wait_log(1)
    assert li["reason"] == "total_timeout", li
    assert 950 <= int(li["total_ms"]) < 1000, li     # inner: what was left, minus the margin
    assert lo["reason"] == "ok" and lo["status"] == "504", lo   # outer relayed inner's 504


def test_untrusted_client_deadline_is_ignored(proxy_factory, upstream):
    silent = upstream(silent_handler())
    p = proxy_factory("--total-timeout", "600ms", upstreams=[silent])
    c = p.client(timeout=5)
    t0 = c.send(request_bytes("GET", "/x", headers=[("X-Request-Deadline-Ms", "100")]))
    r = c.read_response()
    assert r.status == 504 and time.monotonic() - t0 >= 0.59


def test_sigterm_lets_requests_in_flight_finish(proxy_factory, upstream):
    up = upstream(delayed(0.4))
    p = proxy_factory(upstreams=[up])
    c = p.client(timeout=5)
    c.send(request_bytes("GET", "/inflight"))
    up.wait_requests(1)
    os.kill(p.pid, signal.SIGTERM)
    time.sleep(0.1)
    # no longer accepting
    s = socket.socket()
    s.settimeout(1)
    try:
        refused = s.connect_ex(("127.0.0.1", p.port)) != 0
    finally:
        s.close()
    assert refused, "a new connection was accepted while draining"
    r = c.read_response()
    assert r.status == 200 and r.complete and r.body == b"done", r
    assert (r.header("connection") or "").lower() == "close"
    assert reap(p) == 0
    (line,) = p.wait_log(1)
    assert line["reason"] == "ok"
    assert "draining" in p.stderr_text()


def test_drain_timeout_cuts_what_is_left(proxy_factory, upstream):
    up = upstream(delayed(5.0))
    p = proxy_factory("--drain-timeout", "300ms", upstreams=[up])
    c = p.client(timeout=5)
    c.send(request_bytes("GET", "/slow"))
    up.wait_requests(1)
    t0 = time.monotonic()
    os.kill(p.pid, signal.SIGTERM)
    assert reap(p) == 0
    dt = time.monotonic() - t0
    assert 0.29 <= dt < 1.0, dt
    assert c.read_until_close(2) is not None
    assert "drain timeout" in p.stderr_text()


def test_sigusr1_reopens_the_access_log(proxy_factory, upstream):
    up = upstream(ok_handler(b"ok"))
    p = proxy_factory(upstreams=[up])
    c = p.client()
    c.send(request_bytes("GET", "/before"))
    assert c.read_response().status == 200
    p.wait_log(1)
    rotated = str(p.log_path) + ".1"
    os.rename(p.log_path, rotated)
    os.kill(p.pid, signal.SIGUSR1)
    deadline = time.monotonic() + 2
    while not os.path.exists(p.log_path) and time.monotonic() < deadline:
        time.sleep(0.01)
    c.send(request_bytes("GET", "/after"))
    assert c.read_response().status == 200
    (line,) = p.wait_log(1)
    assert line["target"] == "/after"
    assert "/before" in open(rotated).read()


def test_log_level_warn_hides_info(proxy_factory, upstream):
    p = proxy_factory("--log-level", "warn", upstreams=["127.0.0.1:9"])
    c = p.client()
    c.send(request_bytes("GET", "/refused"))
    assert c.read_response().status == 502
    p.wait_log(1)
    err = p.stderr_text()
    assert "listening on" not in err        # info
    assert "connect to 127.0.0.1:9 failed" in err   # warn


def test_access_log_json_lines(proxy_factory, upstream):
    import json
    up = upstream(ok_handler(b"hello"))
    p = proxy_factory("--access-log-format", "json", upstreams=[up])
    c = p.client()
    body = b"x" * 100
    c.send(request_bytes("POST", '/j?q="quoted"\\x', headers=[("Content-Length", "100")]) + body)
    r = c.read_response()
    assert r.status == 200
    deadline = time.monotonic() + 2
    while not p.raw_log_lines() and time.monotonic() < deadline:
        time.sleep(0.01)
    (raw,) = p.raw_log_lines()
    e = json.loads(raw)
    assert list(e) == ["time", "client", "method", "target", "status", "bytes", "bytes_in",
                       "upstream", "attempts", "connect_ms", "sent_ms", "first_byte_ms",
                       "total_ms", "proto", "request_id", "trace_id", "deadline_ms",
                       "deadline_from", "queue_ms", "left_ms", "tries", "tries_more",
                       "reason"], e
    assert e["proto"] == "HTTP/1.1"
    assert e["method"] == "POST" and e["target"] == '/j?q="quoted"\\x'
    assert e["status"] == 200 and e["reason"] == "ok" and e["upstream"] == up.addr
    assert e["bytes"] == len(r.raw) and e["bytes_in"] > 100
    assert 0 <= e["connect_ms"] <= e["sent_ms"] <= e["first_byte_ms"] <= e["total_ms"]
