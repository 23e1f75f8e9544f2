"""HTTP/2 to clients (issue 15): h2c with prior knowledge beside HTTP/1.1 on
plain listeners, ALPN h2 on TLS listeners, the mapping of a stream to an
HTTP/1.1 exchange and back, every deadline per stream, cancellation per
stream, flow control and back-pressure, limits and hostile input, drain,
idle, resources, and real clients (curl, nghttp, h2load).

Clients:
  * H2Client -- our own framing (struct, 9-byte frame headers) with HPACK
    from the hpack package: well-formed requests, and any malformed frame a
    test needs (bad preface, CONTINUATION flood, stream id reuse, ...). It
    keeps flow-control accounts both ways and records every frame.
  * h2.connection (python3-h2) in test_h2_library_client: a strict
    third-party state machine that validates what the proxy sends.

Everything talks to 127.0.0.1 only.
"""

import json
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time
from pathlib import Path

import hpack
import pytest
from hpack.hpack import encode_integer

from conftest import (SO_TIMESTAMPNS, Proxy, assert_window, free_port, is_sanitized,
                      kernel_arrival, log_int, ok_handler, request_bytes, scrape, silent_handler,
                      wait_port, wait_until)

SLOW = 2.0 if is_sanitized() else 1.0

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# frame types
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, \
    WINDOW_UPDATE, CONTINUATION = range(10)
FRAME_NAMES = ["DATA", "HEADERS", "PRIORITY", "RST_STREAM", "SETTINGS", "PUSH_PROMISE",
               "PING", "GOAWAY", "WINDOW_UPDATE", "CONTINUATION"]
# flags
F_END_STREAM = 0x1
F_ACK = 0x1
F_END_HEADERS = 0x4
F_PADDED = 0x8
F_PRIORITY = 0x20
# error codes
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR, SETTINGS_TIMEOUT, \
    STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR, \
    CONNECT_ERROR, ENHANCE_YOUR_CALM, INADEQUATE_SECURITY, HTTP_1_1_REQUIRED = range(14)
# settings
S_HEADER_TABLE_SIZE, S_ENABLE_PUSH, S_MAX_CONCURRENT_STREAMS, S_INITIAL_WINDOW_SIZE, \
    S_MAX_FRAME_SIZE, S_MAX_HEADER_LIST_SIZE = range(1, 7)

CONNECTION_SPECIFIC = {"connection", "keep-alive", "transfer-encoding", "upgrade",
                       "proxy-connection"}


def frame(ftype, flags, sid, payload=b""):
    """One frame: 24-bit length, type, flags, 31-bit stream id, payload."""
    n = len(payload)
    return struct.pack(">BHBBI", n >> 16, n & 0xFFFF, ftype, flags, sid & 0x7FFFFFFF) + payload


def settings_payload(settings):
    return b"".join(struct.pack(">HI", k, v) for k, v in dict(settings or {}).items())


def literal_field(name, value):
    """HPACK literal header field without indexing, new name, no Huffman."""
    return (b"\x00" + bytes(encode_integer(len(name), 7)) + name
            + bytes(encode_integer(len(value), 7)) + value)


class Stream:
    def __init__(self, sid):
        self.sid = sid
        self.headers = None       # the response's header list [(name, value)] (str)
        self.interim = []         # 1xx header lists
        self.trailers = None
        self.data = bytearray()
        self.data_frames = 0
        self.ended = False        # END_STREAM received
        self.reset = None         # RST_STREAM error code received
        self.t_sent = None        # our HEADERS sent
        self.t_headers = None
        self.t_first_data = None
        self.t_last_data = None   # when the last DATA frame with bytes was read
        self.t_end = None
        self.t_reset = None
        self.after_end = []       # frames received after END_STREAM / RST_STREAM

    @property
    def status(self):
        v = self.header(":status")
        return int(v) if v is not None else None

    def header(self, name):
        for k, v in self.headers or ():
            if k == name:
                return v
        return None

    def header_all(self, name):
        return [v for k, v in self.headers or () if k == name]

    @property
    def done(self):
        return self.ended or self.reset is not None

    @property
    def body(self):
        return bytes(self.data)

    def __repr__(self):
        return (f"<Stream {self.sid} status={self.status} data={len(self.data)}B "
                f"({bytes(self.data[:80])!r}) ended={self.ended} reset={self.reset} "
                f"headers={self.headers}>")


class GoAway:
    def __init__(self, code, last_sid, debug, t):
        self.code, self.last_sid, self.debug, self.t = code, last_sid, debug, t

    def __repr__(self):
        return f"<GOAWAY code={self.code} last={self.last_sid} debug={self.debug[:100]!r}>"


