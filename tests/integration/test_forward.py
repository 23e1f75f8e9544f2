"""The forward proxy (absolute-form requests, CONNECT tunnels), its client
allow-list, destination checks (every IP spelling, names after DNS), CONNECT
ports, proxy credentials, DNS failures and timeouts; tunnel timeouts; and
WebSocket upgrades through the reverse proxy.

Network rule: every packet stays on loopback.
  * Every forward proxy started here gets --resolver pointing at FakeDNS, an
    asyncio UDP server on 127.0.0.1 whose table holds loopback addresses only
    (checked when an entry is set): no query ever leaves the host and
    /etc/hosts is never read.
  * Destinations named in requests that are not loopback (10.0.0.1,
    169.254.169.254, 224.0.0.1, ...) and malformed numeric hosts (a buggy
    parser could turn 1.2.3.4.5 into a public address) are only ever sent to
    a proxy that runs in its own network namespace (`unshare -rn`) where `lo`
    is the only interface: even a proxy that wrongly connected could not
    send a packet anywhere. The test reaches that proxy through a Unix socket
    and a relay inside the namespace. No --forward-allow-destination is given
    to it, and every request has a client-side deadline, so a missing 403 is
    a failure, never a hang. Where `unshare -rn` is not available those tests
    are skipped, never run unconfined.
  * Loopback spellings (127.1, 2130706433, [::ffff:7f00:1], 0.0.0.0, ...)
    run against an ordinary proxy with a live loopback upstream on the port
    they name, so a proxy that wrongly connected would be seen doing it.
"""

import base64
import hashlib
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from conftest import (Blackhole, Client, Proxy, assert_window, free_port, is_sanitized,
                      wait_port, wait_until)
from fakedns import SILENT, FakeDNS

# sanitizer builds run slower: timing windows (upper slack) are scaled by this
SLOW = 2.0 if is_sanitized() else 1.0

# Pause for a negative check only ("the upstream saw no connection"): the
# positive event before it (the refusal read, its log line written) has
# already been waited for; this covers delivery through the fake upstream's
# event loop thread, as in test_hostile.py.
SETTLE = 0.1

CONNECT_OK = b"HTTP/1.1 200 Connection Established\r\n\r\n"
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC11B85"


# --------------------------------------------------------------------------
# fake DNS (fakedns.py: asyncio UDP on 127.0.0.1)

@pytest.fixture
def dns(aio):
    d = FakeDNS(aio)
    yield d
    d.close()
    assert not d.errors, f"fake DNS could not read queries: {d.errors}"


# --------------------------------------------------------------------------
# starting forward proxies, clients

@pytest.fixture
def fwd(proxy_factory, dns):
    """start(*flags, **kw) -> Proxy with a forward listener on p.fport
    (127.0.0.1) and --resolver set to the fake DNS."""
    def start(*flags, forward_host="127.0.0.1", **kw):
        fport = free_port(forward_host)
        fl = f"[{forward_host}]:{fport}" if ":" in forward_host else f"{forward_host}:{fport}"
        p = proxy_factory("--forward-listen", fl, "--resolver", dns.addr, *flags, **kw)
        wait_port(forward_host, fport, 5.0 * SLOW, p.proc)
        p.fport = fport
        p.fhost = forward_host
        return p
    return start


def fclient(p, src=None, timeout=3.0):
    """A Client on the proxy's forward listener (from source address src)."""
    c = Client(p.fport, host=p.fhost, connect=False, timeout=timeout * SLOW)
    if src is not None:
        c.sock.bind((src, 0))
    c.sock.settimeout(timeout * SLOW)
    c.sock.connect((p.fhost, p.fport))
    return c


def R(*lines, body=b""):
    """A raw request: lines joined by CRLF, blank line, body."""
    out = b""
    for l in lines:
        out += (l.encode("latin-1") if isinstance(l, str) else l) + b"\r\n"
    return out + b"\r\n" + body


def get_abs(authority, path="/", extra=()):
    return R(f"GET http://{authority}{path} HTTP/1.1", f"Host: {authority}", *extra)


def connect_req(authority, extra=()):
    return R(f"CONNECT {authority} HTTP/1.1", f"Host: {authority}", *extra)


def send_quietly(c, data):
    try:
        c.send(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def last_line(p, n):
    """Waits for the n-th access-log line (1-based) and returns it parsed."""
    return p.wait_log(n, timeout=3.0 * SLOW)[n - 1]


def basic(user, pw):
    return "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()


# --------------------------------------------------------------------------
# upstream handlers

def echo_tunnel_handler(on_eof=b""):
    """Echoes every byte; at EOF sends on_eof, then closes."""
    async def handler(reader, writer, ctx):
        while True:
            d = await reader.read(1 << 16)
            if not d:
                break
            writer.write(d)
            await writer.drain()
        if on_eof:
            writer.write(on_eof)
            await writer.drain()
        writer.close()
    return handler


def record_handler(body=b"fwd-ok"):
    """Answers each request with 200 and 'METHOD TARGET body=...'."""
    async def handler(reader, writer, ctx):
        async def respond(ctx, req):
            await ctx.respond(200, body + b" " + f"{req.method} {req.target}".encode()
                              + b" body=" + req.body)
        await ctx.serve_forever(respond)
    return handler


# --------------------------------------------------------------------------
# tunnel I/O on a Client

def tunnel_read(c, n, timeout=3.0):
    """Exactly n bytes from the tunnel (buffered ones first)."""
    deadline = time.monotonic() + timeout * SLOW
    while len(c.buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"tunnel: {len(c.buf)} of {n} bytes after {timeout}s")
        c.sock.settimeout(left)
        try:
            d = c.sock.recv(1 << 18)
        except socket.timeout:
            continue
        if not d:
            raise AssertionError(f"tunnel closed after {len(c.buf)} of {n} bytes: "
                                 f"{bytes(c.buf[:200])!r}")
        c.buf += d
    d = bytes(c.buf[:n])
    del c.buf[:n]
    return d


def sender_thread(sock, data):
    result = {}
    s = sock.dup()
    s.settimeout(20)

    def run():
        try:
            s.sendall(data)
            result["error"] = None
        except OSError as e:
            result["error"] = e
        finally:
            s.close()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, result


def open_tunnel(p, authority, early=b"", extra=()):
    """CONNECT; returns the client once the exact 200 head has been read."""
    c = fclient(p)
    req = connect_req(authority, extra)
    c.t_sent = time.monotonic()   # before the proxy can start the tunnel's clock
    c.send(req + early)
    head, t = c.read_head()
    assert t is not None, f"no response to CONNECT (got {head!r}); stderr:\n" \
                          + p.stderr_text()[-2000:]
    assert head == CONNECT_OK, head
    c.t_tunnel = t
    c.req_len = len(req)
    return c


# --------------------------------------------------------------------------
# WebSocket (RFC 6455), minimal

def ws_accept(key):
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + WS_GUID).digest()).decode()


