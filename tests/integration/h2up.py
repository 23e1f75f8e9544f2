"""A scripted HTTP/2 upstream server (prior knowledge, no TLS) for the tests
of hourglass's HTTP/2 pools (issue 16): test_h2_upstream.py and
test_grpc.py.

Built on python3-h2's state machine (which checks what the proxy sends),
run on the conftest's asyncio thread. For each request (once its header
block is in) `handler(stream)` runs as a task; the stream object answers
with headers, body and trailers, waits, resets, or makes its connection send
GOAWAY. Everything the proxy does is recorded per connection: each frame
received (type, flags, stream id, length, and the payload of the small
control frames), the streams and their headers and bodies, the RST_STREAM
error codes, the settings ACK, how many streams were open at once.

    up = h2_upstream(handler, max_streams=2)     # the conftest fixture
    up.addr                                       # "127.0.0.1:PORT"
    up.conns[0].streams                           # {sid: H2Stream}
    up.conns[0].rst_codes(sid)                    # [8] after a CANCEL

Only 127.0.0.1 (or ::1) is ever listened on.
"""

import asyncio
import socket
import struct
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

from conftest import wait_until

# frame types
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, \
    WINDOW_UPDATE, CONTINUATION = range(10)
FRAME_NAMES = ["DATA", "HEADERS", "PRIORITY", "RST_STREAM", "SETTINGS", "PUSH_PROMISE",
               "PING", "GOAWAY", "WINDOW_UPDATE", "CONTINUATION"]
# error codes
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR, SETTINGS_TIMEOUT, \
    STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL = range(9)
F_END_STREAM = 0x1
F_ACK = 0x1

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
PREFACE_LEN = len(PREFACE)
CONNECTION_SPECIFIC = {"connection", "keep-alive", "transfer-encoding", "upgrade",
                       "proxy-connection"}


def raw_frame(ftype, flags, sid, payload=b""):
    n = len(payload)
    return struct.pack(">BHBBI", n >> 16, n & 0xFFFF, ftype, flags, sid & 0x7FFFFFFF) + payload


def grpc_message(data):
    """One gRPC length-prefixed message: uncompressed flag, 4-byte length."""
    return b"\x00" + struct.pack(">I", len(data)) + data


def grpc_messages(buf):
    """The messages of a gRPC body (length-prefixed framing)."""
    out = []
    i = 0
    while i + 5 <= len(buf):
        n = struct.unpack(">I", buf[i + 1:i + 5])[0]
        out.append(bytes(buf[i + 5:i + 5 + n]))
        i += 5 + n
    return out


class StreamGone(Exception):
    """The stream (or its connection) went away while the handler used it."""


class Frame:
    __slots__ = ("type", "flags", "sid", "length", "payload", "t")

    def __init__(self, ftype, flags, sid, length, payload, t):
        self.type, self.flags, self.sid, self.length = ftype, flags, sid, length
        self.payload, self.t = payload, t

    @property
    def name(self):
        return FRAME_NAMES[self.type] if self.type < len(FRAME_NAMES) else str(self.type)

    def __repr__(self):
        return f"{self.name}:{self.sid}/{self.flags:#x}/{self.length}"