class H2Client:
    """A blocking HTTP/2 client on one TCP (or TLS) connection, frame by frame.

    settings: our SETTINGS (S_* -> value). auto_window: answer each DATA
    frame with WINDOW_UPDATEs (stream and connection) for its length.
    PINGs and SETTINGS are acknowledged automatically unless the auto_*
    attributes are turned off."""

    def __init__(self, port, host="127.0.0.1", settings=None, auto_window=True, preface=True,
                 wait_settings=True, timeout=3.0, rcvbuf=None, tls=None,
                 server_hostname="localhost"):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.settimeout(timeout * SLOW)
        s.connect((host, port))
        if tls is not None:
            s = tls.wrap_socket(s, server_hostname=server_hostname)
        else:
            # the kernel stamps each segment as it arrives: frame times are
            # then when the proxy sent them, not when this thread got to
            # them (a stall here made a timeout look 8 ms early)
            s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.stamped = tls is None
        self.t_rx = None            # the kernel's arrival time of the last recv (monotonic)
        self.sock = s
        self.timeout = timeout * SLOW
        self.streams = {}
        self.frames = []            # (type, flags, sid, length, t) of every frame received
        self.goaway = None
        self.goaways = []
        self.eof = False
        self.conn_reset = False
        self.t_eof = None
        self.server_settings = {}
        self.settings_seen = False
        self.settings_acks = 0
        self.ping_acks = 0
        self.next_sid = 1
        self.auto_window = auto_window
        self.auto_settings_ack = True
        self.auto_ping_ack = True
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()
        self.dec.max_header_list_size = 1 << 24
        self.rbuf = bytearray()
        self.partial = None         # [sid, flags, block] while CONTINUATION is due
        self.local_settings = dict(settings or {})
        self.recv_initial = self.local_settings.get(S_INITIAL_WINDOW_SIZE, 65535)
        self.recv_conn_window = 65535
        self.recv_windows = {}
        self.send_initial = 65535
        self.send_conn_window = 65535
        self.send_windows = {}
        self.flow_violations = []
        self.bytes_in = 0
        self.first_bytes = b""
        if preface:
            self.send_preface()
            if wait_settings:
                self.wait(lambda: self.settings_seen, what="the server's SETTINGS")

    # sending ------------------------------------------------------------
    def send(self, data):
        self.sock.settimeout(self.timeout)
        self.sock.sendall(data)
        return time.monotonic()

    def send_frame(self, ftype, flags, sid, payload=b""):
        return self.send(frame(ftype, flags, sid, payload))

    def send_preface(self):
        self.send(PREFACE + frame(SETTINGS, 0, 0, settings_payload(self.local_settings)))

    def stream(self, sid):
        if sid not in self.streams:
            self.streams[sid] = Stream(sid)
            self.send_windows.setdefault(sid, self.send_initial)
            self.recv_windows.setdefault(sid, self.recv_initial)
        return self.streams[sid]

    def new_sid(self):
        sid = self.next_sid
        self.next_sid += 2
        return sid

    def headers_frame(self, sid, hdrs, end_stream=True, end_headers=True):
        block = self.enc.encode(hdrs)
        flags = (F_END_STREAM if end_stream else 0) | (F_END_HEADERS if end_headers else 0)
        return frame(HEADERS, flags, sid, block)

    def send_headers(self, sid, hdrs, end_stream=True, end_headers=True):
        s = self.stream(sid)
        self.next_sid = max(self.next_sid, sid + 2)
        s.t_sent = self.send(self.headers_frame(sid, hdrs, end_stream, end_headers))
        return sid

    @staticmethod
    def req_headers(path="/", method="GET", headers=(), authority="example.test",
                    scheme="http"):
        h = [(":method", method), (":scheme", scheme), (":authority", authority),
             (":path", path)]
        return h + list(headers)

    def request(self, path="/", method="GET", headers=(), body=None, end_stream=None,
                authority="example.test", scheme="http", sid=None):
        """Opens a stream; returns its id. body: sent in DATA frames within
        the flow-control windows. end_stream: default True (after the body)."""
        if sid is None:
            sid = self.new_sid()
        if end_stream is None:
            end_stream = True
        hdrs = self.req_headers(path, method, headers, authority, scheme)
        self.send_headers(sid, hdrs, end_stream=end_stream and not body)
        if body:
            self.send_data(sid, body, end_stream=end_stream)
        return sid

    def send_data(self, sid, data, end_stream=False, timeout=None, must_finish=True):
        """Sends data on sid within the windows (waits for WINDOW_UPDATEs);
        returns the number of bytes sent. must_finish=False: stop quietly at
        the timeout."""
        s = self.stream(sid)
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        view = memoryview(data)
        sent = 0
        max_frame = self.server_settings.get(S_MAX_FRAME_SIZE, 16384)
        while sent < len(data):
            n = min(self.send_conn_window, self.send_windows[sid], max_frame, len(data) - sent)
            if s.done or self.eof:
                break
            if n <= 0:
                if time.monotonic() >= deadline:
                    if must_finish:
                        raise AssertionError(f"stream {sid}: window stayed closed, "
                                             f"{sent} of {len(data)} bytes sent")
                    return sent
                self.pump(0.02)
                continue
            last = end_stream and sent + n == len(data)
            self.send(frame(DATA, F_END_STREAM if last else 0, sid, bytes(view[sent:sent + n])))
            self.send_conn_window -= n
            self.send_windows[sid] -= n
            sent += n
            self.pump(0)
        if not data and end_stream:
            self.send(frame(DATA, F_END_STREAM, sid))
        return sent

    def end_stream(self, sid):
        self.send(frame(DATA, F_END_STREAM, sid))

    def reset(self, sid, code=CANCEL):
        return self.send(frame(RST_STREAM, 0, sid, struct.pack(">I", code)))

    def ping(self, payload=b"12345678"):
        return self.send(frame(PING, 0, 0, payload))

    def window_update(self, sid, inc):
        self.send(frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", inc)))
        if sid == 0:
            self.recv_conn_window += inc
        else:
            self.recv_windows[sid] = self.recv_windows.get(sid, self.recv_initial) + inc

    def open_window(self, sid, inc=1 << 26):
        self.window_update(0, inc)
        self.window_update(sid, inc)

    # receiving ----------------------------------------------------------
    def _recv_some(self, timeout):
        """One recv: bytes; b'' at EOF or reset; None if nothing came in time."""
        if self.eof:
            return b""
        self.sock.settimeout(max(timeout, 0.0005))
        try:
            if self.stamped:
                d, anc, _, _ = self.sock.recvmsg(1 << 18, 64)
                self.t_rx = kernel_arrival(anc)
            else:
                d = self.sock.recv(1 << 18)
        except (socket.timeout, TimeoutError, ssl.SSLWantReadError, BlockingIOError):
            return None
        except ConnectionResetError:
            self.conn_reset = True
            d = b""
        except (ssl.SSLError, OSError):
            d = b""
        if not d:
            self.eof = True
            self.t_eof = time.monotonic()
        return d

    def pump(self, timeout=0.05):
        d = self._recv_some(timeout)
        if d:
            if len(self.first_bytes) < 64:
                self.first_bytes += d[:64]
            self.bytes_in += len(d)
            self._feed(d)
        return d

    def _feed(self, data):
        self.rbuf += data
        while len(self.rbuf) >= 9:
            n = (self.rbuf[0] << 16) | (self.rbuf[1] << 8) | self.rbuf[2]
            if len(self.rbuf) < 9 + n:
                break
            ftype, flags = self.rbuf[3], self.rbuf[4]
            sid = struct.unpack(">I", self.rbuf[5:9])[0] & 0x7FFFFFFF
            payload = bytes(self.rbuf[9:9 + n])
            del self.rbuf[:9 + n]
            self._handle(ftype, flags, sid, payload)

    def _handle(self, ftype, flags, sid, payload):
        now = min(self.t_rx, time.monotonic()) if self.t_rx is not None else time.monotonic()
        self.frames.append((ftype, flags, sid, len(payload), now))
        if ftype == DATA:
            s = self.stream(sid)
            body = payload
            if flags & F_PADDED:
                body = payload[1:len(payload) - payload[0]]
            if s.done:
                s.after_end.append(("DATA", len(payload)))
            s.data += body
            s.data_frames += 1
            if s.t_first_data is None and body:
                s.t_first_data = now
            if body:
                s.t_last_data = now
            self.recv_conn_window -= len(payload)
            self.recv_windows[sid] -= len(payload)
            if self.recv_conn_window < 0 or self.recv_windows[sid] < 0:
                self.flow_violations.append((sid, self.recv_conn_window,
                                             self.recv_windows[sid]))
            if self.auto_window and payload and not self.eof:
                try:
                    self.window_update(0, len(payload))
                    if not flags & F_END_STREAM:
                        self.window_update(sid, len(payload))
                except OSError:
                    pass
            if flags & F_END_STREAM:
                s.ended = True
                s.t_end = now
        elif ftype == HEADERS:
            block = payload
            if flags & F_PADDED:
                block = block[1:len(block) - block[0]]
            if flags & F_PRIORITY:
                block = block[5:]
            self.partial = [sid, flags, bytearray(block)]
            if flags & F_END_HEADERS:
                self._headers_done(now)
        elif ftype == CONTINUATION:
            assert self.partial is not None and self.partial[0] == sid, \
                f"CONTINUATION on stream {sid} without a HEADERS before it"
            self.partial[2] += payload
            if flags & F_END_HEADERS:
                self._headers_done(now)
        elif ftype == RST_STREAM:
            s = self.stream(sid)
            if s.done:
                s.after_end.append(("RST_STREAM", payload))
            if s.reset is None:
                s.reset = struct.unpack(">I", payload)[0]
                s.t_reset = now
        elif ftype == SETTINGS:
            if flags & F_ACK:
                self.settings_acks += 1
                return
            for i in range(0, len(payload) - 5, 6):
                k, v = struct.unpack(">HI", payload[i:i + 6])
                if k == S_INITIAL_WINDOW_SIZE:
                    delta = v - self.send_initial
                    self.send_initial = v
                    for x in self.send_windows:
                        self.send_windows[x] += delta
                self.server_settings[k] = v
            self.settings_seen = True
            if self.auto_settings_ack and not self.eof:
                try:
                    self.send(frame(SETTINGS, F_ACK, 0))
                except OSError:
                    pass
        elif ftype == PING:
            if flags & F_ACK:
                self.ping_acks += 1
            elif self.auto_ping_ack and not self.eof:
                try:
                    self.send(frame(PING, F_ACK, 0, payload))
                except OSError:
                    pass
        elif ftype == GOAWAY:
            last, code = struct.unpack(">II", payload[:8])
            self.goaway = GoAway(code, last & 0x7FFFFFFF, payload[8:], now)
            self.goaways.append(self.goaway)
        elif ftype == WINDOW_UPDATE:
            inc = struct.unpack(">I", payload)[0] & 0x7FFFFFFF
            if sid == 0:
                self.send_conn_window += inc
            else:
                self.stream(sid)
                self.send_windows[sid] += inc
        elif ftype == PUSH_PROMISE:
            raise AssertionError("the proxy sent PUSH_PROMISE")

    def _headers_done(self, now):
        sid, flags, block = self.partial
        self.partial = None
        hdrs = self.dec.decode(bytes(block), raw=False)
        s = self.stream(sid)
        if s.done:
            s.after_end.append(("HEADERS", hdrs))
        status = dict(hdrs).get(":status")
        if s.headers is None and status is not None and status.startswith("1"):
            s.interim.append(hdrs)
        elif s.headers is None:
            s.headers = hdrs
            s.t_headers = now
        else:
            s.trailers = hdrs
        if flags & F_END_STREAM:
            s.ended = True
            s.t_end = now

    # waiting ------------------------------------------------------------
    def summary(self):
        return (f"streams={list(self.streams.values())} goaway={self.goaway} eof={self.eof} "
                f"reset={self.conn_reset} frames={self.frame_names()[-20:]} "
                f"first bytes={self.first_bytes[:64]!r}")

    def frame_names(self):
        return [f"{FRAME_NAMES[t] if t < 10 else t}:{sid}" for t, _, sid, _, _ in self.frames]

    def wait(self, pred, timeout=None, what="a condition"):
        timeout = self.timeout if timeout is None else timeout * SLOW
        deadline = time.monotonic() + timeout
        while True:
            v = pred()
            if v:
                return v
            if self.eof:
                raise AssertionError(f"connection closed while waiting for {what}: "
                                     f"{self.summary()}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}: "
                                     f"{self.summary()}")
            self.pump(min(left, 0.05))

    def response(self, sid, timeout=None):
        """Waits until stream sid ended (END_STREAM) or was reset; returns it."""
        s = self.stream(sid)
        self.wait(lambda: s.done, timeout, what=f"stream {sid} to end")
        return s

    def get(self, path="/", timeout=None, **kw):
        return self.response(self.request(path, **kw), timeout)

    def wait_closed(self, timeout=None):
        """Reads (and handles) frames until EOF; True if it came in time."""
        timeout = self.timeout if timeout is None else timeout * SLOW
        deadline = time.monotonic() + timeout
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.pump(min(left, 0.05))
        return True

    def wait_goaway(self, timeout=None):
        """Waits for a GOAWAY; EOF before it fails."""
        return self.wait(lambda: self.goaway, timeout, what="GOAWAY")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# --------------------------------------------------------------------------
# upstream handlers

def routed(routes, default=None):
    """A keep-alive upstream whose answer is chosen by the request target's
    prefix: routes {prefix: async fn(ctx, req)}; fn returning False stops
    serving the connection."""
    async def handler(reader, writer, ctx):
        while True:
            req = await ctx.read_request()
            if req is None:
                return
            fn = default
            for prefix, f in routes.items():
                if req.target.startswith(prefix):
                    fn = f
                    break
            if fn is None:
                fn = answer_ok
            if await fn(ctx, req) is False:
                return
    return handler


async def answer_ok(ctx, req):
    await ctx.respond(200, b"ok " + req.target.encode())


async def never(ctx, req):
    await ctx.wait_lost(30)
    return False


def after(delay, body=b"done"):
    async def fn(ctx, req):
        await ctx.delay(delay)
        await ctx.respond(200, body)
    return fn


def streaming(size, chunk=256 * 1024):
    """A 200 with Content-Length: size, written chunk by chunk; ctx.sent says
    how much the writes got through so far."""
    async def fn(ctx, req):
        ctx.sent = 0
        ctx.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        piece = b"s" * chunk
        while ctx.sent < size:
            if ctx.lost_at is not None or ctx.eof_at is not None:
                return False
            n = min(chunk, size - ctx.sent)
            await ctx.send(piece[:n])
            ctx.sent += n
    return fn


# --------------------------------------------------------------------------
# helpers

def h2c(p, **kw):
    return H2Client(p.port, **kw)


def assert_504(s, reason):
    assert s.status == 504, s
    # END_STREAM; an RST_STREAM NO_ERROR after it is allowed (RFC 9113 8.1: the
    # server asks the client to stop sending a request body it will not read)
    assert s.ended and s.reset in (None, NO_ERROR), f"a 504 ends its stream cleanly: {s}"
    assert (s.header("content-type") or "").startswith("text/plain"), s.headers
    assert reason.encode() in s.body, s.body
    cl = s.header("content-length")
    assert cl is None or int(cl) == len(s.body), (cl, s.body)


def assert_cut(s, what=""):
    """A stream whose response had begun and was cut: RST_STREAM with
    INTERNAL_ERROR or CANCEL, never END_STREAM."""
    assert s.reset in (INTERNAL_ERROR, CANCEL), f"{what}: expected RST_STREAM: {s}"
    assert not s.ended, f"{what}: a cut body must not end with END_STREAM: {s}"


def assert_clean_response_headers(s):
    for k, v in s.headers:
        assert k == k.lower(), f"upper-case field name {k!r}"
        assert k not in CONNECTION_SPECIFIC, f"connection-specific field {k}: {v}"
        assert not (k == "te" and v != "trailers"), (k, v)
    assert [k for k, _ in s.headers][0] == ":status", s.headers
    assert not s.after_end, f"frames after the end of stream {s.sid}: {s.after_end}"


def log_for(p, target, timeout=2.0):
    """The access log line of target (waits for it)."""
    def find():
        for line in p.log_lines():
            if line.get("target") == target:
                return line
        return None
    try:
        return wait_until(find, timeout * SLOW)
    except AssertionError:
        raise AssertionError(f"no access log line for {target}:\n"
                             + "\n".join(p.raw_log_lines())
                             + f"\n--- stderr:\n{p.stderr_text()[-2000:]}") from None


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def read_http1_answer(sock, timeout=2.0):
    """Reads until EOF (or timeout); returns (bytes, closed)."""
    sock.settimeout(0.1)
    data = b""
    deadline = time.monotonic() + timeout * SLOW
    while time.monotonic() < deadline:
        try:
            d = sock.recv(65536)
        except (socket.timeout, TimeoutError):
            continue
        except ConnectionResetError:
            return data, True
        if not d:
            return data, True
        data += d
    return data, False


def flood(c, batch, seconds, max_bytes=1 << 30, read=True):
    """Writes batch (whole frames) again and again, frame-aligned across
    partial writes, for up to seconds; when read, handles what comes back.
    Returns (bytes sent, True if the connection was seen closed/ended)."""
    view = memoryview(batch)
    pos = sent = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds * SLOW and sent < max_bytes:
        try:
            c.sock.settimeout(0.05)
            n = c.sock.send(view[pos:])
            pos = (pos + n) % len(batch)
            sent += n
        except (socket.timeout, TimeoutError, BlockingIOError):
            if not read:
                time.sleep(0.005)
        except OSError:
            return sent, True
        if read:
            c.pump(0)
            if c.eof or c.goaway is not None:
                return sent, True
    return sent, False


def reap(p, timeout=5.0):
    rc = p.proc.wait(timeout)
    p.stopped = True
    for f in (p._err, p._out):
        f.close()
    err = p.stderr_text()
    assert "AddressSanitizer" not in err and "runtime error:" not in err, err[-4000:]
    return rc


@pytest.fixture
def cfg_proxy(tmp_path):
    """start(doc, port, flags=()) -> a Proxy run from the configuration
    document doc (written as JSON, which YAML reads), waited on at port."""
    procs = []

    def start(doc, port, flags=()):
        cfg = tmp_path / f"h2-{len(procs)}.yaml"
        cfg.write_text(json.dumps(doc, indent=1) + "\n")
        p = Proxy(["--config", str(cfg), "--single-process", *map(str, flags)], tmp_path,
                  "127.0.0.1", port)
        procs.append(p)
        if not p.start():
            p.stopped = True
            p._err.close()
            p._out.close()
            pytest.fail(f"proxy exited at start-up ({p.proc.returncode}):\nconfig:\n"
                        f"{cfg.read_text()}\nstderr:\n{p.stderr_text()}")
        return p
    yield start
    problems = []
    for p in procs:
        problems += p.stop()
    if problems:
        pytest.fail("\n".join(problems))


def doc_for(up, listen, **top):
    d = {"listen": listen,
         "pools": {"web": {"servers": [up.addr]}},
         "routes": [{"path": "/", "pool": "web"}]}
    d.update(top)
    return d


# ==========================================================================
# h2c beside HTTP/1.1, and the mapping of a stream to an HTTP/1.1 exchange

def test_h2c_get_mapped_both_ways(proxy_factory, upstream):
    async def fn(ctx, req):
        await ctx.respond(200, b"hello h2\n", headers=[
            ("Connection", "keep-alive"), ("Keep-Alive", "timeout=5"),
            ("X-Custom", "Value"), ("Content-Type", "text/x-test"),
            ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])
    up = upstream(routed({}, fn))
    p = proxy_factory(upstreams=[up])
    c = h2c(p)
    # the server's first frame is SETTINGS, with the stream limit (default 100)
    assert c.frames[0][0] == SETTINGS, c.frame_names()
    assert c.server_settings.get(S_MAX_CONCURRENT_STREAMS) == 100, c.server_settings
    s = c.get("/p/a?x=1&y=%20", headers=[("x-req", "one"), ("accept", "*/*")],
              authority="h2.example.test:8443")
    assert s.status == 200 and s.ended and s.reset is None, s
    assert s.body == b"hello h2\n"
    assert_clean_response_headers(s)
    assert s.header("content-length") == "9", s.headers
    assert s.header("x-custom") == "Value"
    assert s.header("content-type") == "text/x-test"
    assert s.header_all("set-cookie") == ["a=1", "b=2"], s.headers
    (req,) = up.wait_requests(1)
    assert req.head.startswith(b"GET /p/a?x=1&y=%20 HTTP/1.1\r\n"), req.head
    assert req.header_all("host") == ["h2.example.test:8443"], req.headers
    assert req.header("x-req") == "one" and req.header("accept") == "*/*"
    assert not any(k.startswith(":") for k, _ in req.headers), req.headers
    assert req.header("content-length") is None and req.header("transfer-encoding") is None
    line = log_for(p, "/p/a?x=1&y=%20")
    assert line["proto"] == "HTTP/2", line
    assert line["method"] == "GET" and line["status"] == "200" and line["reason"] == "ok"
    assert line["upstream"] == up.addr
    c.close()


def test_request_id_sent_never_indexed(proxy_factory, upstream):
    # a value new in every response (X-Request-Id) is sent as a never-indexed
    # literal: in the HPACK table it would only evict fields that repeat
    async def fn(ctx, req):
        await ctx.respond(200, b"ok", headers=[("Content-Type", "text/x-test")])
    up = upstream(routed({}, fn))
    p = proxy_factory(upstreams=[up])
    c = h2c(p)
    for path in ("/a", "/b"):
        s = c.get(path)
        assert s.status == 200, s
        fields = {h[0]: h for h in s.headers}
        assert re.fullmatch(r"[0-9a-f]{32}", fields["x-request-id"][1]), s.headers
        assert fields["x-request-id"].indexable is False, s.headers
        assert fields["content-type"].indexable is True, s.headers
    c.close()


def test_http1_still_served_on_the_same_port(proxy_factory, upstream):
    up = upstream(ok_handler(b"one"))
    p = proxy_factory(upstreams=[up])
    c = h2c(p)
    assert c.get("/h2").status == 200
    h1 = p.client()
    h1.send(request_bytes("GET", "/h1"))
    r = h1.read_response()
    assert r is not None and r.status == 200 and r.body == b"one", r
    assert log_for(p, "/h2")["proto"] == "HTTP/2"
    assert log_for(p, "/h1")["proto"] == "HTTP/1.1"
    c.close()


def test_cookie_fields_joined(proxy_factory, upstream):
    up = upstream(ok_handler())
    p = proxy_factory(upstreams=[up])
    c = h2c(p)
    s = c.get("/cookies", headers=[("cookie", "a=1"), ("x-between", "y"), ("cookie", "b=2"),
                                   ("cookie", "c=3")])
    assert s.status == 200, s
    (req,) = up.wait_requests(1)
    assert req.header_all("cookie") == ["a=1; b=2; c=3"], req.headers


@pytest.mark.parametrize("with_length", [True, False], ids=["content-length", "no-length"])
def test_request_body(proxy_factory, upstream, with_length):
    up = upstream(ok_handler(b"got it"))
    p = proxy_factory(upstreams=[up])
    c = h2c(p)
    body = bytes(range(256)) * 1200   # 300 KiB: more than the initial windows
    hdrs = [("content-type", "application/octet-stream")]
    if with_length:
        hdrs.append(("content-length", str(len(body))))
    s = c.response(c.request("/upload", method="POST", headers=hdrs, body=body), timeout=10)
    assert s.status == 200 and s.body == b"got it", s
    (req,) = up.wait_requests(1)
    assert req.method == "POST" and req.body == body
    if with_length:
        assert req.header("content-length") == str(len(body)), req.headers
        assert req.header("transfer-encoding") is None, req.headers
    else:
        assert req.header("content-length") is None, req.headers
        assert (req.header("transfer-encoding") or "").lower() == "chunked", req.headers
    line = log_for(p, "/upload")
    assert line["proto"] == "HTTP/2" and int(line["bytes_in"]) >= len(body) - 64, line


def test_small_bodies_end_without_more_input(proxy_factory, upstream):
    """HEADERS and a DATA frame with END_STREAM in one write, the body small,
    the upstream connection pooled: the DATA waits (paused) for its stream to
    start, and its END_STREAM must then be read without any further input
    from the client (which sends nothing more: it waits for the answer)."""
    up = upstream(ok_handler(b"got it"))
    p = proxy_factory(upstreams=[up])
    c = h2c(p)
    for i in range(12):
        t0 = time.monotonic()
        s = c.response(c.request(f"/small-{i}", method="POST", body=b"x" * (i + 1)), timeout=3)
        assert s.status == 200 and s.body == b"got it", (i, s)
        assert time.monotonic() - t0 < 1.0, f"request {i} waited for more input"
    reqs = up.wait_requests(12)
    assert [r.body for r in reqs] == [b"x" * (i + 1) for i in range(12)]


def test_chunked_response_dechunked(proxy_factory, upstream):
    async def fn(ctx, req):
        await ctx.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n"
                       b"5\r\nhello\r\n")
        await ctx.delay(0.05)
        await ctx.send(b"7\r\n, world\r\n1;ext=1\r\n!\r\n0\r\n\r\n")
    up = upstream(routed({}, fn))
    p = proxy_factory(upstreams=[up])
    c = h2c(p)
    s = c.get("/chunked")
    assert s.status == 200 and s.ended and s.reset is None, s
    assert s.body == b"hello, world!", s.body
    assert_clean_response_headers(s)
    assert s.header("transfer-encoding") is None
    assert s.header("content-length") is None, "no length was known"
    assert s.header("x-a") == "b"


