#!/usr/bin/python3
"""make_h2_corpus.py -- writes the seed corpus of fuzz_h2 into fuzz/corpus/h2/.

Each seed is one byte choosing what the upstream answers (MODES below: the
order of modes[] in fuzz_h2.c; plus len(MODES) when time warps, firing the
proxy's timers once it is quiet), then what an HTTP/2 client sends after the
connection preface (the target writes "PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n"
itself). The frames come from python3-h2 (Debian: python3-h2), a
client-side H2Connection, so that every seed is a valid byte stream and the
HPACK blocks are real ones (the dynamic table included).

Run it again after changing it:

    /usr/bin/python3 fuzz/make_h2_corpus.py

It rewrites every seed it makes and leaves other files in the folder alone.
"""
import os
import sys

import h2.config
import h2.connection
import h2.settings

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# modes[] of fuzz_h2.c, in order: what the upstream does with every request
MODES = ["refuse", "ok_keepalive", "chunked_trailer", "interim_hop", "no_content",
         "not_modified", "until_close", "large_length", "large_chunked", "malformed",
         "close_early", "truncated", "switching", "teapot_http10", "big_head",
         "conflicting_length", "stall"]
DEFAULT_MODE = "ok_keepalive"
# seeds written once per mode (name.MODE), the others with DEFAULT_MODE
EVERY_MODE = {"get_root", "post_data", "window_update"}
# seeds also written with time warping (name.MODE.warp): the timeouts
WARP = {"get_root": ["stall", "ok_keepalive", "large_length"],
        "settings": ["ok_keepalive"], "post_open": ["stall", "ok_keepalive"],
        "headers_open": ["ok_keepalive"], "window_update": ["large_length"],
        "zero_window": ["large_length", "ok_keepalive"]}
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "h2")


def client(validate=True):
    cfg = h2.config.H2Configuration(client_side=True, header_encoding=None,
                                    validate_outbound_headers=validate,
                                    normalize_outbound_headers=validate,
                                    validate_inbound_headers=False)
    c = h2.connection.H2Connection(config=cfg)
    c.initiate_connection()
    return c


def take(c):
    """What c has to send, without the preface (the target sends it)."""
    d = c.data_to_send()
    return d[len(PREFACE):] if d.startswith(PREFACE) else d


def padded(frame, n):
    """One HEADERS or DATA frame with n bytes of padding (flag PADDED)."""
    size = int.from_bytes(frame[0:3], "big") + 1 + n
    assert len(frame) == 9 + size - 1 - n
    return (size.to_bytes(3, "big") + frame[3:4] + bytes([frame[4] | 0x08]) + frame[5:9]
            + bytes([n]) + frame[9:] + bytes(n))


def split_block(frame, parts):
    """One HEADERS frame (no padding, no priority) as HEADERS and CONTINUATION
    frames carrying its block in `parts` pieces; END_HEADERS on the last."""
    block, flags, sid = frame[9:], frame[4], frame[5:9]
    assert int.from_bytes(frame[0:3], "big") == len(block) and not flags & 0x28
    step = (len(block) + parts - 1) // parts
    pieces = [block[i:i + step] for i in range(0, len(block), step)]
    out = b""
    for i, p in enumerate(pieces):
        kind = 0x1 if i == 0 else 0x9
        fl = (flags & 0x01 if i == 0 else 0) | (0x04 if i == len(pieces) - 1 else 0)
        out += len(p).to_bytes(3, "big") + bytes([kind, fl]) + sid + p
    return out


def req(method, path="/", extra=(), authority="example.test"):
    h = [(":method", method), (":path", path), (":scheme", "http"),
         (":authority", authority)]
    return [(k.encode(), v.encode()) for k, v in h] + \
        [(k.encode(), v.encode()) for k, v in extra]