class H2Stream:
    """One request stream, seen from the server; also the handler's API."""

    def __init__(self, conn, sid, headers, end):
        self.conn = conn
        self.sid = sid
        self.headers = headers            # [(name, value)] as received (str)
        self.t = time.monotonic()         # header block complete
        self.body = bytearray()
        self.data_frames = 0
        self.ended = end                  # the request's END_STREAM came
        self.t_end = self.t if end else None
        self.trailers = None              # request trailers
        self.reset_received = None        # RST_STREAM code from the proxy
        self.t_reset = None
        self.reset_sent = None            # RST_STREAM code we sent
        self.local_ended = False          # our END_STREAM went out
        self.headers_sent = False
        self.t_response_end = None
        self.after_goaway = False         # opened after we sent GOAWAY, above its last id
        self.refused = False              # refused over max_streams
        self.note = {}                    # free use by handlers

    # reading ---------------------------------------------------------------
    def header(self, name):
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def header_all(self, name):
        return [v for k, v in self.headers if k == name]

    @property
    def method(self):
        return self.header(":method")

    @property
    def path(self):
        return self.header(":path")

    @property
    def closed(self):
        return (self.reset_received is not None or self.reset_sent is not None
                or (self.ended and self.local_ended) or self.conn.closed_at is not None)

    async def read_body(self, timeout=5.0):
        """Waits for the request's END_STREAM; returns the body."""
        ok = await self.conn._until(lambda: self.ended or self.reset_received is not None
                                    or self.conn.closed_at is not None, timeout)
        if not self.ended:
            why = "gone" if ok else "timeout"
            raise StreamGone(f"stream {self.sid}: no END_STREAM ({why})")
        return bytes(self.body)

    async def wait_reset(self, timeout=10.0):
        """Waits until the proxy resets the stream or the connection ends;
        True if it did within timeout."""
        return await self.conn._until(lambda: self.reset_received is not None
                                      or self.conn.closed_at is not None, timeout)

    async def sleep(self, seconds):
        await asyncio.sleep(seconds)

    async def wait_gate(self, gate, timeout=10.0):
        """Waits until the threading.Event gate is set (polling), or the stream ends."""
        deadline = time.monotonic() + timeout
        while not gate.is_set() and time.monotonic() < deadline:
            if self.reset_received is not None or self.conn.closed_at is not None:
                return False
            await asyncio.sleep(0.005)
        return gate.is_set()

    # writing ---------------------------------------------------------------
    def _check(self):
        if self.reset_received is not None or self.reset_sent is not None \
                or self.conn.closed_at is not None:
            raise StreamGone(f"stream {self.sid} is gone")

    async def send_headers(self, headers, end=False):
        self._check()
        try:
            self.conn.h2.send_headers(self.sid, list(headers), end_stream=end)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError) as e:
            raise StreamGone(repr(e)) from None
        self.headers_sent = True
        if end:
            self._local_end()
        self.conn.flush()
        await self.conn.drain()

    async def send_data(self, data, end=False, timeout=10.0):
        """Sends data within the flow-control windows (waits for them)."""
        data = bytes(data)
        pos = 0
        while pos < len(data):
            self._check()
            n = min(self.conn.h2.local_flow_control_window(self.sid),
                    self.conn.h2.max_outbound_frame_size, len(data) - pos)
            if n <= 0:
                ok = await self.conn._until(
                    lambda: self.closed or self.conn.h2.local_flow_control_window(self.sid) > 0,
                    timeout)
                if not ok:
                    raise StreamGone(f"stream {self.sid}: window stayed closed")
                continue
            last = end and pos + n == len(data)
            try:
                self.conn.h2.send_data(self.sid, data[pos:pos + n], end_stream=last)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError) as e:
                raise StreamGone(repr(e)) from None
            pos += n
            if last:
                self._local_end()
            self.conn.flush()
            await self.conn.drain()
        if not data and end:
            self._check()
            try:
                self.conn.h2.end_stream(self.sid)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError) as e:
                raise StreamGone(repr(e)) from None
            self._local_end()
            self.conn.flush()
            await self.conn.drain()

    async def send_trailers(self, trailers):
        await self.send_headers(trailers, end=True)

    async def respond(self, status=200, body=b"", headers=(), trailers=None, length=True):
        """A whole response. length: add content-length (not with trailers)."""
        hdrs = [(":status", str(status))] + list(headers)
        if length and trailers is None and not any(k == "content-length" for k, _ in headers):
            hdrs.append(("content-length", str(len(body))))
        if not body and trailers is None:
            await self.send_headers(hdrs, end=True)
            return
        await self.send_headers(hdrs)
        await self.send_data(body, end=trailers is None)
        if trailers is not None:
            await self.send_trailers(trailers)

    async def grpc_respond(self, messages=(b"",), status=0, message=None, headers=(),
                           trailers=()):
        """A gRPC response: headers, length-prefixed messages, trailers."""
        await self.send_headers([(":status", "200"), ("content-type", "application/grpc")]
                                + list(headers))
        for m in messages:
            await self.send_data(grpc_message(m))
        t = [("grpc-status", str(status))]
        if message is not None:
            t.append(("grpc-message", message))
        await self.send_trailers(t + list(trailers))

    def reset(self, code=CANCEL):
        """Sends RST_STREAM with code."""
        if self.closed:
            return
        try:
            self.conn.h2.reset_stream(self.sid, code)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            return
        self.reset_sent = code
        self.conn.flush()

    def _local_end(self):
        self.local_ended = True
        self.t_response_end = time.monotonic()

    def __repr__(self):
        return (f"<H2Stream conn#{self.conn.index} sid={self.sid} {self.method} {self.path} "
                f"body={len(self.body)}B ended={self.ended} rst_in={self.reset_received} "
                f"rst_out={self.reset_sent} answered={self.local_ended}>")


