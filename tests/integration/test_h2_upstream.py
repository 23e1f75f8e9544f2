"""HTTP/2 to the upstream servers (issue 16: `protocol: h2` on a pool, prior
knowledge, no TLS): an HTTP/1.1 exchange mapped onto a stream and back,
request bodies through the upstream's windows, streams multiplexed up to the
server's SETTINGS_MAX_CONCURRENT_STREAMS, a timed-out or abandoned request
resetting only its own stream (RST_STREAM CANCEL), GOAWAY (streams above its
last id retried, whatever the method; no new stream on that connection),
trailers relayed to HTTP/2 clients, a stream reset by the server.

The upstream is the scripted HTTP/2 server of h2up.py (python3-h2 checks
what the proxy sends; every frame is recorded per connection).
Everything talks to 127.0.0.1 only.
"""

import itertools
import json
import time

import pytest

from conftest import (assert_window, chunked, is_sanitized, request_bytes, silent_handler,
                      wait_until)
from h2up import CANCEL, CONNECTION_SPECIFIC, INTERNAL_ERROR
from test_http2 import NO_ERROR, H2Client, log_for

SLOW = 2.0 if is_sanitized() else 1.0
HI = 0.08 * SLOW
LO = 0.02

_cfg_ids = itertools.count()


def h2_doc(server, timeouts=None, pool_extra=None):
    pool = {"protocol": "h2", "servers": [server]}
    pool.update(pool_extra or {})
    route = {"path": "/", "pool": "h"}
    if timeouts:
        route["timeouts"] = timeouts
    return {"pools": {"h": pool}, "routes": [route]}


def start(proxy_factory, tmp_path, doc, *flags):
    path = tmp_path / f"h2up-{next(_cfg_ids)}.yaml"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return proxy_factory("--config", path, *flags)


def get(p, target, host="example.test", headers=(), timeout=3.0):
    c = p.client(timeout=timeout * SLOW)
    try:
        c.send(request_bytes("GET", target, headers=list(headers), host=host))
        r = c.read_response()
    finally:
        c.close()
    assert r is not None, f"no response to GET {target}"
    return r


def assert_h2_request(st, method, path, authority):
    """The request as HTTP/2 fields: pseudo-header fields first, lower-case
    names, no connection-specific field, Host (if kept) equal to :authority."""
    names = [k for k, _ in st.headers]
    pseudo = [k for k in names if k.startswith(":")]
    assert names[:len(pseudo)] == pseudo, f"pseudo-header fields come first: {st.headers}"
    assert sorted(pseudo) == [":authority", ":method", ":path", ":scheme"], st.headers
    assert st.header(":method") == method and st.header(":path") == path, st.headers
    assert st.header(":scheme") == "http", st.headers
    assert st.header(":authority") == authority, st.headers
    for k, v in st.headers:
        assert k == k.lower(), f"upper-case field name {k!r}"
        assert k not in CONNECTION_SPECIFIC, f"connection-specific field {k}: {v}"
        assert not (k == "te" and v != "trailers"), (k, v)
    assert st.header_all("host") in ([], [authority]), st.headers


# ==========================================================================
# HTTP/1.1 clients through an h2 pool