def test_large_response_through_windows(proxy_factory, upstream):
    size = 8 << 20
    up = upstream(routed({}, streaming(size)))
    p = proxy_factory(upstreams=[up])
    c = h2c(p, timeout=20)
    s = c.get("/large")
    assert s.status == 200 and s.ended, s
    assert len(s.body) == size and s.header("content-length") == str(size)
    assert not c.flow_violations, f"the proxy overran our windows: {c.flow_violations[:5]}"
    max_frame = c.server_settings.get(S_MAX_FRAME_SIZE, 16384)
    assert all(n <= 16384 for t, _, _, n, _ in c.frames if t == DATA), \
        f"a DATA frame above our SETTINGS_MAX_FRAME_SIZE (server's is {max_frame})"


def test_head_and_204_have_no_data(proxy_factory, upstream):
    async def fn(ctx, req):
        if req.method == "HEAD":
            await ctx.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
        else:
            await ctx.send(b"HTTP/1.1 204 No Content\r\n\r\n")
    up = upstream(routed({}, fn))
    p = proxy_factory(upstreams=[up])
    c = h2c(p)
    h = c.get("/head", method="HEAD")
    assert h.status == 200 and h.ended and h.body == b"", h
    assert h.header("content-length") == "1234", h.headers
    n = c.get("/nocontent")
    assert n.status == 204 and n.ended and n.body == b"", n