class H2UpConn:
    """One connection the proxy opened to the H2Upstream."""

    def __init__(self, up, index, reader, writer):
        self.up = up
        self.index = index
        self.reader = reader
        self.writer = writer
        self.peer = writer.get_extra_info("peername")
        self.accepted_at = time.monotonic()
        self.frames = []             # Frame, every one received (after the preface)
        self.preface_ok = None
        self.streams = {}            # sid -> H2Stream, in the order they opened
        self.rst_received = {}       # sid -> [error codes], from the frames
        self.goaway_sent = None      # (last_sid, code, t)
        self.goaway_received = None  # (last_sid, code, t)
        self.settings_acked_at = None
        self.max_open = 0            # most streams open at once (refused ones not counted)
        self.violations = []         # (sid, open) streams over max_streams after the ACK
        self.errors = []
        self.closed_at = None        # the proxy closed (EOF/reset) or we did
        self.closed_by_us = False
        self._rbuf = bytearray()
        self._preface_left = PREFACE_LEN
        self._preface = bytearray()
        self._changed = asyncio.Event()
        cfg = h2.config.H2Configuration(client_side=False, header_encoding="utf-8",
                                        validate_inbound_headers=up.strict,
                                        validate_outbound_headers=False,
                                        normalize_outbound_headers=False)
        self.h2 = h2.connection.H2Connection(config=cfg)
        sc = h2.settings.SettingCodes
        advertised = {sc.MAX_CONCURRENT_STREAMS: up.max_streams,
                      sc.MAX_HEADER_LIST_SIZE: 1 << 16}
        advertised.update(up.settings)
        self.h2.local_settings = h2.settings.Settings(client=False, initial_values=advertised)
        self.h2.initiate_connection()
        # h2 would enforce the advertised stream limit at once, and close the
        # connection over it: keep its own limit out of the way and count here,
        # as a real server does (over the limit: REFUSED_STREAM; over it after
        # the peer acknowledged our SETTINGS: a violation, recorded)
        lenient = dict(advertised)
        lenient[sc.MAX_CONCURRENT_STREAMS] = 2 ** 31 - 1
        self.h2.local_settings = h2.settings.Settings(client=False, initial_values=lenient)
        self.flush()

    # seen from the test thread ---------------------------------------------
    def stream_list(self):
        return list(self.streams.values())

    def rst_codes(self, sid):
        return list(self.rst_received.get(sid, []))

    def frame_names(self):
        return [repr(f) for f in self.frames]

    @property
    def open_streams(self):
        return [s for s in self.streams.values() if not s.closed and not s.refused]

    def wait_closed(self, timeout=2.0):
        return wait_until(lambda: self.closed_at, timeout,
                          msg=f"upstream h2 connection #{self.index} to close")

    def goaway(self, last_sid, code=NO_ERROR, debug=b""):
        """Sends GOAWAY (thread-safe: from the test thread or a handler)."""
        def do():
            self.flush()
            self._write(raw_frame(GOAWAY, 0, 0, struct.pack(">II", last_sid, code) + debug))
            self.goaway_sent = (last_sid, code, time.monotonic())
        if self._on_loop():
            do()
        else:
            self.up.aio.call(self._coro(do))

    def close(self):
        def do():
            self.closed_by_us = True
            if self.closed_at is None:
                self.closed_at = time.monotonic()
            self.writer.close()
            self._bump()
        if self._on_loop():
            do()
        else:
            self.up.aio.call(self._coro(do))

    # internals (loop thread) ------------------------------------------------
    @staticmethod
    async def _coro(fn):
        fn()

    def _on_loop(self):
        try:
            return asyncio.get_running_loop() is self.up.aio.loop
        except RuntimeError:
            return False

    def _write(self, data):
        if data and self.closed_at is None:
            self.writer.write(data)

    def flush(self):
        self._write(self.h2.data_to_send())

    async def drain(self):
        if self.closed_at is not None:
            return
        try:
            await self.writer.drain()
        except (ConnectionError, OSError):
            pass

    def _bump(self):
        self._changed.set()
        self._changed = asyncio.Event()

    async def _until(self, pred, timeout):
        deadline = time.monotonic() + timeout
        while True:
            if pred():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            ev = self._changed
            try:
                await asyncio.wait_for(ev.wait(), left)
            except asyncio.TimeoutError:
                pass

    def _record_frames(self, data, now):
        if self._preface_left:
            take = data[:self._preface_left]
            self._preface += take
            self._preface_left -= len(take)
            data = data[len(take):]
            if not self._preface_left:
                self.preface_ok = bytes(self._preface) == PREFACE
        self._rbuf += data
        while len(self._rbuf) >= 9:
            n = (self._rbuf[0] << 16) | (self._rbuf[1] << 8) | self._rbuf[2]
            if len(self._rbuf) < 9 + n:
                break
            ftype, flags = self._rbuf[3], self._rbuf[4]
            sid = struct.unpack(">I", self._rbuf[5:9])[0] & 0x7FFFFFFF
            payload = bytes(self._rbuf[9:9 + n])
            del self._rbuf[:9 + n]
            keep = payload if ftype in (RST_STREAM, SETTINGS, GOAWAY, WINDOW_UPDATE, PING) else None
            self.frames.append(Frame(ftype, flags, sid, n, keep, now))
            if ftype == RST_STREAM and n == 4:
                self.rst_received.setdefault(sid, []).append(struct.unpack(">I", payload)[0])
            elif ftype == GOAWAY and n >= 8:
                last, code = struct.unpack(">II", payload[:8])
                self.goaway_received = (last & 0x7FFFFFFF, code, now)

    def _on_request(self, ev, now):
        sid = ev.stream_id
        s = H2Stream(self, sid, list(ev.headers), bool(ev.stream_ended))
        s.t = now
        self.streams[sid] = s
        if self.goaway_sent is not None and sid > self.goaway_sent[0]:
            s.after_goaway = True      # ignored, as GOAWAY promised
            return
        open_now = len([x for x in self.streams.values()
                        if not x.closed and not x.refused and not x.after_goaway])
        if open_now > self.up.max_streams:
            if self.settings_acked_at is not None:
                self.violations.append((sid, open_now))
            s.refused = True
            s.reset(REFUSED_STREAM)
            return
        self.max_open = max(self.max_open, open_now)
        self.up._spawn(s)

    def _dispatch(self, events, now):
        for ev in events:
            if isinstance(ev, h2.events.RequestReceived):
                self._on_request(ev, now)
            elif isinstance(ev, h2.events.DataReceived):
                s = self.streams.get(ev.stream_id)
                if s is not None:
                    s.body += ev.data
                    s.data_frames += 1
                    if ev.stream_ended:
                        s.ended, s.t_end = True, now
                try:
                    self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                    pass
            elif isinstance(ev, h2.events.TrailersReceived):
                s = self.streams.get(ev.stream_id)
                if s is not None:
                    s.trailers = list(ev.headers)
                    if ev.stream_ended:
                        s.ended, s.t_end = True, now
            elif isinstance(ev, h2.events.StreamEnded):
                s = self.streams.get(ev.stream_id)
                if s is not None and not s.ended:
                    s.ended, s.t_end = True, now
            elif isinstance(ev, h2.events.StreamReset):
                s = self.streams.get(ev.stream_id)
                if s is not None and ev.remote_reset and s.reset_received is None:
                    s.reset_received, s.t_reset = ev.error_code, now
            elif isinstance(ev, h2.events.SettingsAcknowledged):
                if self.settings_acked_at is None:
                    self.settings_acked_at = now

    async def serve(self):
        try:
            while True:
                try:
                    data = await self.reader.read(1 << 16)
                except (ConnectionError, OSError):
                    data = b""
                now = time.monotonic()
                if not data:
                    break
                self._record_frames(data, now)
                try:
                    events = self.h2.receive_data(data)
                except h2.exceptions.ProtocolError as e:
                    self.errors.append(f"conn #{self.index}: protocol error from the proxy: "
                                       f"{e!r}; frames: {self.frame_names()[-20:]}")
                    self.up.errors.append(self.errors[-1])
                    self.flush()
                    break
                self._dispatch(events, now)
                self.flush()
                self._bump()
        finally:
            if self.closed_at is None:
                self.closed_at = time.monotonic()
            try:
                self.writer.close()
            except Exception:
                pass
            self._bump()


