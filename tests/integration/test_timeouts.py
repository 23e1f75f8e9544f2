"""The timeout policy, one timeout at a time, seen from both ends."""

import re
import threading
import time

import pytest

from conftest import (assert_window, free_port, log_int, ok_handler, request_bytes,
                      silent_handler, wait_until)


def _sender(sock, data, result):
    """Sends data on a blocking socket from a thread; records how far it got."""
    sent = 0
    view = memoryview(data)
    try:
        while sent < len(data):
            n = sock.send(view[sent:sent + (1 << 16)])
            sent += n
        result["error"] = None
    except OSError as e:
        result["error"] = e
    result["sent"] = sent
    result["t_done"] = time.monotonic()


def _start_sender(client, data):
    result = {}
    # a dup of the socket: its own timeout, independent of the reading side
    sock = client.sock.dup()
    sock.settimeout(10)
    client.extra_socks = [sock]
    t = threading.Thread(target=_sender, args=(sock, data, result), daemon=True)
    t.start()
    return t, result


def assert_gateway_timeout(resp, reason):
    assert resp is not None, "connection closed without a response"
    assert resp.status == 504, resp
    assert resp.complete, resp
    assert (resp.header("content-type") or "").startswith("text/plain"), resp.headers
    assert (resp.header("connection") or "").lower() == "close", resp.headers
    assert resp.body.startswith(f"504 Gateway Timeout: {reason}".encode()), resp.body


# --------------------------------------------------------------------------
# upstream side

def test_connect_timeout(proxy_factory, blackhole):
    p = proxy_factory("--connect-timeout", "300ms", "--read-timeout", "1s",
                      "--total-timeout", "5s", upstreams=[blackhole.addr])
    c = p.client(timeout=3)
    t0 = c.send(request_bytes("GET", "/ct"))
    r = c.read_response()
    elapsed = r.t_head - t0
    assert_gateway_timeout(r, "connect_timeout")
    assert r.body == b"504 Gateway Timeout: connect_timeout after 300 ms\n"
    assert_window(elapsed, 0.300)
    assert c.wait_closed(1.0), "client connection not closed after the 504"
    (line,) = p.wait_log(1)
    assert line["status"] == "504"
    assert line["reason"] == "connect_timeout"
    assert line["upstream"] == blackhole.addr
    assert line["first_byte_ms"] == "-"
    assert 295 <= log_int(line, "total_ms") <= 550
    # the spec leaves open whether a failed connect logs its duration or "-"
    assert line["connect_ms"] == "-" or 295 <= int(line["connect_ms"]) <= 550, line
    p.wait_stderr(r"connect timeout")
    assert blackhole.addr in p.stderr_text()


def test_total_clamps_connect(proxy_factory, blackhole):
    p = proxy_factory("--connect-timeout", "5s", "--total-timeout", "300ms",
                      upstreams=[blackhole.addr])
    c = p.client()
    t0 = c.send(request_bytes("GET", "/clamp-connect"))
    r = c.read_response()
    assert_gateway_timeout(r, "total_timeout")
    assert_window(r.t_head - t0, 0.300)
    (line,) = p.wait_log(1)
    assert line["reason"] == "total_timeout"
    assert line["status"] == "504"


def test_upstream_refused(proxy_factory):
    dead = f"127.0.0.1:{free_port()}"
    p = proxy_factory("--connect-timeout", "1s", upstreams=[dead])
    c = p.client()
    t0 = c.send(request_bytes("GET", "/refused"))
    r = c.read_response()
    assert r is not None and r.status == 502, r
    assert r.body == b"502 Bad Gateway: upstream_refused\n"
    assert r.t_head - t0 < 0.5, "a refused connect must fail fast"
    (line,) = p.wait_log(1)
    assert line["status"] == "502"
    assert line["reason"] == "upstream_refused"
    assert line["upstream"] == dead
    assert int(line["bytes"]) == len(r.raw)