def test_http1_get_through_h2_pool(proxy_factory, tmp_path, h2_upstream):
    async def handler(s):
        await s.read_body()
        if s.path.startswith("/len"):
            await s.respond(200, b"with length\n", headers=[("x-up", "one"),
                                                            ("content-type", "text/plain")])
        else:   # no content-length: the body in two DATA frames, 50 ms apart
            await s.send_headers([(":status", "200"), ("content-type", "text/plain")])
            await s.send_data(b"part one, ")
            await s.sleep(0.05)
            await s.send_data(b"part two\n", end=True)
    up = h2_upstream(handler)
    p = start(proxy_factory, tmp_path, h2_doc(up.addr))
    c = p.client(timeout=3 * SLOW)
    c.send(request_bytes("GET", "/len?x=1&y=%20", host="h2up.example.test:8080",
                         headers=[("X-Req", "One"), ("Connection", "keep-alive"),
                                  ("Keep-Alive", "timeout=5"), ("Accept", "*/*")]))
    r = c.read_response()
    assert r is not None and r.status == 200 and r.complete, r
    assert r.body == b"with length\n" and r.framing in ("length", "chunked"), r
    assert r.header("x-up") == "one" and r.header("content-type") == "text/plain", r.headers
    # the same client connection, a response without content-length
    c.send(request_bytes("GET", "/nolen", host="h2up.example.test:8080"))
    r2 = c.read_response()
    assert r2 is not None and r2.status == 200 and r2.complete, r2
    assert r2.body == b"part one, part two\n", r2
    assert r2.framing in ("chunked", "length"), f"not delimited by a close: {r2}"
    c.close()
    s1, s2 = up.wait_streams(2)
    assert_h2_request(s1, "GET", "/len?x=1&y=%20", "h2up.example.test:8080")
    assert s1.header("x-req") == "One" and s1.header("accept") == "*/*", s1.headers
    assert s1.ended and not s1.body, "a GET has no body"
    assert_h2_request(s2, "GET", "/nolen", "h2up.example.test:8080")
    assert len(up.conns) == 1 and s1.conn is s2.conn, "one upstream connection, two streams"
    assert up.conns[0].preface_ok, "the client connection preface"
    line = log_for(p, "/nolen")
    assert line["proto"] == "HTTP/1.1" and line["status"] == "200", line
    assert line["upstream"] == up.addr and line["reason"] == "ok", line
    assert line.get("grpc_status", "-") == "-", f"not a gRPC call: {line}"


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_http1_post_body_through_h2_pool(proxy_factory, tmp_path, h2_upstream, framing):
    async def handler(s):
        body = await s.read_body()
        await s.respond(200, b"got %d" % len(body))
    up = h2_upstream(handler)
    p = start(proxy_factory, tmp_path, h2_doc(up.addr))
    body = bytes(range(256)) * 800          # 200 KiB: more than the initial windows
    c = p.client(timeout=5 * SLOW)
    if framing == "chunked":
        c.send(request_bytes("POST", "/upload", headers=[("Transfer-Encoding", "chunked"),
                                                         ("Content-Type", "x/y")])
               + chunked(body))
    else:
        c.send(request_bytes("POST", "/upload", headers=[("Content-Type", "x/y")], body=body))
    r = c.read_response()
    c.close()
    assert r is not None and r.status == 200 and r.body == b"got %d" % len(body), r
    (st,) = up.wait_streams(1)
    assert_h2_request(st, "POST", "/upload", "example.test")
    assert st.body == body, f"{len(st.body)} of {len(body)} bytes arrived, or changed"
    assert st.header("content-type") == "x/y"
    assert st.header("transfer-encoding") is None, st.headers
    if framing == "content-length":
        assert st.header("content-length") == str(len(body)), st.headers
    else:
        assert st.header("content-length") in (None, str(len(body))), st.headers
    assert st.data_frames >= 4, "the body came in more than one window's worth of frames"


# ==========================================================================
# multiplexing

