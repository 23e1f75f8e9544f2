"""HTTP/1.1 behaviour of the proxy when nothing times out."""

import re
import time

import pytest

from conftest import LOG_KEYS, chunked, ok_handler, request_bytes, wait_until


def test_simple_get(proxy_factory, upstream):
    up = upstream(ok_handler(b"hello world\n", headers=[("X-Up", "1")]))
    p = proxy_factory(upstreams=[up])
    c = p.client()
    c.send(request_bytes("GET", "/simple?q=1"))
    r = c.read_response()
    assert r.status == 200 and r.complete
    assert r.body == b"hello world\n"
    assert r.header("x-up") == "1"
    (req,) = up.wait_requests(1)
    assert req.method == "GET" and req.target == "/simple?q=1"
    (line,) = p.wait_log(1)
    assert line["status"] == "200"
    assert line["reason"] == "ok"
    assert line["method"] == "GET"
    assert line["target"] == "/simple?q=1"
    assert line["upstream"] == up.addr
    assert line["attempts"] == "1"
    assert int(line["bytes"]) == len(r.raw)
    assert line["first_byte_ms"] != "-"
    assert int(line["first_byte_ms"]) <= int(line["total_ms"])


def test_access_log_format(proxy_factory, upstream):
    up = upstream(ok_handler(b"fmt"))
    p = proxy_factory(upstreams=[up])
    c = p.client()
    c.send(request_bytes("GET", "/fmt"))
    assert c.read_response().status == 200
    p.wait_log(1)
    raw = p.raw_log_lines()[0]
    keys = [part.partition("=")[0] for part in raw.split(" ")]
    assert keys == LOG_KEYS, raw
    line = p.log_lines()[0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"]), raw
    assert line["client"] == f"127.0.0.1:{c.local_port}"
    for k in ("connect_ms", "first_byte_ms", "total_ms", "bytes", "attempts"):
        assert line[k].isdigit(), (k, raw)


def test_client_keepalive_reuse(proxy_factory, upstream):
    up = upstream(ok_handler(b"ka"))
    p = proxy_factory(upstreams=[up])
    c = p.client()
    for target in ("/a", "/b"):
        c.send(request_bytes("GET", target))
        r = c.read_response()
        assert r.status == 200 and r.body == b"ka"
    lines = p.wait_log(2)
    assert [l["target"] for l in lines] == ["/a", "/b"]
    assert lines[0]["client"] == lines[1]["client"] == f"127.0.0.1:{c.local_port}"


def test_upstream_pool_reuse(proxy_factory, upstream):
    up = upstream(ok_handler(b"pool"))
    p = proxy_factory(upstreams=[up])
    for target in ("/p1", "/p2"):
        c = p.client()
        c.send(request_bytes("GET", target))
        r = c.read_response()
        assert r.status == 200 and r.body == b"pool"
        c.close()
    lines = p.wait_log(2)
    assert len(up.conns) == 1, f"{len(up.conns)} upstream connections for 2 requests"
    assert [r.target for r in up.conns[0].requests] == ["/p1", "/p2"]
    assert int(lines[1]["connect_ms"]) <= 5


def test_pooled_connection_closed_by_upstream(proxy_factory, upstream):
    async def handler(reader, writer, ctx):
        req = await ctx.read_request()
        await ctx.respond(200, b"once " + req.target.encode())
        ctx.close()        # FIN right after one response
    up = upstream(handler)
    p = proxy_factory(upstreams=[up])
    c = p.client()
    c.send(request_bytes("GET", "/first"))
    assert c.read_response().body == b"once /first"
    wait_until(lambda: up.conns[0].lost_at, 1.0, msg="upstream side closed")
    c.send(request_bytes("GET", "/second"))
    r = c.read_response()
    assert r.status == 200, r
    assert r.body == b"once /second"
    lines = p.wait_log(2)
    assert lines[1]["status"] == "200"
    assert lines[1]["attempts"] in ("1", "2")
    assert len(up.conns) == 2


def test_pool_retry_when_reused_connection_closes_on_request(proxy_factory, upstream):
    async def handler(reader, writer, ctx):
        if ctx.index == 0:
            await ctx.read_request()
            await ctx.respond(200, b"first")
            await ctx.read_head()      # the reused request ...
            ctx.close()                # ... is met by a close, no response byte
            return
        await ctx.serve_forever(lambda ctx, req: ctx.respond(200, b"retried"))
    up = upstream(handler)
    p = proxy_factory(upstreams=[up])
    c = p.client()
    c.send(request_bytes("GET", "/one"))
    assert c.read_response().body == b"first"
    c.send(request_bytes("GET", "/two"))
    r = c.read_response()
    assert r.status == 200 and r.body == b"retried", r
    lines = p.wait_log(2)
    assert lines[1]["attempts"] == "2"
    assert lines[1]["reason"] == "ok"
    assert len(up.conns) == 2


def test_no_retry_for_post_on_closed_pooled_connection(proxy_factory, upstream):
    async def handler(reader, writer, ctx):
        if ctx.index == 0:
            await ctx.read_request()
            await ctx.respond(200, b"first")
            await ctx.read_request()
            ctx.close()
            return
        await ctx.serve_forever(lambda ctx, req: ctx.respond(200, b"should not happen"))
    up = upstream(handler)
    p = proxy_factory(upstreams=[up])
    c = p.client()
    c.send(request_bytes("GET", "/one"))
    assert c.read_response().body == b"first"
    c.send(request_bytes("POST", "/two", body=b"payload"))
    r = c.read_response()
    assert r is not None and r.status == 502, r
    assert r.body == b"502 Bad Gateway: upstream_closed\n"
    lines = p.wait_log(2)
    assert lines[1]["reason"] == "upstream_closed"
    assert lines[1]["attempts"] == "1"
    assert sum(len(x.requests) for x in up.conns[1:]) == 0, "a POST was retried"


def test_pipelined_requests_in_order(proxy_factory, upstream):
    async def handler(reader, writer, ctx):
        async def respond(ctx, req):
            if req.target == "/slow":
                await ctx.delay(0.1)
            await ctx.respond(200, req.target.encode())
        await ctx.serve_forever(respond)
    up = upstream(handler)
    p = proxy_factory(upstreams=[up])
    c = p.client()
    c.send(request_bytes("GET", "/slow") + request_bytes("GET", "/fast")
           + request_bytes("GET", "/third"))
    bodies = [c.read_response().body for _ in range(3)]
    assert bodies == [b"/slow", b"/fast", b"/third"]
    lines = p.wait_log(3)
    assert [l["target"] for l in lines] == ["/slow", "/fast", "/third"]


def test_chunked_response_relayed(proxy_factory, upstream):
    body = bytes(range(256)) * 400

    async def handler(reader, writer, ctx):
        await ctx.read_request()
        await ctx.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        enc = chunked(body)
        for i in range(0, len(enc), 7000):
            await ctx.send(enc[i:i + 7000])
            await ctx.delay(0.001)
    up = upstream(handler)
    p = proxy_factory(upstreams=[up])
    c = p.client()
    c.send(request_bytes("GET", "/chunked"))
    r = c.read_response()
    assert r.status == 200 and r.complete, r
    assert r.body == body
    (line,) = p.wait_log(1)
    assert line["reason"] == "ok"
    assert int(line["bytes"]) == len(r.raw)


def test_chunked_request_body_relayed(proxy_factory, upstream):
    body = b"0123456789abcdef" * 5000 + b"tail"
    up = upstream(ok_handler(b"got it"))
    p = proxy_factory(upstreams=[up])
    c = p.client()
    c.send(request_bytes("POST", "/up", headers=[("Transfer-Encoding", "chunked")])
           + chunked(body))
    r = c.read_response()
    assert r.status == 200 and r.body == b"got it"
    (req,) = up.wait_requests(1)
    assert req.body == body
    (line,) = p.wait_log(1)
    assert line["method"] == "POST" and line["reason"] == "ok"


def test_content_length_request_body_relayed(proxy_factory, upstream):
    body = bytes(range(256)) * 1000
    up = upstream(ok_handler(b"stored"))
    p = proxy_factory(upstreams=[up])
    c = p.client()
    c.send(request_bytes("PUT", "/put", body=body))
    assert c.read_response().body == b"stored"
    (req,) = up.wait_requests(1)
    assert req.body == body
    assert req.header("content-length") == str(len(body))


def test_close_delimited_response(proxy_factory, upstream):
    body = b"until the end " * 3000

    async def handler(reader, writer, ctx):
        await ctx.read_request()
        await ctx.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body)
        ctx.close()
    up = upstream(handler)
    p = proxy_factory(upstreams=[up])
    c = p.client()
    c.send(request_bytes("GET", "/close"))
    r = c.read_response()
    assert r.status == 200, r
    assert r.complete, r
    assert r.body == body
    (line,) = p.wait_log(1)
    assert line["reason"] == "ok"