def test_parallel_streams_on_one_connection(proxy_factory, upstream):
    async def fn(ctx, req):
        await ctx.delay(0.2)
        await ctx.respond(200, b"r:" + req.target.encode())
    up = upstream(routed({}, fn))
    p = proxy_factory(upstreams=[up])
    c = h2c(p)
    t0 = time.monotonic()
    sids = [c.request(f"/par/{i}") for i in range(20)]
    for i, sid in enumerate(sids):
        s = c.response(sid, timeout=5)
        assert s.status == 200 and s.body == f"r:/par/{i}".encode(), s
    # concurrently, not one after another (20 x 200 ms)
    assert time.monotonic() - t0 < 2.0
    assert len(up.wait_requests(20)) == 20
    lines = p.wait_log(20)
    assert {l["proto"] for l in lines} == {"HTTP/2"}
    assert sorted(l["target"] for l in lines) == sorted(f"/par/{i}" for i in range(20))


def test_h2_library_client(proxy_factory, upstream):
    """python3-h2's strict state machine (inbound header and frame
    validation, flow control) talks to the proxy."""
    import h2.config
    import h2.connection
    import h2.events
    up = upstream(routed({"/chunk": lambda ctx, req: ctx.send(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")}))
    p = proxy_factory(upstreams=[up])
    sock = socket.create_connection(("127.0.0.1", p.port), timeout=3)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                                header_encoding="utf-8"))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    paths = ["/lib/1", "/lib/2", "/chunk"]
    for path in paths:
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", "GET"), (":scheme", "http"),
                                (":authority", "lib.test"), (":path", path)], end_stream=True)
    sock.sendall(conn.data_to_send())
    got = {}
    ended = set()
    deadline = time.monotonic() + 5
    while len(ended) < len(paths) and time.monotonic() < deadline:
        data = sock.recv(65536)
        assert data, "connection closed"
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                got.setdefault(ev.stream_id, [dict(ev.headers), b""])
            elif isinstance(ev, h2.events.DataReceived):
                got[ev.stream_id][1] += ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                ended.add(ev.stream_id)
            elif isinstance(ev, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                raise AssertionError(f"unexpected {ev}")
        sock.sendall(conn.data_to_send())
    assert ended == {1, 3, 5}, got
    assert got[1][0][":status"] == "200" and got[1][1] == b"ok /lib/1"
    assert got[3][1] == b"ok /lib/2"
    assert got[5][1] == b"abc"
    conn.close_connection()
    sock.sendall(conn.data_to_send())
    sock.close()


# ==========================================================================
# where HTTP/2 is offered

def _preface_refused(port):
    """Sends the h2c preface and a SETTINGS frame; returns what came back."""
    s = socket.create_connection(("127.0.0.1", port), timeout=3)
    s.sendall(PREFACE + frame(SETTINGS, 0, 0))
    data, closed = read_http1_answer(s, 2.0)
    s.close()
    return data, closed


def assert_h1_refusal(data, closed):
    assert re.match(rb"HTTP/1\.[01] [45]\d\d ", data), f"not an HTTP/1 error: {data[:200]!r}"
    assert closed, "the connection stayed open after refusing the h2c preface"


def test_no_http2_flag_refuses_preface(proxy_factory, upstream):
    up = upstream(ok_handler())
    p = proxy_factory("--no-http2", upstreams=[up])
    assert_h1_refusal(*_preface_refused(p.port))
    assert up.conns == []
    c = p.client()
    c.send(request_bytes("GET", "/still-http1"))
    assert c.read_response().status == 200


def test_http2_false_listener_key(cfg_proxy, upstream):
    up = upstream(ok_handler())
    off, on = free_port(), free_port()
    p = cfg_proxy(doc_for(up, [{"address": f"127.0.0.1:{off}", "http2": False},
                               f"127.0.0.1:{on}"]), on)
    wait_port("127.0.0.1", off)
    assert_h1_refusal(*_preface_refused(off))
    c = H2Client(on)
    assert c.get("/on").status == 200
    c.close()


def test_forward_listener_does_not_offer_http2(proxy_factory, upstream):
    up = upstream(ok_handler())
    fport = free_port()
    p = proxy_factory("--forward-listen", f"127.0.0.1:{fport}", "--resolver",
                      f"127.0.0.1:{free_port()}", upstreams=[up])
    wait_port("127.0.0.1", fport)
    data, closed = _preface_refused(fport)
    assert_h1_refusal(data, closed)
    # while the reverse listener of the same proxy speaks it
    c = h2c(p)
    assert c.get("/rev").status == 200


# ==========================================================================
# deadlines per stream

def assert_log(p, target, reason, status=None):
    line = log_for(p, target)
    assert line["proto"] == "HTTP/2", line
    assert line["reason"] == reason, line
    if status is not None:
        assert line["status"] == str(status), line
    return line


def test_read_timeout_504_and_connection_carries_on(proxy_factory, upstream):
    up = upstream(routed({"/silent": never}))
    p = proxy_factory("--read-timeout", "300ms", "--total-timeout", "5s", upstreams=[up])
    c = h2c(p)
    sid = c.request("/silent")
    s = c.response(sid)
    assert_504(s, "read_timeout")
    assert_window(s.t_headers - s.t_sent, 0.300)
    # the upstream connection is closed, not pooled
    silent = [u for u in up.wait_conns(1) if any(r.target == "/silent" for r in u.requests)]
    t_closed = silent[0].wait_proxy_closed(1.0)
    assert t_closed - s.t_headers < 0.1 * SLOW + 0.05
    line = assert_log(p, "/silent", "read_timeout", 504)
    assert line["first_byte_ms"] == "-"
    assert 295 <= log_int(line, "total_ms") <= 550
    # the connection is still usable
    s2 = c.get("/after")
    assert s2.status == 200 and s2.body == b"ok /after", s2
    assert c.goaway is None


def test_connect_timeout_504(proxy_factory, blackhole):
    p = proxy_factory("--connect-timeout", "300ms", "--total-timeout", "5s",
                      upstreams=[blackhole.addr])
    c = h2c(p)
    s = c.get("/ct")
    assert_504(s, "connect_timeout")
    assert_window(s.t_headers - s.t_sent, 0.300)
    assert_log(p, "/ct", "connect_timeout", 504)


def test_total_timeout_504(proxy_factory, upstream):
    up = upstream(silent_handler())
    p = proxy_factory("--read-timeout", "5s", "--total-timeout", "400ms", upstreams=[up])
    c = h2c(p)
    s = c.get("/total")
    assert_504(s, "total_timeout")
    assert_window(s.t_headers - s.t_sent, 0.400)
    assert_log(p, "/total", "total_timeout", 504)


def test_total_starts_when_header_block_is_complete(proxy_factory, upstream):
    """HEADERS without END_HEADERS, CONTINUATION 300 ms later: the total
    deadline counts from the CONTINUATION (the block's end)."""
    up = upstream(silent_handler())
    p = proxy_factory("--read-timeout", "5s", "--total-timeout", "400ms", upstreams=[up])
    c = h2c(p)
    block = c.enc.encode(c.req_headers("/late-block"))
    c.send_frame(HEADERS, F_END_STREAM, 1, block[:3])
    time.sleep(0.3)
    t_end = c.send_frame(CONTINUATION, F_END_HEADERS, 1, block[3:])
    s = c.response(1)
    assert_504(s, "total_timeout")
    assert_window(s.t_headers - t_end, 0.400)


def test_read_timeout_after_partial_response_resets_stream(proxy_factory, upstream):
    async def partial(ctx, req):
        await ctx.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"a" * 100)
        await ctx.wait_lost(10)
        return False
    up = upstream(routed({"/partial": partial}))
    p = proxy_factory("--read-timeout", "300ms", "--total-timeout", "5s", upstreams=[up])
    c = h2c(p)
    s = c.get("/partial")
    assert s.status == 200 and s.body == b"a" * 100, s
    assert_cut(s, "read timeout after 100 of 1000 bytes")
    assert_window(s.t_reset - s.t_sent, 0.300)
    assert_log(p, "/partial", "read_timeout")
    assert c.get("/next").status == 200, "the connection must carry on"


def test_read_timeout_chunked_cut_resets_stream(proxy_factory, upstream):
    async def fn(ctx, req):
        await ctx.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await ctx.wait_lost(10)
        return False
    up = upstream(routed({}, fn))
    p = proxy_factory("--read-timeout", "300ms", "--total-timeout", "5s", upstreams=[up])
    c = h2c(p)
    s = c.get("/chunk-cut")
    assert s.status == 200 and s.body == b"hello", s
    assert_cut(s, "chunked body cut by the read timeout")
    assert_window(s.t_reset - s.t_sent, 0.300)
    assert_log(p, "/chunk-cut", "read_timeout")


def test_total_timeout_cuts_dripping_upstream(proxy_factory, upstream):
    async def fn(ctx, req):
        await ctx.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        await ctx.drip(b"d" * 100, 0.1)
        return False
    up = upstream(routed({}, fn))
    p = proxy_factory("--read-timeout", "300ms", "--total-timeout", "1s", upstreams=[up])
    c = h2c(p, timeout=4)
    s = c.get("/drip")
    assert s.status == 200 and 3 <= len(s.body) < 100, s
    assert_cut(s, "drip cut by total")
    assert_window(s.t_reset - s.t_sent, 1.0)
    line = assert_log(p, "/drip", "total_timeout")
    assert 995 <= log_int(line, "total_ms") <= 1250


def test_upstream_closed_mid_body_resets_stream(proxy_factory, upstream):
    async def fn(ctx, req):
        await ctx.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"z" * 10)
        await ctx.delay(0.05)
        ctx.close()
        return False
    up = upstream(routed({}, fn))
    p = proxy_factory(upstreams=[up])
    c = h2c(p)
    s = c.get("/eof-mid")
    assert s.body == b"z" * 10, s
    assert_cut(s, "upstream closed mid body")
    assert_log(p, "/eof-mid", "upstream_closed")


def test_write_timeout_upstream_never_reads_body(proxy_factory, upstream):
    async def handler(reader, writer, ctx):
        await ctx.read_head()
        await ctx.wait_signal(10)
        await ctx.read_until_eof()
    up = upstream(handler, rcvbuf=16384)
    p = proxy_factory("--write-timeout", "300ms", "--read-timeout", "5s",
                      "--total-timeout", "10s", "--body-timeout", "5s", upstreams=[up])
    c = h2c(p, timeout=5)
    size = 16 << 20
    sid = c.request("/upload", method="POST", headers=[("content-length", str(size))],
                    end_stream=False)
    sent = c.send_data(sid, b"u" * size, end_stream=True, timeout=4, must_finish=False)
    s = c.response(sid, timeout=3)
    assert_504(s, "write_timeout")
    assert sent < size, "the whole body went through an upstream that does not read"
    assert 0.3 <= s.t_headers - s.t_sent < 2.5
    assert_log(p, "/upload", "write_timeout", 504)
    (conn,) = up.wait_conns(1)
    conn.signal()
    conn.wait_proxy_closed(2.0)