def test_streams_up_to_max_concurrent_streams(proxy_factory, tmp_path, h2_upstream):
    async def handler(s):
        await s.read_body()
        if s.path.startswith("/slow"):
            await s.sleep(0.3)
        await s.respond(200, s.path.encode())
    up = h2_upstream(handler, max_streams=2)
    p = start(proxy_factory, tmp_path, h2_doc(up.addr))
    assert get(p, "/warm").status == 200       # one connection, its SETTINGS known
    clients = []
    for i in range(6):
        c = p.client(timeout=5 * SLOW)
        c.send(request_bytes("GET", f"/slow/{i}"))
        clients.append(c)
    for i, c in enumerate(clients):
        r = c.read_response()
        refused = [(s.conn.index, s.path) for s in up.streams() if s.refused]
        # a stream refused (REFUSED_STREAM: over the limit before the SETTINGS
        # were known) was not processed: it must be retried, not lost
        assert r is not None and r.status == 200 and r.body == f"/slow/{i}".encode(), \
            f"request {i}: {r}; streams refused by the server: {refused}"
        c.close()
    assert up.violations() == [], \
        f"more streams than the server's SETTINGS_MAX_CONCURRENT_STREAMS: {up.violations()}"
    served = sorted(s.path for s in up.served() if s.path.startswith("/slow"))
    assert served == [f"/slow/{i}" for i in range(6)], served
    assert 2 <= len(up.conns) <= 3, \
        f"6 requests over streams of 2 take 2 or 3 connections, not {len(up.conns)}"
    assert max(c.max_open for c in up.conns) == 2, \
        f"streams were not multiplexed: {[c.max_open for c in up.conns]}"


def test_timed_out_stream_cancelled_neighbour_and_connection_carry_on(proxy_factory, tmp_path,
                                                                     h2_upstream):
    async def handler(s):
        await s.read_body()
        if s.path == "/never":
            await s.wait_reset(10)
        elif s.path == "/drip":       # a byte of body every 100 ms for 500 ms
            await s.send_headers([(":status", "200")])
            for _ in range(5):
                await s.sleep(0.1)
                await s.send_data(b"d")
            await s.send_data(b"", end=True)
        else:
            await s.respond(200, b"ok")
    up = h2_upstream(handler)
    p = start(proxy_factory, tmp_path, h2_doc(up.addr, timeouts={"read": "300ms"}))
    assert get(p, "/warm").status == 200
    a = p.client(timeout=3 * SLOW)
    a.send(request_bytes("GET", "/drip"))
    b = p.client(timeout=3 * SLOW)
    b.send(request_bytes("GET", "/never"))
    rb = b.read_response()
    assert rb is not None and rb.status == 504, rb
    assert_window(rb.t_end - b.t_sent, 0.3, LO, HI, "504 after")
    ra = a.read_response()
    assert ra is not None and ra.status == 200 and ra.body == b"ddddd", \
        f"the neighbour stream carried on: {ra}"
    (conn,) = up.conns
    st = {s.path: s for s in conn.stream_list()}
    wait_until(lambda: st["/never"].reset_received is not None, 1 * SLOW,
               msg="RST_STREAM for the timed-out stream")
    assert conn.rst_codes(st["/never"].sid) == [CANCEL], conn.frame_names()
    assert st["/never"].t_reset - rb.t_end < 0.1 * SLOW, "RST_STREAM came late"
    assert conn.rst_codes(st["/drip"].sid) == [], "the neighbour was reset"
    assert conn.closed_at is None, "the connection was closed for one stream's timeout"
    assert log_for(p, "/never")["reason"] == "read_timeout"
    # the same connection serves the next request
    assert get(p, "/after").status == 200
    assert len(up.conns) == 1 and "/after" in [s.path for s in conn.stream_list()]
    a.close()
    b.close()