def test_head(proxy_factory, upstream):
    async def handler(reader, writer, ctx):
        async def respond(ctx, req):
            if req.method == "HEAD":
                await ctx.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            else:
                await ctx.respond(200, b"after head")
        await ctx.serve_forever(respond)
    up = upstream(handler)
    p = proxy_factory(upstreams=[up])
    c = p.client()
    c.send(request_bytes("HEAD", "/h"))
    r = c.read_response(method="HEAD")
    assert r.status == 200
    assert r.header("content-length") == "1000"
    c.send(request_bytes("GET", "/after"))
    r2 = c.read_response()
    assert r2.status == 200 and r2.body == b"after head"
    lines = p.wait_log(2)
    assert lines[0]["method"] == "HEAD" and lines[0]["reason"] == "ok"


@pytest.mark.parametrize("status,reason", [(204, "No Content"), (304, "Not Modified")])
def test_bodiless_status(proxy_factory, upstream, status, reason):
    async def handler(reader, writer, ctx):
        async def respond(ctx, req):
            if req.target == "/nobody":
                await ctx.send(f"HTTP/1.1 {status} {reason}\r\nETag: \"x\"\r\n\r\n".encode())
            else:
                await ctx.respond(200, b"next")
        await ctx.serve_forever(respond)
    up = upstream(handler)
    p = proxy_factory(upstreams=[up])
    c = p.client()
    c.send(request_bytes("GET", "/nobody"))
    r = c.read_response()
    assert r.status == status
    c.send(request_bytes("GET", "/next"))
    r2 = c.read_response(timeout=2)
    assert r2.status == 200 and r2.body == b"next", r2
    lines = p.wait_log(2)
    assert lines[0]["status"] == str(status) and lines[0]["reason"] == "ok"