def ws_mask(key, data):
    if not data:
        return b""
    k = (key * (len(data) // 4 + 1))[:len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(len(data), "big")


def ws_frame(opcode, payload, mask=True):
    n = len(payload)
    b0 = 0x80 | opcode
    mb = 0x80 if mask else 0
    if n < 126:
        hdr = bytes([b0, mb | n])
    elif n < 65536:
        hdr = bytes([b0, mb | 126]) + struct.pack(">H", n)
    else:
        hdr = bytes([b0, mb | 127]) + struct.pack(">Q", n)
    if mask:
        key = os.urandom(4)
        return hdr + key + ws_mask(key, payload)
    return hdr + payload


def ws_parse(buf):
    """(fin, opcode, masked, payload, length consumed) or None if incomplete."""
    if len(buf) < 2:
        return None
    b0, b1 = buf[0], buf[1]
    n, i = b1 & 0x7f, 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, i = struct.unpack(">H", bytes(buf[2:4]))[0], 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, i = struct.unpack(">Q", bytes(buf[2:10]))[0], 10
    masked = bool(b1 & 0x80)
    key = b""
    if masked:
        if len(buf) < i + 4:
            return None
        key, i = bytes(buf[i:i + 4]), i + 4
    if len(buf) < i + n:
        return None
    payload = bytes(buf[i:i + n])
    if masked:
        payload = ws_mask(key, payload)
    return bool(b0 & 0x80), b0 & 0x0f, masked, payload, i + n


def ws_read(c, timeout=3.0):
    """One frame from the client's connection: (fin, opcode, masked, payload)."""
    deadline = time.monotonic() + timeout * SLOW
    while True:
        f = ws_parse(c.buf)
        if f is not None:
            del c.buf[:f[4]]
            return f[:4]
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no complete WebSocket frame after {timeout}s: "
                                 f"{bytes(c.buf[:100])!r}")
        c.sock.settimeout(left)
        try:
            d = c.sock.recv(1 << 18)
        except socket.timeout:
            continue
        if not d:
            raise AssertionError(f"connection closed inside a WebSocket frame: "
                                 f"{bytes(c.buf[:100])!r}")
        c.buf += d


def ws_handler(status_line="HTTP/1.1 101 Switching Protocols", upgrade="websocket"):
    """A minimal RFC 6455 server: checks the handshake, answers 101 with
    Sec-WebSocket-Accept, echoes each masked client frame unmasked; a close
    frame is echoed and the connection closed. ctx.frames records
    (opcode, masked, payload) of what it received."""
    async def handler(reader, writer, ctx):
        ctx.frames = []
        req = await ctx.read_head()
        key = req.header("sec-websocket-key") or ""
        ctx.t_101 = time.monotonic()   # before the proxy can start the tunnel's clock
        await ctx.send((f"{status_line}\r\nUpgrade: {upgrade}\r\nConnection: Upgrade\r\n"
                        f"Sec-WebSocket-Accept: {ws_accept(key)}\r\n\r\n").encode())
        buf = bytearray()
        while True:
            f = ws_parse(buf)
            if f is None:
                d = await reader.read(1 << 16)
                if not d:
                    return
                buf += d
                continue
            del buf[:f[4]]
            _, opcode, masked, payload = f[:4]
            ctx.frames.append((opcode, masked, payload))
            if not masked:   # RFC 6455 5.1: the server must close (1002)
                writer.write(ws_frame(8, struct.pack(">H", 1002), mask=False))
                writer.close()
                return
            writer.write(ws_frame(opcode, payload, mask=False))
            await writer.drain()
            if opcode == 8:
                writer.close()
                return
    return handler


def ws_request(key, path="/chat", host="ws.test", extra=()):
    return R(f"GET {path} HTTP/1.1", f"Host: {host}", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
             *extra)


def ws_open(p, key=None):
    """Handshake through the reverse listener; returns (client, key, head bytes)."""
    key = key or base64.b64encode(os.urandom(16)).decode()
    c = p.client(timeout=3.0 * SLOW)
    req = ws_request(key)
    c.send(req)
    head, t = c.read_head()
    assert t is not None, f"no 101 head: {head!r}\nstderr:\n{p.stderr_text()[-2000:]}"
    start = head.split(b"\r\n", 1)[0]
    assert start.startswith(b"HTTP/1.1 101"), head
    hdrs = {k.lower(): v for k, v in (l.split(": ", 1) for l in
                                       head.decode("latin-1").split("\r\n")[1:] if l)}
    assert hdrs.get("upgrade", "").lower() == "websocket", head
    assert "upgrade" in hdrs.get("connection", "").lower(), head
    assert hdrs.get("sec-websocket-accept") == ws_accept(key), head
    c.t_tunnel = t
    c.req_len = len(req)
    c.head_len = len(head)
    return c, key


# --------------------------------------------------------------------------
# sandboxed proxy: its own network namespace, lo only, reached by a Unix socket

SANDBOX_HELPER = r'''
import ctypes, fcntl, os, signal, socket, struct, subprocess, sys, threading, time
path, port, parent_ns, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]

def die(msg):
    sys.stderr.write("sandbox: " + msg + "\n")
    sys.stderr.flush()
    os._exit(97)

if os.readlink("/proc/self/ns/net") == parent_ns:
    die("not in a network namespace of its own")
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
flags = struct.unpack("16sH22x", fcntl.ioctl(s, 0x8913, struct.pack("16sH22x", b"lo", 0)))[1]
fcntl.ioctl(s, 0x8914, struct.pack("16sH22x", b"lo", flags | 1))   # SIOCSIFFLAGS IFF_UP
s.close()
names = sorted(n for _, n in socket.if_nameindex())
if names != ["lo"]:
    die("interfaces other than lo: %r" % (names,))

libc = ctypes.CDLL(None, use_errno=True)
proc = subprocess.Popen(argv, preexec_fn=lambda: libc.prctl(1, signal.SIGKILL))  # PDEATHSIG

def forward(sig, frame):
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        pass
signal.signal(signal.SIGTERM, forward)
signal.signal(signal.SIGINT, forward)

def finish():
    rc = proc.wait()
    os._exit(rc if rc >= 0 else 128 - rc)

deadline = time.monotonic() + 60
while True:
    if proc.poll() is not None:
        finish()
    t = socket.socket()
    t.settimeout(0.2)
    try:
        t.connect(("127.0.0.1", port))
        t.close()
        break
    except OSError:
        t.close()
        if time.monotonic() > deadline:
            die("the proxy does not listen")
        time.sleep(0.01)

def pump(src, dst, done):
    try:
        while True:
            d = src.recv(1 << 16)
            if not d:
                break
            dst.sendall(d)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        for x in (src, dst):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
    with done[0]:
        done[1] += 1
        if done[1] == 2:
            src.close()
            dst.close()

def serve(l):
    while True:
        a, _ = l.accept()
        try:
            b = socket.create_connection(("127.0.0.1", port), timeout=5)
            b.settimeout(None)
        except OSError:
            a.close()
            continue
        done = [threading.Lock(), 0]
        threading.Thread(target=pump, args=(a, b, done), daemon=True).start()
        threading.Thread(target=pump, args=(b, a, done), daemon=True).start()

l = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
l.bind(path + ".tmp")
l.listen(128)
os.rename(path + ".tmp", path)
threading.Thread(target=serve, args=(l,), daemon=True).start()
finish()
'''

SANDBOX_PORT = 18080   # inside the namespace nothing else listens


class SandboxProxy(Proxy):
    """A Proxy run by SANDBOX_HELPER under `unshare -rn`; client() connects
    through the helper's Unix socket (the proxy sees a 127.0.0.1 client)."""

    def __init__(self, args, workdir, sockdir):
        super().__init__(args, workdir, "127.0.0.1", SANDBOX_PORT)
        self.sock_path = os.path.join(sockdir, "fwd.sock")
        self.argv = ["unshare", "-rn", sys.executable, "-c", SANDBOX_HELPER, self.sock_path,
                     str(SANDBOX_PORT), os.readlink("/proc/self/ns/net")] + self.argv

    def start(self):
        self._err = open(self.err_path, "wb")
        self._out = open(self.out_path, "wb")
        self.proc = subprocess.Popen(self.argv, stdout=self._out, stderr=self._err,
                                     stdin=subprocess.DEVNULL, cwd=str(self.workdir))
        deadline = time.monotonic() + 30.0
        while not os.path.exists(self.sock_path):
            if self.proc.poll() is not None:
                return False
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def client(self, timeout=3.0):
        c = Client(0, connect=False, timeout=timeout * SLOW)
        c.sock.close()
        c.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.sock.settimeout(timeout * SLOW)
        c.sock.connect(self.sock_path)
        return c


_sandbox_ok = None


def sandbox_available():
    global _sandbox_ok
    if _sandbox_ok is None:
        try:
            _sandbox_ok = shutil.which("unshare") is not None and subprocess.run(
                ["unshare", "-rn", "true"], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, timeout=10).returncode == 0
        except (OSError, subprocess.SubprocessError):
            _sandbox_ok = False
    return _sandbox_ok


@pytest.fixture(scope="module")
def sandbox_proxy(tmp_path_factory):
    """One forward proxy in its own network namespace for the whole module:
    no --forward-allow-destination, default CONNECT port 443, a resolver
    address where nothing answers (so nothing reads /etc/resolv.conf)."""
    if not sandbox_available():
        pytest.skip("unshare -rn is not available: non-loopback destinations are only "
                    "ever tried against a proxy in a network namespace of its own")
    workdir = tmp_path_factory.mktemp("sandbox")
    sockdir = tempfile.mkdtemp(prefix="hgfwd")   # short: Unix socket paths are limited
    args = ["--forward-listen", f"127.0.0.1:{SANDBOX_PORT}", "--resolver", "127.0.0.1:53",
            "--single-process"]
    p = SandboxProxy(args, workdir, sockdir)
    if not p.start():
        p.stopped = True
        p._err.close()
        p._out.close()
        pytest.fail(f"sandboxed proxy did not start (status {p.proc.poll()}):\n"
                    f"argv: {p.argv[6:]}\nstderr:\n{p.stderr_text()}")
    yield p
    problems = p.stop()
    shutil.rmtree(sockdir, ignore_errors=True)
    if problems:
        pytest.fail("\n".join(problems))


# ==========================================================================
# clients: allow-list

def test_allowed_and_refused_client(fwd, upstream):
    up = upstream(record_handler())
    p = fwd("--forward-allow-client", "127.0.0.2/32",
            "--forward-allow-destination", "127.0.0.0/8")
    # allowed: from 127.0.0.2
    c = fclient(p, src="127.0.0.2")
    c.send(get_abs(f"127.0.0.1:{up.port}", "/allowed"))
    r = c.read_response()
    assert r is not None and r.status == 200, (r, p.stderr_text()[-2000:])
    assert r.body == b"fwd-ok GET /allowed body=", r
    line = last_line(p, 1)
    assert line["status"] == "200" and line["client"].startswith("127.0.0.2:"), line
    assert line["upstream"] == up.addr, line
    # refused: from 127.0.0.1, same request
    c2 = fclient(p)
    c2.send(get_abs(f"127.0.0.1:{up.port}", "/refused"))
    r2 = c2.read_response()
    assert r2 is not None and r2.status == 403, r2
    assert r2.body == b"403 Forbidden: this client may not use the forward proxy\n", r2
    assert c2.wait_closed(1.0 * SLOW), "connection not closed after the 403"
    line = last_line(p, 2)
    assert line["status"] == "403" and line["reason"] == "forbidden", line
    assert line["client"].startswith("127.0.0.1:"), line
    assert line["method"] == "GET" and line["target"] == f"http://127.0.0.1:{up.port}/refused"
    time.sleep(SETTLE)
    assert [r.target for r in up.requests()] == ["/allowed"], up.requests()
    # CONNECT from a refused client: 403 too, nothing opened
    c3 = fclient(p)
    c3.send(connect_req(f"127.0.0.1:{up.port}"))
    r3 = c3.read_response()
    assert r3 is not None and r3.status == 403, r3
    assert last_line(p, 3)["reason"] == "forbidden"
    time.sleep(SETTLE)
    assert len(up.conns) == 1, "a refused client's CONNECT reached the upstream"


def test_default_client_list_allows_ipv6_loopback(fwd, upstream):
    up6 = upstream(record_handler(), host="::1")
    p = fwd("--forward-allow-destination", "::1/128", forward_host="::1")
    c = fclient(p)
    c.send(get_abs(f"[::1]:{up6.port}", "/v6"))
    r = c.read_response()
    assert r is not None and r.status == 200, (r, p.stderr_text()[-2000:])
    assert r.body == b"fwd-ok GET /v6 body=", r
    line = last_line(p, 1)
    assert line["client"].startswith("[::1]:") or line["client"].startswith("::1"), line
    assert line["upstream"] == f"[::1]:{up6.port}", line
    (req,) = up6.requests()
    assert req.header("host") == f"[::1]:{up6.port}", req


def test_reverse_listener_stays_reverse(fwd, upstream):
    """CONNECT on the --listen listener: 501; origin-form on the forward one: 400."""
    up = upstream(record_handler())
    p = fwd("--forward-allow-destination", "127.0.0.0/8", upstreams=[up])
    c = p.client()
    c.send(connect_req(f"127.0.0.1:{up.port}"))
    r = c.read_response()
    assert r is not None and r.status == 501, r
    c = p.client()
    c.send(R("GET /rev HTTP/1.1", "Host: x"))
    r = c.read_response()
    assert r is not None and r.status == 200 and r.body == b"fwd-ok GET /rev body=", r
    c = fclient(p)
    c.send(R("GET /origin HTTP/1.1", f"Host: 127.0.0.1:{up.port}"))
    r = c.read_response()
    assert r is not None and r.status == 400, r
    assert c.wait_closed(1.0 * SLOW)
    lines = p.wait_log(3)
    assert [l["status"] for l in lines] == ["501", "200", "400"], lines
    assert lines[2]["reason"] == "bad_request", lines[2]
    time.sleep(SETTLE)
    assert [q.target for q in up.requests()] == ["/rev"]


# ==========================================================================
# destinations: loopback spellings (ordinary proxy, live upstream on the port)

# (host as written, family of the address it means, ip text in the refusal, class)
LOOPBACK_FORMS = [
    ("127.0.0.1", 4, "127.0.0.1", "loopback"),
    ("2130706433", 4, "127.0.0.1", "loopback"),
    ("0x7f.1", 4, "127.0.0.1", "loopback"),
    ("0177.0.0.1", 4, "127.0.0.1", "loopback"),
    ("127.1", 4, "127.0.0.1", "loopback"),
    ("127.0.1", 4, "127.0.0.1", "loopback"),
    ("0x7f000001", 4, "127.0.0.1", "loopback"),
    ("0X7F000001", 4, "127.0.0.1", "loopback"),
    ("017700000001", 4, "127.0.0.1", "loopback"),
    ("0x7f.0.0.0x1", 4, "127.0.0.1", "loopback"),
    ("127.0.0.1.", 4, "127.0.0.1", "loopback"),
    ("[::1]", 6, "::1", "loopback"),
    ("[0:0:0:0:0:0:0:1]", 6, "::1", "loopback"),
    ("[::ffff:127.0.0.1]", 4, "::ffff:127.0.0.1", "loopback"),
    ("[::ffff:7f00:1]", 4, "::ffff:127.0.0.1", "loopback"),
    ("[::FFFF:7F00:0001]", 4, "::ffff:127.0.0.1", "loopback"),
    # unspecified: Linux connects these to the local host, so they are local too
    ("0.0.0.0", 4, "0.0.0.0", "unspecified"),
    ("0", 4, "0.0.0.0", "unspecified"),
    ("0x0", 4, "0.0.0.0", "unspecified"),
    ("[::]", 6, "::", "unspecified"),
]


@pytest.fixture
def loopback_targets(upstream):
    """Live upstreams on 127.0.0.1 and ::1 that a wrong connect would reach."""
    return {4: upstream(record_handler()), 6: upstream(record_handler(), host="::1")}


def _refusal_checks(r, line, c, ip, cls, method, target):
    assert r is not None, "connection closed without a response"
    assert r.status == 403, r
    m = re.match(rb"403 Forbidden: destination (\S+) is a (\S+) address\n$", r.body)
    assert m, r.body
    # a v4-mapped address may be named as the IPv4 address it holds
    ips = {ip, ip[7:]} if ip.startswith("::ffff:") and "." in ip else {ip}
    assert m.group(1).decode() in ips and m.group(2).decode() == cls, r.body
    assert (r.header("connection") or "").lower() == "close", r.headers
    assert c.wait_closed(1.0 * SLOW), "connection not closed after the 403"
    assert line["status"] == "403" and line["reason"] == "forbidden", line
    assert line["method"] == method and line["target"] == target, line


@pytest.mark.parametrize("method", ["GET", "CONNECT"])
@pytest.mark.parametrize("host,fam,ip,cls", LOOPBACK_FORMS, ids=[f[0] for f in LOOPBACK_FORMS])
def test_refused_destination_loopback_spelling(fwd, loopback_targets, method, host, fam, ip,
                                               cls):
    up = loopback_targets[fam]
    p = fwd("--forward-connect-port", str(loopback_targets[4].port),
            "--forward-connect-port", str(loopback_targets[6].port))
    authority = f"{host}:{up.port}"
    c = fclient(p)
    if method == "GET":
        target = f"http://{authority}/x"
        c.send(get_abs(authority, "/x"))
    else:
        target = authority
        c.send(connect_req(authority))
    r = c.read_response()
    _refusal_checks(r, last_line(p, 1), c, ip, cls, method, target)
    time.sleep(SETTLE)
    for u in loopback_targets.values():
        assert not u.conns, f"the proxy connected to {u.addr} for {host}"


def test_allowed_destination_list_is_exact(fwd, upstream):
    """--forward-allow-destination 127.0.0.1/32 opens 127.0.0.1 in any spelling,
    not the rest of 127/8; ::1 stays refused."""
    up = upstream(record_handler())
    p = fwd("--forward-allow-destination", "127.0.0.1/32")
    for i, host in enumerate(["2130706433", "0x7f.1", "[::ffff:127.0.0.1]"]):
        c = fclient(p)
        c.send(get_abs(f"{host}:{up.port}", f"/ok{i}"))
        r = c.read_response()
        assert r is not None and r.status == 200, (host, r, p.stderr_text()[-1500:])
        assert r.body == f"fwd-ok GET /ok{i} body=".encode(), r
    for host, ip in [("127.0.0.2", "127.0.0.2"), ("[::1]", "::1")]:
        c = fclient(p)
        c.send(get_abs(f"{host}:{up.port}", "/no"))
        r = c.read_response()
        assert r is not None and r.status == 403, (host, r)
        assert r.body == f"403 Forbidden: destination {ip} is a loopback address\n".encode()
    lines = p.wait_log(5)
    assert [l["status"] for l in lines] == ["200"] * 3 + ["403"] * 2, lines


# ==========================================================================
# destinations that are not loopback: only ever sent to the sandboxed proxy

# (host as written, canonical address, class)
OTHER_FORMS = [
    ("10.0.0.1", "10.0.0.1", "private"),
    ("012.0.0.1", "10.0.0.1", "private"),
    ("167772161", "10.0.0.1", "private"),
    ("0xa.0.0.1", "10.0.0.1", "private"),
    ("172.16.0.1", "172.16.0.1", "private"),
    ("192.168.1.1", "192.168.1.1", "private"),
    ("0xc0a80101", "192.168.1.1", "private"),
    ("100.64.0.1", "100.64.0.1", "private"),
    ("169.254.169.254", "169.254.169.254", "link_local"),
    ("2852039166", "169.254.169.254", "link_local"),
    ("0xa9fea9fe", "169.254.169.254", "link_local"),
    ("0251.0376.0251.0376", "169.254.169.254", "link_local"),
    ("169.254.43518", "169.254.169.254", "link_local"),
    ("0xA9.0xFE.0xA9.0xFE", "169.254.169.254", "link_local"),
    ("169.254.169.254.", "169.254.169.254", "link_local"),
    ("224.0.0.1", "224.0.0.1", "multicast"),
    ("239.255.255.250", "239.255.255.250", "multicast"),
    ("255.255.255.255", "255.255.255.255", "reserved"),
    ("240.0.0.1", "240.0.0.1", "reserved"),
    ("192.0.2.1", "192.0.2.1", "reserved"),
    ("198.18.0.1", "198.18.0.1", "reserved"),
    ("[fe80::1]", "fe80::1", "link_local"),
    ("[fc00::1]", "fc00::1", "private"),
    ("[fd12:3456::1]", "fd12:3456::1", "private"),
    ("[ff02::1]", "ff02::1", "multicast"),
    ("[2001:db8::1]", "2001:db8::1", "reserved"),
    ("[::ffff:10.0.0.1]", "::ffff:10.0.0.1", "private"),
    ("[::ffff:a9fe:a9fe]", "::ffff:169.254.169.254", "link_local"),
    ("[::ffff:169.254.169.254]", "::ffff:169.254.169.254", "link_local"),
    ("[64:ff9b::a9fe:a9fe]", "64:ff9b::a9fe:a9fe", "link_local"),
    ("[2002:a9fe:a9fe::1]", "2002:a9fe:a9fe::1", "link_local"),
    ("[::a9fe:a9fe]", "::a9fe:a9fe", "link_local"),
]


def _canonical(addr):
    if ":" in addr:
        return socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, addr))
    return addr


