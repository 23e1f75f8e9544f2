#!/usr/bin/python3
"""make_h2up_corpus.py -- writes the seed corpus of fuzz_h2up into fuzz/corpus/h2up/.

Each seed is one byte choosing the client's scenario (SCENS below: the order
of scens[] in fuzz_h2up.c), one byte of options (WARP, CLOSE, ONE_FRAME,
LATE_BODIES, LAZY_READS: the bits fuzz_h2up.c reads), then what the upstream
HTTP/2 server sends: one segment per upstream connection (in accept order),
separated by SEP. The
target paces the frames: one on a stream the proxy has not opened yet waits
until it has (the proxy's streams on a connection are 1, 3, 5...), DATA
waits for the proxy's flow-control windows.

The frames are built here by hand (python3 stdlib only), the header blocks
with HPACK literals "without indexing, new name" (RFC 7541 6.2.2), a few
static-table entries (:status 200, 204, 304, 404, 500) and, for the header
bomb, one field indexed then referenced again and again.

Run it again after changing it:

    /usr/bin/python3 fuzz/make_h2up_corpus.py

It rewrites every seed it makes and leaves other files in the folder alone.
"""
import os
import struct

# scens[] of fuzz_h2up.c, in order
SCENS = ["h1_get", "h1_post", "h1_head", "h1_pipeline", "h1_chunked_post", "h1_grpc",
         "h1_retry_get", "h1_retry_post", "h1_hedge_get", "h1_expect", "h2_get2", "h2_post",
         "h2_grpc", "h2_head", "h2_three", "h2_mixed", "h1_big_post", "h2_big_post",
         "h1_big_chunked_post", "h10_get", "h1_absolute", "h2_get_te"]
NREQ = {"h1_pipeline": 3, "h1_hedge_get": 2, "h2_get2": 2, "h2_three": 3, "h2_mixed": 2,
        "h1_absolute": 2}
# byte 1: the options
WARP, CLOSE, ONE_FRAME, LATE_BODIES, LAZY_READS = 0x01, 0x02, 0x04, 0x08, 0x10
SEP = b"=NEXT="
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "h2up")

# frame types, flags, settings, error codes (RFC 9113)
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIO = 0x1, 0x1, 0x4, 0x8, 0x20
HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE, \
    MAX_HEADER_LIST_SIZE = range(1, 7)
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR, REFUSED_STREAM, CANCEL, \
    ENHANCE_YOUR_CALM = 0, 1, 2, 3, 7, 8, 0xb


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", sid) + payload


def settings(*pairs):
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


SETTINGS_ACK = frame(SETTINGS, ACK, 0)
PRE = settings() + SETTINGS_ACK          # a server's preface, and its ACK of the proxy's


def hint(v, prefix, first=0):
    """An HPACK integer with an N-bit prefix (RFC 7541 5.1)."""
    top = (1 << prefix) - 1
    if v < top:
        return bytes([first | v])
    out, v = [first | top], v - top
    while v >= 128:
        out.append(v % 128 + 128)
        v //= 128
    return bytes(out + [v])


def hstr(s):
    s = s.encode() if isinstance(s, str) else s
    return hint(len(s), 7) + s


def lit(name, value):
    """Literal without indexing, new name."""
    return b"\x00" + hstr(name) + hstr(value)


def lit_indexed(name, value):
    """Literal with incremental indexing, new name (enters the dynamic table)."""
    return b"\x40" + hstr(name) + hstr(value)


STATIC_STATUS = {200: 8, 204: 9, 206: 10, 304: 11, 400: 12, 404: 13, 500: 14}


def status(code):
    if isinstance(code, int) and code in STATIC_STATUS:
        return hint(STATIC_STATUS[code], 7, 0x80)
    return hint(8, 4) + hstr(str(code))   # literal without indexing, name :status (8)


def block(code=None, fields=()):
    b = status(code) if code is not None else b""
    for n, v in fields:
        b += lit(n, v)
    return b


