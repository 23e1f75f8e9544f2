"""HTTP/1 edges found by real clients and request-smuggling corpora.

Each test speaks raw bytes on both sides (a client library would normalise
what is under test) and failed before its fix: HTTP/1.0 keep-alive, the
response head limits, Content-Length forwarded canonically and once, and
header names with '_' that fold onto framing fields in CGI-style backends."""

import re
import time

import pytest

from conftest import BIN, free_port, ok_handler, request_bytes, scrape, wait_until


def read_raw_head(c):
    """The response head as bytes (start line and fields)."""
    head, t = c.read_head()
    assert t is not None, "connection closed before a response head"
    return head


def field_lines(head, name):
    """Every 'Name: value' line of a raw head whose name is `name` (any case)."""
    out = []
    for line in head.split(b"\r\n")[1:]:
        k, sep, v = line.partition(b":")
        if sep and k.lower() == name.lower().encode():
            out.append(v.strip())
    return out


# ---- 1. HTTP/1.0 keep-alive ---------------------------------------------------

def test_http10_keepalive_honoured(proxy_factory, upstream):
    up = upstream(ok_handler(b"ten"))
    p = proxy_factory(upstreams=[up])
    c = p.client()
    for target in ("/a", "/b", "/c"):
        c.send(f"GET {target} HTTP/1.0\r\nHost: example.test\r\nConnection: keep-alive\r\n\r\n"
               .encode())
        r = c.read_response()
        assert r.status == 200 and r.complete and r.body == b"ten", r
        assert (r.header("connection") or "").lower() == "keep-alive", r
        assert r.header("content-length") == "3", r
    assert not c.wait_closed(0.2), "an HTTP/1.0 keep-alive connection was closed"
    lines = p.wait_log(3)
    assert len({l["client"] for l in lines}) == 1
    assert len(up.conns) == 1, "the upstream connection should be pooled as for HTTP/1.1"


def test_http10_keepalive_pipelined(proxy_factory, upstream):
    up = upstream(ok_handler(b"piped"))
    p = proxy_factory(upstreams=[up])
    c = p.client()
    req = b"GET /%d HTTP/1.0\r\nHost: example.test\r\nConnection: Keep-Alive\r\n\r\n"
    c.send(b"".join(req % i for i in range(4)))
    for i in range(4):
        r = c.read_response()
        assert r.status == 200 and r.body == b"piped", (i, r)
        assert (r.header("connection") or "").lower() == "keep-alive"
    assert [l["target"] for l in p.wait_log(4)] == ["/0", "/1", "/2", "/3"]
    assert not c.wait_closed(0.2)