@pytest.mark.parametrize("method", ["GET", "CONNECT"])
@pytest.mark.parametrize("host,addr,cls", OTHER_FORMS, ids=[f[0] for f in OTHER_FORMS])
def test_refused_destination(sandbox_proxy, method, host, addr, cls):
    p = sandbox_proxy
    n0 = len(p.log_lines())
    c = p.client()
    if method == "GET":
        authority, target = host, f"http://{host}/meta"
        c.send(get_abs(authority, "/meta"))
    else:
        authority = target = f"{host}:443"
        c.send(connect_req(authority))
    r = c.read_response()
    _refusal_checks(r, last_line(p, n0 + 1), c, _canonical(addr), cls, method, target)


MALFORMED_HOSTS = ["127.0.0.256", "1.2.3.4.5", "08", "0x", "1.2.3.4x", "256.0.0.1",
                   "4294967296", "0x100000000", "1.2.3.0400", "127..1", "[127.0.0.1]",
                   "[fe80::1%25eth0]", "[::1", "[1::2::3]", "[12345::1]", "example.123",
                   "-bad.test", "a b"]


@pytest.mark.parametrize("method", ["GET", "CONNECT"])
@pytest.mark.parametrize("host", MALFORMED_HOSTS)
def test_malformed_numeric_host(sandbox_proxy, method, host):
    p = sandbox_proxy
    n0 = len(p.log_lines())
    c = p.client()
    if method == "GET":
        c.send(get_abs(host, "/x") if " " not in host
               else R(f"GET http://{host}/x HTTP/1.1", "Host: x"))
    else:
        c.send(connect_req(f"{host}:443") if " " not in host
               else R(f"CONNECT {host}:443 HTTP/1.1", "Host: x"))
    r = c.read_response()
    assert r is not None and r.status == 400, r
    assert c.wait_closed(1.0 * SLOW)
    line = last_line(p, n0 + 1)
    assert line["status"] == "400" and line["reason"] == "bad_request", line