def headers(sid, code=None, fields=(), es=False, flags=0, pad=None, prio=False):
    payload = block(code, fields)
    fl = END_HEADERS | (END_STREAM if es else 0) | flags
    if prio:
        payload = struct.pack(">IB", 0, 15) + payload
        fl |= PRIO
    if pad is not None:
        payload = bytes([pad]) + payload + bytes(pad)
        fl |= PADDED
    return frame(HEADERS, fl, sid, payload)


def data(sid, payload, es=False, pad=None):
    fl = END_STREAM if es else 0
    if pad is not None:
        payload = bytes([pad]) + payload + bytes(pad)
        fl |= PADDED
    return frame(DATA, fl, sid, payload)


def rst(sid, code):
    return frame(RST_STREAM, 0, sid, struct.pack(">I", code))


def goaway(last, code=NO_ERROR, debug=b""):
    return frame(GOAWAY, 0, 0, struct.pack(">II", last, code) + debug)


def window_update(sid, inc):
    return frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", inc))


def ping(opaque=b"12345678", ack=False):
    return frame(PING, ACK if ack else 0, 0, opaque)


def ok(sid, body=b"hello", es=True):
    """A response with a length."""
    return headers(sid, 200, [("content-length", str(len(body))),
                              ("content-type", "text/plain")]) + data(sid, body, es)


def no_length(sid, parts=(b"hel", b"lo")):
    """A response without content-length: chunked for an HTTP/1.1 client."""
    out = headers(sid, 200, [("content-type", "text/plain")])
    for i, p in enumerate(parts):
        out += data(sid, p, i == len(parts) - 1)
    return out


def grpc_msg(payload):
    return b"\x00" + struct.pack(">I", len(payload)) + payload


def with_trailers(sid, body=b"hello"):
    return headers(sid, 200, [("content-type", "application/grpc")]) + data(sid, body) + \
        headers(sid, None, [("grpc-status", "0"), ("grpc-message", "ok")], es=True)


seeds = {}


def seed(name, scen, *segments, opts=0):
    seeds[name] = bytes([SCENS.index(scen), opts]) + SEP.join(segments)


def every_scen(name, make, opts=0, scens=None):
    """One seed per scenario: make(nreq, h1) gives the segments."""
    for s in scens or SCENS:
        seed(f"{name}.{s}" + (".warp" if opts & WARP else ""), s,
             *make(NREQ.get(s, 1), s.startswith("h1")), opts=opts)


# ---- normal answers, each scenario --------------------------------------------------

def answer_all(n, h1, resp=ok):
    """The answers of n requests: HTTP/1.1 sends them one after the other (the
    same connection: streams 1, 3, 5); HTTP/2 at once (streams 1, 3, 5 too)."""
    return [PRE + b"".join(resp(2 * i + 1) for i in range(n))]


every_scen("ok_len", answer_all)
every_scen("no_length", lambda n, h1: answer_all(n, h1, no_length))
every_scen("trailers", lambda n, h1: answer_all(n, h1, with_trailers))
every_scen("ok_len", answer_all, opts=WARP, scens=["h1_get", "h1_pipeline", "h2_three",
                                                   "h1_hedge_get", "h2_grpc"])
seed("ok_len.h1_get.close", "h1_get", PRE + ok(1), opts=CLOSE)
seed("ok_len.h2_three.one_frame", "h2_three", PRE + ok(1) + ok(3) + ok(5), opts=ONE_FRAME)
seed("no_length.h1_pipeline.one_frame_close", "h1_pipeline",
     PRE + no_length(1) + no_length(3) + no_length(5), opts=ONE_FRAME | CLOSE)

# ---- heads ------------------------------------------------------------------------------

seed("interim_then_final", "h1_get",
     PRE + headers(1, 100) + headers(1, 103, [("link", "</a>; rel=preload")]) + ok(1))
seed("interim_then_final.h2", "h2_get2",
     PRE + headers(1, 103, [("link", "</a>")]) + ok(1) + headers(3, 100) + ok(3))