def test_body_timeout(proxy_factory, upstream):
    async def handler(reader, writer, ctx):
        req = await ctx.read_head()
        await ctx.read_body(req)
    up = upstream(handler)
    p = proxy_factory("--body-timeout", "300ms", "--read-timeout", "5s",
                      "--total-timeout", "10s", upstreams=[up])
    c = h2c(p)
    sid = c.request("/body", method="POST", headers=[("content-length", "1000")],
                    end_stream=False)
    t_last = time.monotonic()   # (before: a stall after the send would look early)
    c.send_data(sid, b"0123456789")
    s = c.response(sid)
    # before any response byte: a 408 naming the timeout (or a reset of the stream)
    if s.headers is not None:
        assert s.status == 408 and s.ended, s
        assert s.reset in (None, NO_ERROR), s
        assert b"body_timeout" in s.body, s.body
        t = s.t_headers
    else:
        assert s.reset is not None, s
        t = s.t_reset
    assert_window(t - t_last, 0.300)
    (conn,) = up.wait_conns(1)
    conn.wait_proxy_closed(1.0)
    assert conn.received.endswith(b"0123456789"), "the 10 body bytes were not streamed"
    assert_log(p, "/body", "body_timeout")


def test_header_timeout_incomplete_header_block(proxy_factory, upstream):
    """A HEADERS without END_HEADERS and no CONTINUATION: the block must be
    complete within the header timeout; the connection cannot go on without
    it, so it is closed (GOAWAY, then EOF)."""
    up = upstream(silent_handler())
    p = proxy_factory("--header-timeout", "300ms", "--idle-timeout", "10s", upstreams=[up])
    c = h2c(p)
    block = c.enc.encode(c.req_headers("/half-block"))
    t0 = c.send_frame(HEADERS, F_END_STREAM, 1, block[:4])
    assert c.wait_closed(2.0), "the connection stayed open"
    assert_window(c.t_eof - t0, 0.300)
    assert up.conns == []


def test_two_streams_one_times_out_other_completes(proxy_factory, upstream):
    up = upstream(routed({"/slow": never, "/fast": after(0.1, b"fast")}))
    p = proxy_factory("--read-timeout", "300ms", "--total-timeout", "5s", upstreams=[up])
    c = h2c(p)
    slow = c.request("/slow")
    fast = c.request("/fast")
    f = c.response(fast)
    assert f.status == 200 and f.body == b"fast" and f.ended, f
    s = c.response(slow)
    assert_504(s, "read_timeout")
    assert_window(s.t_headers - s.t_sent, 0.300)
    assert f.t_end < s.t_headers
    assert_log(p, "/slow", "read_timeout", 504)
    assert_log(p, "/fast", "ok", 200)
    # the one cut mid-body and one that finishes after it
    assert c.get("/fast").body == b"fast"