# ==========================================================================
# CONNECT

def test_connect_tunnel_echo_and_half_close(fwd, upstream):
    up = upstream(echo_tunnel_handler(on_eof=b"<eof-seen>"))
    p = fwd("--forward-allow-destination", "127.0.0.0/8",
            "--forward-connect-port", str(up.port))
    authority = f"127.0.0.1:{up.port}"
    c = open_tunnel(p, authority, early=b"early bytes")
    got = tunnel_read(c, len(b"early bytes"))
    assert got == b"early bytes", got
    c.send(b"ping")
    assert tunnel_read(c, 4) == b"ping"
    payload = os.urandom(1 << 20)
    t, res = sender_thread(c.sock, payload)
    back = tunnel_read(c, len(payload), timeout=10)
    t.join(10)
    assert res.get("error") is None, res
    assert back == payload, "echoed bytes differ"
    # half-close from the client: passed on, and the echo still flows back
    c.shutdown_write()
    (conn,) = up.wait_conns(1)
    wait_until(lambda: conn.eof_at, 2.0 * SLOW, msg="the echo server to see the client's FIN")
    rest = c.read_until_close(2.0 * SLOW)
    assert rest == b"<eof-seen>", rest
    assert not c.reset, "the tunnel ended with a reset"
    line = last_line(p, 1)
    assert line["method"] == "CONNECT" and line["target"] == authority, line
    assert line["status"] == "200" and line["reason"] == "ok", line
    assert line["upstream"] == up.addr, line
    sent = len(b"early bytes") + 4 + len(payload)
    assert int(line["bytes"]) == len(CONNECT_OK) + sent + len(b"<eof-seen>"), line
    assert int(line["bytes_in"]) == c.req_len + sent, line
    assert bytes(conn.received) == b"early bytes" + b"ping" + payload