seed("expect_continue", "h1_expect", PRE + headers(1, 100) + ok(1))
seed("no_content", "h1_get", PRE + headers(1, 204, [("x-a", "b")], es=True))
seed("no_content.h2", "h2_get2", PRE + headers(1, 204, es=True) + headers(3, 304, es=True))
seed("not_modified", "h1_pipeline",
     PRE + headers(1, 304, [("content-length", "1234"), ("etag", '"x"')], es=True) +
     headers(3, 204, es=True) + headers(5, 200, [("content-length", "99")], es=True))
seed("head", "h1_head", PRE + headers(1, 200, [("content-length", "1234")], es=True))
seed("head.h2", "h2_head", PRE + headers(1, 200, [("content-length", "1234")], es=True))
seed("head_data", "h1_head", PRE + headers(1, 200, [("content-length", "5")]) +
     data(1, b"hello", True))
seed("headers_only_end", "h1_get", PRE + headers(1, 200, es=True))
seed("headers_only_end.h2", "h2_get2", PRE + headers(1, 404, es=True) + headers(3, 500, es=True))
seed("empty_data_end", "h1_get", PRE + headers(1, 200) + data(1, b"", True))
seed("status_502", "h1_retry_get", PRE + headers(1, 502, [("content-length", "3")]) +
     data(1, b"bad", True))
seed("status_503_retried", "h1_retry_get",
     PRE + headers(1, 503, [("content-length", "0")], es=True), PRE + ok(1), opts=WARP)
seed("status_101", "h1_get", PRE + headers(1, 101, [("upgrade", "websocket")]) + ok(1))
seed("status_bad", "h1_get", PRE + headers(1, "2x0") + ok(3))
seed("status_missing", "h1_get", PRE + headers(1, None, [("content-length", "0")], es=True))
seed("status_twice", "h2_get2", PRE + headers(1, 200, [(":status", "201")], es=True) + ok(3))
seed("status_unknown", "h1_get", PRE + headers(1, 299, [("content-length", "2")]) +
     data(1, b"ok", True))
seed("pseudo_after_regular", "h1_get",
     PRE + headers(1, None, [("x-a", "1"), (":status", "200")], es=True))
seed("upper_case_name", "h1_get", PRE + headers(1, 200, [("X-Upper", "1")], es=True))
seed("connection_field", "h1_get", PRE + headers(1, 200, [("connection", "close"),
                                                          ("keep-alive", "1")], es=True))
seed("transfer_encoding", "h1_get", PRE + headers(1, 200, [("transfer-encoding", "chunked")]) +
     data(1, b"5\r\nhello\r\n0\r\n\r\n", True))
seed("two_lengths", "h1_get", PRE + headers(1, 200, [("content-length", "5"),
                                                     ("content-length", "6")]) +
     data(1, b"hello", True))
seed("length_not_a_number", "h1_get", PRE + headers(1, 200, [("content-length", "5x")]) +
     data(1, b"hello", True))
seed("value_with_crlf", "h1_get", PRE + headers(1, 200, [("x-a", "a\r\nx-injected: 1"),
                                                         ("content-length", "0")], es=True))
seed("value_with_nul", "h1_get", PRE + headers(1, 200, [("x-a", "a\x00b")], es=True))
seed("name_with_colon", "h1_get", PRE + headers(1, 200, [("x:a", "b")], es=True))
seed("empty_name", "h1_get", PRE + headers(1, 200, [("", "b")], es=True))
seed("hop_fields", "h1_get", PRE + headers(1, 200, [("proxy-connection", "x"), ("te", "x"),
                                                    ("upgrade", "h2c"), ("via", "1.1 x")],
                                           es=True))
seed("padded_priority", "h2_get2",
     PRE + headers(1, 200, [("content-length", "5")], pad=7, prio=True) + data(1, b"hello", True, pad=3)
     + headers(3, 200, pad=0) + data(3, b"x", pad=200) + data(3, b"", True, pad=0))

# ---- bodies ----------------------------------------------------------------------------

seed("data_beyond_length", "h1_get", PRE + headers(1, 200, [("content-length", "3")]) +
     data(1, b"hello", True))
seed("data_short_of_length", "h1_get", PRE + headers(1, 200, [("content-length", "10")]) +
     data(1, b"hello", True))
seed("data_short_of_length.h2", "h2_get2", PRE + headers(1, 200, [("content-length", "10")]) +
     data(1, b"hello", True) + ok(3))
