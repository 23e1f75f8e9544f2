#!/usr/bin/env python3
# demo/upstream.py -- a small HTTP/1.1 origin server with slow and odd endpoints, to show hourglass's timeouts at work.
"""Demo origin server for hourglass (Python 3.11 standard library only).

Usage: python3 demo/upstream.py [--listen HOST:PORT] [--quiet]
                                [--keepalive-timeout SECONDS] [--exit-with-parent]

It speaks HTTP/1.1: persistent connections (several requests per connection,
pipelining included, "Connection: close" honoured, HTTP/1.0 keep-alive when
asked for), Content-Length and chunked request bodies (decoded), Expect:
100-continue, HEAD. GET / lists the endpoints. One line per request goes to
stderr; the readiness line "demo upstream listening on HOST:PORT" goes to
stdout once the socket listens (with --listen ...:0 it names the port the
system chose).

While it waits on purpose (delay, drip, stall, slow read) it watches the
socket's TCP state and gives up as soon as the peer has closed or reset the
connection, so a proxy that times out frees the upstream side at once. A
client that half-closes its side after sending a request is treated as gone.
"""

import argparse
import asyncio
import errno
import http
import json
import os
import re
import signal
import socket
import struct
import sys
import time
import traceback
from email.utils import formatdate
from urllib.parse import parse_qs, urlsplit

SERVER_NAME = "hourglass-demo-upstream"
READER_LIMIT = 16 * 1024         # asyncio buffer limit; lines longer than this are refused
MAX_LINE = 8 * 1024              # request line, header line, chunk-size line
MAX_HEADERS = 100
MAX_HEAD = 64 * 1024
MAX_ECHO = 64 * 1024 * 1024      # /echo keeps the body in memory
MAX_BYTES = 1 << 40              # /bytes and /chunked
MAX_DRIP = 1 << 20               # /drip
MAX_SECONDS = 24 * 3600.0        # /delay, intervals
PIECE = 64 * 1024                # write and read granularity
HEAD_TIMEOUT = 30.0              # from the first byte of a request to its blank line
BODY_READ_TIMEOUT = 60.0         # longest wait for the next piece of a request body
POLL = 0.1                       # how often deliberate waits check the peer

TOKEN_RE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
VERSION_RE = re.compile(rb"HTTP/([0-9])\.([0-9])")
TARGET_RE = re.compile(rb"[\x21-\x7e]+")
SECONDS_RE = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
DIGITS_RE = re.compile(r"[0-9]{1,20}")
HEX_RE = re.compile(rb"[0-9A-Fa-f]{1,16}")