@pytest.mark.parametrize("client", ["h2-rst-stream", "http1-close"])
def test_client_gone_cancels_only_its_stream(proxy_factory, tmp_path, h2_upstream, client):
    async def handler(s):
        await s.read_body()
        if s.path == "/hold":
            await s.wait_reset(10)
        else:
            await s.sleep(0.3)
            await s.respond(200, b"slow done")
    up = h2_upstream(handler)
    p = start(proxy_factory, tmp_path, h2_doc(up.addr))
    assert get(p, "/warm").status == 200
    other = p.client(timeout=3 * SLOW)
    other.send(request_bytes("GET", "/slow"))
    if client == "h2-rst-stream":
        c = H2Client(p.port)
        sid = c.request("/hold")
    else:
        c = p.client()
        c.send(request_bytes("GET", "/hold"))
    wait_until(lambda: {"/hold", "/slow"} <= {s.path for s in up.served()}, 2 * SLOW,
               msg="both requests at the upstream")
    t_gone = time.monotonic()
    if client == "h2-rst-stream":
        c.reset(sid, CANCEL)
    else:
        c.close()
    (conn,) = up.conns
    hold = next(s for s in conn.stream_list() if s.path == "/hold")
    wait_until(lambda: hold.reset_received is not None, 1 * SLOW,
               msg="RST_STREAM at the upstream")
    assert hold.t_reset - t_gone < 0.1 * SLOW, \
        f"RST_STREAM {1000 * (hold.t_reset - t_gone):.0f} ms after the client left"
    assert conn.rst_codes(hold.sid) == [CANCEL], conn.frame_names()
    r = other.read_response()
    assert r is not None and r.status == 200 and r.body == b"slow done", r
    assert conn.closed_at is None and len(up.conns) == 1
    assert log_for(p, "/hold")["reason"] == "client_abort"
    other.close()
    if client == "h2-rst-stream":
        c.close()


# ==========================================================================
# GOAWAY

def test_goaway_retries_post_above_last_stream_id(proxy_factory, tmp_path, h2_upstream):
    async def handler(s):
        body = await s.read_body()
        if s.path == "/post" and s.conn.index == 0:
            # not processed: GOAWAY names the stream before it as the last
            s.conn.goaway(s.sid - 2)
            return
        await s.respond(200, b"%s %d bytes on conn %d" % (s.path.encode(), len(body),
                                                          s.conn.index))
    up = h2_upstream(handler)
    p = start(proxy_factory, tmp_path, h2_doc(up.addr))
    assert get(p, "/warm").status == 200
    body = b"p" * 10000
    c = p.client(timeout=3 * SLOW)
    c.send(request_bytes("POST", "/post", body=body))
    r = c.read_response()
    c.close()
    assert r is not None and r.status == 200, r
    assert r.body == b"/post 10000 bytes on conn 1", r
    posts = [s for s in up.served() if s.path == "/post"]
    assert [s.conn.index for s in posts] == [0, 1], posts
    assert posts[1].body == body and posts[1].method == "POST"
    conn0 = up.conns[0]
    last, _, t_goaway = conn0.goaway_sent
    assert posts[0].sid > last
    # no new stream on the connection that sent GOAWAY
    assert get(p, "/next").status == 200
    late = [s for s in conn0.stream_list() if s.t > t_goaway]
    assert late == [], f"streams opened after GOAWAY: {late}"
    nxt = next(s for s in up.served() if s.path == "/next")
    assert nxt.conn.index != 0, nxt
    assert log_for(p, "/post")["status"] == "200"


# ==========================================================================
# trailers, resets

def test_trailers_reach_an_h2_client(proxy_factory, tmp_path, h2_upstream):
    async def handler(s):
        await s.read_body()
        await s.respond(200, b"payload", headers=[("content-type", "application/x-test")],
                        trailers=[("x-checksum", "abc123"), ("x-count", "7")])
    up = h2_upstream(handler)
    p = start(proxy_factory, tmp_path, h2_doc(up.addr))
    c = H2Client(p.port)
    s = c.get("/t", headers=[("te", "trailers")])
    assert s.status == 200 and s.body == b"payload", s
    assert s.ended and s.reset in (None, NO_ERROR), s
    assert s.trailers is not None, f"no trailers: {s}"
    t = dict(s.trailers)
    assert t.get("x-checksum") == "abc123" and t.get("x-count") == "7", s.trailers
    assert not any(k.startswith(":") for k in t), s.trailers
    (st,) = up.wait_streams(1)
    assert st.header("te") == "trailers", f"te: trailers is passed on: {st.headers}"
    c.close()