def test_connect_tunnel_upstream_half_close(fwd, upstream):
    """The upstream ends its direction first: the client gets EOF and may still
    send; the tunnel ends (reason=ok) when the client ends too."""
    async def handler(reader, writer, ctx):
        writer.write(b"hello from upstream")
        await writer.drain()
        writer.write_eof()
        while await reader.read(1 << 16):
            pass
        writer.close()
    up = upstream(handler)
    p = fwd("--forward-allow-destination", "127.0.0.0/8",
            "--forward-connect-port", str(up.port))
    c = open_tunnel(p, f"127.0.0.1:{up.port}")
    assert c.read_until_close(2.0 * SLOW) == b"hello from upstream"
    assert not c.reset
    (conn,) = up.wait_conns(1)
    c.send(b"after the upstream's FIN")
    wait_until(lambda: bytes(conn.received) == b"after the upstream's FIN", 2.0 * SLOW,
               msg=f"client bytes after the half-close to arrive (got {bytes(conn.received)!r})")
    assert not p.log_lines(), "the tunnel ended while the client direction was open"
    c.shutdown_write()
    line = last_line(p, 1)
    assert line["status"] == "200" and line["reason"] == "ok", line
    assert conn.wait_proxy_closed(2.0 * SLOW)


CONNECT_BAD_TARGETS = [
    "127.0.0.1",             # no port
    "[::1]",                 # no port
    "127.0.0.1:",            # empty port
    "user@127.0.0.1:443",
    "user:pw@127.0.0.1:443",
    ":443",                  # empty host
    "[]:443",
    "127.0.0.1:0",
    "127.0.0.1:65536",
    "127.0.0.1:99999",
    "127.0.0.1:123456",
    "127.0.0.1:+443",
    "127.0.0.1:0x1bb",
    "127.0.0.1:443/",
    "::1:443",               # unbracketed IPv6
    "http://127.0.0.1:443/",
    "127.0.0.1:443:443",
]


@pytest.mark.parametrize("target", CONNECT_BAD_TARGETS)
def test_connect_bad_target(fwd, target):
    # 127/8 and ::1 allowed and the port open: a target wrongly accepted would
    # be tried on loopback (nothing listens on 443) and answered 502, not 400
    p = fwd("--forward-allow-destination", "127.0.0.0/8", "--forward-allow-destination", "::1")
    c = fclient(p)
    c.send(R(f"CONNECT {target} HTTP/1.1", "Host: 127.0.0.1:443"))
    r = c.read_response()
    assert r is not None and r.status == 400, r
    assert c.wait_closed(1.0 * SLOW)
    line = last_line(p, 1)
    assert line["status"] == "400" and line["reason"] == "bad_request", line
    assert line["method"] == "CONNECT", line


def test_connect_port_not_allowed(fwd, upstream):
    up = upstream(echo_tunnel_handler())
    # default port list (443): the echo server's port is not in it
    p = fwd("--forward-allow-destination", "127.0.0.0/8")
    c = fclient(p)
    c.send(connect_req(f"127.0.0.1:{up.port}"))
    r = c.read_response()
    assert r is not None and r.status == 403, r
    assert r.body == b"403 Forbidden: CONNECT to this port is not allowed\n", r
    assert c.wait_closed(1.0 * SLOW)
    line = last_line(p, 1)
    assert line["status"] == "403" and line["reason"] == "forbidden", line
    time.sleep(SETTLE)
    assert not up.conns, "CONNECT to a port not allowed reached the upstream"


def test_connect_port_list_replaces_default(fwd, upstream):
    """--forward-connect-port N replaces 443: CONNECT to 443 is then refused,
    to N it works."""
    up = upstream(echo_tunnel_handler())
    p = fwd("--forward-allow-destination", "127.0.0.0/8",
            "--forward-connect-port", str(up.port))
    c = fclient(p)
    c.send(connect_req("127.0.0.1:443"))
    r = c.read_response()
    assert r is not None and r.status == 403, r
    assert r.body == b"403 Forbidden: CONNECT to this port is not allowed\n", r
    c = open_tunnel(p, f"127.0.0.1:{up.port}")
    c.send(b"x")
    assert tunnel_read(c, 1) == b"x"


def test_connect_refused_upstream_is_502(fwd):
    dead = free_port()
    p = fwd("--forward-allow-destination", "127.0.0.0/8", "--forward-connect-port", str(dead))
    c = fclient(p)
    t0 = c.send(connect_req(f"127.0.0.1:{dead}"))
    r = c.read_response()
    assert r is not None and r.status == 502, r
    assert r.t_head - t0 < 0.5 * SLOW
    line = last_line(p, 1)
    assert line["status"] == "502" and line["reason"] == "upstream_refused", line


# ==========================================================================
# absolute-form requests

def test_absolute_form_get_through_forward_proxy(fwd, upstream):
    up = upstream(record_handler())
    p = fwd("--forward-allow-destination", "127.0.0.0/8")
    authority = f"127.0.0.1:{up.port}"
    c = fclient(p)
    c.send(R(f"GET http://{authority}/p/q?x=1&y=%20 HTTP/1.1",
             "Host: some-other-host.test",
             f"Proxy-Authorization: {basic('alice', 'secret')}",
             "Proxy-Connection: keep-alive",
             "X-Request-Deadline-Ms: 99999",
             "X-Custom: kept"))
    r = c.read_response()
    assert r is not None and r.status == 200, (r, p.stderr_text()[-2000:])
    assert r.body == b"fwd-ok GET /p/q?x=1&y=%20 body=", r
    (req,) = up.wait_requests(1)
    assert req.target == "/p/q?x=1&y=%20", req
    assert req.version == "HTTP/1.1"
    assert req.header_all("host") == [authority], req.headers
    for name in ("proxy-authorization", "proxy-connection", "x-request-deadline-ms"):
        assert not req.has(name), f"{name} was forwarded: {req.headers}"
    assert req.header("x-custom") == "kept", req.headers
    line = last_line(p, 1)
    assert line["method"] == "GET" and line["target"] == f"http://{authority}/p/q?x=1&y=%20"
    assert line["status"] == "200" and line["upstream"] == up.addr, line
    assert int(line["bytes"]) == len(r.raw), line


def test_absolute_form_without_path_and_with_body(fwd, upstream):
    up = upstream(record_handler())
    p = fwd("--forward-allow-destination", "127.0.0.0/8")
    c = fclient(p)
    c.send(get_abs(f"127.0.0.1:{up.port}", ""))
    r = c.read_response()
    assert r is not None and r.status == 200 and r.body == b"fwd-ok GET / body=", r
    c = fclient(p)
    c.send(R(f"POST http://127.0.0.1:{up.port}/post HTTP/1.1", f"Host: 127.0.0.1:{up.port}",
             "Content-Length: 11", body=b"hello world"))
    r = c.read_response()
    assert r is not None and r.status == 200, r
    assert r.body == b"fwd-ok POST /post body=hello world", r
    reqs = up.wait_requests(2)
    assert [q.target for q in reqs] == ["/", "/post"]