def test_stream_cut_mid_body_while_another_streams_on(proxy_factory, upstream):
    async def partial(ctx, req):
        await ctx.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"a" * 10)
        await ctx.wait_lost(10)
        return False

    async def steady(ctx, req):
        await ctx.send(b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n")
        await ctx.drip(b"b" * 20, 0.05, step=2)   # 0.5 s, each gap under the read timeout
    up = upstream(routed({"/cut": partial, "/steady": steady}))
    p = proxy_factory("--read-timeout", "300ms", "--total-timeout", "5s", upstreams=[up])
    c = h2c(p)
    cut = c.request("/cut")
    steady_sid = c.request("/steady")
    a = c.response(cut)
    b = c.response(steady_sid)
    assert_cut(a, "read timeout mid body")
    assert b.status == 200 and b.ended and b.body == b"b" * 20, b
    assert b.t_end > a.t_reset


# ==========================================================================
# cancellation

def test_client_rst_cancels_upstream_at_once(proxy_factory, upstream):
    up = upstream(routed({"/abort": after(3, b"too late")}))
    p = proxy_factory("--read-timeout", "10s", "--total-timeout", "20s", upstreams=[up])
    c = h2c(p)
    sid = c.request("/abort")
    up.wait_requests(1)
    t_rst = c.reset(sid, CANCEL)
    (conn,) = up.conns
    t_closed = conn.wait_proxy_closed(1.0)
    assert t_closed - t_rst < 0.1, \
        f"upstream closed {1000 * (t_closed - t_rst):.0f} ms after the RST_STREAM"
    line = assert_log(p, "/abort", "client_abort")
    assert line["status"] == "499", line
    # the connection carries on; the cancelled upstream connection is not reused
    s = c.get("/again")
    assert s.status == 200, s
    assert len(up.conns) == 2
    assert c.goaway is None


def test_client_rst_mid_response(proxy_factory, upstream):
    up = upstream(routed({}, streaming(64 << 20)))
    p = proxy_factory("--send-timeout", "10s", "--read-timeout", "10s",
                      "--total-timeout", "20s", upstreams=[up])
    c = h2c(p, timeout=5)
    sid = c.request("/leave-early")
    s = c.stream(sid)
    c.wait(lambda: len(s.data) > 0, what="first DATA")
    t_rst = c.reset(sid, CANCEL)
    (conn,) = up.wait_conns(1)
    t_closed = conn.wait_proxy_closed(1.0)
    assert t_closed - t_rst < 0.1, \
        f"upstream closed {1000 * (t_closed - t_rst):.0f} ms after the RST_STREAM"
    line = assert_log(p, "/leave-early", "client_abort")
    assert int(line["bytes"]) < 64 << 20


def test_client_rst_during_request_body(proxy_factory, upstream):
    async def handler(reader, writer, ctx):
        req = await ctx.read_head()
        await ctx.read_body(req)
    up = upstream(handler)
    p = proxy_factory("--body-timeout", "5s", upstreams=[up])
    c = h2c(p)
    sid = c.request("/abort-body", method="POST", headers=[("content-length", "100000")],
                    end_stream=False)
    c.send_data(sid, b"q" * 1000)
    (conn,) = up.wait_conns(1)
    wait_until(lambda: conn.requests and len(conn.received) >= 1000, 2.0,
               msg="first body bytes at the upstream")
    t_rst = c.reset(sid)
    t_closed = conn.wait_proxy_closed(1.0)
    assert t_closed - t_rst < 0.1
    assert_log(p, "/abort-body", "client_abort")


def test_connection_close_cancels_all_streams(proxy_factory, upstream):
    up = upstream(routed({"/held": after(5, b"late")}))
    p = proxy_factory("--read-timeout", "10s", "--total-timeout", "20s", upstreams=[up])
    c = h2c(p)
    for i in range(3):
        c.request(f"/held/{i}")
    up.wait_requests(3)
    t_close = time.monotonic()
    c.close()
    for conn in up.conns:
        t_closed = conn.wait_proxy_closed(1.0)
        assert t_closed - t_close < 0.2
    lines = p.wait_log(3)
    assert sorted(l["target"] for l in lines) == [f"/held/{i}" for i in range(3)]
    assert {l["reason"] for l in lines} == {"client_abort"}, lines
    assert {l["proto"] for l in lines} == {"HTTP/2"}


def test_one_log_line_per_stream(proxy_factory, upstream):
    up = upstream(routed({"/s": never}))
    p = proxy_factory("--read-timeout", "200ms", upstreams=[up])
    c = h2c(p)
    sids = [c.request(f"/n/{i}") for i in range(4)] + [c.request("/s")]
    for sid in sids:
        c.response(sid)
    time.sleep(0.2)
    lines = p.wait_log(5)
    assert len(lines) == 5, lines
    by = {l["target"]: l for l in lines}
    assert set(by) == {"/n/0", "/n/1", "/n/2", "/n/3", "/s"}
    assert all(l["proto"] == "HTTP/2" for l in lines)
    assert by["/s"]["status"] == "504" and by["/n/0"]["status"] == "200"


# ==========================================================================
# flow control and back-pressure

def test_send_timeout_on_closed_stream_window(proxy_factory, upstream):
    """Our SETTINGS_INITIAL_WINDOW_SIZE is 1024 and we never send a
    WINDOW_UPDATE: the response waits, the proxy stops reading the upstream
    (its writes back up), the send timeout resets the stream; another stream
    on the same connection carries on."""
    size = 64 << 20
    up = upstream(routed({"/big": streaming(size), "/small": answer_ok}))
    p = proxy_factory("--send-timeout", "1s", "--read-timeout", "10s",
                      "--total-timeout", "20s", upstreams=[up])
    c = h2c(p, settings={S_INITIAL_WINDOW_SIZE: 1024}, auto_window=False, timeout=5)
    sid = c.request("/big")
    s = c.stream(sid)
    c.wait(lambda: len(s.data) >= 1024, what="the first 1024 bytes")
    t_full = s.t_first_data
    # the upstream's writes back up while the stream waits
    big = up.wait_conns(1)[0]
    c.wait(lambda: time.monotonic() - t_full > 0.5, timeout=2, what="0.5 s")
    sent1 = big.sent
    small = c.get("/small")
    assert small.status == 200 and small.body == b"ok /small", small
    c.wait(lambda: time.monotonic() - t_full > 0.8, timeout=2, what="0.8 s")
    sent2 = big.sent
    assert sent2 - sent1 <= 256 * 1024, f"upstream kept being read: {sent1} -> {sent2}"
    assert sent2 < 16 << 20, f"{sent2} bytes read from the upstream for a 1 KiB window"
    c.response(sid, timeout=3)
    assert_cut(s, "send timeout")
    assert len(s.data) == 1024, "the proxy overran the stream window"
    assert not c.flow_violations, c.flow_violations
    assert_window(s.t_reset - t_full, 1.0, hi_slack=0.35, what="send timeout")
    line = assert_log(p, "/big", "send_timeout")
    assert int(line["bytes"]) < size
    big.wait_proxy_closed(1.0)


def test_send_timeout_on_closed_connection_window(proxy_factory, upstream):
    """A large stream window but the connection window (65535) never
    replenished."""
    up = upstream(routed({}, streaming(16 << 20)))
    p = proxy_factory("--send-timeout", "500ms", "--read-timeout", "10s",
                      "--total-timeout", "20s", upstreams=[up])
    c = h2c(p, settings={S_INITIAL_WINDOW_SIZE: 1 << 24}, auto_window=False, timeout=5)
    sid = c.request("/conn-window")
    s = c.stream(sid)
    c.wait(lambda: len(s.data) >= 65535, what="the connection window's worth")
    # when the frame that filled the window was read, not when this thread
    # saw it (a GIL stall in between made the timeout look 1 ms early)
    t_full = s.t_last_data
    c.response(sid, timeout=3)
    assert_cut(s, "send timeout on the connection window")
    assert len(s.data) == 65535, len(s.data)
    assert not c.flow_violations, c.flow_violations
    assert_window(s.t_reset - t_full, 0.5, hi_slack=0.35, what="send timeout")
    assert_log(p, "/conn-window", "send_timeout")


def test_read_timeout_paused_while_window_closed(proxy_factory, upstream):
    size = 2 << 20
    up = upstream(routed({}, streaming(size)))
    p = proxy_factory("--read-timeout", "300ms", "--send-timeout", "3s",
                      "--total-timeout", "20s", upstreams=[up])
    c = h2c(p, settings={S_INITIAL_WINDOW_SIZE: 1024}, auto_window=False, timeout=10)
    sid = c.request("/stall")
    s = c.stream(sid)
    c.wait(lambda: len(s.data) >= 1024, what="the first 1024 bytes")
    # a stall longer than the read timeout, shorter than the send timeout
    c.wait(lambda: time.monotonic() - s.t_first_data > 0.8, timeout=2, what="0.8 s")
    assert s.reset is None, s
    c.auto_window = True
    c.open_window(sid, size)
    c.response(sid, timeout=10)
    assert s.ended and s.reset is None and len(s.data) == size, s
    assert_log(p, "/stall", "ok")


def test_request_body_acknowledged_only_as_upstream_takes_it(proxy_factory, upstream):
    async def handler(reader, writer, ctx):
        await ctx.read_head()
        await ctx.wait_signal(15)          # does not read the body until signalled
        req = ctx.requests[0]
        await ctx.read_body(req)
        await ctx.respond(200, b"took all")
    up = upstream(handler, rcvbuf=16384)
    p = proxy_factory("--write-timeout", "20s", "--body-timeout", "20s",
                      "--read-timeout", "20s", "--total-timeout", "30s", upstreams=[up])
    c = h2c(p, timeout=10)
    size = 32 << 20
    body = b"w" * size
    sid = c.request("/held-body", method="POST", headers=[("content-length", str(size))],
                    end_stream=False)
    sent1 = c.send_data(sid, body, timeout=1.5, must_finish=False)
    sent2 = sent1 + c.send_data(sid, body[sent1:], timeout=0.5, must_finish=False)
    (conn,) = up.wait_conns(1)
    # the window stays exhausted: what we sent is the initial window plus what
    # the sockets on the upstream side hold (kernel buffers), not the body
    assert sent2 == sent1, f"the window kept opening: {sent1} -> {sent2}"
    assert sent2 < 8 << 20, f"{sent2} bytes acknowledged to a client of an upstream that " \
                            "does not read"
    in_proxy = sent2 - len(conn.received)
    assert in_proxy < (4 << 20) + 65535 + (1 << 20), in_proxy
    conn.signal()
    c.send_data(sid, body[sent2:], end_stream=True, timeout=20)
    s = c.response(sid, timeout=10)
    assert s.status == 200 and s.body == b"took all", s
    assert len(conn.requests[0].body) == size


# ==========================================================================
# limits and hostile input

def _ready_client(p, **kw):
    """A client whose SETTINGS ACK the server has, and which has the server's."""
    c = h2c(p, **kw)
    c.ping()
    c.wait(lambda: c.ping_acks >= 1, what="PING ACK")
    return c


@pytest.mark.parametrize("limit", [None, 5], ids=["default", "flag"])
def test_max_concurrent_streams(proxy_factory, upstream, limit):
    up = upstream(routed({"/hold": after(2, b"held")}))
    flags = [] if limit is None else ["--max-concurrent-streams", str(limit)]
    want = 100 if limit is None else limit
    p = proxy_factory(*flags, "--read-timeout", "5s", upstreams=[up])
    c = _ready_client(p)
    assert c.server_settings.get(S_MAX_CONCURRENT_STREAMS) == want, c.server_settings
    n = want + 3
    buf = b"".join(c.headers_frame(1 + 2 * i, c.req_headers(f"/hold/{i}"))
                   for i in range(n))
    c.next_sid = 1 + 2 * n
    for i in range(n):
        c.stream(1 + 2 * i).t_sent = time.monotonic()
    c.send(buf)
    # the ones above the limit are refused, or the connection is ended
    c.wait(lambda: c.goaway is not None or
           sum(1 for s in c.streams.values() if s.reset == REFUSED_STREAM) >= n - want,
           timeout=3, what="refusals")
    if c.goaway is not None:
        assert c.goaway.code == PROTOCOL_ERROR, c.goaway
    else:
        refused = [s.sid for s in c.streams.values() if s.reset == REFUSED_STREAM]
        assert sorted(refused) == [1 + 2 * i for i in range(want, n)], refused
    time.sleep(0.3)
    assert len(up.requests()) <= want, f"{len(up.requests())} reached the upstream"
    if c.goaway is None:
        # the admitted ones complete
        for i in range(want):
            assert c.response(1 + 2 * i, timeout=5).status == 200


def test_max_concurrent_streams_config_key(cfg_proxy, upstream):
    up = upstream(ok_handler())
    port = free_port()
    p = cfg_proxy(doc_for(up, [f"127.0.0.1:{port}"], limits={"max_concurrent_streams": 7}),
                  port)
    c = H2Client(port)
    assert c.server_settings.get(S_MAX_CONCURRENT_STREAMS) == 7, c.server_settings


def test_header_list_too_large(proxy_factory, upstream):
    up = upstream(ok_handler())
    p = proxy_factory("--max-header-size", "4k", upstreams=[up])
    c = h2c(p)
    s = c.get("/big-header", headers=[("x-big", "v" * 8000)])
    assert s.status == 431 or s.reset is not None, s
    assert up.conns == [] or not any(r.target == "/big-header" for r in up.requests())
    # the connection stays usable
    ok = c.get("/small-header", headers=[("x-small", "v" * 100)])
    assert ok.status == 200, ok
    assert c.goaway is None


def test_too_many_header_fields(proxy_factory, upstream):
    up = upstream(ok_handler())
    p = proxy_factory("--max-headers", "10", upstreams=[up])
    c = h2c(p)
    s = c.get("/many", headers=[(f"x-f{i}", "v") for i in range(30)])
    assert s.status == 431 or s.reset is not None, s
    assert not any(r.target == "/many" for r in up.requests())
    assert c.get("/few", headers=[("x-f", "v")]).status == 200
    assert c.goaway is None


def test_huge_header_list_bounded(proxy_factory, upstream):
    """256 KiB of fields in HEADERS + CONTINUATION frames: a stream error or
    a GOAWAY, the proxy survives."""
    up = upstream(ok_handler())
    p = proxy_factory(upstreams=[up])
    c = h2c(p)
    hdrs = c.req_headers("/huge") + [(f"x-h{i}", "v" * 4000) for i in range(64)]
    block = c.enc.encode(hdrs)
    frames = [frame(HEADERS, F_END_STREAM, 1, block[:16384])]
    for i in range(16384, len(block), 16384):
        last = i + 16384 >= len(block)
        frames.append(frame(CONTINUATION, F_END_HEADERS if last else 0, 1, block[i:i + 16384]))
    try:
        c.send(b"".join(frames))
    except OSError:
        pass
    s = c.stream(1)
    try:
        c.wait(lambda: s.done or c.goaway, timeout=3, what="an answer")
    except AssertionError:
        assert c.eof, c.summary()
    assert s.status in (None, 431), s
    assert not any(r.target == "/huge" for r in up.requests())
    assert p.alive()
    c2 = h2c(p)
    assert c2.get("/after-huge").status == 200


@pytest.mark.parametrize("kind", ["big", "empty"])
def test_continuation_flood(proxy_factory, upstream, kind):
    up = upstream(ok_handler())
    p = proxy_factory("--header-timeout", "2s", upstreams=[up])
    c = h2c(p)
    rss0 = rss_kb(p.pid)
    block = c.enc.encode(c.req_headers("/flood"))
    c.send_frame(HEADERS, F_END_STREAM, 1, block)
    if kind == "big":
        payload = b"".join(literal_field(b"x-flood-%d" % i, b"f" * 4000) for i in range(4))
    else:
        payload = b""
    one = frame(CONTINUATION, 0, 1, payload)
    t0 = time.monotonic()
    sent, _ = flood(c, one * max(1, 65536 // len(one)), 4, max_bytes=256 << 20)
    closed = c.wait_closed(2.0)
    assert closed, f"still open after {sent} bytes of CONTINUATION in " \
                   f"{time.monotonic() - t0:.1f}s: {c.summary()}"
    assert time.monotonic() - t0 < 6.5 * SLOW
    if c.goaway is not None:
        assert c.goaway.code != NO_ERROR, c.goaway
    assert p.alive()
    growth = rss_kb(p.pid) - rss0
    assert growth < 16 * 1024, f"RSS grew by {growth} kB during the flood"
    assert up.requests() == []


def test_rapid_reset(proxy_factory, upstream):
    up = upstream(routed({}, after(0.2, b"x")))
    p = proxy_factory(upstreams=[up])
    c = _ready_client(p)
    n = 10000
    hb = c.req_headers("/rr")   # indexed by the first block: the others are a few bytes
    streams_sent = 0
    t0 = time.monotonic()
    while streams_sent < n and c.goaway is None and not c.eof:
        buf = bytearray()
        for i in range(100):
            sid = 1 + 2 * (streams_sent + i)
            buf += frame(HEADERS, F_END_STREAM | F_END_HEADERS, sid, c.enc.encode(hb))
            buf += frame(RST_STREAM, 0, sid, struct.pack(">I", CANCEL))
        try:
            c.send(bytes(buf))
        except OSError:
            break
        streams_sent += 100
        c.pump(0)
    if c.goaway is None:
        try:
            c.wait_goaway(2)
        except AssertionError:
            pass
    assert c.goaway is not None, f"no GOAWAY after {streams_sent} rapid resets: {c.summary()}"
    assert c.goaway.code == ENHANCE_YOUR_CALM, c.goaway
    time.sleep(0.5)
    reqs = len(up.requests())
    assert reqs < n // 5, f"{reqs} requests reached the upstream for {streams_sent} streams " \
                          f"opened and reset"
    assert p.alive()
    c2 = h2c(p)
    assert c2.get("/after-rr").status == 200


@pytest.mark.parametrize("kind", ["settings", "ping"])
def test_ack_flood_client_not_reading(proxy_factory, upstream, kind):
    up = upstream(ok_handler())
    p = proxy_factory("--send-timeout", "2s", upstreams=[up])
    c = h2c(p, rcvbuf=4096)
    rss0 = rss_kb(p.pid)
    one = frame(SETTINGS, 0, 0) if kind == "settings" else frame(PING, 0, 0, b"floodfld")
    sent, closed = flood(c, one * 1000, 5, read=False)
    if not closed:
        closed = c.wait_closed(2.0)
    assert closed, f"still open after {sent // len(one)} {kind} frames: {c.summary()}"
    assert p.alive()
    growth = rss_kb(p.pid) - rss0
    assert growth < 16 * 1024, f"RSS grew by {growth} kB during the flood"


def test_empty_data_frame_flood(proxy_factory, upstream):
    async def handler(reader, writer, ctx):
        req = await ctx.read_head()
        await ctx.read_body(req)
    up = upstream(handler)
    p = proxy_factory("--body-timeout", "10s", upstreams=[up])
    c = h2c(p)
    sid = c.request("/empty", method="POST", end_stream=False)
    one = frame(DATA, 0, sid)
    sent, _ = flood(c, one * 10000, 5, max_bytes=9 * 1_000_000)
    closed = c.wait_closed(2.0)
    assert closed, f"still open after {sent // 9} empty DATA frames: {c.summary()}"
    assert p.alive()


@pytest.mark.parametrize("case", ["bad-magic", "http1-then-garbage", "ping-first",
                                  "oversized-frame"])
def test_invalid_preface(proxy_factory, upstream, case):
    up = upstream(ok_handler())
    p = proxy_factory(upstreams=[up])
    s = socket.create_connection(("127.0.0.1", p.port), timeout=3)
    data = {
        "bad-magic": b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + frame(SETTINGS, 0, 0),
        "http1-then-garbage": b"PRI * HTTP/2.0\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
        "ping-first": PREFACE + frame(PING, 0, 0, b"12345678"),
        "oversized-frame": PREFACE + frame(SETTINGS, 0, 0)
        + b"\xff\xff\xff\x00\x00\x00\x00\x00\x01" + b"x" * 1000,
    }[case]
    s.sendall(data)
    got, closed = read_http1_answer(s, 2.0)
    s.close()
    assert closed, f"connection still open; got {got[:200]!r}"
    if case in ("ping-first", "oversized-frame"):
        # a valid preface: an HTTP/2 connection error, GOAWAY before the close
        frames = []
        buf = got
        while len(buf) >= 9:
            n = int.from_bytes(buf[:3], "big")
            frames.append((buf[3], buf[9:9 + n]))
            buf = buf[9 + n:]
        goaways = [pl for t, pl in frames if t == GOAWAY]
        assert goaways, f"no GOAWAY: {frames}"
        code = struct.unpack(">I", goaways[-1][4:8])[0]
        want = PROTOCOL_ERROR if case == "ping-first" else FRAME_SIZE_ERROR
        assert code == want, (case, code)
    assert up.conns == []
    assert p.alive()


def test_stream_id_reuse(proxy_factory, upstream):
    up = upstream(ok_handler())
    p = proxy_factory(upstreams=[up])
    c = h2c(p)
    assert c.get("/first").status == 200
    c.send_headers(1, c.req_headers("/again"))
    g = c.wait_goaway()
    assert g.code in (PROTOCOL_ERROR, STREAM_CLOSED), g
    assert c.wait_closed(2.0)
    assert len(up.requests()) == 1


@pytest.mark.parametrize("case", ["decreasing", "even"])
def test_bad_stream_ids(proxy_factory, upstream, case):
    up = upstream(routed({"/hold": after(1, b"x")}))
    p = proxy_factory(upstreams=[up])
    c = h2c(p)
    if case == "decreasing":
        c.send_headers(5, c.req_headers("/hold"))
        up.wait_requests(1)
        c.send_headers(3, c.req_headers("/lower"))
    else:
        c.send_headers(2, c.req_headers("/even"))
    g = c.wait_goaway()
    assert g.code == PROTOCOL_ERROR, g
    assert c.wait_closed(2.0)
    assert not any(r.target in ("/lower", "/even") for r in up.requests())


BAD_FIELDS = {
    "no-method": [(":scheme", "http"), (":authority", "x.test"), (":path", "/m")],
    "no-path": [(":method", "GET"), (":scheme", "http"), (":authority", "x.test")],
    "no-scheme": [(":method", "GET"), (":authority", "x.test"), (":path", "/s")],
    "empty-path": [(":method", "GET"), (":scheme", "http"), (":authority", "x.test"),
                   (":path", "")],
    "uppercase-name": "X-Upper",
    "connection": ("connection", "keep-alive"),
    "keep-alive": ("keep-alive", "timeout=5"),
    "proxy-connection": ("proxy-connection", "keep-alive"),
    "transfer-encoding": ("transfer-encoding", "chunked"),
    "upgrade": ("upgrade", "websocket"),
    "te-gzip": ("te", "gzip"),
    "pseudo-after-regular": "pseudo-after",
    "unknown-pseudo": (":foo", "bar"),
    "duplicate-path": (":path", "/again"),
}


@pytest.mark.parametrize("case", list(BAD_FIELDS))
def test_malformed_request_fields_reset_stream(proxy_factory, upstream, case):
    up = upstream(ok_handler())
    p = proxy_factory(upstreams=[up])
    c = h2c(p)
    spec = BAD_FIELDS[case]
    base = c.req_headers("/bad")
    if isinstance(spec, list):
        hdrs = spec
    elif spec == "X-Upper":
        hdrs = base + [("X-Upper", "1")]
    elif spec == "pseudo-after":
        hdrs = [(":method", "GET"), (":scheme", "http"), ("x-a", "1"),
                (":authority", "x.test"), (":path", "/bad")]
    else:
        hdrs = base + [spec]
    sid = c.new_sid()
    c.send_headers(sid, hdrs)
    s = c.response(sid)
    assert s.reset == PROTOCOL_ERROR, f"{case}: {s}"
    assert s.headers is None, f"{case}: a response was sent: {s}"
    # the connection carries on
    ok = c.get("/good")
    assert ok.status == 200, ok
    assert c.goaway is None
    assert [r.target for r in up.requests()] == ["/good"]


def test_te_trailers_allowed(proxy_factory, upstream):
    up = upstream(ok_handler())
    p = proxy_factory(upstreams=[up])
    c = h2c(p)
    assert c.get("/te", headers=[("te", "trailers")]).status == 200


@pytest.mark.parametrize("case", ["short", "long", "headers-only"])
def test_content_length_mismatch(proxy_factory, upstream, case):
    async def handler(reader, writer, ctx):
        req = await ctx.read_head()
        try:
            await ctx.read_body(req)
        except Exception:
            return
        await ctx.respond(200, b"should not be")
    up = upstream(handler)
    p = proxy_factory(upstreams=[up])
    c = h2c(p)
    if case == "headers-only":
        sid = c.request("/cl", method="POST", headers=[("content-length", "5")])
    else:
        sid = c.request("/cl", method="POST", headers=[("content-length", "10")],
                        end_stream=False)
        c.send_data(sid, b"12345" if case == "short" else b"1234567890abcdefghij",
                    end_stream=True)
    s = c.response(sid)
    assert s.reset == PROTOCOL_ERROR, s
    assert s.status != 200, s
    c2 = h2c(p)
    assert c2.get("/fine").status == 200


# ==========================================================================
# drain and idle

def test_sigterm_goaway_then_streams_finish(proxy_factory, upstream):
    up = upstream(routed({"/slow": after(0.6, b"finished")}))
    p = proxy_factory("--drain-timeout", "5s", upstreams=[up])
    c = h2c(p, timeout=5)
    sid = c.request("/slow")
    up.wait_requests(1)
    t_term = time.monotonic()
    os.kill(p.pid, signal.SIGTERM)
    g = c.wait_goaway(2)
    assert g.t - t_term < 0.5, f"GOAWAY {1000 * (g.t - t_term):.0f} ms after SIGTERM"
    assert g.last_sid >= sid and g.code == NO_ERROR, g
    s = c.response(sid, timeout=3)
    assert s.status == 200 and s.ended and s.body == b"finished", s
    assert c.wait_closed(2.0), "the connection stayed open after its last stream"
    assert c.goaways[-1].code == NO_ERROR, c.goaways
    assert reap(p) == 0
    line = log_for(p, "/slow")
    assert line["reason"] == "ok" and line["proto"] == "HTTP/2", line


def test_drain_timeout_cuts_open_streams(proxy_factory, upstream):
    up = upstream(routed({"/slow": after(5, b"late")}))
    p = proxy_factory("--drain-timeout", "300ms", upstreams=[up])
    c = h2c(p, timeout=5)
    sid = c.request("/slow")
    up.wait_requests(1)
    t0 = time.monotonic()
    os.kill(p.pid, signal.SIGTERM)
    c.wait_goaway(1)
    assert c.wait_closed(2.0)
    assert reap(p) == 0
    assert 0.29 <= time.monotonic() - t0 < 1.5
    assert not c.stream(sid).ended, "the stream cannot have finished cleanly"


def test_idle_timeout_goaway(proxy_factory, upstream):
    up = upstream(routed({"/long": after(0.6, b"long")}))
    p = proxy_factory("--idle-timeout", "300ms", upstreams=[up])
    c = h2c(p)
    # a stream open longer than the idle timeout is not idleness
    s = c.get("/long")
    assert s.status == 200 and s.body == b"long", s
    t_done = s.t_end
    assert c.wait_closed(2.0), "the idle connection stayed open"
    assert c.goaway is not None, "closed without GOAWAY"
    assert c.goaway.code == NO_ERROR and c.goaway.last_sid == 1, c.goaway
    assert_window(c.goaway.t - t_done, 0.300, what="idle GOAWAY")
    assert len(p.wait_log(1)) == 1


def test_busy_connection_outlives_idle_timeout(proxy_factory, upstream):
    """Streams one after another for 3 idle timeouts: never idle, never closed."""
    up = upstream(routed({}, after(0.05, b"s")))
    p = proxy_factory("--idle-timeout", "300ms", upstreams=[up])
    c = h2c(p)
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < 1.0:
        s = c.get(f"/busy/{n}")
        assert s.status == 200 and s.ended, (n, s)
        n += 1
    assert c.goaway is None and not c.eof
    assert {l["reason"] for l in p.wait_log(n)} == {"ok"}


def test_idle_timeout_from_preface(proxy_factory, upstream):
    up = upstream(ok_handler())
    p = proxy_factory("--idle-timeout", "300ms", upstreams=[up])
    t0 = time.monotonic()
    c = h2c(p)
    assert c.wait_closed(2.0)
    assert_window(c.t_eof - t0, 0.300, hi_slack=0.3)
    assert c.goaway is not None and c.goaway.code == NO_ERROR, c.goaway


# ==========================================================================
# metrics

def metric(admin_port, name, **labels):
    """The value of name{labels} (labels in any order), 0 when absent."""
    code, text = scrape(admin_port)
    assert code == 200, text
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        if dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or "")) == labels:
            return float(m.group(3))
    return 0.0


def test_http2_metrics(proxy_factory, upstream):
    async def partial(ctx, req):
        await ctx.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"a" * 10)
        await ctx.wait_lost(10)
        return False
    up = upstream(routed({"/hold": after(3, b"x"), "/cut": partial}))
    admin = free_port()
    p = proxy_factory("--admin", f"127.0.0.1:{admin}", "--read-timeout", "300ms",
                      upstreams=[up])
    wait_port("127.0.0.1", admin)
    c = h2c(p)
    assert c.get("/a").status == 200
    assert c.get("/b").status == 200
    sid = c.request("/hold")
    up.wait_requests(3)
    c.reset(sid)                                     # cause client
    assert_cut(c.get("/cut"), "read timeout")         # cause cancel (INTERNAL_ERROR)
    bad = c.new_sid()
    c.send_headers(bad, [(":method", "GET"), (":scheme", "http"), (":path", "/x"),
                         ("connection", "close")])
    assert c.response(bad).reset == PROTOCOL_ERROR   # cause protocol_error
    c2 = h2c(p)
    assert c2.get("/c").status == 200
    c2.send_headers(1, c2.req_headers("/reuse"))      # connection error
    assert c2.wait_goaway().code in (PROTOCOL_ERROR, STREAM_CLOSED)
    time.sleep(0.2)
    assert metric(admin, "hourglass_http2_connections_total") == 2
    streams = metric(admin, "hourglass_http2_streams_total")
    assert 5 <= streams <= 7, streams
    assert metric(admin, "hourglass_http2_resets_total", cause="client") == 1
    assert metric(admin, "hourglass_http2_resets_total", cause="cancel") == 1
    assert metric(admin, "hourglass_http2_resets_total", cause="protocol_error") == 1
    assert metric(admin, "hourglass_http2_resets_total", cause="refused") == 0
    goaways = (metric(admin, "hourglass_http2_goaways_total", code="protocol_error")
               + metric(admin, "hourglass_http2_goaways_total", code="stream_closed"))
    assert goaways == 1, goaways
    assert metric(admin, "hourglass_http2_goaways_total", code="enhance_your_calm") == 0