def test_upstream_reset_before_headers_is_502(proxy_factory, tmp_path, h2_upstream):
    async def handler(s):
        await s.read_body()
        if s.path == "/reset":
            s.reset(INTERNAL_ERROR)
        else:
            await s.respond(200, b"ok")
    up = h2_upstream(handler)
    p = start(proxy_factory, tmp_path, h2_doc(up.addr))
    r = get(p, "/reset")
    assert r.status == 502, r
    line = log_for(p, "/reset")
    assert line["status"] == "502" and line["reason"] == "upstream_reset", line
    # a stream reset leaves the connection in use
    assert get(p, "/ok").status == 200
    assert len(up.conns) == 1, "a reset stream does not cost the connection"


def test_sequential_requests_share_one_connection(proxy_factory, tmp_path, h2_upstream):
    """Sequential requests share one upstream connection (a stream each)."""
    up = h2_upstream()
    p = start(proxy_factory, tmp_path, h2_doc(up.addr))
    for i in range(20):
        r = get(p, f"/seq/{i}")
        assert r.status == 200 and r.body == f"ok /seq/{i}".encode(), r
    assert len(up.conns) == 1, f"{len(up.conns)} connections for 20 requests in a row"
    sids = [s.sid for s in up.conns[0].stream_list()]
    assert sids == list(range(1, 41, 2)), sids


def test_per_request_fields_are_never_indexed(proxy_factory, tmp_path, h2_upstream):
    """X-Request-Id and the deadline header differ in every request: HPACK
    sends them as literals never indexed (RFC 7541 6.2.3), so that they do
    not take a new entry of the dynamic table each time and push out the
    fields that repeat, which stay indexed."""
    from hpack import NeverIndexedHeaderTuple
    up = h2_upstream()
    p = start(proxy_factory, tmp_path, h2_doc(up.addr))
    for i in range(3):
        r = get(p, f"/ni/{i}", headers=[("X-Same", "every time")])
        assert r.status == 200, r
    for st in up.conns[0].stream_list():
        kinds = {k: isinstance(h, NeverIndexedHeaderTuple) for h in st.headers for k in [h[0]]}
        assert kinds.get("x-request-id") is True, st.headers
        assert kinds.get("x-request-deadline-ms") is True, st.headers
        assert kinds.get("x-same") is False and kinds.get("via") is False, st.headers


def test_least_conn_counts_streams_across_closed_connections(proxy_factory, tmp_path,
                                                             h2_upstream):
    """least_conn over two HTTP/2 servers counts streams in use; a connection
    that closes must not skew its server's count (a server whose count went
    wrong would never be chosen again)."""
    a, b = h2_upstream(), h2_upstream()
    doc = h2_doc(a.addr, pool_extra={"balance": "least_conn"})
    doc["pools"]["h"]["servers"] = [a.addr, b.addr]
    p = start(proxy_factory, tmp_path, doc)
    for i in range(4):
        assert get(p, f"/before-{i}").status == 200
    assert len(a.conns) == 1, "a served some of the first requests"
    a.conns[0].close()   # only a's connection goes
    wait_until(lambda: a.conns[0].closed_at is not None, 2.0 * SLOW)
    time.sleep(0.1 * SLOW)
    before = len(a.served())
    for i in range(8):
        assert get(p, f"/after-{i}").status == 200
    assert len(a.served()) - before >= 2, (
        f"a is chosen again after its connection closed: a {len(a.served())}, "
        f"b {len(b.served())}")