@pytest.mark.parametrize("target", [
    "/origin-form", "https://127.0.0.1/", "http:///x", "http://:80/", "http://user@127.0.0.1/",
    "http://127.0.0.1:0/", "http://127.0.0.1:65536/", "http://127.0.0.1:x/", "*",
    "ftp://127.0.0.1/"])
def test_forward_get_bad_target(fwd, target):
    p = fwd("--forward-allow-destination", "127.0.0.0/8")
    c = fclient(p)
    c.send(R(f"GET {target} HTTP/1.1", "Host: 127.0.0.1"))
    r = c.read_response()
    assert r is not None and r.status == 400, r
    line = last_line(p, 1)
    assert line["reason"] == "bad_request", line


# ==========================================================================
# names (fake DNS)

@pytest.mark.parametrize("name", ["rebind.test", "REBIND.Test", "rebind.test."])
def test_dns_rebinding_refused(fwd, dns, upstream, name):
    up = upstream(record_handler())
    dns.set("rebind.test", ["127.0.0.1"])
    p = fwd("--forward-connect-port", str(up.port))
    for i, method in enumerate(["GET", "CONNECT"]):
        c = fclient(p)
        authority = f"{name}:{up.port}"
        if method == "GET":
            c.send(get_abs(authority, "/r"))
            target = f"http://{authority}/r"
        else:
            c.send(connect_req(authority))
            target = authority
        r = c.read_response()
        _refusal_checks(r, last_line(p, i + 1), c, "127.0.0.1", "loopback", method, target)
    assert dns.asked("rebind.test"), f"the proxy did not ask the fake DNS: {dns.queries}"
    time.sleep(SETTLE)
    assert not up.conns, "a name resolving to 127.0.0.1 was connected to"


def test_dns_rebinding_ipv6_refused(fwd, dns, upstream):
    up6 = upstream(record_handler(), host="::1")
    dns.set("six.test", ["::1"])
    p = fwd()
    c = fclient(p)
    c.send(get_abs(f"six.test:{up6.port}", "/"))
    r = c.read_response()
    _refusal_checks(r, last_line(p, 1), c, "::1", "loopback", "GET",
                    f"http://six.test:{up6.port}/")
    assert ("six.test", 28) in dns.queries, dns.queries
    time.sleep(SETTLE)
    assert not up6.conns


def test_dns_name_served_when_allowed(fwd, dns, upstream):
    up = upstream(record_handler())
    echo = upstream(echo_tunnel_handler())
    dns.set("loop.test", ["127.0.0.1"])
    p = fwd("--forward-allow-destination", "127.0.0.0/8", "--forward-connect-port",
            str(echo.port))
    c = fclient(p)
    c.send(get_abs(f"loop.test:{up.port}", "/named"))
    r = c.read_response()
    assert r is not None and r.status == 200, (r, p.stderr_text()[-2000:])
    assert r.body == b"fwd-ok GET /named body=", r
    (req,) = up.wait_requests(1)
    assert req.header("host") == f"loop.test:{up.port}", req.headers
    line = last_line(p, 1)
    assert line["upstream"] == f"127.0.0.1:{up.port}", line
    # CONNECT by name
    c = open_tunnel(p, f"Loop.Test:{echo.port}")
    c.send(b"named tunnel")
    assert tunnel_read(c, 12) == b"named tunnel"
    assert dns.asked("loop.test")


def test_dns_first_allowed_address_is_used(fwd, dns, upstream):
    """A name with a refused and an allowed address: the allowed one is
    connected to (127.0.0.2 is refused, only 127.0.0.1/32 is allowed)."""
    up = upstream(record_handler())
    dns.set("two.test", ["127.0.0.2", "127.0.0.1"])
    p = fwd("--forward-allow-destination", "127.0.0.1/32")
    c = fclient(p)
    c.send(get_abs(f"two.test:{up.port}", "/two"))
    r = c.read_response()
    assert r is not None and r.status == 200, (r, p.stderr_text()[-2000:])
    assert last_line(p, 1)["upstream"] == f"127.0.0.1:{up.port}"


@pytest.mark.parametrize("method", ["GET", "CONNECT"])
def test_dns_next_address_after_a_refused_connect(fwd, dns, upstream, method):
    """A name with two addresses whose first refuses the connection (nothing
    listens on 127.0.0.2 at that port): the request goes through the second
    (RFC 8305, one address at a time), and the log names both."""
    up = upstream(record_handler())
    echo = upstream(echo_tunnel_handler())
    dns.set("two.test", ["127.0.0.2", "127.0.0.1"])
    p = fwd("--forward-allow-destination", "127.0.0.0/8", "--forward-connect-port",
            str(echo.port))
    if method == "GET":
        c = fclient(p)
        c.send(get_abs(f"two.test:{up.port}", "/second"))
        r = c.read_response()
        assert r is not None and r.status == 200, (r, p.stderr_text()[-2000:])
        port = up.port
    else:
        c = open_tunnel(p, f"two.test:{echo.port}")
        c.send(b"through the second")
        assert tunnel_read(c, 18) == b"through the second"
        c.close()
        port = echo.port
    line = last_line(p, 1)
    assert line["upstream"] == f"127.0.0.1:{port}", line
    assert line["attempts"] == "2", line
    p.wait_stderr(rf"connect to 127\.0\.0\.2:{port} failed \(Connection refused\); "
                  rf"trying 127\.0\.0\.1:{port}, address 2 of 2")


def test_dns_next_address_after_a_connect_timeout(fwd, dns, upstream):
    """The first address takes no connection (a full accept queue on
    127.0.0.2): after the connect timeout, the second address of the answer
    is tried, with a connect timeout of its own, under the same total."""
    for _ in range(10):
        hole = Blackhole("127.0.0.2")
        if not hole.ok:
            hole.close()
            pytest.skip("kernel does not drop SYNs to a loopback listener with a full "
                        "accept queue: cannot build a blackhole")
        try:
            up = upstream(record_handler(), port=hole.port)   # 127.0.0.1, same port
            break
        except OSError:
            hole.close()
    else:
        pytest.fail("no port free on both 127.0.0.1 and 127.0.0.2")
    try:
        dns.set("slow-first.test", ["127.0.0.2", "127.0.0.1"])
        p = fwd("--forward-allow-destination", "127.0.0.0/8", "--connect-timeout", "200ms")
        c = fclient(p)
        t0 = c.send(get_abs(f"slow-first.test:{up.port}", "/second"))
        r = c.read_response()
        assert r is not None and r.status == 200, (r, p.stderr_text()[-2000:])
        assert_window(r.t_head - t0, 0.2, hi_slack=0.25 * SLOW)
        line = last_line(p, 1)
        assert line["upstream"] == f"127.0.0.1:{up.port}" and line["attempts"] == "2", line
        p.wait_stderr(rf"connect to 127\.0\.0\.2:{up.port} failed \(connect_timeout after "
                      rf"200 ms\); trying 127\.0\.0\.1:{up.port}")
    finally:
        hole.close()


@pytest.mark.parametrize("method", ["GET", "CONNECT"])
def test_dns_nxdomain_is_502(fwd, dns, method):
    p = fwd("--forward-allow-destination", "127.0.0.0/8")
    c = fclient(p)
    if method == "GET":
        t0 = c.send(get_abs("nope.test", "/"))
    else:
        t0 = c.send(connect_req("nope.test:443"))
    r = c.read_response()
    assert r is not None and r.status == 502, r
    assert r.body == b"502 Bad Gateway: cannot resolve nope.test: no such name\n", r.body
    assert r.t_head - t0 < 0.5 * SLOW, "NXDOMAIN must be answered at once"
    line = last_line(p, 1)
    assert line["status"] == "502" and line["reason"] == "dns_failed", line
    assert dns.asked("nope.test")