def seeds():
    # SETTINGS alone, then its ACK for ours
    c = client()
    c.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 10})
    d = take(c)
    yield "settings", d + b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"

    # GET /
    c = client()
    c.send_headers(1, req("GET", "/"), end_stream=True)
    yield "get_root", take(c)

    # two GETs: the second's HPACK block uses the dynamic table
    c = client()
    c.send_headers(1, req("GET", "/a", [("user-agent", "fuzz"), ("accept", "*/*")]),
                   end_stream=True)
    c.send_headers(3, req("GET", "/b", [("user-agent", "fuzz"), ("accept", "*/*")]),
                   end_stream=True)
    yield "get_two_streams", take(c)

    # HEAD, with cookies split in several fields (joined with "; ")
    c = client()
    c.send_headers(1, req("HEAD", "/c", [("cookie", "a=1"), ("cookie", "b=2")]),
                   end_stream=True)
    yield "head_cookies", take(c)

    # POST with content-length and DATA
    c = client()
    body = b"hello=world&x=1"
    c.send_headers(1, req("POST", "/form", [("content-length", str(len(body))),
                                            ("content-type", "application/x-www-form-urlencoded")]))
    c.send_data(1, body, end_stream=True)
    yield "post_data", take(c)

    # POST without content-length: the body goes upstream chunked
    c = client()
    c.send_headers(1, req("POST", "/up"))
    c.send_data(1, b"part one,")
    c.send_data(1, b"part two", end_stream=True)
    yield "post_chunked", take(c)

    # POST with an empty body in an empty DATA frame, and trailers
    c = client()
    c.send_headers(1, req("POST", "/t", [("te", "trailers")]))
    c.send_data(1, b"x")
    c.send_headers(1, [(b"x-checksum", b"abc")], end_stream=True)
    yield "post_trailers", take(c)

    # Expect: 100-continue
    c = client()
    c.send_headers(1, req("PUT", "/put", [("expect", "100-continue"), ("content-length", "3")]))
    c.send_data(1, b"abc", end_stream=True)
    yield "put_expect", take(c)

    # a request reset by the client, then another
    c = client()
    c.send_headers(1, req("POST", "/slow"))
    c.reset_stream(1)
    c.send_headers(3, req("GET", "/after"), end_stream=True)
    yield "rst_stream", take(c)

    # PING, and a PING ACK
    c = client()
    c.ping(b"12345678")
    d = take(c)
    yield "ping", d + b"\x00\x00\x08\x06\x01\x00\x00\x00\x00" + b"abcdefgh"

    # flow control: a zero window, then WINDOW_UPDATEs
    c = client()
    c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    c.send_headers(1, req("GET", "/w"), end_stream=True)
    d = take(c)
    d += b"\x00\x00\x04\x08\x00\x00\x00\x00\x01\x00\x00\x40\x00"   # stream 1: +16384
    d += b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x01\x00\x00"   # connection: +65536
    yield "window_update", d

    # a POST whose body never ends (body timeout)
    c = client()
    c.send_headers(1, req("POST", "/open", [("content-length", "10")]))
    c.send_data(1, b"12345")
    yield "post_open", take(c)

    # a header block left open: HEADERS without END_HEADERS (header timeout)
    c = client()
    d = take(c)
    c.send_headers(1, req("GET", "/h"), end_stream=True)
    f = take(c)
    yield "headers_open", d + f[0:4] + bytes([f[4] & ~0x04]) + f[5:]

    # a zero window and no WINDOW_UPDATE (send timeout)
    c = client()
    c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    c.send_headers(1, req("GET", "/z"), end_stream=True)
    yield "zero_window", take(c)

    # GOAWAY after a request
    c = client()
    c.send_headers(1, req("GET", "/bye"), end_stream=True)
    c.close_connection()
    yield "goaway", take(c)

    # PRIORITY, and a HEADERS frame with priority
    c = client()
    c.prioritize(1, weight=32, depends_on=0, exclusive=False)
    c.send_headers(3, req("GET", "/p"), end_stream=True, priority_weight=64,
                   priority_depends_on=1, priority_exclusive=True)
    yield "priority", take(c)

    # a header block in HEADERS + two CONTINUATION frames (split by hand:
    # python3-h2 splits only blocks over the frame size, a seed too long)
    c = client()
    d = take(c)
    c.send_headers(1, req("GET", "/cont", [("x-a", "1"), ("x-b", "2")]), end_stream=True)
    yield "continuation", d + split_block(take(c), 3)

    # CONNECT (501 over HTTP/2)
    c = client(validate=False)
    c.send_headers(1, [(b":method", b"CONNECT"), (b":authority", b"example.test:443")],
                   end_stream=False)
    yield "connect", take(c)

    # a host field and no :authority; pseudo-fields out of order
    c = client(validate=False)
    c.send_headers(1, [(b":path", b"/o"), (b":method", b"GET"), (b":scheme", b"http"),
                       (b"host", b"h.test")], end_stream=True)
    yield "host_pseudo_order", take(c)

    # padding on HEADERS and DATA
    # (python3-h2 pads DATA only: the HEADERS frame is padded by hand)
    c = client()
    d = take(c)
    c.send_headers(1, req("POST", "/pad", [("content-length", "2")]))
    d += padded(take(c), 7)
    c.send_data(1, b"ok", end_stream=True, pad_length=5)
    yield "padded", d + take(c)


def flood_seeds():
    """Seeds past the flood limits of h2.c (larger: a few KiB each)."""
    # 1001 SETTINGS frames: over the control frame burst (GOAWAY
    # ENHANCE_YOUR_CALM)
    c = client()
    yield "flood_settings", take(c) + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00" * 1001

    # a POST, then 1001 empty DATA frames without END_STREAM
    c = client()
    c.send_headers(1, req("POST", "/empty"))
    yield "flood_empty_data", take(c) + b"\x00\x00\x00\x00\x00\x00\x00\x00\x01" * 1001

    # 201 streams opened and reset at once (Rapid Reset, CVE-2023-44487)
    c = client()
    d = take(c)
    for i in range(201):
        sid = 1 + 2 * i
        c.send_headers(sid, req("GET", "/r"))
        c.reset_stream(sid)
        d += take(c)
    yield "rapid_reset", d

    # a header list over the limit the proxy announces (max-header-size +
    # max-request-line): one large field, then references to it (HPACK)
    c = client()
    c.send_headers(1, req("GET", "/h", [("x-big", "a" * 3900)] * 12), end_stream=True)
    yield "header_list_large", take(c)


def main():
    os.makedirs(OUT, exist_ok=True)
    n = 0
    for name, data in list(seeds()) + list(flood_seeds()):
        out = [(f"{name}.{m}", MODES.index(m)) for m in MODES] if name in EVERY_MODE \
            else [(name, MODES.index(DEFAULT_MODE))]
        out += [(f"{name}.{m}.warp", MODES.index(m) + len(MODES)) for m in WARP.get(name, [])]
        for fn, byte in out:
            with open(os.path.join(OUT, fn), "wb") as f:
                f.write(bytes([byte]) + data)
            n += 1
    print(f"{n} seeds in {os.path.relpath(OUT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