def test_read_timeout_never_answers(proxy_factory, upstream):
    up = upstream(silent_handler())
    p = proxy_factory("--read-timeout", "300ms", "--total-timeout", "5s", upstreams=[up])
    c = p.client()
    t0 = c.send(request_bytes("GET", "/x"))
    r = c.read_response()
    assert_gateway_timeout(r, "read_timeout")
    assert r.body == b"504 Gateway Timeout: read_timeout after 300 ms\n"
    assert int(r.header("content-length")) == len(r.body)
    assert_window(r.t_head - t0, 0.300)
    assert c.wait_closed(1.0), "client connection not closed after the 504"
    # upstream connection closed, not pooled
    (conn,) = up.wait_conns(1)
    t_closed = conn.wait_proxy_closed(1.0)
    assert t_closed - r.t_head < 0.1, \
        f"upstream closed {1000 * (t_closed - r.t_head):.0f} ms after the 504"
    assert t_closed - t0 >= 0.295
    (line,) = p.wait_log(1)
    assert line["method"] == "GET" and line["target"] == "/x"
    assert line["status"] == "504"
    assert line["reason"] == "read_timeout"
    assert line["upstream"] == up.addr
    assert line["attempts"] == "1"
    assert line["first_byte_ms"] == "-"
    assert int(line["bytes"]) == len(r.raw)
    assert 295 <= log_int(line, "total_ms") <= 550
    p.wait_stderr(r"upstream read timeout after 300 ms from " + re.escape(up.addr))


def test_read_timeout_after_partial_response_cuts_client(proxy_factory, upstream):
    async def handler(reader, writer, ctx):
        await ctx.read_request()
        await ctx.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"a" * 100)
        await ctx.wait_lost(10)
    up = upstream(handler)
    p = proxy_factory("--read-timeout", "300ms", "--total-timeout", "5s", upstreams=[up])
    c = p.client()
    t0 = c.send(request_bytes("GET", "/partial"))
    r = c.read_response()
    assert r.status == 200
    assert not r.complete, f"response should have been cut: {r}"
    assert len(r.body) == 100
    assert_window(c.t_eof - t0, 0.300)
    up.conns[0].wait_proxy_closed(1.0)
    (line,) = p.wait_log(1)
    assert line["reason"] == "read_timeout"
    assert line["first_byte_ms"] != "-"


def test_read_timeout_chunked_cut_has_no_last_chunk(proxy_factory, upstream):
    async def handler(reader, writer, ctx):
        await ctx.read_request()
        await ctx.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await ctx.wait_lost(10)
    up = upstream(handler)
    p = proxy_factory("--read-timeout", "300ms", "--total-timeout", "5s", upstreams=[up])
    c = p.client()
    t0 = c.send(request_bytes("GET", "/chunk-cut"))
    r = c.read_response()
    assert r.status == 200
    assert not r.complete, f"chunked response should have been cut: {r}"
    assert r.body.startswith(b"hello")
    assert b"0\r\n\r\n" not in r.raw[r.raw.find(b"\r\n\r\n") + 4:]
    assert_window(c.t_eof - t0, 0.300)
    up.conns[0].wait_proxy_closed(1.0)
    (line,) = p.wait_log(1)
    assert line["reason"] == "read_timeout"


def test_total_timeout_wins_over_dripping_upstream(proxy_factory, upstream):
    async def handler(reader, writer, ctx):
        await ctx.read_request()
        await ctx.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        await ctx.drip(b"d" * 100, 0.1)
    up = upstream(handler)
    p = proxy_factory("--read-timeout", "300ms", "--total-timeout", "1s", upstreams=[up])
    c = p.client(timeout=4)
    t0 = c.send(request_bytes("GET", "/drip"))
    r = c.read_response()
    assert r.status == 200
    assert not r.complete, f"the drip should have been cut by total: {r}"
    assert 3 <= len(r.body) < 100, r
    assert_window(c.t_eof - t0, 1.0)
    t_closed = up.conns[0].wait_proxy_closed(1.0)
    assert t_closed - t0 < 1.3
    (line,) = p.wait_log(1)
    assert line["reason"] == "total_timeout"
    assert int(line["bytes"]) == len(r.raw)
    assert 995 <= log_int(line, "total_ms") <= 1250