def test_dns_name_without_addresses_is_502(fwd, dns):
    dns.set("empty.test", [])
    p = fwd("--forward-allow-destination", "127.0.0.0/8")
    c = fclient(p)
    c.send(get_abs("empty.test", "/"))
    r = c.read_response()
    assert r is not None and r.status == 502, r
    assert last_line(p, 1)["reason"] == "dns_failed"


@pytest.mark.parametrize("method", ["GET", "CONNECT"])
@pytest.mark.parametrize("flag,D", [("700ms", 0.7), (None, 2.0)], ids=["700ms", "default-2s"])
def test_dns_timeout_is_504(fwd, dns, method, flag, D):
    dns.set("slow.test", SILENT)
    p = fwd("--forward-allow-destination", "127.0.0.0/8",
            *(["--dns-timeout", flag] if flag else []))
    c = fclient(p, timeout=D + 3)
    if method == "GET":
        t0 = c.send(get_abs("slow.test", "/"))
    else:
        t0 = c.send(connect_req("slow.test:443"))
    r = c.read_response()
    assert r is not None, "closed without a response"
    line = last_line(p, 1)
    assert (r.status, line["reason"]) == (504, "dns_timeout"), \
        (f"after {r.t_head - t0:.3f}s: {r}\nlog: {line}\nstderr:\n{p.stderr_text()[-1500:]}")
    assert r.body == f"504 Gateway Timeout: dns_timeout after {int(D * 1000)} ms\n".encode(), \
        r.body
    assert_window(r.t_head - t0, D, lo_slack=0.005, hi_slack=0.25 * SLOW, what="504 after")
    assert dns.asked("slow.test")
    assert c.wait_closed(1.0 * SLOW)


def test_total_timeout_clamps_dns(fwd, dns):
    dns.set("slow.test", SILENT)
    p = fwd("--forward-allow-destination", "127.0.0.0/8", "--dns-timeout", "5s",
            "--total-timeout", "400ms")
    c = fclient(p)
    t0 = c.send(get_abs("slow.test", "/"))
    r = c.read_response()
    assert r is not None and r.status == 504, r
    assert_window(r.t_head - t0, 0.4, hi_slack=0.25 * SLOW)
    assert last_line(p, 1)["reason"] == "total_timeout"


def test_dns_late_answer_after_timeout(fwd, dns, upstream):
    """An answer arriving after the dns timeout fired is ignored (the query was
    cancelled); the proxy goes on serving."""
    up = upstream(record_handler())
    dns.set("late.test", ["127.0.0.1"], delay=0.6)
    dns.set("loop.test", ["127.0.0.1"])
    p = fwd("--forward-allow-destination", "127.0.0.0/8", "--dns-timeout", "300ms")
    c = fclient(p)
    t0 = c.send(get_abs(f"late.test:{up.port}", "/late"))
    r = c.read_response()
    assert r is not None and r.status == 504, r
    assert_window(r.t_head - t0, 0.3, hi_slack=0.25 * SLOW)
    wait_until(lambda: any(s[0] == "late.test" for s in dns.sent), 3.0 * SLOW,
               msg="the late answer to be sent")
    c = fclient(p)
    c.send(get_abs(f"loop.test:{up.port}", "/after"))
    r = c.read_response()
    assert r is not None and r.status == 200, r
    assert [q.target for q in up.requests()] == ["/after"], up.requests()
    assert p.alive()


# ==========================================================================
# proxy credentials

@pytest.fixture
def auth_file(tmp_path):
    f = tmp_path / "proxy-users"
    f.write_text("# proxy users\n\nalice:s3cret\nbob:hunter2\n")
    return str(f)


def test_proxy_auth(fwd, upstream, auth_file):
    up = upstream(record_handler())
    p = fwd("--forward-allow-destination", "127.0.0.0/8", "--proxy-auth-file", auth_file,
            "--forward-connect-port", str(up.port))
    authority = f"127.0.0.1:{up.port}"
    cases = [
        ("missing", None, 407),
        ("wrong-password", basic("alice", "wrong"), 407),
        ("unknown-user", basic("mallory", "s3cret"), 407),
        ("other-user's-password", basic("alice", "hunter2"), 407),
        ("bearer", "Bearer s3cret", 407),
        ("not-base64", "Basic !!!!", 407),
        ("right", basic("alice", "s3cret"), 200),
        ("right-lowercase-scheme", "basic " + basic("bob", "hunter2").split(" ")[1], 200),
    ]
    n = 0
    served = []
    for name, value, want in cases:
        c = fclient(p)
        extra = [f"Proxy-Authorization: {value}"] if value else []
        c.send(get_abs(authority, f"/{name}", extra))
        r = c.read_response()
        n += 1
        assert r is not None and r.status == want, (name, r)
        line = last_line(p, n)
        if want == 407:
            assert r.header("proxy-authenticate") == 'Basic realm="hourglass"', (name, r.headers)
            assert line["status"] == "407" and line["reason"] == "proxy_auth_required", line
            assert c.wait_closed(1.0 * SLOW)
        else:
            served.append(f"/{name}")
            assert line["status"] == "200", line
    reqs = up.wait_requests(len(served))
    time.sleep(SETTLE)
    assert [q.target for q in up.requests()] == served, up.requests()
    for q in reqs:
        assert not q.has("proxy-authorization"), q.headers
    # CONNECT: 407 without credentials, a tunnel with them
    c = fclient(p)
    c.send(connect_req(authority))
    r = c.read_response()
    assert r is not None and r.status == 407, r
    assert r.header("proxy-authenticate") == 'Basic realm="hourglass"'


def test_proxy_auth_connect_tunnel(fwd, upstream, auth_file):
    up = upstream(echo_tunnel_handler())
    p = fwd("--forward-allow-destination", "127.0.0.0/8", "--proxy-auth-file", auth_file,
            "--forward-connect-port", str(up.port))
    c = fclient(p)
    c.send(connect_req(f"127.0.0.1:{up.port}", [f"Proxy-Authorization: {basic('alice', 'x')}"]))
    r = c.read_response()
    assert r is not None and r.status == 407, r
    c = open_tunnel(p, f"127.0.0.1:{up.port}", extra=[f"Proxy-Authorization: "
                                                      f"{basic('alice', 's3cret')}"])
    c.send(b"authorized")
    assert tunnel_read(c, 10) == b"authorized"
    (conn,) = up.wait_conns(1)
    assert bytes(conn.received) == b"authorized", "the CONNECT head leaked into the tunnel"


# ==========================================================================
# tunnel timeouts

def test_connect_tunnel_idle_timeout(fwd, upstream):
    up = upstream(echo_tunnel_handler())
    p = fwd("--forward-allow-destination", "127.0.0.0/8",
            "--forward-connect-port", str(up.port), "--tunnel-idle-timeout", "500ms")
    c = open_tunnel(p, f"127.0.0.1:{up.port}")
    c.send(b"one")
    assert tunnel_read(c, 3) == b"one"
    # activity 300 ms later (before the 500 ms) must push the idle deadline
    time.sleep(0.3)
    c.send(b"two")
    assert tunnel_read(c, 3) == b"two"
    t_last = time.monotonic()
    assert c.wait_closed(2.0 * SLOW), "idle tunnel not closed"
    assert_window(c.t_eof - t_last, 0.5, lo_slack=0.02, hi_slack=0.25 * SLOW,
                  what="close after the last byte")
    (conn,) = up.wait_conns(1)
    t_up = conn.wait_proxy_closed(1.0 * SLOW)
    assert abs(t_up - c.t_eof) < 0.1 * SLOW, "the two ends were not closed together"
    line = last_line(p, 1)
    assert line["status"] == "200" and line["reason"] == "tunnel_idle_timeout", line
    assert int(line["bytes"]) == len(CONNECT_OK) + 6, line
    assert int(line["bytes_in"]) == c.req_len + 6, line
    p.wait_stderr(r"tunnel.idle timeout after 500 ms")