async def answer_ok(s):
    await s.read_body()
    await s.respond(200, b"ok " + (s.path or "").encode())


class H2Upstream:
    """The server: handler(stream) per request (default: 200 "ok PATH").

    max_streams: SETTINGS_MAX_CONCURRENT_STREAMS advertised (and enforced
    with REFUSED_STREAM). settings: more SETTINGS to advertise
    ({h2.settings.SettingCodes.X: value}). strict: h2 validates the
    request header blocks (a bad one is a protocol error, recorded)."""

    def __init__(self, aio, handler=None, max_streams=100, settings=None, strict=True,
                 host="127.0.0.1"):
        self.aio = aio
        self.handler = handler or answer_ok
        self.max_streams = max_streams
        self.settings = dict(settings or {})
        self.strict = strict
        self.conns = []
        self.errors = []
        self.tasks = set()
        self.host = host
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(fam, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 0))
        sock.listen(512)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self.addr = f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

        async def mk():
            return await asyncio.start_server(self._accept, sock=sock)
        self.server = aio.call(mk())

    async def _accept(self, reader, writer):
        sock = writer.get_extra_info("socket")
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        c = H2UpConn(self, len(self.conns), reader, writer)
        self.conns.append(c)
        await c.serve()

    def _spawn(self, s):
        t = asyncio.ensure_future(self._run(s))
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)

    async def _run(self, s):
        try:
            await self.handler(s)
        except (StreamGone, ConnectionError):
            pass
        except asyncio.CancelledError:
            raise
        except Exception as e:
            msg = f"h2 upstream handler error on conn #{s.conn.index} stream {s.sid}: {e!r}"
            self.errors.append(msg)
            print(msg, file=sys.stderr)

    # test-thread helpers ------------------------------------------------------
    def streams(self):
        return [s for c in list(self.conns) for s in c.stream_list()]

    def served(self):
        """Streams handed to the handler (not refused, not after GOAWAY)."""
        return [s for s in self.streams() if not s.refused and not s.after_goaway]

    def wait_streams(self, n, timeout=2.0):
        wait_until(lambda: len(self.served()) >= n, timeout,
                   msg=f"{n} stream(s) at the h2 upstream {self.addr} "
                       f"(have {len(self.served())})")
        return self.served()

    def wait_conns(self, n, timeout=2.0):
        wait_until(lambda: len(self.conns) >= n, timeout,
                   msg=f"{n} connection(s) to the h2 upstream (have {len(self.conns)})")
        return self.conns

    def violations(self):
        return [(c.index, v) for c in self.conns for v in c.violations]

    def close(self):
        async def shut():
            self.server.close()
            for c in self.conns:
                if c.closed_at is None:
                    c.closed_by_us = True
                    c.closed_at = time.monotonic()
                    try:
                        c.writer.transport.abort()
                    except Exception:
                        pass
                    c._bump()
            for t in list(self.tasks):
                t.cancel()
        try:
            self.aio.call(shut(), 5)
        except Exception:
            pass