# ==========================================================================
# resources

def test_thousands_of_streams_do_not_leak(proxy_factory, upstream):
    up = upstream(routed({"/silent": never, "/slow": after(10, b"x")}))
    # pooled upstream connections close 200 ms after their last use, so that
    # the fd counts compare the same empty pool (how many "ok" requests ran
    # at once, and so were pooled, depends on the machine's speed)
    p = proxy_factory("--read-timeout", "300ms", "--total-timeout", "5s",
                      "--upstream-idle-timeout", "200ms", upstreams=[up])

    def round_(tag, conns, per_conn):
        # per connection: a third answered, a third read timeouts (300 ms), a
        # third reset by us 20 ms after they were sent (before the timeout)
        for k in range(conns):
            c = h2c(p, timeout=10)
            sids = {}
            for i in range(per_conn):
                kind = ("ok", "silent", "slow")[i % 3]
                sids[c.request(f"/{kind}/{tag}/{k}/{i}")] = kind
            time.sleep(0.02)
            for sid, kind in sids.items():
                if kind == "slow":
                    c.reset(sid)
            for sid, kind in sids.items():
                if kind != "slow":
                    s = c.response(sid, timeout=10)
                    assert s.status == (200 if kind == "ok" else 504), s
            c.close()

    round_("warm", 1, 90)
    wait_until(lambda: len(p.log_lines()) >= 90, 5, msg="warm-up log lines")
    time.sleep(0.6)
    fd0, rss0 = p.fd_count(), p.rss_kb()
    round_("run", 25, 90)      # 2250 streams: 750 ok, 750 read timeouts, 750 resets
    lines = p.wait_log(90 + 25 * 90, timeout=10)
    reasons = {}
    for l in lines:
        reasons[l["reason"]] = reasons.get(l["reason"], 0) + 1
    assert reasons == {"ok": 780, "read_timeout": 780, "client_abort": 780}, reasons
    try:
        wait_until(lambda: p.fd_count() <= fd0, 3)
    except AssertionError:
        pass
    fd1 = p.fd_count()
    assert fd1 <= fd0, f"fd count {fd0} -> {fd1} after 2250 streams"
    growth = p.rss_kb() - rss0
    limit = (64 if is_sanitized() else 8) * 1024
    assert growth < limit, f"RSS grew by {growth} kB after 2250 streams"