def test_connect_tunnel_max_lifetime(fwd, upstream):
    up = upstream(echo_tunnel_handler())
    p = fwd("--forward-allow-destination", "127.0.0.0/8",
            "--forward-connect-port", str(up.port), "--tunnel-idle-timeout", "10s",
            "--tunnel-max-lifetime", "800ms")
    c = open_tunnel(p, f"127.0.0.1:{up.port}")
    deadline = c.t_tunnel + 3.0 * SLOW
    echoed = 0
    closed_at = None
    while time.monotonic() < deadline:   # a byte every 50 ms: never idle
        try:
            c.sock.sendall(b"x")
            c.sock.settimeout(0.5)
            d = c.sock.recv(1 << 16)
        except (BrokenPipeError, ConnectionResetError):
            d = b""
        except socket.timeout:
            continue
        if not d:
            closed_at = time.monotonic()
            break
        echoed += len(d)
        time.sleep(0.05)
    assert closed_at is not None, "tunnel still open after 3 s of activity"
    assert echoed >= 5, f"only {echoed} bytes echoed: the tunnel was not active"
    # from the CONNECT's send, which comes before the proxy starts the tunnel's
    # clock: the client reading its 200 late (a loaded machine) cannot make an
    # on-time close look early
    assert_window(closed_at - c.t_sent, 0.8, lo_slack=0.02, hi_slack=0.25 * SLOW,
                  what="tunnel lifetime")
    line = last_line(p, 1)
    assert line["status"] == "200" and line["reason"] == "tunnel_max_timeout", line
    (conn,) = up.wait_conns(1)
    conn.wait_proxy_closed(1.0 * SLOW)


# ==========================================================================
# WebSocket through the reverse proxy

def test_websocket_echo(proxy_factory, upstream):
    up = upstream(ws_handler())
    p = proxy_factory(upstreams=[up])
    c, key = ws_open(p)
    (conn,) = up.wait_conns(1)
    req = conn.requests[0]
    assert req.method == "GET" and req.target == "/chat", req
    assert (req.header("upgrade") or "").lower() == "websocket", req.headers
    assert "upgrade" in (req.header("connection") or "").lower(), req.headers
    assert req.header("sec-websocket-key") == key, req.headers
    assert req.header("sec-websocket-version") == "13", req.headers
    sent = 0
    got = 0
    for opcode, payload in [(1, "hello, hourglass".encode()), (2, os.urandom(300)),
                            (2, os.urandom(70000)), (1, b"")]:
        fr = ws_frame(opcode, payload)
        c.send(fr)
        sent += len(fr)
        fin, op, masked, data = ws_read(c)
        got += len(ws_frame(op, data, mask=False))
        assert (fin, op, masked, data) == (True, opcode, False, payload), \
            (op, masked, len(data))
    assert [(o, m) for o, m, _ in conn.frames] == [(1, True), (2, True), (2, True), (1, True)]
    # close handshake: echoed, then the upstream closes; the client ends too
    fr = ws_frame(8, struct.pack(">H", 1000) + b"bye")
    c.send(fr)
    sent += len(fr)
    fin, op, masked, data = ws_read(c)
    got += len(ws_frame(op, data, mask=False))
    assert (op, data) == (8, struct.pack(">H", 1000) + b"bye"), (op, data)
    assert c.read_until_close(2.0 * SLOW) == b""
    c.shutdown_write()
    line = last_line(p, 1)
    assert line["method"] == "GET" and line["target"] == "/chat", line
    assert line["status"] == "101" and line["reason"] == "ok", line
    assert line["upstream"] == up.addr, line
    assert int(line["bytes"]) == c.head_len + got, line
    assert int(line["bytes_in"]) == c.req_len + sent, line


def test_websocket_idle_timeout(proxy_factory, upstream):
    up = upstream(ws_handler())
    p = proxy_factory("--tunnel-idle-timeout", "400ms", upstreams=[up])
    c, _ = ws_open(p)
    c.send(ws_frame(1, b"ping"))
    assert ws_read(c)[3] == b"ping"
    t_last = time.monotonic()
    assert c.wait_closed(2.0 * SLOW), "idle WebSocket not closed"
    assert_window(c.t_eof - t_last, 0.4, lo_slack=0.02, hi_slack=0.25 * SLOW,
                  what="close after the last frame")
    (conn,) = up.wait_conns(1)
    t_up = conn.wait_proxy_closed(1.0 * SLOW)
    assert abs(t_up - c.t_eof) < 0.1 * SLOW
    line = last_line(p, 1)
    assert line["status"] == "101" and line["reason"] == "tunnel_idle_timeout", line


def test_websocket_max_lifetime(proxy_factory, upstream):
    up = upstream(ws_handler())
    p = proxy_factory("--tunnel-max-lifetime", "500ms", upstreams=[up])
    c, _ = ws_open(p)
    assert c.wait_closed(2.0 * SLOW), "WebSocket open after its lifetime"
    # from the upstream's 101, which comes before the proxy starts the tunnel's
    # clock (the client's reading of it can be late on a loaded machine)
    (conn,) = up.wait_conns(1)
    assert_window(c.t_eof - conn.t_101, 0.5, lo_slack=0.02, hi_slack=0.25 * SLOW)
    line = last_line(p, 1)
    assert line["status"] == "101" and line["reason"] == "tunnel_max_timeout", line


def test_upgrade_answered_200_stays_http(proxy_factory, upstream):
    async def handler(reader, writer, ctx):
        async def respond(ctx, req):
            await ctx.respond(200, f"plain {req.target}".encode())
        await ctx.serve_forever(respond)
    up = upstream(handler)
    p = proxy_factory(upstreams=[up])
    c = p.client()
    c.send(ws_request(base64.b64encode(os.urandom(16)).decode(), path="/maybe-ws"))
    r = c.read_response()
    assert r is not None and r.status == 200 and r.complete, r
    assert r.body == b"plain /maybe-ws", r
    assert r.header("upgrade") is None, r.headers
    assert "upgrade" not in (r.header("connection") or "").lower(), r.headers
    # the same connection goes on as HTTP: a second request is parsed and rewritten
    c.send(R("GET /second HTTP/1.1", "Host: ws.test"))
    r2 = c.read_response()
    assert r2 is not None and r2.status == 200 and r2.body == b"plain /second", r2
    lines = p.wait_log(2)
    assert [(l["target"], l["status"], l["reason"]) for l in lines] == \
        [("/maybe-ws", "200", "ok"), ("/second", "200", "ok")], lines
    second = [q for q in up.requests() if q.target == "/second"]
    assert second and second[0].has("x-forwarded-for"), \
        "the second request was not parsed by the proxy (relayed raw?)"


def test_101_without_upgrade_request_is_502(proxy_factory, upstream):
    async def handler(reader, writer, ctx):
        await ctx.read_request()
        await ctx.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                       b"Connection: Upgrade\r\n\r\nraw bytes after the 101")
        await ctx.read_until_eof()
    up = upstream(handler)
    p = proxy_factory(upstreams=[up])
    c = p.client()
    c.send(R("GET /plain HTTP/1.1", "Host: ws.test"))
    r = c.read_response()
    assert r is not None and r.status == 502, r
    assert b"raw bytes" not in r.raw, r.raw
    line = last_line(p, 1)
    assert line["status"] == "502" and line["reason"] == "bad_upstream_response", line
    (conn,) = up.wait_conns(1)
    conn.wait_proxy_closed(1.0 * SLOW)
    p.wait_stderr(r"101 Switching Protocols without an upgrade request")


def test_101_to_another_protocol_is_502(proxy_factory, upstream):
    up = upstream(ws_handler(upgrade="h2c"))
    p = proxy_factory(upstreams=[up])
    c = p.client()
    c.send(ws_request(base64.b64encode(os.urandom(16)).decode()))
    r = c.read_response()
    assert r is not None and r.status == 502, r
    assert last_line(p, 1)["reason"] == "bad_upstream_response"