seed("data_before_headers", "h1_get", PRE + data(1, b"early") + ok(1))
seed("data_after_end", "h1_pipeline", PRE + ok(1) + data(1, b"late", True) + ok(3) + ok(5))
seed("data_on_204", "h1_get", PRE + headers(1, 204) + data(1, b"x", True))
seed("data_on_304_len", "h2_get2", PRE + headers(1, 304, [("content-length", "3")]) +
     data(1, b"abc", True) + ok(3))
seed("length_then_more_data", "h1_pipeline",
     PRE + headers(1, 200, [("content-length", "5")]) + data(1, b"hello") +
     data(1, b"", True) + ok(3) + ok(5))
seed("trailers_no_end", "h1_get", PRE + headers(1, 200) + data(1, b"x") +
     headers(1, None, [("x-t", "1")]))
seed("trailers_with_pseudo", "h2_grpc", PRE + headers(1, 200, [("content-type",
                                                                 "application/grpc")]) +
     data(1, grpc_msg(b"ok")) + headers(1, 200, [("grpc-status", "0")], es=True))
seed("trailers_h1_dropped", "h1_pipeline",
     PRE + with_trailers(1) + with_trailers(3) + with_trailers(5))

# a body over the proxy's 64 KiB stream window: its WINDOW_UPDATEs let it on
BIG = bytes((i * 7 + i // 97) % 26 + 97 for i in range(70000))


def big_body(sid, length=True, chunk=16384):
    fields = [("content-length", str(len(BIG)))] if length else []
    out = headers(sid, 200, fields)
    for off in range(0, len(BIG), chunk):
        out += data(sid, BIG[off:off + chunk], off + chunk >= len(BIG))
    return out


seed("big_body", "h1_get", PRE + big_body(1))
seed("big_body_chunked.h2", "h2_get2", PRE + big_body(1, False) + ok(3))
seed("big_body.warp", "h1_get", PRE + big_body(1, chunk=9000), opts=WARP)
seed("window_zero_post", "h1_post",
     settings((INITIAL_WINDOW_SIZE, 0)) + SETTINGS_ACK + ok(1), opts=WARP)
seed("window_zero_post_then_update", "h2_post",
     settings((INITIAL_WINDOW_SIZE, 0)) + SETTINGS_ACK + window_update(1, 100) + ok(1))
seed("window_update_flood", "h1_get",
     PRE + window_update(0, 1) * 600 + ok(1))
seed("window_update_overflow", "h1_post",
     PRE + window_update(0, 0x7fffffff) + window_update(1, 0x7fffffff) + ok(1))
seed("window_update_zero", "h2_get2", PRE + window_update(1, 0) + ok(1) + ok(3))

# ---- resets, GOAWAY -------------------------------------------------------------------

seed("rst_before_headers", "h1_get", PRE + rst(1, INTERNAL_ERROR))
seed("rst_refused", "h1_get", PRE + rst(1, REFUSED_STREAM), PRE + ok(1))
seed("rst_refused.retry_post", "h1_retry_post", PRE + rst(1, REFUSED_STREAM), PRE + ok(1))
seed("rst_refused_thrice", "h2_mixed", PRE + rst(1, REFUSED_STREAM) + rst(3, REFUSED_STREAM))
seed("rst_after_headers", "h1_get", PRE + headers(1, 200, [("content-length", "10")]) +
     data(1, b"hello") + rst(1, CANCEL))
seed("rst_after_headers_chunked", "h1_get", PRE + headers(1, 200) + data(1, b"hello") +
     rst(1, INTERNAL_ERROR))
seed("rst_after_headers.h2", "h2_get2", PRE + headers(1, 200) + data(1, b"hel") +
     rst(1, CANCEL) + ok(3))
seed("rst_after_end", "h1_pipeline", PRE + ok(1) + rst(1, NO_ERROR) + ok(3) + ok(5))
seed("rst_retry_reset", "h1_retry_get", PRE + rst(1, INTERNAL_ERROR), PRE + ok(1), opts=WARP)
seed("rst_grpc", "h2_grpc", PRE + headers(1, 200, [("content-type", "application/grpc")]) +
     data(1, grpc_msg(b"x")) + rst(1, CANCEL))
seed("goaway_last0", "h1_get", PRE + goaway(0), PRE + ok(1))
seed("goaway_last0_always", "h1_get", PRE + goaway(0))
seed("goaway_last1", "h1_pipeline", PRE + ok(1) + goaway(1), PRE + ok(1) + goaway(1))
seed("goaway_last1.h2", "h2_three", PRE + goaway(1) + ok(1), PRE + ok(1) + ok(3))
seed("goaway_error", "h2_get2", PRE + headers(1, 200) + data(1, b"x") +
     goaway(1, PROTOCOL_ERROR, b"debug data"))
seed("goaway_twice", "h2_get2", PRE + goaway(3) + goaway(1) + ok(1) + ok(3))
seed("goaway_then_close", "h1_pipeline", PRE + ok(1) + goaway(1), PRE + ok(1) + ok(3),
     opts=CLOSE)
seed("close_before_settings", "h1_get", b"", PRE + ok(1), opts=CLOSE)
seed("close_after_headers", "h1_get", PRE + headers(1, 200) + data(1, b"part"), opts=CLOSE)
seed("close_retry", "h1_retry_get", PRE, PRE + ok(1), opts=CLOSE | WARP)

# ---- settings, connections -------------------------------------------------------------

seed("max_streams_1", "h2_three",
     settings((MAX_CONCURRENT_STREAMS, 1)) + SETTINGS_ACK + ok(1))
seed("max_streams_1.warp", "h2_three",
     settings((MAX_CONCURRENT_STREAMS, 1)) + SETTINGS_ACK + ok(1), opts=WARP)
seed("max_streams_0", "h1_get", settings((MAX_CONCURRENT_STREAMS, 0)) + SETTINGS_ACK,
     PRE + ok(1), opts=WARP)
seed("max_streams_lowered", "h2_three", PRE + settings((MAX_CONCURRENT_STREAMS, 1)) + ok(1) +
     ok(3) + ok(5))
seed("settings_all", "h2_mixed",
     settings((HEADER_TABLE_SIZE, 0), (ENABLE_PUSH, 0), (MAX_CONCURRENT_STREAMS, 10),
              (INITIAL_WINDOW_SIZE, 5), (MAX_FRAME_SIZE, 16384), (MAX_HEADER_LIST_SIZE, 100),
              (0x99, 1)) + SETTINGS_ACK + window_update(1, 100) + ok(1) + ok(3))
seed("settings_bad_window", "h1_get", settings((INITIAL_WINDOW_SIZE, 0x80000000)) + ok(1))
seed("settings_bad_push", "h1_get", settings((ENABLE_PUSH, 1)) + ok(1))
seed("settings_flood", "h1_get", PRE + settings() * 500 + ok(1))
seed("no_settings", "h1_get", ok(1), opts=WARP)
seed("no_settings.plain", "h1_get", ok(1))
seed("settings_ack_first", "h1_get", SETTINGS_ACK + settings() + ok(1))
seed("ping", "h1_get", PRE + ping() + ok(1) + ping(b"abcdefgh", ack=True))
seed("ping_flood", "h1_get", PRE + ping() * 1100 + ok(1))
seed("idle_connection", "h1_pipeline", PRE + ok(1) + ok(3) + ok(5), opts=WARP)
seed("push_promise", "h1_get", PRE + frame(PUSH_PROMISE, END_HEADERS, 1,
                                           struct.pack(">I", 2) + block(None, [(":path", "/")]))
     + ok(1))
seed("server_stream", "h1_get", PRE + headers(2, 200, es=True) + ok(1))
seed("unknown_frame", "h1_get", PRE + frame(0xfa, 0xff, 1, b"whatever") + ok(1))
seed("priority_frame", "h1_get", PRE + frame(PRIORITY, 0, 1, struct.pack(">IB", 0, 1)) + ok(1))
seed("priority_self", "h1_get", PRE + frame(PRIORITY, 0, 1, struct.pack(">IB", 1, 1)) + ok(1))
seed("garbage", "h1_get", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
seed("truncated_frame", "h1_get", PRE + ok(1)[:20])
seed("frame_too_big", "h1_get", PRE + frame(DATA, 0, 1, bytes(20000)))

# ---- header blocks ---------------------------------------------------------------------

def continued(sid, blk, parts, es=False, first_type=HEADERS):
    step = (len(blk) + parts - 1) // parts
    pieces = [blk[i:i + step] for i in range(0, len(blk), step)]
    out = b""
    for i, p in enumerate(pieces):
        fl = (END_STREAM if es and i == 0 else 0) | (END_HEADERS if i == len(pieces) - 1 else 0)
        out += frame(first_type if i == 0 else CONTINUATION, fl, sid, p)
    return out


seed("continuation", "h1_get", PRE + continued(1, block(200, [("content-length", "2"),
                                                               ("x-a", "b" * 100)]), 4) +
     data(1, b"ok", True))
big_fields = [(f"x-field-{f}", chr(65 + f % 26) * 500) for f in range(40)]
seed("huge_header_block", "h1_get", PRE + continued(1, block(200, big_fields +
                                                             [("content-length", "3")]), 3) +
     data(1, b"big", True))
seed("huge_header_block.h2", "h2_get2", PRE + continued(1, block(200, big_fields), 3, es=True) +
     ok(3))
seed("continuation_interrupted", "h2_get2",
     PRE + frame(HEADERS, 0, 1, block(200)) + data(3, b"x") + ok(1))
seed("continuation_alone", "h1_get", PRE + frame(CONTINUATION, END_HEADERS, 1, block(200)))
seed("continuation_other_stream", "h2_get2",
     PRE + frame(HEADERS, 0, 1, block(200)) + frame(CONTINUATION, END_HEADERS, 3, b""))
# one 4000-byte field indexed, then referenced 30 times: a 120 KB head from 4 KB
bomb = status(200) + lit_indexed("x-bomb", "b" * 4000) + hint(62, 7, 0x80) * 30
seed("hpack_bomb", "h1_get", PRE + continued(1, bomb, 1, es=True))
seed("hpack_bomb.h2", "h2_get2", PRE + continued(1, bomb, 1, es=True) + ok(3))
seed("hpack_bad_index", "h1_get", PRE + frame(HEADERS, END_HEADERS | END_STREAM, 1,
                                              hint(200, 7, 0x80)))
seed("hpack_table_size_update", "h1_pipeline",
     PRE + frame(HEADERS, END_HEADERS, 1, b"\x20" + status(200) +
                 lit("content-length", "1")) + data(1, b"x", True) + ok(3) + ok(5))
seed("hpack_huffman", "h1_get", PRE + frame(HEADERS, END_HEADERS | END_STREAM, 1,
                                            status(200) + b"\x00\x82\x94\xe7\x83\x94\xe7\x8f"))
seed("many_fields", "h1_get", PRE + headers(1, 200, [(f"x-{i}", "v") for i in range(300)],
                                            es=True))
seed("trailers_large", "h2_grpc", PRE + headers(1, 200, [("content-type", "application/grpc")])
     + data(1, grpc_msg(b"x")) + continued(1, block(None, [("grpc-status", "0")] + big_fields),
                                           2, es=True))

# ---- gRPC ------------------------------------------------------------------------------

seed("grpc_ok", "h2_grpc", PRE + headers(1, 200, [("content-type", "application/grpc")]) +
     data(1, grpc_msg(b"reply")) + headers(1, None, [("grpc-status", "0")], es=True))
seed("grpc_trailers_only", "h2_grpc", PRE + headers(1, 200, [("content-type",
                                                               "application/grpc"),
                                                              ("grpc-status", "14"),
                                                              ("grpc-message", "unavailable")],
                                                     es=True))
seed("grpc_http_error", "h2_grpc", PRE + headers(1, 503, [("content-length", "0")], es=True))
seed("grpc_http_error.h1", "h1_grpc", PRE + headers(1, 503, [("content-length", "0")],
                                                    es=True))
seed("grpc_no_status", "h2_grpc", PRE + headers(1, 200, [("content-type", "application/grpc")])
     + data(1, grpc_msg(b"reply"), True))
seed("grpc_stall", "h2_grpc", PRE + headers(1, 200, [("content-type", "application/grpc")]) +
     data(1, grpc_msg(b"part")), opts=WARP)
seed("grpc.h1", "h1_grpc", PRE + with_trailers(1))

# ---- hedges, retries, stalls (time warps) ------------------------------------------------

seed("stall", "h1_get", PRE, opts=WARP)
seed("stall_after_headers", "h1_get", PRE + headers(1, 200) + data(1, b"x"), opts=WARP)
seed("stall.h2", "h2_three", PRE, opts=WARP)
seed("hedge_first_stalls", "h1_hedge_get", PRE, PRE + ok(1) + ok(3), opts=WARP)
seed("hedge_both_answer", "h1_hedge_get", PRE + ok(1) + ok(3), opts=WARP)
seed("hedge_second_resets", "h2_three", PRE + headers(1, 200) + data(1, b"a"),
     PRE + rst(1, INTERNAL_ERROR) + ok(3), opts=WARP)
seed("retry_read_timeout", "h1_retry_get", PRE, PRE + ok(1), opts=WARP)
seed("retry_post_refused", "h2_mixed", PRE + rst(1, REFUSED_STREAM) + ok(3), PRE + ok(1),
     opts=WARP)
seed("connect_timeout", "h1_get", b"", opts=WARP)

# ---- uploads, slow clients -------------------------------------------------------------

seed("big_post", "h1_big_post", PRE + window_update(0, 1 << 20) + window_update(1, 1 << 20) +
     ok(1))
seed("big_post_small_windows", "h1_big_post",
     settings((INITIAL_WINDOW_SIZE, 1000)) + SETTINGS_ACK + window_update(1, 20000) +
     window_update(0, 50000) + ok(1), opts=WARP)
seed("big_post_answered_early", "h1_big_post", PRE + ok(1))
seed("big_post.h2", "h2_big_post", PRE + window_update(1, 10000) + ok(1))
seed("big_post.h2.refused", "h2_big_post", PRE + rst(1, REFUSED_STREAM),
     PRE + window_update(0, 1 << 20) + window_update(1, 1 << 20) + ok(1))
seed("big_chunked_post", "h1_big_chunked_post",
     PRE + window_update(0, 1 << 20) + window_update(1, 1 << 20) + ok(1))
seed("big_chunked_post.late", "h1_big_chunked_post",
     settings((INITIAL_WINDOW_SIZE, 10)) + SETTINGS_ACK + window_update(1, 100) + ok(1),
     opts=LATE_BODIES | WARP)
seed("late_body", "h1_post", PRE + ok(1), opts=LATE_BODIES)
seed("late_body.h2", "h2_mixed", PRE + ok(1) + ok(3), opts=LATE_BODIES)
seed("late_body.chunked", "h1_chunked_post", PRE + ok(1), opts=LATE_BODIES)
seed("late_body.grpc", "h2_grpc", PRE + with_trailers(1), opts=LATE_BODIES)
seed("answer_before_body", "h1_post", PRE + ok(1), opts=LATE_BODIES | ONE_FRAME)
seed("lazy_client_big_body", "h1_get", PRE + big_body(1), opts=LAZY_READS)
seed("lazy_client_big_body.h2", "h2_get2", PRE + big_body(1, False) + big_body(3),
     opts=LAZY_READS)
seed("lazy_client_big_body.warp", "h1_pipeline", PRE + big_body(1) + ok(3) + ok(5),
     opts=LAZY_READS | WARP)
seed("http10", "h10_get", PRE + no_length(1))
seed("http10_length", "h10_get", PRE + ok(1))
seed("absolute", "h1_absolute", PRE + ok(1) + no_length(3))
seed("te_trailers.h2", "h2_get_te", PRE + with_trailers(1))

os.makedirs(OUT, exist_ok=True)
for name, body in sorted(seeds.items()):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(body)
print(f"{len(seeds)} seeds in {OUT}")