def test_total_clamps_read(proxy_factory, upstream):
    up = upstream(silent_handler())
    p = proxy_factory("--read-timeout", "5s", "--total-timeout", "400ms", upstreams=[up])
    c = p.client()
    t0 = c.send(request_bytes("GET", "/clamp"))
    r = c.read_response()
    assert_gateway_timeout(r, "total_timeout")
    assert re.fullmatch(rb"504 Gateway Timeout: total_timeout after \d+ ms\n", r.body), r.body
    assert_window(r.t_head - t0, 0.400)
    up.conns[0].wait_proxy_closed(1.0)
    (line,) = p.wait_log(1)
    assert line["reason"] == "total_timeout"
    assert 395 <= log_int(line, "total_ms") <= 650


def test_total_wins_exact_tie_with_read(proxy_factory, upstream):
    # read starts once the request is handed to the upstream, total when the
    # head arrived. On a pooled connection both happen in the same instant,
    # so read == total is an exact tie (or total is earlier): total wins.
    async def handler(reader, writer, ctx):
        await ctx.read_request()
        await ctx.respond(200, b"warm")
        await ctx.read_request()        # the second request is never answered
    up = upstream(handler)
    p = proxy_factory("--read-timeout", "300ms", "--total-timeout", "300ms", upstreams=[up])
    c = p.client()
    c.send(request_bytes("GET", "/warm"))
    assert c.read_response().body == b"warm"
    t0 = c.send(request_bytes("GET", "/tie"))
    r = c.read_response()
    assert_gateway_timeout(r, "total_timeout")
    assert_window(r.t_head - t0, 0.300)
    lines = p.wait_log(2)
    assert lines[1]["reason"] == "total_timeout"
    assert len(up.conns) == 1, "the second request was meant for the pooled connection"
    up.conns[0].wait_proxy_closed(1.0)


def test_write_timeout_upstream_never_reads_body(proxy_factory, upstream):
    async def handler(reader, writer, ctx):
        await ctx.read_head()
        await ctx.wait_signal(10)       # do not read: back-pressure on the proxy
        await ctx.read_until_eof()
    up = upstream(handler, rcvbuf=16384)
    p = proxy_factory("--write-timeout", "300ms", "--read-timeout", "5s",
                      "--total-timeout", "10s", "--body-timeout", "5s", upstreams=[up])
    c = p.client(timeout=5)
    size = 8 << 20
    head = request_bytes("POST", "/upload", headers=[("Content-Length", str(size))])
    t0 = time.monotonic()
    th, res = _start_sender(c, head + b"u" * size)
    r = c.read_response(timeout=5)
    t_resp = time.monotonic()
    assert_gateway_timeout(r, "write_timeout")
    assert r.body == b"504 Gateway Timeout: write_timeout after 300 ms\n"
    assert 0.300 <= t_resp - t0 < 1.5, f"504 after {1000 * (t_resp - t0):.0f} ms"
    (line,) = p.wait_log(1)
    assert line["reason"] == "write_timeout"
    assert line["status"] == "504"
    assert 295 <= log_int(line, "total_ms") < 1500
    # the upstream connection is closed (its reader resumes to see the EOF)
    (conn,) = up.wait_conns(1)
    conn.signal()
    conn.wait_proxy_closed(2.0)
    assert len(conn.received) < size, "the upstream was not supposed to get the whole body"
    c.close()
    th.join(5)


def test_upstream_reset_mid_body(proxy_factory, upstream):
    async def handler(reader, writer, ctx):
        await ctx.read_head()
        await ctx.read_exactly(64 * 1024)
        ctx.reset_conn()
    up = upstream(handler)
    p = proxy_factory("--write-timeout", "5s", "--read-timeout", "5s",
                      "--total-timeout", "10s", upstreams=[up])
    c = p.client(timeout=5)
    size = 8 << 20
    head = request_bytes("POST", "/upload", headers=[("Content-Length", str(size))])
    th, res = _start_sender(c, head + b"r" * size)
    r = c.read_response(timeout=5)
    assert r is not None, "connection closed without a response"
    assert r.status == 502, r
    assert r.body == b"502 Bad Gateway: upstream_reset\n"
    (line,) = p.wait_log(1)
    assert line["status"] == "502"
    assert line["reason"] == "upstream_reset"
    c.close()
    th.join(5)