def test_expect_100_continue(proxy_factory, upstream):
    up = upstream(ok_handler(b"continued"))
    p = proxy_factory(upstreams=[up])
    c = p.client()
    c.send(request_bytes("POST", "/expect", headers=[("Content-Length", "5"),
                                                     ("Expect", "100-continue")]))
    head, t = c.read_head(timeout=1.0)
    assert t is not None, "no 100 Continue"
    assert head.startswith(b"HTTP/1.1 100"), head
    c.send(b"hello")
    r = c.read_response()
    assert r.status == 200 and r.body == b"continued"
    (req,) = up.wait_requests(1)
    assert req.body == b"hello"
    assert not req.has("expect"), req.headers


def test_hop_by_hop_request_headers_removed(proxy_factory, upstream):
    up = upstream(ok_handler())
    p = proxy_factory(upstreams=[up])
    c = p.client()
    c.send(request_bytes("GET", "/hop", headers=[
        ("Connection", "X-Foo, keep-alive"), ("X-Foo", "secret"),
        ("Keep-Alive", "timeout=5"), ("Proxy-Connection", "keep-alive"),
        ("Upgrade", "foo/1"), ("TE", "trailers"), ("X-Bar", "kept")]))
    assert c.read_response().status == 200
    (req,) = up.wait_requests(1)
    for h in ("x-foo", "keep-alive", "proxy-connection", "upgrade", "te"):
        assert not req.has(h), f"{h} was forwarded: {req.headers}"
    conn_vals = ",".join(req.header_all("connection")).lower()
    assert "x-foo" not in conn_vals
    assert req.header("x-bar") == "kept"