# ==========================================================================
# real clients

def _env():
    return {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_prior_knowledge(proxy_factory, upstream):
    up = upstream(ok_handler(b"hello curl\n"))
    p = proxy_factory(upstreams=[up])
    r = subprocess.run(["curl", "-q", "-sS", "--noproxy", "*", "--http2-prior-knowledge",
                        "--max-time", "5", "-w", "\n%{http_version} %{http_code}",
                        f"http://127.0.0.1:{p.port}/curl?a=1"],
                       capture_output=True, text=True, timeout=10, env=_env())
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hello curl\n\n2 200", r.stdout
    line = log_for(p, "/curl?a=1")
    assert line["proto"] == "HTTP/2"
    (req,) = up.wait_requests(1)
    assert req.header("host") == f"127.0.0.1:{p.port}"


@pytest.fixture
def tls_pair(tmp_path):
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=30)
    return {"cert": str(cert), "key": str(key)}


def _tls_ctx(offer):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if offer is not None:
        ctx.set_alpn_protocols(offer)
    return ctx


def _alpn(port, offer):
    s = _tls_ctx(offer).wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=3))
    try:
        return s.selected_alpn_protocol()
    finally:
        s.close()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_tls_alpn_h2(cfg_proxy, upstream, tls_pair):
    up = upstream(ok_handler(b"hello tls h2\n"))
    tls_port, plain = free_port(), free_port()
    p = cfg_proxy(doc_for(up, [{"address": f"127.0.0.1:{tls_port}", "tls": tls_pair},
                               f"127.0.0.1:{plain}"]), plain)
    r = subprocess.run(["curl", "-q", "-sS", "-v", "-k", "--noproxy", "*", "--http2",
                        "--max-time", "5", "-w", "\n%{http_version} %{http_code}",
                        f"https://127.0.0.1:{tls_port}/tls-h2"],
                       capture_output=True, text=True, timeout=10, env=_env())
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hello tls h2\n\n2 200", (r.stdout, r.stderr[-2000:])
    assert re.search(r"ALPN[:,] server accepted (to use )?h2", r.stderr), r.stderr
    assert log_for(p, "/tls-h2")["proto"] == "HTTP/2"
    # h2 chosen when offered (whatever the order), http/1.1 when only it is
    assert _alpn(tls_port, ["h2", "http/1.1"]) == "h2"
    assert _alpn(tls_port, ["http/1.1", "h2"]) == "h2"
    assert _alpn(tls_port, ["http/1.1"]) == "http/1.1"
    c = H2Client(tls_port, tls=_tls_ctx(["h2", "http/1.1"]))
    assert c.sock.selected_alpn_protocol() == "h2"
    s = c.get("/py-tls-h2", authority="localhost")
    assert s.status == 200 and s.body == b"hello tls h2\n", s
    c.close()
    (req,) = [r for r in up.requests() if r.target == "/py-tls-h2"]
    assert req.header_all("x-forwarded-proto") == ["https"], req.headers


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_tls_http2_false_offers_only_http11(cfg_proxy, upstream, tls_pair):
    up = upstream(ok_handler(b"h1"))
    off_port, plain = free_port(), free_port()
    p = cfg_proxy(doc_for(up, [{"address": f"127.0.0.1:{off_port}", "tls": tls_pair,
                                "http2": False},
                               f"127.0.0.1:{plain}"]), plain)
    assert _alpn(off_port, ["h2", "http/1.1"]) == "http/1.1"
    r = subprocess.run(["curl", "-q", "-sS", "-k", "--noproxy", "*", "--http2",
                        "--max-time", "5", "-w", "\n%{http_version} %{http_code}",
                        f"https://127.0.0.1:{off_port}/tls-h1"],
                       capture_output=True, text=True, timeout=10, env=_env())
    assert r.returncode == 0 and r.stdout == "h1\n1.1 200", (r.stdout, r.stderr)
    assert log_for(p, "/tls-h1")["proto"] == "HTTP/1.1"


@pytest.mark.skipif(shutil.which("nghttp") is None, reason="nghttp is not installed")
def test_nghttp_verbose(proxy_factory, upstream):
    up = upstream(ok_handler(b"hello nghttp\n"))
    p = proxy_factory(upstreams=[up])
    r = subprocess.run(["nghttp", "-nv", "-t", "5", f"http://127.0.0.1:{p.port}/ng"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"recv HEADERS frame <length=\d+, flags=0x0[45], stream_id=(\d+)>",
                  r.stdout)
    assert m, r.stdout
    sid = m.group(1)
    assert ":status: 200" in r.stdout, r.stdout
    assert re.search(rf"recv DATA frame <length=13, flags=0x0[01], stream_id={sid}>",
                     r.stdout), r.stdout
    assert "END_STREAM" in r.stdout
    assert log_for(p, "/ng")["proto"] == "HTTP/2"


@pytest.mark.skipif(shutil.which("nghttp") is None, reason="nghttp is not installed")
def test_nghttp_parallel(proxy_factory, upstream):
    async def fn(ctx, req):
        await ctx.delay(0.1)
        await ctx.respond(200, b"par")
    up = upstream(routed({}, fn))
    p = proxy_factory(upstreams=[up])
    r = subprocess.run(["nghttp", "-n", "-s", "-m", "10", "-t", "5",
                        f"http://127.0.0.1:{p.port}/ngpar"],
                       capture_output=True, text=True, timeout=15)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = p.wait_log(10)
    assert [l["target"] for l in lines] == ["/ngpar"] * 10
    assert {l["status"] for l in lines} == {"200"}
    assert {l["proto"] for l in lines} == {"HTTP/2"}


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load is not installed")
def test_h2load(proxy_factory, upstream):
    up = upstream(ok_handler(b"load"))
    p = proxy_factory(upstreams=[up])
    r = subprocess.run(["h2load", "-n", "100", "-c", "2", "-m", "10",
                        f"http://127.0.0.1:{p.port}/load"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"requests: 100 total, 100 started, 100 done, 100 succeeded, "
                     r"0 failed, 0 errored", r.stdout), r.stdout
    assert re.search(r"status codes: 100 2xx", r.stdout), r.stdout
    assert len(p.wait_log(100, timeout=5)) == 100