# --------------------------------------------------------------------------
# client side

def test_header_timeout(proxy_factory, upstream):
    up = upstream(silent_handler())
    p = proxy_factory("--header-timeout", "300ms", upstreams=[up])
    c = p.client()
    t0 = c.send(b"GET /half HTTP/1.1\r\nHost: exa")
    r = c.read_response()
    assert r is not None and r.status == 408, r
    assert r.body == b"408 Request Timeout: header_timeout after 300 ms\n", r.body
    assert_window(r.t_head - t0, 0.300)
    assert c.wait_closed(1.0), "connection not closed after the 408"
    (line,) = p.wait_log(1)
    assert line["status"] == "408"
    assert line["reason"] == "header_timeout"
    assert line["upstream"] == "-"
    # no upstream, no first byte: those fields do not apply
    assert line["connect_ms"] == "-", line
    assert line["first_byte_ms"] == "-", line
    assert int(line["bytes"]) == len(r.raw)
    # the partial head was read: its bytes count (issue 21: it said 0)
    assert int(line["bytes_in"]) == len(b"GET /half HTTP/1.1\r\nHost: exa"), line
    assert up.conns == [], "no upstream connection for an incomplete head"


def test_client_gone_within_head_logged_499(proxy_factory, upstream):
    # A client that closes before its head is complete is a client_abort,
    # logged 499 like every other one (README's reasons table), with the
    # bytes it did send; no upstream is contacted.
    up = upstream(silent_handler())
    p = proxy_factory("--header-timeout", "5s", upstreams=[up])
    c = p.client()
    part = b"POST /gone HTTP/1.1\r\nHost: example\r\nContent-Le"
    c.send(part)
    time.sleep(0.1)
    c.close()
    (line,) = p.wait_log(1)
    assert line["status"] == "499" and line["reason"] == "client_abort", line
    assert int(line["bytes_in"]) == len(part), line
    assert int(line["bytes"]) == 0, line
    assert up.conns == [], "no upstream connection for an incomplete head"


def test_header_timeout_not_extended_by_trickle(proxy_factory, upstream):
    up = upstream(silent_handler())
    p = proxy_factory("--header-timeout", "300ms", upstreams=[up])
    c = p.client()
    data = b"GET /trickle HTTP/1.1\r\nHost: example.test\r\nX-Pad: " + b"p" * 200
    stop = threading.Event()
    first = {}

    def trickle():
        try:
            for i in range(len(data)):
                if stop.is_set():
                    return
                c.sock.send(data[i:i + 1])
                if i == 0:
                    first["t"] = time.monotonic()
                time.sleep(0.05)
        except OSError:
            pass
    th = threading.Thread(target=trickle, daemon=True)
    th.start()
    try:
        r = c.read_response(timeout=3)
    finally:
        stop.set()
    assert r is not None and r.status == 408, r
    assert_window(r.t_head - first["t"], 0.300)
    (line,) = p.wait_log(1)
    assert line["reason"] == "header_timeout"
    th.join(2)


def test_body_timeout(proxy_factory, upstream):
    async def handler(reader, writer, ctx):
        req = await ctx.read_head()
        await ctx.read_body(req)   # never completes
    up = upstream(handler)
    p = proxy_factory("--body-timeout", "300ms", "--read-timeout", "5s",
                      "--total-timeout", "10s", upstreams=[up])
    c = p.client()
    c.send(request_bytes("POST", "/body", headers=[("Content-Length", "1000")]) + b"0123456789")
    t0 = c.t_sent
    r = c.read_response()
    assert r is not None and r.status == 408, r
    assert r.body.startswith(b"408 Request Timeout: body_timeout"), r.body
    assert_window(r.t_head - t0, 0.300)
    assert c.wait_closed(1.0)
    (conn,) = up.wait_conns(1)
    conn.wait_proxy_closed(1.0)
    assert conn.received.endswith(b"0123456789"), "the 10 body bytes were not streamed"
    (line,) = p.wait_log(1)
    assert line["status"] == "408"
    assert line["reason"] == "body_timeout"