def test_hop_by_hop_response_headers_removed(proxy_factory, upstream):
    up = upstream(ok_handler(b"r", headers=[("Connection", "X-Resp"), ("X-Resp", "1"),
                                            ("Keep-Alive", "timeout=9"),
                                            ("X-Stay", "yes")]))
    p = proxy_factory(upstreams=[up])
    c = p.client()
    c.send(request_bytes("GET", "/hop-resp"))
    r = c.read_response()
    assert r.status == 200
    assert r.header("x-resp") is None, r.headers
    assert r.header("keep-alive") is None, r.headers
    assert r.header("x-stay") == "yes"


def test_via_and_forwarded_headers(proxy_factory, upstream):
    up = upstream(ok_handler())
    p = proxy_factory(upstreams=[up])
    c = p.client()
    c.send(request_bytes("GET", "/fwd", headers=[("X-Forwarded-For", "10.1.2.3"),
                                                 ("Via", "1.0 front")]))
    assert c.read_response().status == 200
    c.send(request_bytes("GET", "/fwd2"))
    assert c.read_response().status == 200
    r1, r2 = up.wait_requests(2)
    xff1 = [v.strip() for v in ", ".join(r1.header_all("x-forwarded-for")).split(",")]
    assert xff1 == ["10.1.2.3", "127.0.0.1"], r1.headers
    assert r2.header_all("x-forwarded-for") == ["127.0.0.1"], r2.headers
    via1 = [v.strip() for v in ", ".join(r1.header_all("via")).split(",")]
    assert via1 == ["1.0 front", "1.1 hourglass"], r1.headers
    for req in (r1, r2):
        assert "1.1 hourglass" in ", ".join(req.header_all("via")), req.headers
        assert req.header("x-forwarded-proto") == "http"


def test_host_passed_through(proxy_factory, upstream):
    up = upstream(ok_handler())
    p = proxy_factory(upstreams=[up])
    c = p.client()
    c.send(request_bytes("GET", "/host", host="Example.Test:1234"))
    assert c.read_response().status == 200
    (req,) = up.wait_requests(1)
    assert req.header_all("host") == ["Example.Test:1234"]


@pytest.mark.parametrize("garbage", [b"GARBAGE\r\n\r\n",
                                     b"GET / HTTP/1.1\nHost: bare-lf\n\n",
                                     b"GET / HTTP/1.1\r\nHost : space\r\n\r\n"])
def test_bad_request_400(proxy_factory, upstream, garbage):
    up = upstream(ok_handler())
    p = proxy_factory(upstreams=[up])
    c = p.client()
    c.send(garbage)
    r = c.read_response()
    assert r is not None and r.status == 400, r
    assert r.body.startswith(b"400 Bad Request"), r.body
    assert c.wait_closed(1.0), "connection not closed after a 400"
    (line,) = p.wait_log(1)
    assert line["status"] == "400"
    assert line["reason"] == "bad_request"
    assert line["upstream"] == "-"
    assert line["connect_ms"] == "-" and line["first_byte_ms"] == "-", line
    assert up.conns == []


def test_broken_upstream_framing_502(proxy_factory, upstream):
    async def handler(reader, writer, ctx):
        await ctx.read_request()
        await ctx.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello")
        await ctx.wait_lost(5)
    up = upstream(handler)
    p = proxy_factory(upstreams=[up])
    c = p.client()
    c.send(request_bytes("GET", "/broken"))
    r = c.read_response()
    assert r is not None and r.status == 502, r
    assert r.body == b"502 Bad Gateway: bad_upstream_response\n"
    up.conns[0].wait_proxy_closed(1.0)
    (line,) = p.wait_log(1)
    assert line["reason"] == "bad_upstream_response"


def test_upstream_closed_before_response_502(proxy_factory, upstream):
    async def handler(reader, writer, ctx):
        await ctx.read_request()
        ctx.close()
    up = upstream(handler)
    p = proxy_factory(upstreams=[up])
    c = p.client()
    c.send(request_bytes("POST", "/eof", body=b"x"))
    r = c.read_response()
    assert r is not None and r.status == 502, r
    assert r.body == b"502 Bad Gateway: upstream_closed\n"
    (line,) = p.wait_log(1)
    assert line["reason"] == "upstream_closed"


