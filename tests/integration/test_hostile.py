"""Request smuggling and hostile input, from both ends of the proxy.

Table-driven: each table row is one hostile input with the status the client
must get. For each refusal the suite checks the status, that the client
connection is closed afterwards, that the fake upstream saw nothing (or
exactly what it should), and the access-log line.

All traffic stays on 127.0.0.1.
"""

import fcntl
import socket
import struct
import termios
import threading
import time

import pytest

from conftest import assert_window, wait_until

# Short pause for a negative check ("nothing arrived"): the positive event
# that precedes it (log line written, client connection closed) has already
# been waited for; this only covers delivery through the fake upstream's
# event loop thread.
SETTLE = 0.1


# --------------------------------------------------------------------------
# helpers (own to this file)

def send_quietly(c, data):
    """Sends data; the proxy may answer and close before taking it all."""
    try:
        c.send(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def absorb_handler():
    """Records everything the proxy sends; never answers."""
    async def handler(reader, writer, ctx):
        await ctx.read_until_eof()
    return handler


def echo_handler():
    """Keep-alive; answers each request with 'METHOD TARGET len=N'."""
    async def handler(reader, writer, ctx):
        async def respond(ctx, req):
            await ctx.respond(200, f"{req.method} {req.target} len={len(req.body)}".encode())
        await ctx.serve_forever(respond)
    return handler


def upstream_bytes(up):
    return b"".join(bytes(c.received) for c in list(up.conns))


def chunked_body_complete(data):
    """True if data is a complete, well-formed chunked body (trailers allowed)."""
    i = 0
    while True:
        j = data.find(b"\r\n", i)
        if j < 0:
            return False
        size_s = data[i:j].split(b";")[0].strip()
        try:
            size = int(size_s, 16)
        except ValueError:
            return False
        i = j + 2
        if size == 0:
            while True:
                j = data.find(b"\r\n", i)
                if j < 0:
                    return False
                if j == i:
                    return True
                i = j + 2
        if len(data) < i + size + 2 or data[i + size:i + size + 2] != b"\r\n":
            return False
        i += size + 2


def after_head(data):
    k = data.find(b"\r\n\r\n")
    return data[k + 4:] if k >= 0 else b""


def only_log_line(p):
    lines = p.wait_log(1)
    time.sleep(SETTLE)
    lines = p.log_lines()
    assert len(lines) == 1, "expected one access-log line:\n" + "\n".join(p.raw_log_lines())
    return lines[0]


def send_in_thread(c, data):
    """Sends data from a thread on a dup of the client's socket."""
    result = {}
    sock = c.sock.dup()
    sock.settimeout(10)
    c.extra_socks = [sock]

    def run():
        sent = 0
        view = memoryview(data)
        try:
            while sent < len(data):
                sent += sock.send(view[sent:sent + (1 << 16)])
            result["error"] = None
        except OSError as e:
            result["error"] = e
        result["sent"] = sent
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, result


def R(*lines, body=b""):
    """A raw request: lines joined by CRLF, blank line, body. str lines are latin-1."""
    out = b""
    for l in lines:
        out += (l.encode("latin-1") if isinstance(l, str) else l) + b"\r\n"
    return out + b"\r\n" + body


H = "Host: h"


# --------------------------------------------------------------------------
# refused requests: status, closed, nothing upstream, log line

REFUSED = [
    # --- Content-Length / Transfer-Encoding framing -----------------------
    ("cl+te", R("POST / HTTP/1.1", H, "Content-Length: 5", "Transfer-Encoding: chunked",
                body=b"0\r\n\r\n"), (), {400}),
    ("te+cl", R("POST / HTTP/1.1", H, "Transfer-Encoding: chunked", "Content-Length: 5",
                body=b"0\r\n\r\n"), (), {400}),
    ("cl-differ", R("POST / HTTP/1.1", H, "Content-Length: 5", "Content-Length: 6",
                    body=b"hello!"), (), {400}),
    ("cl-list-same", R("POST / HTTP/1.1", H, "Content-Length: 5, 5", body=b"hello"), (), {400}),
    ("cl-list-differ", R("POST / HTTP/1.1", H, "Content-Length: 5, 6", body=b"hello!"), (), {400}),
    ("cl-plus", R("POST / HTTP/1.1", H, "Content-Length: +5", body=b"hello"), (), {400}),
    ("cl-minus", R("POST / HTTP/1.1", H, "Content-Length: -5", body=b"hello"), (), {400}),
    ("cl-hex", R("POST / HTTP/1.1", H, "Content-Length: 0x5", body=b"hello"), (), {400}),
    ("cl-decimal", R("POST / HTTP/1.1", H, "Content-Length: 5.0", body=b"hello"), (), {400}),
    ("cl-exponent", R("POST / HTTP/1.1", H, "Content-Length: 1e3"), (), {400}),
    ("cl-inner-space", R("POST / HTTP/1.1", H, "Content-Length: 5 5", body=b"hello"), (), {400}),
    ("cl-empty", R("POST / HTTP/1.1", H, "Content-Length: "), (), {400}),
    ("cl-20-digits", R("POST / HTTP/1.1", H, "Content-Length: 99999999999999999999"), (), {400}),
    # 2^64 + 5: wraps to 5 in a 64-bit accumulator that does not check overflow
    ("cl-wraps-to-5", R("POST / HTTP/1.1", H, "Content-Length: 18446744073709551621",
                        body=b"hello"), (), {400}),
    ("te-chunked-chunked", R("POST / HTTP/1.1", H, "Transfer-Encoding: chunked, chunked",
                             body=b"0\r\n\r\n"), (), {400}),
    ("te-quoted", R("POST / HTTP/1.1", H, 'Transfer-Encoding: "chunked"',
                    body=b"0\r\n\r\n"), (), {400}),
    ("te-leading-comma", R("POST / HTTP/1.1", H, "Transfer-Encoding: , chunked",
                           body=b"0\r\n\r\n"), (), {400}),
    ("te-trailing-comma", R("POST / HTTP/1.1", H, "Transfer-Encoding: chunked,",
                            body=b"0\r\n\r\n"), (), {400}),
    ("te-two-lines", R("POST / HTTP/1.1", H, "Transfer-Encoding: chunked",
                       "Transfer-Encoding: chunked", body=b"0\r\n\r\n"), (), {400}),
    ("te-in-http10", R("POST / HTTP/1.0", H, "Transfer-Encoding: chunked",
                       body=b"0\r\n\r\n"), (), {400}),
    # --- unknown codings: 501 (misspellings may be 400) --------------------
    ("te-gzip-chunked", R("POST / HTTP/1.1", H, "Transfer-Encoding: gzip, chunked",
                          body=b"0\r\n\r\n"), (), {501}),
    ("te-gzip", R("POST / HTTP/1.1", H, "Transfer-Encoding: gzip", body=b"xx"), (), {501}),
    ("te-chunkedx", R("POST / HTTP/1.1", H, "Transfer-Encoding: chunkedx",
                      body=b"0\r\n\r\n"), (), {400, 501}),
    ("te-chunked-gzip", R("POST / HTTP/1.1", H, "Transfer-Encoding: chunked, gzip",
                          body=b"0\r\n\r\n"), (), {400, 501}),
    ("te-identity", R("POST / HTTP/1.1", H, "Transfer-Encoding: identity",
                      body=b"0\r\n\r\n"), (), {400, 501}),
    ("connect", R("CONNECT example.test:443 HTTP/1.1", "Host: example.test:443"), (), {501}),
    # --- field names -------------------------------------------------------
    ("ws-before-colon", R("GET / HTTP/1.1", H, "X-A : 1"), (), {400}),
    ("tab-before-colon", R("GET / HTTP/1.1", H, "X-A\t: 1"), (), {400}),
    ("cl-ws-before-colon", R("POST / HTTP/1.1", H, "Content-Length : 5", body=b"hello"),
     (), {400}),
    ("name-bracket", R("GET / HTTP/1.1", H, "X[Foo: 1"), (), {400}),
    ("name-space", R("GET / HTTP/1.1", H, "X Foo: 1"), (), {400}),
    ("name-0x80", R("GET / HTTP/1.1", H, b"X\x80Foo: 1"), (), {400}),
    ("name-at", R("GET / HTTP/1.1", H, "X@Foo: 1"), (), {400}),
    ("name-empty", R("GET / HTTP/1.1", H, ": v"), (), {400}),
    ("no-colon", R("GET / HTTP/1.1", H, "XFoo"), (), {400}),
    # --- obs-fold, control bytes, line endings -----------------------------
    ("obs-fold-sp", R("GET / HTTP/1.1", H, "X-A: 1", " continued"), (), {400}),
    ("obs-fold-htab", R("GET / HTTP/1.1", H, "X-A: 1", "\tcontinued"), (), {400}),
    ("first-line-sp", R("GET / HTTP/1.1", " X-A: 1", H), (), {400}),
    ("value-nul", R("GET / HTTP/1.1", H, b"X-A: a\x00b"), (), {400}),
    ("value-bare-cr", R("GET / HTTP/1.1", H, b"X-A: a\rb"), (), {400}),
    ("value-del", R("GET / HTTP/1.1", H, b"X-A: a\x7fb"), (), {400}),
    ("value-0x01", R("GET / HTTP/1.1", H, b"X-A: a\x01b"), (), {400}),
    ("value-esc", R("GET / HTTP/1.1", H, b"X-A: a\x1bb"), (), {400}),
    ("value-vt", R("GET / HTTP/1.1", H, b"X-A: a\x0bb"), (), {400}),
    ("bare-lf-all", b"GET / HTTP/1.1\nHost: h\n\n", (), {400}),
    ("bare-lf-one-field", b"GET / HTTP/1.1\r\nHost: h\nX-A: 1\r\n\r\n", (), {400}),
    ("bare-lf-request-line", b"GET / HTTP/1.1\nHost: h\r\n\r\n", (), {400}),
    ("bare-lf-end-of-head", b"GET / HTTP/1.1\r\nHost: h\r\n\n", (), {400}),
    # --- Host --------------------------------------------------------------
    ("no-host", R("GET / HTTP/1.1"), (), {400}),
    ("two-hosts-same", R("GET / HTTP/1.1", H, H), (), {400}),
    ("two-hosts-differ", R("GET / HTTP/1.1", H, "Host: other"), (), {400}),
    ("host-space", R("GET / HTTP/1.1", "Host: a b"), (), {400}),
    ("host-slash", R("GET / HTTP/1.1", "Host: a/b"), (), {400}),
    ("host-at", R("GET / HTTP/1.1", "Host: a@b"), (), {400}),
    # --- request line ------------------------------------------------------
    ("two-spaces-after-method", R("GET  / HTTP/1.1", H), (), {400}),
    ("two-spaces-before-version", R("GET /  HTTP/1.1", H), (), {400}),
    ("method-paren", R("GE(T / HTTP/1.1", H), (), {400}),
    ("method-at", R("G@T / HTTP/1.1", H), (), {400}),
    ("missing-version", R("GET /", H), (), {400}),
    ("lowercase-version", R("GET / http/1.1", H), (), {400}),
    ("trailing-space", R("GET / HTTP/1.1 ", H), (), {400}),
    ("garbage-line", R("GARBAGE", H), (), {400}),
    ("target-relative", R("GET foo HTTP/1.1", H), (), {400}),
    ("target-authority-form", R("GET example.test:80 HTTP/1.1", H), (), {400}),
    # --- Connection naming framing fields ----------------------------------
    ("connection-host", R("GET / HTTP/1.1", H, "Connection: host"), (), {400}),
    ("connection-content-length", R("POST / HTTP/1.1", H, "Content-Length: 5",
                                    "Connection: content-length", body=b"hello"), (), {400}),
    ("connection-list-content-length", R("GET / HTTP/1.1", H,
                                         "Connection: keep-alive, Content-Length"), (), {400}),
    # --- versions ----------------------------------------------------------
    ("http-1.2", R("GET / HTTP/1.2", H), (), {505}),
    ("http-2.0", R("GET / HTTP/2.0", H), (), {505}),
    ("http-3.0", R("GET / HTTP/3.0", H), (), {505}),
    # --- limits ------------------------------------------------------------
    ("request-line-414", R("GET /" + "a" * 2000 + " HTTP/1.1", H),
     ("--max-request-line", "1k"), {414}),
    ("header-size-431", R("GET / HTTP/1.1", H, "X-Big: " + "b" * 3000),
     ("--max-header-size", "2k"), {431}),
    ("header-size-431-far-over", R("GET / HTTP/1.1", H, "X-Big: " + "b" * 12000),
     ("--max-header-size", "2k"), {431}),
    ("header-count-431", R("GET / HTTP/1.1", H, *[f"X-{i}: {i}" for i in range(10)]),
     ("--max-headers", "10"), {431}),
    ("body-cl-413", R("POST / HTTP/1.1", H, "Content-Length: 2000", body=b"z" * 2000),
     ("--max-body-size", "1k"), {413}),
]


@pytest.mark.parametrize("raw,flags,codes", [r[1:] for r in REFUSED],
                         ids=[r[0] for r in REFUSED])
def test_refused_request(proxy_factory, upstream, raw, flags, codes):
    up = upstream(echo_handler())
    p = proxy_factory(*flags, upstreams=[up])
    c = p.client()
    send_quietly(c, raw)
    r = c.read_response()
    assert r is not None, "connection closed without a response"
    assert r.status in codes, r
    assert c.wait_closed(1.0), "connection not closed after the refusal"
    line = only_log_line(p)
    assert line["status"] == str(r.status), line
    # a parse refusal is bad_request; a body over the limit has its own reason
    assert line["reason"] == ("body_too_large" if r.status == 413 else "bad_request"), line
    assert line["upstream"] == "-", line
    assert upstream_bytes(up) == b"", \
        f"the upstream received bytes: {upstream_bytes(up)[:300]!r}"
    assert up.requests() == []


# --------------------------------------------------------------------------
# accepted look-alikes and limits just met

ACCEPTED = [
    # (id, raw, flags, expected upstream (method, target, host list, body))
    ("underscore-name-is-tchar", R("GET /u HTTP/1.1", H, "X_Foo: 1"), (),
     ("GET", "/u", ["h"], b"")),
    ("absolute-form", R("GET http://other.example/x HTTP/1.1", H), (),
     ("GET", "/x", ["other.example"], b"")),
    ("absolute-form-query", R("GET http://other.example:8080/x?q=1 HTTP/1.1", H), (),
     ("GET", "/x?q=1", ["other.example:8080"], b"")),
    ("request-line-under-limit", R("GET /" + "a" * 900 + " HTTP/1.1", H),
     ("--max-request-line", "1k"), ("GET", "/" + "a" * 900, ["h"], b"")),
    ("header-count-at-limit", R("GET /n HTTP/1.1", H, *[f"X-{i}: {i}" for i in range(9)]),
     ("--max-headers", "10"), ("GET", "/n", ["h"], b"")),
    ("body-cl-at-limit", R("POST /b HTTP/1.1", H, "Content-Length: 1024", body=b"y" * 1024),
     ("--max-body-size", "1k"), ("POST", "/b", ["h"], b"y" * 1024)),
    ("body-chunked-at-limit", R("POST /c HTTP/1.1", H, "Transfer-Encoding: chunked",
                                body=b"200\r\n" + b"y" * 512 + b"\r\n200\r\n" + b"y" * 512
                                + b"\r\n0\r\n\r\n"),
     ("--max-body-size", "1k"), ("POST", "/c", ["h"], b"y" * 1024)),
    ("cl-leading-zeros", R("POST /z HTTP/1.1", H, "Content-Length: 005", body=b"hello"), (),
     ("POST", "/z", ["h"], b"hello")),
]


@pytest.mark.parametrize("raw,flags,want", [r[1:] for r in ACCEPTED],
                         ids=[r[0] for r in ACCEPTED])
def test_accepted_request(proxy_factory, upstream, raw, flags, want):
    up = upstream(echo_handler())
    p = proxy_factory(*flags, upstreams=[up])
    c = p.client()
    c.send(raw)
    r = c.read_response()
    assert r is not None and r.status == 200, r
    method, target, hosts, body = want
    (req,) = up.wait_requests(1)
    assert req.method == method and req.target == target, req
    assert req.version == "HTTP/1.1", req
    assert req.header_all("host") == hosts, req.headers
    assert req.body == body
    line = only_log_line(p)
    assert line["status"] == "200" and line["reason"] == "ok", line


# --------------------------------------------------------------------------
# malformed chunked request bodies: 400, upstream connection closed, never a
# complete body upstream

BAD_CHUNKED = [
    ("size-not-hex", b"zz\r\nhello\r\n0\r\n\r\n"),
    ("size-0x-prefix", b"0x5\r\nhello\r\n0\r\n\r\n"),
    ("size-negative", b"-5\r\nhello\r\n0\r\n\r\n"),
    ("size-empty", b"\r\nhello\r\n0\r\n\r\n"),
    ("size-17-hex-digits-overflow", b"1" + b"0" * 16 + b"\r\nhello\r\n0\r\n\r\n"),
    ("size-17-hex-digits-value-5", b"0" * 16 + b"5\r\nhello\r\n0\r\n\r\n"),
    ("size-line-bare-lf", b"5\nhello\r\n0\r\n\r\n"),
    ("data-longer-than-size", b"5\r\nhelloXX\r\n0\r\n\r\n"),
    ("data-then-bare-lf", b"5\r\nhello\n0\r\n\r\n"),
    ("extension-over-4k", b"5;" + b"e" * 5000 + b"\r\nhello\r\n0\r\n\r\n"),
    ("second-chunk-bad", b"5\r\nhello\r\nqq\r\nworld\r\n0\r\n\r\n"),
]


@pytest.mark.parametrize("body", [b for _, b in BAD_CHUNKED], ids=[i for i, _ in BAD_CHUNKED])
def test_bad_chunked_body(proxy_factory, upstream, body):
    up = upstream(absorb_handler())
    p = proxy_factory(upstreams=[up])
    c = p.client()
    send_quietly(c, R("POST /chunk HTTP/1.1", H, "Transfer-Encoding: chunked", body=body))
    r = c.read_response()
    assert r is not None and r.status == 400, r
    assert c.wait_closed(1.0), "client connection not closed after a bad chunked body"
    line = only_log_line(p)
    assert line["status"] == "400" and line["reason"] == "bad_request", line
    for conn in list(up.conns):
        conn.wait_proxy_closed(1.0)
        got = bytes(conn.received)
        assert not chunked_body_complete(after_head(got)), \
            f"upstream got a complete chunked body: {got[-200:]!r}"
        assert b"world" not in got


def test_chunked_body_over_max_body_size(proxy_factory, upstream):
    up = upstream(absorb_handler())
    p = proxy_factory("--max-body-size", "1k", upstreams=[up])
    c = p.client()
    chunks = b"".join(b"1f4\r\n" + bytes([65 + i]) * 500 + b"\r\n" for i in range(4))
    send_quietly(c, R("POST /big HTTP/1.1", H, "Transfer-Encoding: chunked",
                      body=chunks + b"0\r\n\r\n"))
    r = c.read_response()
    assert r is not None and r.status == 413, r
    assert c.wait_closed(1.0), "client connection not closed after the 413"
    line = only_log_line(p)
    assert line["status"] == "413" and line["reason"] == "body_too_large", line
    for conn in list(up.conns):
        conn.wait_proxy_closed(1.0)
        got = after_head(bytes(conn.received))
        assert not chunked_body_complete(got), "upstream got the whole over-limit body"
        # at most the limit worth of payload crossed (the 3rd chunk crosses it)
        assert b"D" * 10 not in got, "payload past the limit reached the upstream"


# --------------------------------------------------------------------------
# trailers: every trailer field dropped

TRAILERS = [
    ("content-length", [b"Content-Length: 5"]),
    ("transfer-encoding", [b"Transfer-Encoding: chunked"]),
    ("host", [b"Host: evil.example"]),
    ("mixed", [b"X-Sum: 42", b"Content-Length: 0", b"Transfer-Encoding: gzip",
               b"Host: evil.example"]),
]


@pytest.mark.parametrize("trailers", [t for _, t in TRAILERS], ids=[i for i, _ in TRAILERS])
def test_trailers_dropped(proxy_factory, upstream, trailers):
    up = upstream(echo_handler())
    p = proxy_factory(upstreams=[up])
    c = p.client()
    body = b"5\r\nhello\r\n0\r\n" + b"".join(t + b"\r\n" for t in trailers) + b"\r\n"
    c.send(R("POST /t HTTP/1.1", H, "Transfer-Encoding: chunked", body=body))
    r = c.read_response()
    assert r is not None and r.status == 200, r
    assert r.body == b"POST /t len=5"
    (req,) = up.wait_requests(1)
    assert req.body == b"hello"
    assert req.raw_body.endswith(b"0\r\n\r\n"), req.raw_body
    k = req.raw_body.rfind(b"\r\n0\r\n")
    assert req.raw_body[k:] == b"\r\n0\r\n\r\n", \
        f"trailer fields reached the upstream: {req.raw_body!r}"
    assert req.header_all("host") == ["h"]
    # nothing after the body either (no trailer smuggled as a next request)
    time.sleep(SETTLE)
    got = bytes(up.conns[0].received)
    assert got == req.head + req.raw_body, got[-200:]
    assert b"evil.example" not in got


# --------------------------------------------------------------------------
# bodies that stop early

def test_body_cut_short_by_client(proxy_factory, upstream):
    up = upstream(absorb_handler())
    p = proxy_factory(upstreams=[up])
    c = p.client()
    c.send(R("POST /cut HTTP/1.1", H, "Content-Length: 100", body=b"0123456789"))
    # let the proxy take the head and start streaming before the client goes
    up.wait_conns(1)
    wait_until(lambda: up.conns[0].received.endswith(b"0123456789"), 2.0,
               msg="the 10 body bytes upstream")
    c.close()
    line = only_log_line(p)
    assert line["reason"] == "client_abort", line
    conn = up.conns[0]
    conn.wait_proxy_closed(1.0)
    body = after_head(bytes(conn.received))
    assert len(body) < 100, "the upstream got a complete 100-byte body"
    assert len(up.conns) == 1


def test_body_timeout_late_bytes_not_parsed(proxy_factory, upstream):
    up = upstream(absorb_handler())
    p = proxy_factory("--body-timeout", "200ms", "--read-timeout", "5s",
                      "--total-timeout", "10s", upstreams=[up])
    c = p.client()
    t0 = c.send(R("POST /slow-body HTTP/1.1", H, "Content-Length: 5", body=b"ab"))
    # the body deadline passes; the proxy decides (log line) ...
    p.wait_log(1, timeout=2.0)
    # ... then the rest arrives: 3 bytes completing the body, and a request
    late = b"cde" + R("GET /smuggled HTTP/1.1", H)
    send_quietly(c, late)
    r = c.read_response()
    assert r is not None and r.status == 408, r
    assert r.t_head - t0 >= 0.2
    assert c.wait_closed(1.0), "client connection not closed after the 408"
    line = only_log_line(p)
    assert line["status"] == "408" and line["reason"] == "body_timeout", line
    assert line["target"] == "/slow-body"
    for conn in list(up.conns):
        conn.wait_proxy_closed(1.0)
    assert b"/smuggled" not in upstream_bytes(up)
    # the body only: the head's random X-Request-Id may hold "cde" by chance
    for conn in up.conns:
        assert b"cde" not in after_head(bytes(conn.received)), conn.received
    assert all(l["target"] != "/smuggled" for l in p.log_lines())


def test_slowloris_header_trickle(proxy_factory, upstream):
    up = upstream(absorb_handler())
    p = proxy_factory("--header-timeout", "300ms", upstreams=[up])
    c = p.client()
    data = R("GET /trickle HTTP/1.1", H, "X-Pad: " + "p" * 100)
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
    th.join(2)
    assert r is not None and r.status == 408, r
    assert_window(r.t_head - first["t"], 0.300, what="time to 408")
    assert c.wait_closed(1.0)
    line = only_log_line(p)
    assert line["status"] == "408" and line["reason"] == "header_timeout", line
    assert line["upstream"] == "-"
    assert upstream_bytes(up) == b""


# --------------------------------------------------------------------------
# pipelining: the body is exactly what the framing says

PIPELINES = [
    ("cl5-body-looks-like-get",
     R("POST /a HTTP/1.1", H, "Content-Length: 5", body=b"GET /") + R("GET /b HTTP/1.1", H),
     [("POST", "/a", b"GET /"), ("GET", "/b", b"")]),
    ("cl0-then-request",
     R("POST /a HTTP/1.1", H, "Content-Length: 0") + R("GET /b HTTP/1.1", H),
     [("POST", "/a", b""), ("GET", "/b", b"")]),
    ("cl-body-is-whole-request",
     R("POST /a HTTP/1.1", H, "Content-Length: 30", body=b"GET /inner HTTP/1.1\r\nHost: h\r\n")
     + R("GET /b HTTP/1.1", H),
     [("POST", "/a", b"GET /inner HTTP/1.1\r\nHost: h\r\n"), ("GET", "/b", b"")]),
    ("chunk-holds-request",
     R("POST /a HTTP/1.1", H, "Transfer-Encoding: chunked",
       body=b"1e\r\nGET /inner HTTP/1.1\r\nHost: h\r\n\r\n0\r\n\r\n") + R("GET /b HTTP/1.1", H),
     [("POST", "/a", b"GET /inner HTTP/1.1\r\nHost: h\r\n"), ("GET", "/b", b"")]),
    ("get-without-body-then-post",
     R("GET /a HTTP/1.1", H) + R("POST /b HTTP/1.1", H, "Content-Length: 3", body=b"xyz"),
     [("GET", "/a", b""), ("POST", "/b", b"xyz")]),
]


@pytest.mark.parametrize("raw,want", [r[1:] for r in PIPELINES], ids=[r[0] for r in PIPELINES])
def test_pipelined_framing(proxy_factory, upstream, raw, want):
    up = upstream(echo_handler())
    p = proxy_factory(upstreams=[up])
    c = p.client()
    c.send(raw)  # one segment
    got = []
    for _ in want:
        r = c.read_response()
        assert r is not None and r.status == 200, (got, r)
        got.append(r.body)
    assert got == [f"{m} {t} len={len(b)}".encode() for m, t, b in want]
    reqs = up.wait_requests(len(want))
    time.sleep(SETTLE)
    reqs = up.requests()
    assert [(q.method, q.target, q.body) for q in reqs] == want
    # not a byte more than those requests' heads and bodies
    assert sum(len(q.head) + len(q.raw_body) for q in reqs) == len(upstream_bytes(up))
    lines = p.wait_log(len(want))
    assert [l["target"] for l in lines] == [t for _, t, _ in want]
    assert all(l["reason"] == "ok" for l in lines), lines


# --------------------------------------------------------------------------
# upstream responses the proxy must not trust

def scripted_response(raw):
    """Answers every request on the connection with raw bytes (keep-alive)."""
    async def handler(reader, writer, ctx):
        while True:
            req = await ctx.read_request()
            if req is None:
                return
            await ctx.send(raw)
    return handler


BAD_RESPONSES = [
    # identical Content-Length lines are one value, as in requests, and are
    # forwarded as one line (test_http1_edges.py)
    ("cl-list", b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello"),
    ("cl-differ", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
    ("cl-abc", b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nhello"),
    ("cl-plus", b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello"),
    ("te-gzip", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nhello"),
    ("cl-and-te", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"5\r\nhello\r\n0\r\n\r\n"),
    ("connection-content-length", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                                  b"Connection: content-length\r\n\r\nhello"),
]


@pytest.mark.parametrize("raw", [r for _, r in BAD_RESPONSES], ids=[i for i, _ in BAD_RESPONSES])
def test_untrusted_upstream_response(proxy_factory, upstream, raw):
    up = upstream(scripted_response(raw))
    p = proxy_factory(upstreams=[up])
    for i in range(2):
        c = p.client()
        c.send(R(f"GET /r{i} HTTP/1.1", H))
        r = c.read_response()
        assert r is not None and r.status == 502, (i, r)
        assert r.body == b"502 Bad Gateway: bad_upstream_response\n", r.body
        up.conns[i].wait_proxy_closed(1.0)
        c.close()
    lines = p.wait_log(2)
    assert [l["reason"] for l in lines] == ["bad_upstream_response"] * 2, lines
    assert [l["status"] for l in lines] == ["502"] * 2, lines
    assert len(up.conns) == 2, "a connection with a malformed response was reused"
    assert [len(cn.requests) for cn in up.conns] == [1, 1]


@pytest.mark.parametrize("extra_later", [False, True], ids=["same-segment", "a-moment-later"])
def test_response_longer_than_content_length(proxy_factory, upstream, extra_later):
    async def handler(reader, writer, ctx):
        while True:
            req = await ctx.read_request()
            if req is None:
                return
            head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
            if extra_later:
                await ctx.send(head + b"hello")
                await ctx.delay(0.05)
                await ctx.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEXTRA")
            else:
                await ctx.send(head + b"helloHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEXTRA")
    up = upstream(handler)
    p = proxy_factory(upstreams=[up])
    c = p.client()
    bodies = []
    for i in range(2):
        c.send(R(f"GET /l{i} HTTP/1.1", H))
        r = c.read_response()
        assert r is not None and r.status == 200, (i, r)
        bodies.append(r.body)
        if i == 0 and extra_later:
            time.sleep(0.1)  # the extra bytes are in the proxy's socket by now
    assert bodies == [b"hello", b"hello"], bodies
    assert len(up.conns) == 2, "a connection that sent more than Content-Length was reused"
    assert [len(cn.requests) for cn in up.conns] == [1, 1]
    up.conns[0].wait_proxy_closed(1.0)
    # exactly the Content-Length bytes went to the client, nothing more
    c.sock.settimeout(SETTLE)
    time.sleep(SETTLE)
    try:
        leftover = c.sock.recv(4096)
    except (TimeoutError, OSError):
        leftover = b""
    assert b"EXTRA" not in bytes(c.buf) + leftover


def test_close_delimited_response_then_closed(proxy_factory, upstream):
    body = b"until the end " * 3000

    async def handler(reader, writer, ctx):
        await ctx.read_request()
        await ctx.send(b"HTTP/1.1 200 OK\r\n\r\n" + body)
        ctx.close()
    up = upstream(handler)
    p = proxy_factory(upstreams=[up])
    for i in range(2):
        c = p.client()
        c.send(R(f"GET /close{i} HTTP/1.1", H))
        r = c.read_response()
        assert r is not None and r.status == 200 and r.complete, r
        assert r.body == body
        assert c.wait_closed(1.0), "client connection kept after a close-delimited response"
        c.close()
    assert len(up.conns) == 2
    lines = p.wait_log(2)
    assert [l["reason"] for l in lines] == ["ok", "ok"], lines


def test_unsolicited_bytes_on_idle_pooled_connection(proxy_factory, upstream):
    junk_sent = threading.Event()

    async def handler(reader, writer, ctx):
        if ctx.index == 0:
            await ctx.read_request()
            await ctx.respond(200, b"first")
            await ctx.delay(0.1)
            await ctx.send(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\njunk")
            junk_sent.set()

            async def reused(ctx, req):
                await ctx.respond(200, b"reused")
            await ctx.serve_forever(reused)
        else:
            async def fresh(ctx, req):
                await ctx.respond(200, b"fresh")
            await ctx.serve_forever(fresh)
    up = upstream(handler)
    p = proxy_factory(upstreams=[up])
    c = p.client()
    c.send(R("GET /one HTTP/1.1", H))
    r = c.read_response()
    assert r is not None and r.status == 200 and r.body == b"first", r
    assert junk_sent.wait(2.0)
    time.sleep(0.05)  # the junk is in the proxy's receive buffer
    c2 = p.client()
    c2.send(R("GET /two HTTP/1.1", H))
    r2 = c2.read_response()
    assert r2 is not None and r2.status == 200, r2
    assert r2.body == b"fresh", "the request went over the connection that sent junk"
    assert len(up.conns) == 2
    assert [q.target for q in up.conns[0].requests] == ["/one"]
    assert [q.target for q in up.conns[1].requests] == ["/two"]
    up.conns[0].wait_proxy_closed(1.0)
    lines = p.wait_log(2)
    assert [l["status"] for l in lines] == ["200", "200"], lines


TCP_CLOSE, TCP_CLOSE_WAIT = 7, 8


def upstream_side_state(conn):
    """(TCP state, bytes still queued unread) of the fake upstream's socket.

    The fake upstream's transport stops reading when its buffer is full, so
    a FIN queued behind unread bytes never reaches eof_received; the kernel
    state says whether the proxy closed its end."""
    sock = conn.transport.get_extra_info("socket")
    if sock is None:
        return TCP_CLOSE, 0
    try:
        state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
        queued = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD,
                                                b"\0\0\0\0"))[0]
    except OSError:
        return TCP_CLOSE, 0
    return state, queued


def wait_upstream_conn_closed(conn, timeout=1.0):
    return wait_until(lambda: conn.proxy_closed_at is not None
                      or upstream_side_state(conn)[0] in (TCP_CLOSE, TCP_CLOSE_WAIT),
                      timeout, msg=f"proxy to close upstream connection #{conn.index}")


def test_early_response_while_body_sent(proxy_factory, upstream):
    size = 4 << 20
    first = 64 << 10   # sent before the 413; the rest only after it

    async def handler(reader, writer, ctx):
        req = await ctx.read_head()
        if int(req.header("content-length") or 0) > 0:
            await ctx.respond(413, b"too big", reason="Payload Too Large")
            await ctx.wait_lost(10)   # never reads the body
            return

        async def ok(ctx, req):
            await ctx.respond(200, b"next")
        await ok(ctx, req)
        await ctx.serve_forever(ok)
    up = upstream(handler)
    p = proxy_factory("--write-timeout", "5s", "--total-timeout", "10s", upstreams=[up])
    c = p.client(timeout=5)
    c.send(R("POST /upload HTTP/1.1", H, f"Content-Length: {size}") + b"u" * first)
    r = c.read_response(timeout=5)
    assert r is not None, "connection closed without the early 413"
    assert r.status == 413 and r.body == b"too big", r
    # the client goes on sending the rest of its 4 MiB
    th, res = send_in_thread(c, b"v" * (size - first))
    (conn0,) = up.wait_conns(1)
    wait_upstream_conn_closed(conn0, 1.0)
    th.join(10)
    state, queued = upstream_side_state(conn0)
    got = len(after_head(bytes(conn0.received))) + queued
    assert got <= first, \
        f"{got} body bytes reached an upstream that had answered ({first} sent before)"
    assert b"v" not in bytes(conn0.received)
    c.close()
    c2 = p.client()
    c2.send(R("GET /after HTTP/1.1", H))
    r2 = c2.read_response()
    assert r2 is not None and r2.status == 200 and r2.body == b"next", r2
    assert len(up.conns) == 2, "the connection with an unread request body was pooled"
    assert [q.target for q in up.conns[1].requests] == ["/after"]
    lines = p.wait_log(2)
    assert lines[0]["status"] == "413", lines
    assert lines[1]["status"] == "200", lines