def test_send_timeout(proxy_factory, upstream):
    size = 64 << 20

    async def handler(reader, writer, ctx):
        await ctx.read_request()
        ctx.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        chunk = b"s" * (256 * 1024)
        for _ in range(size // len(chunk)):
            if ctx.lost_at is not None or ctx.eof_at is not None:
                return
            await ctx.send(chunk)
    up = upstream(handler)
    p = proxy_factory("--send-timeout", "300ms", "--read-timeout", "5s",
                      "--total-timeout", "20s", upstreams=[up])
    c = p.client(rcvbuf=8192, timeout=5)
    t0 = c.send(request_bytes("GET", "/big"))
    (line,) = p.wait_log(1, timeout=5)
    t_log = time.monotonic()
    assert line["reason"] == "send_timeout"
    assert t_log - t0 >= 0.3
    assert int(line["bytes"]) < size
    # the client was cut: what it can still read ends before the full body
    got = c.read_until_close(5)
    assert len(got) < size, "the client got the whole body despite the send timeout"
    assert c.eof
    (conn,) = up.wait_conns(1)
    t_closed = conn.wait_proxy_closed(1.0)
    assert t_closed - t_log < 0.5
    p.wait_stderr(r"send timeout")


def test_client_abort(proxy_factory, upstream):
    async def handler(reader, writer, ctx):
        await ctx.read_request()
        await ctx.delay(3)
        await ctx.respond(200, b"too late")
    up = upstream(handler)
    p = proxy_factory("--read-timeout", "10s", "--total-timeout", "20s", upstreams=[up])
    c = p.client()
    c.send(request_bytes("GET", "/abort"))
    up.wait_requests(1)
    t_close = time.monotonic()
    c.close()
    (conn,) = up.conns
    t_closed = conn.wait_proxy_closed(1.0)
    assert t_closed - t_close < 0.2, \
        f"upstream closed {1000 * (t_closed - t_close):.0f} ms after the client left"
    (line,) = p.wait_log(1)
    assert line["reason"] == "client_abort"
    assert line["status"] == "499"
    assert line["bytes"] == "0"


def test_idle_timeout_closes_silently(proxy_factory, upstream):
    up = upstream(ok_handler(b"idle"))
    p = proxy_factory("--idle-timeout", "300ms", upstreams=[up])
    c = p.client()
    c.send(request_bytes("GET", "/one"))
    r = c.read_response()
    assert r.status == 200 and r.body == b"idle"
    t_done = r.t_end
    got = c.read_until_close(2)
    assert got == b"", f"bytes on idle close: {got!r}"
    assert_window(c.t_eof - t_done, 0.300)
    # a sentinel request proves no log line was written for the idle close
    c2 = p.client()
    c2.send(request_bytes("GET", "/sentinel"))
    assert c2.read_response().status == 200
    lines = p.wait_log(2)
    assert [l["target"] for l in lines] == ["/one", "/sentinel"], lines


def test_upstream_idle_timeout_closes_pooled(proxy_factory, upstream):
    up = upstream(ok_handler(b"pooled"))
    p = proxy_factory("--upstream-idle-timeout", "300ms", upstreams=[up])
    c = p.client()
    c.send(request_bytes("GET", "/pool"))
    r = c.read_response()
    assert r.status == 200
    (conn,) = up.wait_conns(1)
    t_closed = conn.wait_proxy_closed(2.0)
    assert_window(t_closed - r.t_end, 0.300, hi_slack=0.3,
                  what="pooled connection idle close")


# --------------------------------------------------------------------------
# what each timeout must NOT count

def _slow_body_client(p, pieces, gap):
    """Sends a POST whose body arrives in `pieces` parts, `gap` seconds apart."""
    body = b"".join(b"%02d-" % i + b"b" * 996 for i in range(pieces))
    c = p.client(timeout=5)
    c.send(request_bytes("POST", "/slow-body", headers=[("Content-Length", str(len(body)))]))
    for i in range(pieces):
        time.sleep(gap)
        c.send(body[i * 1000:(i + 1) * 1000])
    return c, body


def test_waiting_for_client_body_is_not_write_or_read_time(proxy_factory, upstream):
    # 5 gaps of 150 ms = 750 ms of waiting for the client: more than the write
    # and read timeouts (300 ms), each gap below the body timeout (400 ms).
    up = upstream(ok_handler(b"took my time"))
    p = proxy_factory("--write-timeout", "300ms", "--read-timeout", "300ms",
                      "--body-timeout", "400ms", "--total-timeout", "3s", upstreams=[up])
    c, body = _slow_body_client(p, 5, 0.15)
    r = c.read_response()
    assert r is not None and r.status == 200, r
    assert r.body == b"took my time"
    (req,) = up.wait_requests(1)
    assert req.body == body
    (line,) = p.wait_log(1)
    assert line["reason"] == "ok"
    assert 740 <= log_int(line, "total_ms") <= 1500


# 2 MiB is relayed through user-space buffers, 16 MiB through a pipe (splice)
@pytest.mark.parametrize("size", [2 << 20, 16 << 20], ids=["copied", "spliced"])
def test_read_timeout_paused_while_client_does_not_read(proxy_factory, upstream, size):

    async def handler(reader, writer, ctx):
        await ctx.read_request()
        ctx.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        chunk = b"p" * (256 * 1024)
        for _ in range(size // len(chunk)):
            await ctx.send(chunk)
    up = upstream(handler)
    # the client stalls 700 ms: longer than read (300 ms), shorter than send (2 s)
    p = proxy_factory("--read-timeout", "300ms", "--send-timeout", "2s",
                      "--total-timeout", "20s", upstreams=[up])
    c = p.client(rcvbuf=16384, timeout=10)
    c.send(request_bytes("GET", "/stall"))
    head, t = c.read_head(timeout=2)
    assert t is not None and head.startswith(b"HTTP/1.1 200"), head
    time.sleep(0.7)   # deliberate client stall (the behaviour under test)
    n = len(c.buf)
    c.buf.clear()
    deadline = time.monotonic() + 10
    while n < size:
        c.sock.settimeout(max(0.01, deadline - time.monotonic()))
        d = c.sock.recv(1 << 18)
        if not d:
            break
        n += len(d)
    assert n == size, f"response cut after {n} of {size} body bytes"
    (line,) = p.wait_log(1)
    assert line["reason"] == "ok", line


def test_body_timeout_is_a_gap_not_a_total(proxy_factory, upstream):
    up = upstream(ok_handler(b"fine"))
    p = proxy_factory("--body-timeout", "300ms", "--total-timeout", "3s", upstreams=[up])
    c, body = _slow_body_client(p, 5, 0.15)   # 750 ms in all, gaps of 150 ms
    r = c.read_response()
    assert r is not None and r.status == 200, r
    assert up.wait_requests(1)[0].body == body


def test_first_byte_and_total_ms_measured(proxy_factory, upstream):
    async def handler(reader, writer, ctx):
        await ctx.read_request()
        await ctx.delay(0.2)
        await ctx.send(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
        await ctx.delay(0.2)
        await ctx.send(b"cd")
    up = upstream(handler)
    p = proxy_factory("--read-timeout", "1s", upstreams=[up])
    c = p.client()
    t0 = c.send(request_bytes("GET", "/timed"))
    r = c.read_response()
    assert r.body == b"abcd"
    assert_window(r.t_head - t0, 0.2, what="first byte")
    (line,) = p.wait_log(1)
    assert 195 <= log_int(line, "first_byte_ms") <= 450, line
    assert 395 <= log_int(line, "total_ms") <= 650, line


# --------------------------------------------------------------------------
# upstream failures around the response

def test_upstream_reset_before_response(proxy_factory, upstream):
    async def handler(reader, writer, ctx):
        await ctx.read_request()
        ctx.reset_conn()
    up = upstream(handler)
    p = proxy_factory(upstreams=[up])
    c = p.client()
    c.send(request_bytes("GET", "/rst"))
    r = c.read_response()
    assert r is not None and r.status == 502, r
    assert r.body == b"502 Bad Gateway: upstream_reset\n"
    (line,) = p.wait_log(1)
    assert line["reason"] == "upstream_reset"
    assert line["attempts"] == "1"
    assert len(up.conns) == 1, "a fresh connection must not be retried"


def test_upstream_closed_mid_body_cuts_client(proxy_factory, upstream):
    async def handler(reader, writer, ctx):
        await ctx.read_request()
        await ctx.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"z" * 10)
        await ctx.delay(0.05)
        ctx.close()
    up = upstream(handler)
    p = proxy_factory(upstreams=[up])
    c = p.client()
    c.send(request_bytes("GET", "/eof-mid"))
    r = c.read_response()
    assert r.status == 200
    assert not r.complete, f"a response cut upstream must be cut for the client: {r}"
    assert r.body == b"z" * 10
    (line,) = p.wait_log(1)
    assert line["reason"] == "upstream_closed"


def test_client_abort_during_request_body(proxy_factory, upstream):
    async def handler(reader, writer, ctx):
        req = await ctx.read_head()
        await ctx.read_body(req)
    up = upstream(handler)
    p = proxy_factory("--body-timeout", "5s", upstreams=[up])
    c = p.client()
    c.send(request_bytes("POST", "/abort-body", headers=[("Content-Length", "100000")])
           + b"q" * 1000)
    (conn,) = up.wait_conns(1)
    wait_until(lambda: len(conn.received) >= 1000 and conn.requests, 2.0,
               msg="first body bytes at the upstream")
    t_close = time.monotonic()
    c.close()
    t_closed = conn.wait_proxy_closed(1.0)
    assert t_closed - t_close < 0.2
    (line,) = p.wait_log(1)
    assert line["reason"] == "client_abort"
    assert line["status"] == "499"


def test_expect_continue_not_sent_when_upstream_refuses(proxy_factory):
    dead = f"127.0.0.1:{free_port()}"
    p = proxy_factory(upstreams=[dead])
    c = p.client()
    c.send(request_bytes("POST", "/expect", headers=[("Content-Length", "5"),
                                                     ("Expect", "100-continue")]))
    r = c.read_response(skip_interim=False)
    assert r is not None and r.status == 502, r
    assert r.body == b"502 Bad Gateway: upstream_refused\n"


# --------------------------------------------------------------------------
# more clamping and the cumulative write clock

def test_total_clamps_body(proxy_factory, upstream):
    async def handler(reader, writer, ctx):
        req = await ctx.read_head()
        await ctx.read_body(req)
    up = upstream(handler)
    p = proxy_factory("--body-timeout", "5s", "--total-timeout", "400ms", upstreams=[up])
    c = p.client()
    t0 = c.send(request_bytes("POST", "/stall", headers=[("Content-Length", "100")]) + b"x")
    r = c.read_response()
    assert r is not None and r.status in (408, 504), r
    assert b"total_timeout" in r.body, r.body
    assert_window(r.t_head - t0, 0.400)
    (line,) = p.wait_log(1)
    assert line["reason"] == "total_timeout"
    up.conns[0].wait_proxy_closed(1.0)


def test_total_clamps_send(proxy_factory, upstream):
    size = 64 << 20

    async def handler(reader, writer, ctx):
        await ctx.read_request()
        ctx.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        chunk = b"t" * (256 * 1024)
        for _ in range(size // len(chunk)):
            if ctx.lost_at is not None or ctx.eof_at is not None:
                return
            await ctx.send(chunk)
    up = upstream(handler)
    p = proxy_factory("--send-timeout", "5s", "--read-timeout", "5s",
                      "--total-timeout", "400ms", upstreams=[up])
    c = p.client(rcvbuf=8192, timeout=5)
    t0 = c.send(request_bytes("GET", "/big"))
    (line,) = p.wait_log(1, timeout=3)
    t_log = time.monotonic()
    assert line["reason"] == "total_timeout"
    assert_window(t_log - t0, 0.400)
    got = c.read_until_close(5)
    assert len(got) < size
    up.conns[0].wait_proxy_closed(1.0)


def test_write_timeout_is_cumulative(proxy_factory, upstream):
    # The upstream takes the body in bursts (up to 1 MiB, then it stops
    # reading for 200 ms): no single stall reaches the 300 ms write timeout,
    # but their sum does.
    import asyncio

    size = 64 << 20

    async def handler(reader, writer, ctx):
        await ctx.read_head()
        got = 0
        ctx.bursts = 0
        while got < size:
            await ctx.delay(0.2)
            ctx.bursts += 1
            burst_end = got + (1 << 20)   # at most 1 MiB per burst, then stall
            while got < min(size, burst_end):
                try:
                    d = await asyncio.wait_for(ctx.read_some(), 0.02)
                except asyncio.TimeoutError:
                    break
                if not d:
                    return
                got += len(d)
        await ctx.respond(200, b"gap-based clock")
    up = upstream(handler)
    p = proxy_factory("--write-timeout", "300ms", "--read-timeout", "5s",
                      "--body-timeout", "5s", "--total-timeout", "15s", upstreams=[up])
    c = p.client(timeout=10)
    head = request_bytes("POST", "/bursts", headers=[("Content-Length", str(size))])
    t0 = time.monotonic()
    th, res = _start_sender(c, head + b"w" * size)
    r = c.read_response(timeout=10)
    elapsed = time.monotonic() - t0
    (conn,) = up.conns
    assert r is not None and r.status == 504, (r, conn.bursts, len(conn.received))
    assert r.body.startswith(b"504 Gateway Timeout: write_timeout"), r.body
    # bursts >= 1: the upstream had taken bytes after the first stall, so the
    # clock that fired added up more than one stall
    assert conn.bursts >= 1, "fired within the first stall: not a cumulative test"
    assert 0.3 <= elapsed < 2.0
    (line,) = p.wait_log(1)
    assert line["reason"] == "write_timeout"
    c.close()
    th.join(5)


def test_client_abort_mid_response(proxy_factory, upstream):
    size = 64 << 20

    async def handler(reader, writer, ctx):
        await ctx.read_request()
        ctx.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        chunk = b"m" * (256 * 1024)
        for _ in range(size // len(chunk)):
            if ctx.lost_at is not None or ctx.eof_at is not None:
                return
            await ctx.send(chunk)
    up = upstream(handler)
    p = proxy_factory("--send-timeout", "10s", "--read-timeout", "10s",
                      "--total-timeout", "20s", upstreams=[up])
    c = p.client(timeout=5)
    c.send(request_bytes("GET", "/leave-early"))
    head, t = c.read_head(timeout=2)
    assert t is not None and head.startswith(b"HTTP/1.1 200"), head
    t_close = time.monotonic()
    c.close()
    (conn,) = up.wait_conns(1)
    t_closed = conn.wait_proxy_closed(1.0)
    assert t_closed - t_close < 0.2, \
        f"upstream closed {1000 * (t_closed - t_close):.0f} ms after the client left"
    (line,) = p.wait_log(1)
    assert line["reason"] == "client_abort"
    assert int(line["bytes"]) < size


# Bodies of 4 MiB and more with a Content-Length are relayed with splice(2),
# through a pipe: the same timeouts and cancellation must hold there.
SPLICED = 6 << 20


@pytest.mark.parametrize("fault", ["stall", "close"])
def test_spliced_body_fault_cuts_client(proxy_factory, upstream, fault):
    async def handler(reader, writer, ctx):
        await ctx.read_request()
        ctx.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % SPLICED)
        await ctx.send(b"s" * (SPLICED // 2))
        if fault == "stall":
            await ctx.delay(10)
        else:
            ctx.close()
    up = upstream(handler)
    p = proxy_factory("--read-timeout", "300ms", "--total-timeout", "10s", upstreams=[up])
    c = p.client(timeout=10)
    c.send(request_bytes("GET", "/spliced"))
    r = c.read_response(timeout=10)
    assert r is not None and r.status == 200, r
    assert not r.complete, "a cut body must not look complete"
    assert len(r.body) < SPLICED
    (line,) = p.wait_log(1)
    assert line["reason"] == ("read_timeout" if fault == "stall" else "upstream_closed"), line
    assert int(line["bytes"]) < SPLICED
    if fault == "stall":   # (after "close" the upstream side is gone already)
        (conn,) = up.conns
        conn.wait_proxy_closed(2.0)