def test_http10_keepalive_head_and_304_keep_the_connection(proxy_factory, upstream):
    async def handler(reader, writer, ctx):
        async def respond(ctx, req):
            if req.method == "HEAD":
                await ctx.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
            else:
                await ctx.send(b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n")
        await ctx.serve_forever(respond)
    up = upstream(handler)
    p = proxy_factory(upstreams=[up])
    c = p.client()
    c.send(b"HEAD /h HTTP/1.0\r\nHost: e\r\nConnection: keep-alive\r\n\r\n")
    r = c.read_response(method="HEAD")
    assert r.status == 200 and r.header("content-length") == "1234", r
    assert (r.header("connection") or "").lower() == "keep-alive"
    c.send(b"GET /c HTTP/1.0\r\nHost: e\r\nConnection: keep-alive\r\n\r\n")
    r = c.read_response()
    assert r.status == 304 and (r.header("connection") or "").lower() == "keep-alive", r
    assert not c.wait_closed(0.2)


def test_http10_keepalive_chunked_response_is_decoded_then_closed(proxy_factory, upstream):
    # HTTP/1.0 has no chunked coding: the body is decoded and its end is the close
    async def handler(reader, writer, ctx):
        await ctx.read_request()
        await ctx.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        await ctx.wait_lost(5)
    up = upstream(handler)
    p = proxy_factory(upstreams=[up])
    c = p.client()
    c.send(b"GET /ch HTTP/1.0\r\nHost: e\r\nConnection: keep-alive\r\n\r\n")
    head = read_raw_head(c)
    assert not field_lines(head, "transfer-encoding")
    assert field_lines(head, "connection") == [b"close"]
    assert c.read_until_close() == b"abcde"


def test_http10_keepalive_close_delimited_response_closes(proxy_factory, upstream):
    async def handler(reader, writer, ctx):
        await ctx.read_request()
        await ctx.send(b"HTTP/1.0 200 OK\r\n\r\nuntil close")
        ctx.close()
    up = upstream(handler)
    p = proxy_factory(upstreams=[up])
    c = p.client()
    c.send(b"GET /eof HTTP/1.0\r\nHost: e\r\nConnection: keep-alive\r\n\r\n")
    head = read_raw_head(c)
    assert field_lines(head, "connection") == [b"close"]
    assert c.read_until_close() == b"until close"


# ---- 2. response head limits --------------------------------------------------

def big_head(nbytes=0, nfields=0):
    """A 200 response head with nfields small fields and/or one field that
    brings the head to about nbytes."""
    h = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
    for i in range(nfields):
        h += b"X-F%d: v\r\n" % i
    if nbytes:
        pad = nbytes - len(h) - len(b"X-Pad: \r\n\r\n")
        h += b"X-Pad: " + b"p" * pad + b"\r\n"
    return h + b"\r\n"


def head_handler(head, step=None, interval=0.001):
    async def handler(reader, writer, ctx):
        await ctx.read_request()
        if step:
            await ctx.drip(head + b"ok", interval, step)
        else:
            await ctx.send(head + b"ok")
        await ctx.wait_lost(5)
    return handler


@pytest.mark.parametrize("step", [None, 997], ids=["one-write", "many-small-reads"])
@pytest.mark.parametrize("size,fields", [(20000, 0), (60000, 0), (0, 150), (40000, 200)],
                         ids=["20k", "60k", "150-fields", "40k-200-fields"])
def test_large_response_head_within_limits_passes(proxy_factory, upstream, size, fields, step):
    head = big_head(size, fields)
    up = upstream(head_handler(head, step))
    p = proxy_factory(upstreams=[up])
    c = p.client(timeout=10)
    c.send(request_bytes("GET", "/big-head"))
    r = c.read_response(timeout=10)
    assert r is not None and r.status == 200 and r.body == b"ok", r
    if size:
        assert len(r.raw) > size, len(r.raw)
    if fields:
        assert r.header(f"x-f{fields - 1}") == "v"


@pytest.mark.parametrize("step", [None, 1499], ids=["one-write", "many-small-reads"])
def test_response_head_over_64k_is_502_with_its_reason(proxy_factory, upstream, step):
    up = upstream(head_handler(big_head(70000), step))
    p = proxy_factory(upstreams=[up])
    c = p.client(timeout=10)
    c.send(request_bytes("GET", "/huge-head"))
    r = c.read_response(timeout=10)
    assert r.status == 502, r
    assert r.body == b"502 Bad Gateway: upstream_head_too_large\n"
    (line,) = p.wait_log(1)
    assert line["reason"] == "upstream_head_too_large"
    p.wait_stderr(r"response head too large \(\d+ bytes, limit 65536\)")
    assert "malformed" not in p.stderr_text()


def test_response_head_limits_from_flags(proxy_factory, upstream):
    up = upstream(head_handler(big_head(5000)))
    p = proxy_factory("--max-response-header-size", "4k", upstreams=[up])
    c = p.client()
    c.send(request_bytes("GET", "/5k"))
    assert c.read_response().status == 502
    assert p.wait_log(1)[0]["reason"] == "upstream_head_too_large"
    p.wait_stderr(r"response head too large \(\d+ bytes, limit 4096\)")

    up2 = upstream(head_handler(big_head(0, 11)))
    p2 = proxy_factory("--max-response-headers", "10", upstreams=[up2])
    c2 = p2.client()
    c2.send(request_bytes("GET", "/11-fields"))
    assert c2.read_response().status == 502
    assert p2.wait_log(1)[0]["reason"] == "upstream_head_too_large"
    p2.wait_stderr(r"response head too large \(more than 10 fields, limit 10\)")


def test_response_head_limits_from_the_file(proxy_factory, upstream, tmp_path):
    cfg = tmp_path / "limits.yaml"
    cfg.write_text("limits: {max_response_header_size: 2k, max_response_headers: 12}\n")
    up = upstream(head_handler(big_head(3000)))
    p = proxy_factory("--config", cfg, upstreams=[up])
    c = p.client()
    c.send(request_bytes("GET", "/3k"))
    assert c.read_response().status == 502
    p.wait_stderr(r"limit 2048\)")
    bad = tmp_path / "bad.yaml"
    bad.write_text("limits:\n  max_response_header_size: 1m\n")
    import subprocess
    r = subprocess.run([BIN, "-t", str(bad)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2
    assert re.search(r"bad\.yaml:2:\d+: limits\.max_response_header_size", r.stderr), r.stderr


# ---- 3 and 4. Content-Length forwarded canonically, once ----------------------

def echo_length_handler():
    async def handler(reader, writer, ctx):
        async def respond(ctx, req):
            await ctx.respond(200, b"got %d" % len(req.body))
        await ctx.serve_forever(respond)
    return handler


def test_request_content_length_with_leading_zeros_is_forwarded_canonical(proxy_factory,
                                                                          upstream):
    up = upstream(echo_length_handler())
    p = proxy_factory(upstreams=[up])
    c = p.client()
    c.send(b"POST /z HTTP/1.1\r\nHost: e\r\nContent-Length: 010\r\n\r\n0123456789")
    r = c.read_response()
    assert r.status == 200 and r.body == b"got 10", r
    (req,) = up.wait_requests(1)
    assert req.header_all("content-length") == ["10"], req.head
    assert b"Content-Length: 010" not in req.head


def test_request_duplicate_content_length_forwarded_once(proxy_factory, upstream):
    up = upstream(echo_length_handler())
    p = proxy_factory(upstreams=[up])
    c = p.client()
    c.send(b"POST /d HTTP/1.1\r\nHost: e\r\nContent-Length: 5\r\nX-A: 1\r\n"
           b"Content-Length: 5\r\n\r\nhello")
    r = c.read_response()
    assert r.status == 200 and r.body == b"got 5", r
    (req,) = up.wait_requests(1)
    assert req.header_all("content-length") == ["5"], req.head
    # differing values stay refused
    c2 = p.client()
    c2.send(b"POST /d HTTP/1.1\r\nHost: e\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!")
    assert c2.read_response().status == 400


def test_request_content_length_zero_is_kept(proxy_factory, upstream):
    up = upstream(echo_length_handler())
    p = proxy_factory(upstreams=[up])
    c = p.client()
    c.send(b"POST /0 HTTP/1.1\r\nHost: e\r\nContent-Length: 00\r\n\r\n")
    assert c.read_response().body == b"got 0"
    (req,) = up.wait_requests(1)
    assert req.header_all("content-length") == ["0"]


@pytest.mark.parametrize("cl", [b"Content-Length: 005\r\n",
                                b"Content-Length: 5\r\nContent-Length: 5\r\n"],
                         ids=["leading-zeros", "duplicate"])
def test_response_content_length_forwarded_canonical_and_once(proxy_factory, upstream, cl):
    async def handler(reader, writer, ctx):
        async def respond(ctx, req):
            await ctx.send(b"HTTP/1.1 200 OK\r\n" + cl + b"X-B: 2\r\n\r\nhello")
        await ctx.serve_forever(respond)
    up = upstream(handler)
    p = proxy_factory(upstreams=[up])
    c = p.client()
    for _ in range(2):   # and the connection stays usable: the framing was right
        c.send(request_bytes("GET", "/r"))
        r = c.read_response()
        assert r.status == 200 and r.complete and r.body == b"hello", r
        head = r.raw.partition(b"\r\n\r\n")[0]
        assert field_lines(head, "content-length") == [b"5"], head
    assert p.wait_log(2)[1]["status"] == "200"


def test_response_differing_content_lengths_still_502(proxy_factory, upstream):
    async def handler(reader, writer, ctx):
        await ctx.read_request()
        await ctx.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 05\r\n"
                       b"Content-Length: 6\r\n\r\nhello!")
        await ctx.wait_lost(5)
    up = upstream(handler)
    p = proxy_factory(upstreams=[up])
    c = p.client()
    c.send(request_bytes("GET", "/x"))
    assert c.read_response().status == 502
    assert p.wait_log(1)[0]["reason"] == "bad_upstream_response"


# ---- 5. header names with '_' -------------------------------------------------

SMUGGLE = (b"POST /u HTTP/1.1\r\nHost: e\r\nContent-Length: 5\r\nTransfer_Encoding: chunked\r\n"
           b"Content_Length: 50\r\nX_Custom: 1\r\nX-Fine: 2\r\n\r\nhello")


def dropped_metric(admin_port):
    status, text = scrape(admin_port)
    assert status == 200
    m = re.search(r'^hourglass_request_fields_dropped_total\{cause="underscore"\} (\d+)$', text,
                  re.M)
    assert m, text
    return int(m.group(1))


def test_underscore_fields_dropped_by_default(proxy_factory, upstream):
    up = upstream(echo_length_handler())
    admin = free_port()
    p = proxy_factory("--admin", f"127.0.0.1:{admin}", "--log-level", "debug", upstreams=[up])
    c = p.client()
    c.send(SMUGGLE)
    r = c.read_response()
    assert r.status == 200 and r.body == b"got 5", r
    (req,) = up.wait_requests(1)
    assert b"_" not in b"".join(k.encode() for k, _ in req.headers), req.head
    assert req.header("x-fine") == "2"
    assert req.header_all("content-length") == ["5"]
    assert req.header("transfer-encoding") is None
    p.wait_stderr(r"dropped 3 request fields with '_' in the name: "
                  r"Transfer_Encoding, Content_Length, X_Custom")
    wait_until(lambda: dropped_metric(admin) == 3, 2, msg="the dropped-fields metric")


def test_underscore_fields_forwarded_when_the_listener_says_so(proxy_factory, upstream,
                                                               tmp_path):
    up = upstream(echo_length_handler())
    p = proxy_factory("--underscores-in-headers", upstreams=[up])
    c = p.client()
    c.send(SMUGGLE)
    assert c.read_response().status == 200
    (req,) = up.wait_requests(1)
    assert req.header("x_custom") == "1" and req.header("transfer_encoding") == "chunked"

    # per listener in the file: one listener forwards them, the other drops them
    a, b = free_port(), free_port()
    cfg = tmp_path / "u.yaml"
    cfg.write_text(f"""listen:
  - {{address: "127.0.0.1:{a}", underscores_in_headers: true}}
  - "127.0.0.1:{b}"
pools: {{web: {{servers: ["{up.addr}"]}}}}
""")
    import subprocess
    import time
    from conftest import wait_port
    proc = subprocess.Popen([BIN, "--config", str(cfg), "--single-process",
                             "--access-log", "off"], stderr=subprocess.PIPE)
    try:
        wait_port("127.0.0.1", a, proc=proc)
        wait_port("127.0.0.1", b, proc=proc)
        from conftest import Client
        for port, kept in ((a, True), (b, False)):
            cl = Client(port)
            cl.send(b"GET /p HTTP/1.1\r\nHost: e\r\nX_Custom: 7\r\n\r\n")
            assert cl.read_response().status == 200
            cl.close()
            last = up.wait_requests(2 if kept else 3)[-1]
            assert (last.header("x_custom") == "7") == kept, (port, last.head)
    finally:
        proc.terminate()
        proc.wait(5)
        proc.stderr.close()


# ---- a real HTTP/1.0 keep-alive client ----------------------------------------

def test_ab_keepalive_uses_one_connection_per_client(proxy_factory, upstream):
    """ApacheBench -k speaks HTTP/1.0 with Connection: Keep-Alive: every
    request must be a keep-alive one (it opened a connection per request)."""
    import shutil
    import subprocess
    ab = shutil.which("ab")
    if not ab:
        pytest.skip("ab is missing: apt-get install apache2-utils (make deps does)")
    up = upstream(ok_handler(b"x" * 100))
    p = proxy_factory(upstreams=[up])
    n = 2000
    r = subprocess.run([ab, "-k", "-q", "-n", str(n), "-c", "20", "-s", "10",
                        f"http://127.0.0.1:{p.port}/ab"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"^Complete requests:\s+%d$" % n, r.stdout, re.M), r.stdout
    assert re.search(r"^Failed requests:\s+0$", r.stdout, re.M), r.stdout
    assert re.search(r"^Keep-Alive requests:\s+%d$" % n, r.stdout, re.M), r.stdout


# --------------------------------------------------------------------------
# closing after a client's Connection: close

def test_connection_close_request_closes_at_once(proxy_factory, upstream):
    # the client asked to close and sent nothing more: the proxy closes its
    # socket behind the response at once (no shutdown, no linger waiting for
    # the client's end), and the response is whole
    up = upstream(ok_handler(b"x" * 5000))
    p = proxy_factory(upstreams=[up])
    warm = p.client()
    warm.send(request_bytes("GET", "/"))
    assert warm.read_response().status == 200
    warm.close()
    prev = -1
    while p.fd_count() != prev:   # settled: the warm-up client's socket closed
        prev = p.fd_count()
        time.sleep(0.05)
    base = p.fd_count()
    for version in ("1.1", "1.0"):
        c = p.client()
        head = (f"GET /{version} HTTP/{version}\r\nHost: example.test\r\n"
                + ("Connection: close\r\n" if version == "1.1" else "") + "\r\n")
        c.send(head.encode())
        r = c.read_response()
        assert r.status == 200 and r.body == b"x" * 5000
        c.wait_closed(timeout=1.0)
        # our side is still open, yet the proxy's socket is gone
        wait_until(lambda: p.fd_count() <= base, 0.5,
                   msg=f"HTTP/{version}: the proxy's client socket closed without a linger")
        c.close()


def _tcp_info_segments(sock):
    """(segments received, of which with data) from the socket's TCP_INFO
    (struct tcp_info: tcpi_segs_in at byte 140, tcpi_data_segs_in at 152)."""
    import socket as _s
    import struct
    info = sock.getsockopt(_s.IPPROTO_TCP, _s.TCP_INFO, 256)
    segs_in = struct.unpack_from("I", info, 140)[0]
    data_segs_in = struct.unpack_from("I", info, 152)[0]
    return segs_in, data_segs_in


def test_connection_close_response_leaves_with_the_fin(proxy_factory, upstream):
    # a response the proxy closes right behind leaves with the FIN in its last
    # segment (MSG_MORE, then close): the client receives the SYN-ACK, at most
    # an ACK of its request, and data segments, never a FIN on its own
    up = upstream(ok_handler(b"z" * 100))
    p = proxy_factory(upstreams=[up])
    for i in range(5):
        c = p.client()
        c.send(request_bytes("GET", f"/{i}", headers=[("Connection", "close")]))
        r = c.read_response()
        assert r.status == 200 and r.body == b"z" * 100
        c.wait_closed(timeout=1.0)
        segs, data = _tcp_info_segments(c.sock)
        c.close()
        assert data >= 1 and segs - data <= 2, (
            f"request {i}: {segs} segments in, {data} with data: the FIN came on its own")


def test_connection_close_with_bytes_after_it_still_lingers(proxy_factory, upstream):
    # bytes after a Connection: close request: the proxy lingers (reads
    # them away) so that its close does not reset the response
    up = upstream(ok_handler(b"y" * 5000))
    p = proxy_factory(upstreams=[up])
    c = p.client()
    c.send(request_bytes("GET", "/a", headers=[("Connection", "close")]) +
           request_bytes("GET", "/b"))
    r = c.read_response()
    assert r.status == 200 and r.body == b"y" * 5000
    c.wait_closed(timeout=1.0)   # its write side is shut: our read ends
    time_open = p.fd_count()
    c.close()
    wait_until(lambda: p.fd_count() < time_open, 1.0, msg="the linger ended with our close")
    assert len(up.requests()) == 1