def test_active_health_checks_speak_http2(proxy_factory, tmp_path, h2_upstream):
    """A pool's active health checks speak its protocol: over HTTP/2 the check
    is a GET on a stream (the scripted server accepts nothing else), a 2xx
    keeps the server in, a 5xx takes it out (503 no_healthy_upstream)."""
    state = {"status": 200}

    async def handler(s):
        await s.read_body()
        code = state["status"] if s.path == "/hz" else 200
        await s.respond(code, b"hz" if s.path == "/hz" else b"ok")
    up = h2_upstream(handler)
    doc = h2_doc(up.addr, pool_extra={"health": {"active": {
        "path": "/hz", "interval": "100ms", "timeout": "80ms", "healthy": 1, "unhealthy": 1}}})
    p = start(proxy_factory, tmp_path, doc)
    wait_until(lambda: any(s.path == "/hz" for s in up.served()), 2 * SLOW)
    hz = next(s for s in up.served() if s.path == "/hz")
    assert hz.method == "GET" and hz.header("user-agent") == "hourglass-health", hz.headers
    assert get(p, "/in").status == 200
    state["status"] = 503
    wait_until(lambda: "marked down by health check" in p.stderr_text(), 2 * SLOW)
    assert "status 503" in p.stderr_text()
    r = get(p, "/out")
    assert r.status == 503, r
    state["status"] = 200
    wait_until(lambda: "back up by health check" in p.stderr_text(), 2 * SLOW)
    assert get(p, "/in-again").status == 200


def test_connection_lost_fails_each_stream(proxy_factory, tmp_path, h2_upstream):
    """The server closes its connection with three requests in flight on it:
    each request fails with the connection's reason (POSTs are not sent
    again: 502 upstream_closed); the next request opens a new connection."""
    gate = {"held": 0}

    async def handler(s):
        await s.read_body()
        if s.path.startswith("/held"):
            gate["held"] += 1
            await s.sleep(30)
        await s.respond(200, b"ok")
    up = h2_upstream(handler)
    p = start(proxy_factory, tmp_path, h2_doc(up.addr))
    clients = []
    for i in range(3):
        c = p.client(timeout=3 * SLOW)
        c.send(request_bytes("POST", f"/held-{i}", body=b"x" * 10))
        clients.append(c)
    wait_until(lambda: gate["held"] == 3, 2 * SLOW, msg="three streams held upstream")
    assert len(up.conns) == 1
    up.conns[0].close()
    for c in clients:
        r = c.read_response()
        assert r is not None and r.status == 502, r
        c.close()
    lines = p.wait_log(3)
    assert sorted(l["reason"] for l in lines) == ["upstream_closed"] * 3, lines
    assert get(p, "/after").status == 200
    assert len(up.conns) == 2


def test_connect_clock_covers_the_settings_exchange(proxy_factory, upstream, tmp_path):
    """A server that accepts the connection but never sends its SETTINGS is
    not open: the request waits under the connect timeout, then 504
    connect_timeout (not a read timeout: nothing was sent)."""
    silent = upstream(silent_handler())
    doc = h2_doc(silent.addr, timeouts={"connect": "200ms", "read": "5s"})
    p = start(proxy_factory, tmp_path, doc)
    t0 = time.monotonic()
    r = get(p, "/never-open")
    assert r.status == 504, r
    assert_window(time.monotonic() - t0, 0.2, LO, HI + 0.05 * SLOW, "504 after")
    (line,) = p.wait_log(1)
    assert line["reason"] == "connect_timeout", line