# 64 printable bytes per line, 64 KiB per piece: readable in a terminal.
LINE64 = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-\n"
PATTERN = LINE64 * (PIECE // len(LINE64))

LINE_TOO_LONG = {"request": 414, "head": 431}

# Linux TCP states (include/net/tcp_states.h) that mean the peer closed or reset.
TCP_PEER_GONE = {7, 8, 9, 11}    # CLOSE, CLOSE_WAIT, LAST_ACK, CLOSING

HOME = """hourglass demo upstream: endpoints

  GET /                        this list
  /delay/SECONDS               wait SECONDS (float) before the response head, then a small body
  /drip/N?interval=SECONDS     Content-Length: N, then one byte every interval (default 0.5)
  /status/CODE                 respond with CODE (200-599; 204 and 304 without a body)
  /bytes/N                     N bytes with Content-Length, streamed in 64 KiB pieces
  /chunked/N?chunk=SIZE        N bytes with Transfer-Encoding: chunked (chunk default 4096;
                               &interval=SECONDS pauses between chunks)
  /stall-body?size=N           Content-Length: N (default 1024), half of it, then silence
  /echo                        any method: the request body back, with X-Received-Bytes
  /headers                     the request head as JSON {"method","target","version","headers"}
  /slow-read?interval=SECONDS  read the request body one byte every interval (default 1);
                               &stall=1 reads none of it; &max=SECONDS gives up (default 120)
                               (write-timeout demos: send a body of several MiB)
  anything else                404
"""


class HTTPError(Exception):
    """The request cannot be served; answer with status and close."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


class ClientGone(Exception):
    """The peer closed, reset or stopped sending; close without answering."""


def reason(status):
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def fmt_addr(addr):
    if not addr:
        return "?"
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def peer_gone(writer):
    """True when the peer has closed or reset the connection, without reading
    from it (so pipelined requests stay untouched)."""
    transport = writer.transport
    if transport.is_closing():
        return True
    sock = writer.get_extra_info("socket")
    if sock is None or not hasattr(socket, "TCP_INFO"):
        return False
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    except OSError:
        return True
    return struct.unpack_from("B", info)[0] in TCP_PEER_GONE


async def pause(writer, seconds):
    """Sleeps, but raises ClientGone as soon as the peer goes away."""
    end = time.monotonic() + seconds
    while True:
        if peer_gone(writer):
            raise ClientGone("client went away")
        left = end - time.monotonic()
        if left <= 0:
            return
        await asyncio.sleep(min(left, POLL))


async def read_line(reader, what):
    """One line without its CRLF (a bare LF is accepted too); b"" for an empty
    line; EOFError when the connection ends before any byte of it."""
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            raise EOFError from None
        raise ClientGone(f"connection ended inside the {what}") from None
    except asyncio.LimitOverrunError:
        raise HTTPError(LINE_TOO_LONG.get(what, 400), f"{what} line too long") from None
    if len(line) > MAX_LINE:
        raise HTTPError(LINE_TOO_LONG.get(what, 400), f"{what} line too long")
    line = line[:-1]
    if line.endswith(b"\r"):
        line = line[:-1]
    return line


class Request:
    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer
        self.method = "-"
        self.target = "-"
        self.version = (1, 1)
        self.headers = []          # [(name, value)] as received
        self.path = "/"
        self.query = {}
        self.keep_alive = True
        self.framing = "none"      # none | length | chunked
        self.length = 0            # body bytes left (length) / in the current chunk (chunked)
        self.body_done = True
        self.received = 0          # decoded body bytes read so far
        self.expect_continue = False
        self._continue_sent = False
        self._chunk_state = "size"

    def header(self, name):
        name = name.lower()
        for n, v in self.headers:
            if n.lower() == name:
                return v
        return None

    def header_all(self, name):
        name = name.lower()
        return [v for n, v in self.headers if n.lower() == name]

    def arg(self, name, default=None):
        values = self.query.get(name)
        return values[-1] if values else default

    async def read_head(self, idle_timeout):
        reader = self.reader
        # The idle wait: until the first byte of a request line.
        while True:
            try:
                line = await asyncio.wait_for(read_line(reader, "request"), idle_timeout)
            except asyncio.TimeoutError:
                raise EOFError from None
            if line:
                break  # RFC 9112 2.2: empty lines before a request line are ignored
        async with asyncio.timeout(HEAD_TIMEOUT):
            self._parse_request_line(line)
            total = len(line)
            while True:
                line = await read_line(reader, "head")
                if not line:
                    break
                total += len(line) + 2
                if total > MAX_HEAD or len(self.headers) >= MAX_HEADERS:
                    raise HTTPError(431, "request head too large")
                if line[:1] in (b" ", b"\t"):
                    raise HTTPError(400, "obsolete line folding")
                name, colon, value = line.partition(b":")
                if not colon or not TOKEN_RE.fullmatch(name):
                    raise HTTPError(400, "malformed header line")
                value = value.strip(b" \t")
                if any(c < 0x20 and c != 0x09 or c == 0x7F for c in value):
                    raise HTTPError(400, "control byte in a header value")
                self.headers.append((name.decode("latin-1"), value.decode("latin-1")))
        self._framing()

    def _parse_request_line(self, line):
        parts = line.split(b" ")
        if len(parts) != 3:
            raise HTTPError(400, "malformed request line")
        method, target, version = parts
        if not TOKEN_RE.fullmatch(method):
            raise HTTPError(400, "malformed method")
        self.method = method.decode("ascii")
        if not TARGET_RE.fullmatch(target):
            raise HTTPError(400, "malformed request target")
        self.target = target.decode("ascii")
        m = VERSION_RE.fullmatch(version)
        if not m:
            raise HTTPError(400, "malformed HTTP version")
        if m.group(1) != b"1":
            raise HTTPError(505, "only HTTP/1.x is spoken here")
        self.version = (1, 0) if m.group(2) == b"0" else (1, 1)
        if self.target.startswith("/"):
            parts = urlsplit(self.target)
        elif self.target.lower().startswith(("http://", "https://")):
            parts = urlsplit(self.target)  # absolute-form
        elif self.target == "*" and self.method == "OPTIONS":
            self.path = "*"
            return
        else:
            raise HTTPError(400, "malformed request target")
        self.path = parts.path or "/"
        self.query = parse_qs(parts.query, keep_blank_values=True)

    def _framing(self):
        tokens = {t.strip().lower() for v in self.header_all("connection") for t in v.split(",")}
        if self.version == (1, 1):
            self.keep_alive = "close" not in tokens
            if len(self.header_all("host")) != 1:
                raise HTTPError(400, "an HTTP/1.1 request needs exactly one Host header")
        else:
            self.keep_alive = "keep-alive" in tokens and "close" not in tokens
        te = self.header_all("transfer-encoding")
        cl = self.header_all("content-length")
        if te:
            if self.version == (1, 0):
                raise HTTPError(400, "Transfer-Encoding in an HTTP/1.0 request")
            if cl:
                raise HTTPError(400, "both Transfer-Encoding and Content-Length")
            codings = [c.strip().lower() for v in te for c in v.split(",") if c.strip()]
            if not codings or codings[-1] != "chunked":
                raise HTTPError(400, "Transfer-Encoding does not end with chunked")
            if codings != ["chunked"]:
                raise HTTPError(501, "only the chunked transfer coding is understood")
            self.framing = "chunked"
            self.body_done = False
        elif cl:
            values = {v.strip() for line in cl for v in line.split(",")}
            if len(values) != 1:
                raise HTTPError(400, "conflicting Content-Length values")
            value = values.pop()
            if not DIGITS_RE.fullmatch(value):
                raise HTTPError(400, "malformed Content-Length")
            self.length = int(value)
            if self.length > 0:
                self.framing = "length"
                self.body_done = False
        expect = self.header("expect")
        if expect is not None and self.version == (1, 1):
            if expect.strip().lower() != "100-continue":
                raise HTTPError(417, "only Expect: 100-continue is understood")
            self.expect_continue = not self.body_done

    @property
    def has_body(self):
        return self.framing != "none"

    async def _send_continue(self):
        if self.expect_continue and not self._continue_sent:
            self._continue_sent = True
            self.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            try:
                await self.writer.drain()
            except (ConnectionError, OSError):
                raise ClientGone("client went away") from None

    async def _read(self, n):
        try:
            async with asyncio.timeout(BODY_READ_TIMEOUT):
                data = await self.reader.read(n)
        except TimeoutError:
            raise ClientGone(f"request body stalled for {BODY_READ_TIMEOUT:.0f}s") from None
        except (ConnectionError, OSError):
            raise ClientGone("client went away") from None
        if not data:
            raise ClientGone("connection ended inside the request body")
        return data

    async def _read_crlf_line(self, what):
        try:
            async with asyncio.timeout(BODY_READ_TIMEOUT):
                return await read_line(self.reader, what)
        except EOFError:
            raise ClientGone("connection ended inside the request body") from None
        except TimeoutError:
            raise ClientGone(f"request body stalled for {BODY_READ_TIMEOUT:.0f}s") from None

    async def read_piece(self, maxn=PIECE):
        """The next decoded piece of the request body (at most maxn bytes), or
        b"" once the body has been read whole."""
        if self.body_done:
            return b""
        await self._send_continue()
        if self.framing == "length":
            data = await self._read(min(self.length, maxn))
            self.length -= len(data)
            self.body_done = self.length == 0
            self.received += len(data)
            return data
        # chunked
        while True:
            if self._chunk_state == "size":
                line = await self._read_crlf_line("chunk size")
                size = line.split(b";", 1)[0].strip(b" \t")
                if not HEX_RE.fullmatch(size):
                    raise HTTPError(400, "malformed chunk size")
                self.length = int(size, 16)
                self._chunk_state = "data" if self.length else "trailers"
            elif self._chunk_state == "data":
                if self.length == 0:
                    if await self._read_crlf_line("chunk end") != b"":
                        raise HTTPError(400, "chunk data longer than its size")
                    self._chunk_state = "size"
                    continue
                data = await self._read(min(self.length, maxn))
                self.length -= len(data)
                self.received += len(data)
                return data
            else:  # trailers: header lines until an empty one, ignored
                count = 0
                while await self._read_crlf_line("trailer") != b"":
                    count += 1
                    if count > MAX_HEADERS:
                        raise HTTPError(431, "too many trailer fields")
                self.body_done = True
                return b""

    async def read_all(self, limit):
        pieces, size = [], 0
        while True:
            data = await self.read_piece()
            if not data:
                return b"".join(pieces)
            size += len(data)
            if size > limit:
                raise HTTPError(413, f"request body larger than {limit} bytes")
            pieces.append(data)

    async def discard(self):
        while await self.read_piece():
            pass


class Response:
    def __init__(self, req):
        self.req = req
        self.writer = req.writer
        self.status = None           # None until the head is sent
        self.body_allowed = req.method != "HEAD"
        self.chunked = False
        self.length = None           # declared Content-Length
        self.sent = 0                # body bytes sent
        self.close_after = not req.keep_alive

    async def _send(self, data):
        if self.writer.transport.is_closing():
            raise ClientGone("client went away")
        self.writer.write(data)
        try:
            await self.writer.drain()
        except (ConnectionError, OSError):
            raise ClientGone("client went away") from None

    async def start(self, status, headers=(), length=None, chunked=False, ctype=None):
        """Sends the head. 204 and 304 get no body and no framing header;
        otherwise chunked, Content-Length: length, or (neither) a body that
        runs to the end of the connection. HTTP/1.0 clients get no chunking."""
        lines = [f"HTTP/1.1 {status} {reason(status)}",
                 f"Date: {formatdate(usegmt=True)}",
                 f"Server: {SERVER_NAME}"]
        no_body = status in (204, 304)
        if not no_body:
            if chunked and self.req.version == (1, 0):
                chunked = False           # HTTP/1.0 has no chunked coding: close-delimited
                self.close_after = True
            if chunked:
                lines.append("Transfer-Encoding: chunked")
            elif length is not None:
                lines.append(f"Content-Length: {length}")
            else:
                self.close_after = True
            if ctype:
                lines.append(f"Content-Type: {ctype}")
        self.chunked = chunked and not no_body
        self.length = length
        if no_body:
            self.body_allowed = False
        for name, value in headers:
            lines.append(f"{name}: {value}")
        if self.close_after:
            lines.append("Connection: close")
        elif self.req.version == (1, 0):
            lines.append("Connection: keep-alive")
        self.status = status
        await self._send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    async def write(self, data):
        if not data or not self.body_allowed:
            return
        if self.chunked:
            await self._send(b"%x\r\n%b\r\n" % (len(data), data))
        else:
            await self._send(data)
        self.sent += len(data)

    async def end(self):
        if self.chunked and self.body_allowed:
            await self._send(b"0\r\n\r\n")

    async def simple(self, status, body=b"", ctype="text/plain; charset=utf-8", headers=()):
        if isinstance(body, str):
            body = body.encode("utf-8")
        if status in (204, 304):
            await self.start(status, headers)
        else:
            await self.start(status, headers, length=len(body), ctype=ctype)
            await self.write(body)
        await self.end()


def parse_seconds(text, what):
    if text is None or not SECONDS_RE.fullmatch(text):
        raise HTTPError(400, f"{what} must be a number of seconds, such as 1 or 0.25")
    value = float(text)
    if value > MAX_SECONDS:
        raise HTTPError(400, f"{what} must be at most {MAX_SECONDS:.0f} seconds")
    return value


def parse_count(text, what, low, high):
    if text is None or not DIGITS_RE.fullmatch(text) or not low <= int(text) <= high:
        raise HTTPError(400, f"{what} must be a whole number from {low} to {high}")
    return int(text)


# ---- endpoints: each gets (req, resp, arg) and returns an optional log note ----

async def ep_home(req, resp, _):
    await req.discard()
    await resp.simple(200, HOME)


async def ep_delay(req, resp, arg):
    seconds = parse_seconds(arg, "the delay")
    await req.discard()
    await pause(req.writer, seconds)
    await resp.simple(200, f"waited {seconds:g} s before answering\n")


async def ep_drip(req, resp, arg):
    n = parse_count(arg, "N", 0, MAX_DRIP)
    interval = parse_seconds(req.arg("interval", "0.5"), "interval")
    await req.discard()
    await resp.start(200, length=n, ctype="text/plain; charset=utf-8")
    if not resp.body_allowed:
        return None
    for i in range(n):
        await pause(req.writer, interval)
        await resp.write(b"\n" if i == n - 1 else b".")
    return None


async def ep_status(req, resp, arg):
    code = parse_count(arg, "CODE", 200, 599)
    await req.discard()
    headers = [("Location", "/")] if code in (301, 302, 303, 307, 308) else []
    await resp.simple(code, f"{code} {reason(code)}\n", headers=headers)


async def ep_bytes(req, resp, arg):
    n = parse_count(arg, "N", 0, MAX_BYTES)
    await req.discard()
    await resp.start(200, length=n, ctype="text/plain; charset=us-ascii")
    left = n
    while left > 0 and resp.body_allowed:
        piece = PATTERN if left >= PIECE else PATTERN[:left]
        await resp.write(piece)
        left -= len(piece)


async def ep_chunked(req, resp, arg):
    n = parse_count(arg, "N", 0, MAX_BYTES)
    chunk = parse_count(req.arg("chunk", "4096"), "chunk", 1, 16 * 1024 * 1024)
    interval = parse_seconds(req.arg("interval", "0"), "interval")
    await req.discard()
    await resp.start(200, chunked=True, ctype="text/plain; charset=us-ascii")
    left = n
    while left > 0 and resp.body_allowed:
        size = min(chunk, left)
        piece = (PATTERN * (size // PIECE + 1))[:size] if size > PIECE else PATTERN[:size]
        if interval and left != n:
            await pause(req.writer, interval)
        await resp.write(piece)
        left -= size
    await resp.end()


async def ep_stall_body(req, resp, _):
    size = parse_count(req.arg("size", "1024"), "size", 2, MAX_BYTES)
    await req.discard()
    await resp.start(200, length=size, ctype="text/plain; charset=us-ascii")
    if not resp.body_allowed:
        return None
    left = size // 2
    while left > 0:
        piece = PATTERN if left >= PIECE else PATTERN[:left]
        await resp.write(piece)
        left -= len(piece)
    resp.close_after = True
    t0 = time.monotonic()
    try:
        await pause(req.writer, float("inf"))
    except ClientGone:
        pass
    return f"stalled after {resp.sent} of {size} bytes; client left after {time.monotonic() - t0:.1f}s"


async def ep_echo(req, resp, _):
    body = await req.read_all(MAX_ECHO)
    ctype = req.header("content-type") or "application/octet-stream"
    headers = [("X-Received-Bytes", str(len(body))), ("X-Received-Framing", req.framing)]
    await resp.simple(200, body, ctype=ctype, headers=headers)


async def ep_headers(req, resp, _):
    await req.discard()
    fields = ",\n  ".join(json.dumps([n, v]) for n, v in req.headers)
    doc = (f'{{"method": {json.dumps(req.method)}, "target": {json.dumps(req.target)}, '
           f'"version": "HTTP/{req.version[0]}.{req.version[1]}",\n "headers": [\n  {fields}\n ]}}\n')
    await resp.simple(200, doc, ctype="application/json")


async def ep_slow_read(req, resp, _):
    interval = parse_seconds(req.arg("interval", "1"), "interval")
    stall = req.arg("stall", "0") not in ("", "0", "false", "no")
    limit = parse_seconds(req.arg("max", "120"), "max")
    if not req.has_body:
        await resp.simple(200, "no request body to read\n")
        return None
    # Keep the kernel's buffer small so the sender's writes stall soon.
    sock = req.writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        except OSError:
            pass
    # A sender that closes with bytes still queued never gets its FIN through
    # the closed window, so the peer check cannot see it: give up after `max`.
    t0 = time.monotonic()
    end = t0 + limit
    try:
        while True:
            left = end - time.monotonic()
            if left <= 0:
                resp.close_after = True
                return f"gave up after {limit:g}s with {req.received} body bytes read"
            if stall:
                await pause(req.writer, left)
                continue
            await pause(req.writer, min(interval, left))
            if time.monotonic() < end:
                await req.read_piece(1)
                if req.body_done:
                    break
    except ClientGone:
        return f"read {req.received} body bytes in {time.monotonic() - t0:.1f}s; client went away"
    await resp.simple(200, f"read {req.received} bytes in {time.monotonic() - t0:.1f} s\n")
    return None


async def ep_options_star(req, resp, _):
    await req.discard()
    await resp.simple(200, "", headers=[("Allow", "GET, HEAD, POST, PUT, DELETE, OPTIONS")])


ROUTES = [
    (re.compile(r"/"), ep_home),
    (re.compile(r"/delay/([^/]*)"), ep_delay),
    (re.compile(r"/drip/([^/]*)"), ep_drip),
    (re.compile(r"/status/([^/]*)"), ep_status),
    (re.compile(r"/bytes/([^/]*)"), ep_bytes),
    (re.compile(r"/chunked/([^/]*)"), ep_chunked),
    (re.compile(r"/stall-body"), ep_stall_body),
    (re.compile(r"/echo"), ep_echo),
    (re.compile(r"/headers"), ep_headers),
    (re.compile(r"/slow-read"), ep_slow_read),
    (re.compile(r"\*"), ep_options_star),
]


async def ep_not_found(req, resp, _):
    await req.discard()
    await resp.simple(404, f"no such endpoint: {req.path}\nGET / lists them\n")


class Upstream:
    def __init__(self, quiet, keepalive_timeout):
        self.quiet = quiet
        self.keepalive_timeout = keepalive_timeout
        self.tasks = set()

    def log(self, req, status, seconds, peer, nreq, note=None):
        if self.quiet:
            return
        line = f"upstream: {req.method} {req.target} {status if status is not None else '-'} {seconds:.3f}s [{peer} #{nreq}]"
        if note:
            line += f" {note}"
        try:
            print(line, file=sys.stderr, flush=True)
        except (OSError, ValueError):
            pass

    async def handle(self, reader, writer):
        task = asyncio.current_task()
        self.tasks.add(task)
        peer = fmt_addr(writer.get_extra_info("peername"))
        nreq = 0
        try:
            while True:
                req = Request(reader, writer)
                try:
                    await req.read_head(self.keepalive_timeout)
                except (EOFError, ClientGone, ConnectionError, OSError, TimeoutError):
                    break
                except HTTPError as e:
                    nreq += 1
                    resp = Response(req)
                    resp.close_after = True
                    try:
                        await resp.simple(e.status, f"{e.status} {reason(e.status)}: {e.message}\n")
                    except ClientGone:
                        pass
                    self.log(req, e.status, 0.0, peer, nreq, e.message)
                    break
                nreq += 1
                t0 = time.monotonic()
                resp = Response(req)
                note = None
                for pattern, endpoint in ROUTES:
                    m = pattern.fullmatch(req.path)
                    if m:
                        break
                else:
                    endpoint, m = ep_not_found, None
                arg = m.group(1) if m and m.groups() else None
                try:
                    note = await endpoint(req, resp, arg)
                except asyncio.CancelledError:
                    self.log(req, resp.status, time.monotonic() - t0, peer, nreq, "(server shutting down)")
                    raise
                except ClientGone as e:
                    resp.close_after = True
                    note = f"({e})"
                    if resp.status is not None and resp.length is not None:
                        note = f"({e} after {resp.sent} of {resp.length} body bytes)"
                except HTTPError as e:  # bad arguments or a bad request body
                    note = e.message
                    if resp.status is None:
                        resp.close_after = resp.close_after or not req.body_done
                        try:
                            await resp.simple(e.status, f"{e.status} {reason(e.status)}: {e.message}\n")
                        except ClientGone:
                            resp.close_after = True
                    else:
                        resp.close_after = True
                except Exception:  # a bug here: answer 500 and show it
                    traceback.print_exc()
                    resp.close_after = True
                    if resp.status is None:
                        try:
                            await resp.simple(500, "500 Internal Server Error\n")
                        except ClientGone:
                            pass
                    note = "internal error"
                self.log(req, resp.status, time.monotonic() - t0, peer, nreq, note)
                if resp.close_after or not req.body_done:
                    break
        except asyncio.CancelledError:
            pass
        finally:
            self.tasks.discard(task)
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError, asyncio.CancelledError):
                pass


def parse_listen(text):
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise argparse.ArgumentTypeError(f"expected [V6]:PORT, got {text!r}")
        port = rest[1:]
    else:
        host, sep, port = text.rpartition(":")
        if not sep or ":" in host:
            raise argparse.ArgumentTypeError(f"expected HOST:PORT or [V6]:PORT, got {text!r}")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT with a port from 0 to 65535, got {text!r}")
    return host, int(port)


def parse_positive(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}")
    return value


async def watch_parent(ppid, stop):
    """Sets stop once the parent process has gone (this process is re-parented)."""
    while os.getppid() == ppid:
        await asyncio.sleep(0.5)
    stop.set()


async def serve(args):
    host, port = args.listen
    upstream = Upstream(args.quiet, args.keepalive_timeout)
    try:
        server = await asyncio.start_server(upstream.handle, host, port,
                                            limit=READER_LIMIT, reuse_address=True)
    except OSError as e:
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if e.errno == errno.EADDRINUSE:
            print(f"demo upstream: cannot listen on {shown}: address already in use", file=sys.stderr)
            print(f"demo upstream: see what holds it with: ss -ltnp 'sport = :{port}'", file=sys.stderr)
        else:
            print(f"demo upstream: cannot listen on {shown}: {e.strerror or e}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # An ignored SIGINT stays ignored (as for a background job of a script):
        # then whoever started this process decides when it ends.
        if sig != signal.SIGINT or signal.getsignal(sig) is not signal.SIG_IGN:
            loop.add_signal_handler(sig, stop.set)
    if args.exit_with_parent:
        loop.create_task(watch_parent(os.getppid(), stop))
    try:
        print(f"demo upstream listening on {fmt_addr(server.sockets[0].getsockname())}", flush=True)
    except (OSError, ValueError):
        pass
    await stop.wait()
    server.close()
    for task in list(upstream.tasks):
        task.cancel()
    if upstream.tasks:
        await asyncio.wait(list(upstream.tasks), timeout=2)
    await server.wait_closed()
    return 0


def main():
    ap = argparse.ArgumentParser(
        prog="upstream.py",
        description="Demo HTTP/1.1 origin server for hourglass. GET / lists the endpoints.")
    ap.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 9001),
                    metavar="HOST:PORT",
                    help="address to listen on (default 127.0.0.1:9001; [::1]:9001 for IPv6; port 0 picks a free one)")
    ap.add_argument("--quiet", action="store_true", help="no per-request lines on stderr")
    ap.add_argument("--keepalive-timeout", type=parse_positive, default=60.0, metavar="SECONDS",
                    help="close a connection idle between requests this long (default 60)")
    ap.add_argument("--exit-with-parent", action="store_true",
                    help="exit when the process that started this one exits (for scripts)")
    args = ap.parse_args()
    try:
        return asyncio.run(serve(args))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