def test_large_response_streamed_with_bounded_memory(proxy_factory, upstream):
    size = 32 << 20

    async def handler(reader, writer, ctx):
        await ctx.read_request()
        ctx.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        chunk = bytes(range(256)) * 1024
        for _ in range(size // len(chunk)):
            await ctx.send(chunk)
    up = upstream(handler)
    p = proxy_factory("--read-timeout", "5s", "--total-timeout", "30s", upstreams=[up])
    base = p.rss_kb()
    c = p.client(timeout=20)
    c.send(request_bytes("GET", "/large"))
    state = {"n": 0, "peak": base, "bad": None, "next": 0}
    pattern = bytes(range(256)) * ((1 << 18) // 256 + 2)

    def sink(d):
        n = state["n"]
        off = n % 256
        if state["bad"] is None and (len(d) > (1 << 18) or d != pattern[off:off + len(d)]):
            state["bad"] = n
        state["n"] = n + len(d)
        if state["n"] >= state["next"]:
            state["next"] += 1 << 20
            state["peak"] = max(state["peak"], p.rss_kb())
    r = c.read_response(timeout=20, body_sink=sink)
    assert r.status == 200 and r.complete, r
    assert state["n"] == size
    assert state["bad"] is None, f"body corrupted at offset {state['bad']}"
    growth_mb = (state["peak"] - base) / 1024
    assert growth_mb < 40, f"proxy RSS grew by {growth_mb:.1f} MB streaming 32 MiB"
    (line,) = p.wait_log(1)
    assert line["reason"] == "ok"
    assert int(line["bytes"]) == len(r.raw) + size


def test_round_robin_two_upstreams(proxy_factory, upstream):
    a = upstream(ok_handler(b"A"))
    b = upstream(ok_handler(b"B"))
    p = proxy_factory(upstreams=[a, b])
    bodies = []
    for i in range(4):
        c = p.client()
        c.send(request_bytes("GET", f"/rr{i}"))
        bodies.append(c.read_response().body)
        c.close()
    assert sorted(bodies) == [b"A", b"A", b"B", b"B"], bodies
    assert bodies[0] != bodies[1] and bodies[1] != bodies[2], bodies
    lines = p.wait_log(4)
    assert {l["upstream"] for l in lines} == {a.addr, b.addr}


@pytest.mark.parametrize("raw,codes", [
    (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", {400, 505}),
    (b"GET /" + b"a" * 100000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", {400, 414}),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"b" * 200000 + b"\r\n\r\n", {400, 431}),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked, br\r\n\r\n", {400, 501}),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", {400}),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", {400}),
    (b"GET / HTTP/1.1\r\n\r\n", {400}),
], ids=["version", "long-target", "big-head", "te-not-chunked-last", "cl-and-te",
        "two-cl", "no-host"])
def test_request_errors(proxy_factory, upstream, raw, codes):
    up = upstream(ok_handler())
    p = proxy_factory(upstreams=[up])
    c = p.client()
    try:
        c.send(raw)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the proxy may answer and close before taking it all
    r = c.read_response()
    assert r is not None and r.status in codes, r
    assert c.wait_closed(1.0), "connection not closed after a request error"
    (line,) = p.wait_log(1)
    assert line["status"] == str(r.status)
    assert line["reason"] == "bad_request"
    assert up.conns == [], "a refused request reached the upstream"


def test_interim_1xx_then_final(proxy_factory, upstream):
    async def handler(reader, writer, ctx):
        async def respond(ctx, req):
            await ctx.send(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n")
            await ctx.delay(0.05)   # the final response arrives in a later read
            await ctx.respond(200, b"final " + req.target.encode())
        await ctx.serve_forever(respond)
    up = upstream(handler)
    p = proxy_factory(upstreams=[up])
    c = p.client()
    c.send(request_bytes("GET", "/hints"))
    r = c.read_response(timeout=1)
    assert r.status == 200 and r.body == b"final /hints", r
    c.send(request_bytes("GET", "/again"))
    r2 = c.read_response(timeout=1)
    assert r2.status == 200 and r2.body == b"final /again", r2
    lines = p.wait_log(2)
    assert [l["status"] for l in lines] == ["200", "200"]


def test_retry_happens_only_once(proxy_factory, upstream):
    async def handler(reader, writer, ctx):
        if ctx.index == 0:
            await ctx.read_request()
            await ctx.respond(200, b"first")
        await ctx.read_head()      # every later request meets a close
        ctx.close()
    up = upstream(handler)
    p = proxy_factory(upstreams=[up])
    c = p.client()
    c.send(request_bytes("GET", "/one"))
    assert c.read_response().body == b"first"
    c.send(request_bytes("GET", "/two"))
    r = c.read_response()
    assert r is not None and r.status == 502, r
    assert r.body == b"502 Bad Gateway: upstream_closed\n"
    lines = p.wait_log(2)
    assert lines[1]["reason"] == "upstream_closed"
    assert lines[1]["attempts"] == "2"
    assert len(up.conns) == 2, f"{len(up.conns)} upstream connections: retried more than once"


def test_client_connection_close(proxy_factory, upstream):
    up = upstream(ok_handler(b"bye"))
    p = proxy_factory(upstreams=[up])
    c = p.client()
    c.send(request_bytes("GET", "/close-me", headers=[("Connection", "close")]))
    r = c.read_response()
    assert r.status == 200 and r.body == b"bye"
    assert c.wait_closed(1.0), "Connection: close from the client was not honoured"
    (line,) = p.wait_log(1)
    assert line["reason"] == "ok"


def test_http10_client_without_keepalive(proxy_factory, upstream):
    up = upstream(ok_handler(b"old client"))
    p = proxy_factory(upstreams=[up])
    c = p.client()
    c.send(b"GET /ten HTTP/1.0\r\nHost: example.test\r\n\r\n")
    r = c.read_response()
    assert r.status == 200 and r.body == b"old client", r
    assert r.version in ("HTTP/1.1", "HTTP/1.0")
    assert c.wait_closed(1.0), "an HTTP/1.0 exchange without keep-alive must end with a close"


def test_upstream_connection_close_not_pooled(proxy_factory, upstream):
    async def handler(reader, writer, ctx):
        async def respond(ctx, req):
            await ctx.respond(200, b"conn %d" % ctx.index, headers=[("Connection", "close")])
        await ctx.serve_forever(respond)   # keeps its side open regardless
    up = upstream(handler)
    p = proxy_factory(upstreams=[up])
    bodies = []
    for t in ("/a", "/b"):
        c = p.client()
        c.send(request_bytes("GET", t))
        bodies.append(c.read_response(timeout=2).body)
        c.close()
    assert bodies == [b"conn 0", b"conn 1"], "a connection the upstream marked close was reused"
    up.conns[0].wait_proxy_closed(1.0)


def test_pipelined_post_and_get(proxy_factory, upstream):
    async def handler(reader, writer, ctx):
        async def respond(ctx, req):
            await ctx.respond(200, req.target.encode() + b":" + req.body)
        await ctx.serve_forever(respond)
    up = upstream(handler)
    p = proxy_factory(upstreams=[up])
    c = p.client()
    c.send(request_bytes("POST", "/p", body=b"abc")
           + request_bytes("POST", "/c", headers=[("Transfer-Encoding", "chunked")])
           + chunked(b"chunky", sizes=(2,)) + request_bytes("GET", "/g"))
    got = [c.read_response().body for _ in range(3)]
    assert got == [b"/p:abc", b"/c:chunky", b"/g:"]


def test_chunked_trailers_and_empty_chunks_relayed(proxy_factory, upstream):
    async def handler(reader, writer, ctx):
        await ctx.read_request()
        await ctx.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"4;ext=1\r\nwiki\r\n5\r\npedia\r\n0\r\nX-Sum: 42\r\n\r\n")
    up = upstream(handler)
    p = proxy_factory(upstreams=[up])
    c = p.client()
    c.send(request_bytes("GET", "/trailer"))
    r = c.read_response()
    assert r.status == 200 and r.complete and r.body == b"wikipedia", r
    c.send(request_bytes("GET", "/trailer2"))   # framing still in step
    (line,) = p.wait_log(1)
    assert line["reason"] == "ok"


def test_idle_timeout_does_not_cut_a_slow_exchange(proxy_factory, upstream):
    async def handler(reader, writer, ctx):
        async def respond(ctx, req):
            await ctx.delay(0.4)
            await ctx.respond(200, b"slow but fine")
        await ctx.serve_forever(respond)
    up = upstream(handler)
    p = proxy_factory("--idle-timeout", "200ms", "--read-timeout", "2s", upstreams=[up])
    c = p.client()
    c.send(request_bytes("GET", "/slow"))
    r = c.read_response(timeout=2)
    assert r is not None and r.status == 200 and r.body == b"slow but fine", r


def test_header_timeout_counts_from_first_byte(proxy_factory, upstream):
    up = upstream(ok_handler(b"late start"))
    p = proxy_factory("--header-timeout", "300ms", "--idle-timeout", "5s", upstreams=[up])
    c = p.client()
    time.sleep(0.5)   # connected but silent: idle time, not header time
    c.send(request_bytes("GET", "/late"))
    r = c.read_response()
    assert r is not None and r.status == 200 and r.body == b"late start", r


def test_pool_reuse_under_concurrency(proxy_factory, upstream):
    # Regression: under load, (a) an upstream answering in the same event-loop
    # pass as the request was sent looked like an "early response" (upstream
    # and client connections dropped), and (b) a read-ready bit left from the
    # last read of a large response made the pool discard healthy connections.
    # Either way the proxy opened a new upstream connection per request.
    import threading
    body = bytes(range(256)) * 1024   # 256 KiB: several full-buffer reads
    up = upstream(ok_handler(body))
    p = proxy_factory(upstreams=[up])
    clients, rounds, errors = 8, 12, []

    def worker(k):
        c = p.client(timeout=10)
        try:
            for i in range(rounds):
                c.send(request_bytes("GET", f"/c{k}/{i}"))
                r = c.read_response(timeout=10)
                if r is None or r.status != 200 or r.body != body:
                    errors.append((k, i, r))
                    return
                if (r.header("connection") or "").lower() == "close":
                    errors.append((k, i, "client connection closed by the proxy"))
                    return
        finally:
            c.close()
    ths = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in ths:
        t.start()
    for t in ths:
        t.join(60)
    assert not errors, errors[:3]
    lines = p.wait_log(clients * rounds)
    assert all(l["reason"] == "ok" for l in lines)
    # at most one upstream connection per concurrent client
    assert len(up.conns) <= clients, f"{len(up.conns)} upstream connections for {clients} clients"


def test_spliced_response_then_keepalive(proxy_factory, upstream):
    # A 6 MiB Content-Length body goes through a pipe (splice); the client and
    # upstream connections both stay usable for the next request.
    size = 6 << 20
    body = bytes(range(251)) * (size // 251) + b"z" * (size % 251)

    async def respond(ctx, req):
        if req.target == "/big":
            ctx.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
            for i in range(0, size, 1 << 20):
                await ctx.send(body[i:i + (1 << 20)])
        else:
            await ctx.respond(200, b"after")

    async def handler(reader, writer, ctx):
        await ctx.serve_forever(respond)
    up = upstream(handler)
    p = proxy_factory(upstreams=[up])
    c = p.client(timeout=10)
    c.send(request_bytes("GET", "/big"))
    r = c.read_response(timeout=10)
    assert r.status == 200 and r.complete and r.body == body
    c.send(request_bytes("GET", "/small"))
    r2 = c.read_response()
    assert r2.status == 200 and r2.body == b"after"
    lines = p.wait_log(2)
    assert [l["reason"] for l in lines] == ["ok", "ok"]
    assert int(lines[0]["bytes"]) > size
    assert len(up.conns) == 1, "the upstream connection was not reused after a spliced body"