@pytest.mark.parametrize("opened", [False, True], ids=["window-stays-shut", "window-opens"])
def test_write_clock_runs_while_the_stream_window_is_shut(proxy_factory, tmp_path, h2_upstream,
                                                          opened):
    """The write timeout counts while the upstream will not take bytes: over
    HTTP/2, while its flow-control window is shut (SETTINGS_INITIAL_WINDOW_SIZE
    0). A window that opens in time lets the request through."""
    import h2.settings

    async def handler(s):
        if opened:
            await s.sleep(0.1)
            s.conn.h2.increment_flow_control_window(4096, stream_id=s.sid)
            s.conn.flush()
        body = await s.read_body()
        await s.respond(200, b"got %d" % len(body))
    up = h2_upstream(handler, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    p = start(proxy_factory, tmp_path, h2_doc(up.addr, timeouts={"write": "300ms", "read": "5s"}))
    c = p.client(timeout=3 * SLOW)
    t0 = time.monotonic()
    c.send(request_bytes("POST", "/upload", body=b"b" * 1000))
    r = c.read_response()
    c.close()
    if opened:
        assert r.status == 200 and r.body == b"got 1000", r
        return
    assert r.status == 504, r
    assert_window(time.monotonic() - t0, 0.3, LO, HI + 0.05 * SLOW, "504 after")
    (line,) = p.wait_log(1)
    assert line["reason"] == "write_timeout", line
    (st,) = up.served()
    wait_until(lambda: st.reset_received is not None, 1 * SLOW)
    assert st.reset_received == CANCEL, st


def test_hedge_lost_resets_its_stream(proxy_factory, tmp_path, h2_upstream):
    """A hedged GET over an HTTP/2 pool: the second server answers first, and
    the first attempt's stream is reset with CANCEL (its connection stays)."""
    async def slow(s):
        await s.read_body()
        await s.sleep(2)
        await s.respond(200, b"slow")

    async def fast(s):
        await s.read_body()
        await s.respond(200, b"fast")
    a, b = h2_upstream(slow), h2_upstream(fast)
    doc = h2_doc(a.addr)
    doc["pools"]["h"]["servers"] = [a.addr, b.addr]
    doc["routes"][0]["hedge"] = {"delay": "100ms"}
    p = start(proxy_factory, tmp_path, doc)
    t0 = time.monotonic()
    r = get(p, "/hedged")
    assert r.status == 200 and r.body == b"fast", r
    assert_window(time.monotonic() - t0, 0.1, LO, HI, "hedged answer after")
    (st,) = a.served()
    wait_until(lambda: st.reset_received is not None, 1 * SLOW)
    assert st.reset_received == CANCEL, st
    assert a.conns[0].closed_at is None, "the shared connection stays open"


def test_server_protocol_error_fails_its_streams_at_once(proxy_factory, tmp_path, h2_upstream):
    """A connection error of the server's (a CONTINUATION without HEADERS):
    nghttp2 sends GOAWAY and ignores the rest; the request fails at once
    (502), not at its read timeout, and the next one gets a new connection."""
    async def broken(s):
        if s.path == "/broken":
            s.conn._write(b"\x00\x00\x01\x09\x04" + s.sid.to_bytes(4, "big") + b"\x88")
            s.conn.flush()
            await s.sleep(5)
            return
        await s.read_body()
        await s.respond(200, b"ok")
    up = h2_upstream(broken, strict=False)
    p = start(proxy_factory, tmp_path, h2_doc(up.addr, timeouts={"read": "5s"}))
    t0 = time.monotonic()
    r = get(p, "/broken")
    assert r.status == 502, r
    assert time.monotonic() - t0 < 1.0 * SLOW, "failed at once, not at the read timeout"
    (line,) = p.wait_log(1)
    assert line["reason"] == "upstream_error", line
    assert "HTTP/2 protocol error" in p.stderr_text() or "Protocol error" in p.stderr_text()
    assert get(p, "/after").status == 200
    assert len(up.conns) == 2


def test_expect_continue_through_an_h2_pool(proxy_factory, tmp_path, h2_upstream):
    """An HTTP/1.1 client's Expect: 100-continue over an HTTP/2 pool: 100 once
    the upstream is there, then the body goes and the answer comes back."""
    async def echo(s):
        body = await s.read_body()
        await s.respond(200, b"got " + body)
    up = h2_upstream(echo)
    p = start(proxy_factory, tmp_path, h2_doc(up.addr))
    c = p.client(timeout=3 * SLOW)
    c.send(b"POST /e HTTP/1.1\r\nHost: example.test\r\nContent-Length: 5\r\n"
           b"Expect: 100-continue\r\n\r\n")
    head, _ = c.read_head()
    assert head.startswith(b"HTTP/1.1 100"), head
    c.send(b"hello")
    r = c.read_response()
    c.close()
    assert r.status == 200 and r.body == b"got hello", r
    (st,) = up.served()
    assert st.header("expect") is None, st.headers
