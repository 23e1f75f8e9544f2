"""Fixtures and helpers for the hourglass integration tests.

Everything here talks to 127.0.0.1 (or ::1) only.

Pieces:
  * free_port()                 -- a port nobody listens on right now
  * Proxy / proxy_factory       -- runs the binary under test, parses its access log
  * FakeUpstream / upstream     -- scripted asyncio upstream in a background thread
  * Blackhole / blackhole       -- a listener whose SYNs are dropped (connect hangs)
  * h2_upstream                 -- scripted HTTP/2 upstream (h2up.py, python3-h2)
  * Client                      -- raw-socket HTTP client with exact bytes and timing
"""

import asyncio
import os
import shlex
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _binary():
    b = os.environ.get("HOURGLASS_BIN", "build/hourglass")
    p = Path(b)
    if not p.is_absolute():
        p = REPO / p
    return str(p)


BIN = _binary()

# HOURGLASS_WRAPPER: a command line put in front of the binary, e.g. valgrind
# (make memcheck). Its exit status MEMCHECK_STATUS means it found errors.
WRAPPER = shlex.split(os.environ.get("HOURGLASS_WRAPPER", ""))
MEMCHECK_STATUS = 99

_sanitized_cache = None


def is_sanitized():
    """True when the binary under test was built with ASan/UBSan/TSan."""
    global _sanitized_cache
    if os.environ.get("HOURGLASS_SANITIZED") == "1":
        return True
    if _sanitized_cache is None:
        try:
            data = Path(BIN).read_bytes()
        except OSError:
            data = b""
        _sanitized_cache = any(
            s in data for s in (b"__asan_init", b"__ubsan_handle", b"__tsan_init")
        )
    return _sanitized_cache


def pytest_configure(config):
    if "HOURGLASS_BIN" in os.environ and not os.access(BIN, os.X_OK):
        raise pytest.UsageError(f"HOURGLASS_BIN={os.environ['HOURGLASS_BIN']}: "
                                "no executable there")


def pytest_collection_modifyitems(config, items):
    if not os.access(BIN, os.X_OK):
        skip = pytest.mark.skip(reason=f"binary under test not found: {BIN} "
                                       "(build it or set HOURGLASS_BIN)")
        for it in items:
            it.add_marker(skip)


# --------------------------------------------------------------------------
# ports

_given_ports = set()


def free_port(host="127.0.0.1"):
    """A free TCP port on loopback, never the same one twice in a session."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        s = socket.socket(fam, socket.SOCK_STREAM)
        try:
            s.bind((host, 0))
            port = s.getsockname()[1]
        finally:
            s.close()
        if port not in _given_ports:
            _given_ports.add(port)
            return port
    raise RuntimeError("could not find a fresh free port")


def wait_port(host, port, timeout=5.0, proc=None):
    """Polls connect() until the port accepts connections."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            return False
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(0.2)
        try:
            s.connect((host, port))
            return True
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing accepts on {host}:{port} after {timeout}s")
            time.sleep(0.01)
        finally:
            s.close()


def scrape(port, path="/metrics", timeout=3.0):
    """GET path from an admin listener: (status, body text)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        data += d
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body.decode()


def wait_until(pred, timeout, interval=0.005, msg="condition"):
    """Polls pred() until it returns a true value; returns it, or fails."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {msg}")
        time.sleep(interval)


# --------------------------------------------------------------------------
# access log

LOG_KEYS = ["time", "client", "method", "target", "status", "bytes", "bytes_in", "upstream",
            "attempts", "connect_ms", "sent_ms", "first_byte_ms", "total_ms", "proto",
            "request_id", "trace_id", "deadline_ms", "deadline_from", "queue_ms", "left_ms",
            "tries", "reason"]


def parse_log_line(line):
    d = {}
    for part in line.split(" "):
        k, _, v = part.partition("=")
        d[k] = v
    return d


class Proxy:
    def __init__(self, args, workdir, host, port, env=None, access_log=None):
        self.args = list(args)
        self.host = host
        self.port = port
        self.workdir = Path(workdir)
        self.log_path = self.workdir / f"access-{port}.log"
        self.err_path = self.workdir / f"stderr-{port}.log"
        self.out_path = self.workdir / f"stdout-{port}.log"
        # access_log: None = a file in workdir (parsed by log_lines), or a
        # literal value for --access-log ("-", "off")
        self.argv = WRAPPER + [BIN] + self.args + ["--access-log",
                                         str(self.log_path) if access_log is None else access_log]
        self.proc = None
        self.stopped = False
        self.env = env

    # lifecycle -------------------------------------------------------------
    def start(self):
        self._err = open(self.err_path, "wb")
        self._out = open(self.out_path, "wb")
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        self.proc = subprocess.Popen(self.argv, stdout=self._out, stderr=self._err,
                                     stdin=subprocess.DEVNULL, env=env,
                                     cwd=str(self.workdir))
        ok = wait_port(self.host, self.port, 30.0 if WRAPPER else 5.0, self.proc)
        return ok

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        """Stops the proxy; returns a list of problems found (empty = fine)."""
        problems = []
        if self.stopped:
            return problems
        self.stopped = True
        rc = self.proc.poll()
        if rc is not None:
            problems.append(f"proxy exited unexpectedly with status {rc}")
        else:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(60.0 if WRAPPER else 3.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5.0)
            if WRAPPER and rc == MEMCHECK_STATUS:
                problems.append(f"{WRAPPER[0]} found errors or leaks:\n"
                                f"{self.stderr_text()[-6000:]}")
        self._err.close()
        self._out.close()
        err = self.stderr_text()
        for needle in ("AddressSanitizer", "LeakSanitizer", "runtime error:",
                       "ThreadSanitizer"):
            if needle in err:
                problems.append(f"sanitizer report ({needle}) in stderr:\n{err[-6000:]}")
                break
        return problems

    # observation -----------------------------------------------------------
    def addr(self):
        return (self.host, self.port)

    def raw_log_lines(self):
        try:
            data = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return []
        lines = data.split("\n")
        return [l for l in lines[:-1] if l]  # only complete lines

    def log_lines(self):
        return [parse_log_line(l) for l in self.raw_log_lines()]

    def wait_log(self, n, timeout=2.0):
        """Waits until the access log holds at least n lines; returns them parsed."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.log_lines()
            if len(lines) >= n:
                return lines
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"access log has {len(lines)} lines, wanted {n} within {timeout}s:\n"
                    + "\n".join(self.raw_log_lines())
                    + f"\n--- stderr:\n{self.stderr_text()[-3000:]}")
            time.sleep(0.005)

    def stderr_text(self):
        try:
            return self.err_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stdout_text(self):
        try:
            return self.out_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_stderr(self, pattern, timeout=2.0):
        rx = re.compile(pattern)
        return wait_until(lambda: rx.search(self.stderr_text()), timeout,
                          msg=f"stderr to match {pattern!r}; stderr was:\n"
                              + self.stderr_text()[-2000:])

    def fd_count(self):
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def rss_kb(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def client(self, **kw):
        return Client(self.port, host=self.host, **kw)


@pytest.fixture
def proxy_factory(tmp_path):
    """start(*flags, upstreams=[...], listen=None, workers=None) -> running Proxy.

    Adds --listen (a fresh loopback port unless given), one --upstream per
    entry and --access-log <tmpfile>. At teardown: SIGTERM, SIGKILL after 3s,
    and the test fails if the proxy died on its own or a sanitizer spoke."""
    procs = []

    def start(*flags, upstreams=(), listen=None, extra_listen=(), env=None, access_log=None,
              workers=None):
        # workers=None: --single-process (the process started serves, so its
        # pid, fds and RSS are the server's); workers=N: a master and N workers
        for attempt in range(3):
            if listen is None:
                host, port = "127.0.0.1", free_port()
                laddr = f"{host}:{port}"
            else:
                laddr = listen
                m = re.match(r"^\[(.*)\]:(\d+)$", listen) or re.match(r"^(.*):(\d+)$", listen)
                host, port = m.group(1), int(m.group(2))
            args = ["--listen", laddr]
            for l in extra_listen:
                args += ["--listen", l]
            for u in upstreams:
                args += ["--upstream", u if isinstance(u, str) else u.addr]
            args += [str(f) for f in flags]
            args += ["--single-process"] if workers is None else ["--workers", str(workers)]
            p = Proxy(args, tmp_path, host, port, env=env, access_log=access_log)
            procs.append(p)
            if p.start():
                return p
            # exited during start-up
            p.stopped = True
            p._err.close()
            p._out.close()
            err = p.stderr_text()
            if listen is None and "in use" in err.lower():
                continue
            pytest.fail(f"proxy exited at start-up (status {p.proc.returncode}):\n"
                        f"argv: {p.argv}\nstderr:\n{err}")
        pytest.fail("could not start the proxy: ports kept being taken")

    yield start
    problems = []
    for p in procs:
        problems += p.stop()
    if problems:
        pytest.fail("\n".join(problems))


# --------------------------------------------------------------------------
# raw client

class Response:
    def __init__(self):
        self.version = None
        self.status = None
        self.reason = None
        self.headers = []        # [(name, value)] as received
        self.body = b""          # decoded body (chunked framing removed)
        self.raw = b""           # raw bytes of the whole response as received
        self.complete = False    # framing said the body ended properly
        self.framing = None      # "length", "chunked", "close", "none"
        self.interim = []        # 1xx responses skipped (status ints)
        self.t_head = None       # monotonic time the head was complete
        self.t_end = None        # monotonic time the body ended (or the cut)

    def header(self, name):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def __repr__(self):
        return (f"<Response {self.status} {self.reason!r} framing={self.framing} "
                f"complete={self.complete} body={self.body[:120]!r}"
                f"{'...' if len(self.body) > 120 else ''} ({len(self.body)} bytes)>")


class _EOF(Exception):
    pass


def parse_head(head):
    """Parses a head (bytes up to and including CRLFCRLF) into
    (start-line parts, [(name, value)])."""
    text = head.decode("latin-1")
    lines = text.split("\r\n")
    start = lines[0]
    headers = []
    for l in lines[1:]:
        if not l:
            continue
        k, _, v = l.partition(":")
        headers.append((k, v.strip(" \t")))
    return start, headers


SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)   # Linux: arrival times as a timespec


def kernel_arrival(anc):
    """The SO_TIMESTAMPNS stamp among recvmsg's ancillary data, on the
    monotonic clock; None without one."""
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = struct.unpack("qq", data[:16])
            return sec + nsec / 1e9 - (time.time() - time.monotonic())
    return None


class Client:
    """A blocking raw HTTP/1.1 client on one TCP connection."""

    def __init__(self, port, host="127.0.0.1", timeout=3.0, rcvbuf=None, connect=True):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # the kernel stamps each segment as it arrives (_fill): a response is
        # dated when the proxy sent it, not when this thread got to it, so a
        # stall here cannot make an interval between two replies look short
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.t_rx = None   # the arrival of the bytes of the last recv (monotonic)
        self.timeout = timeout
        self.addr = (host, port)
        self.buf = bytearray()
        self.eof = False
        self.reset = False
        self.t_eof = None
        self.t_sent = None
        if connect:
            self.sock.settimeout(timeout)
            self.sock.connect(self.addr)

    @property
    def local_port(self):
        return self.sock.getsockname()[1]

    def send(self, data):
        """Sends data whole; returns when it was sent, as a time that is never
        later than the true one for small data, so that a window's early bound
        holds whatever this thread does next: another thread of the test
        (an upstream) may hold the GIL for tens of ms right after the send's
        syscall, and a clock read then made a timeout look early (CI saw a
        400 ms total measured as 361 ms). Small data goes out at once, so the
        time taken before the call is off by no more than such a stall the
        other way, which only the far looser late bound sees. For data that
        may block (more than a socket buffer), the time after the call."""
        t_before = time.monotonic()
        self.sock.sendall(data)
        self.t_sent = time.monotonic() if len(data) > 16384 else t_before
        return self.t_sent

    def close(self):
        for s in [self.sock] + list(getattr(self, "extra_socks", [])):
            try:
                s.close()
            except OSError:
                pass

    def shutdown_write(self):
        self.sock.shutdown(socket.SHUT_WR)

    def _fill(self, deadline):
        """Receives one chunk into buf. Raises _EOF at end of stream,
        TimeoutError at the deadline."""
        if self.eof:
            raise _EOF()
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("client read timed out")
        self.sock.settimeout(left)
        try:
            data, anc, _, _ = self.sock.recvmsg(1 << 18, 64)
        except socket.timeout:
            raise TimeoutError("client read timed out") from None
        except ConnectionResetError:
            self.reset = True
            data = b""
        if not data:
            self.eof = True
            self.t_eof = time.monotonic()
            raise _EOF()
        self.t_rx = kernel_arrival(anc)
        self.buf += data

    def _arrived(self):
        """When the bytes just parsed arrived: the kernel's stamp of the last
        recv, else (a subclass with its own _fill) now."""
        now = time.monotonic()
        return min(self.t_rx, now) if self.t_rx is not None else now

    def _take(self, n):
        d = bytes(self.buf[:n])
        del self.buf[:n]
        return d

    def _line(self, deadline):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                return self._take(i + 2)
            self._fill(deadline)

    def _exact(self, n, deadline, sink):
        while n > 0:
            if not self.buf:
                self._fill(deadline)
            d = self._take(min(n, len(self.buf)))
            sink(d)
            n -= len(d)

    def read_head(self, timeout=None):
        """Reads a response head; returns (bytes, time) or (partial, None) at EOF."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                return self._take(i + 4), self._arrived()
            try:
                self._fill(deadline)
            except _EOF:
                return self._take(len(self.buf)), None

    def read_response(self, method="GET", timeout=None, skip_interim=True,
                      body_sink=None):
        """Reads one response. Returns None if the connection closed before any
        byte; a Response with complete=False if it was cut. body_sink(bytes),
        when given, receives body bytes instead of Response.body."""
        timeout = timeout if timeout is not None else self.timeout
        deadline = time.monotonic() + timeout
        r = Response()
        while True:
            head, t = self.read_head(deadline - time.monotonic())
            r.raw += head
            if t is None:
                if not head and not r.interim:
                    return None
                r.t_end = time.monotonic()
                if head:
                    try:
                        start, hdrs = parse_head(head)
                        parts = start.split(" ", 2)
                        r.version, r.status = parts[0], int(parts[1])
                    except Exception:
                        pass
                r.framing = "cut-head"
                return r
            start, hdrs = parse_head(head)
            parts = start.split(" ", 2)
            r.version = parts[0]
            r.status = int(parts[1])
            r.reason = parts[2] if len(parts) > 2 else ""
            r.headers = hdrs
            r.t_head = t
            if 100 <= r.status < 200 and r.status != 101 and skip_interim:
                r.interim.append(r.status)
                continue
            break

        body = bytearray()
        raw = bytearray()
        r.body_bytes = 0  # body bytes on the wire (chunk framing included)

        def sink(d):
            r.body_bytes += len(d)
            if body_sink is not None:
                body_sink(d)
            else:
                body.extend(d)
                raw.extend(d)

        def frame(d):
            r.body_bytes += len(d)
            raw.extend(d)

        te = (r.header("transfer-encoding") or "").lower()
        cl = r.header("content-length")
        try:
            if method == "HEAD" or r.status in (204, 304) or 100 <= r.status < 200:
                r.framing = "none"
            elif "chunked" in te:
                r.framing = "chunked"
                while True:
                    line = self._line(deadline)
                    frame(line)
                    size = int(line.split(b";")[0].strip(), 16)
                    if size == 0:
                        while True:  # trailers
                            l = self._line(deadline)
                            frame(l)
                            if l == b"\r\n":
                                break
                        break
                    self._exact(size, deadline, sink)
                    crlf = self._line(deadline)
                    frame(crlf)
                    assert crlf == b"\r\n", f"bad chunk terminator {crlf!r}"
            elif cl is not None:
                r.framing = "length"
                self._exact(int(cl), deadline, sink)
            else:
                r.framing = "close"
                while True:
                    if self.buf:
                        sink(self._take(len(self.buf)))
                    self._fill(deadline)
            r.complete = True
        except _EOF:
            if self.buf:
                sink(self._take(len(self.buf)))
            r.complete = (r.framing == "close" and not self.reset)
        r.t_end = time.monotonic() if self.eof else self._arrived()
        r.body = bytes(body)
        r.raw += bytes(raw)
        return r

    def read_until_close(self, timeout=None):
        """Reads until EOF/reset. Returns the bytes (buffered ones included)."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        try:
            while True:
                self._fill(deadline)
        except _EOF:
            pass
        return self._take(len(self.buf))

    def wait_closed(self, timeout=None):
        """True if the peer closed (EOF or reset) within timeout. Discards data."""
        try:
            self.read_until_close(timeout)
            return True
        except TimeoutError:
            return False


def request_bytes(method="GET", target="/", headers=None, body=None, host="example.test"):
    """Builds a request with a Host header and Content-Length for a body."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    hdrs = list(headers or [])
    if body is not None and not any(k.lower() in ("content-length", "transfer-encoding")
                                    for k, _ in hdrs):
        hdrs.append(("Content-Length", str(len(body))))
    for k, v in hdrs:
        lines.append(f"{k}: {v}")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    if body is not None:
        data += body
    return data


def chunked(body, sizes=(7, 1, 100, 3000)):
    """Encodes body in chunked framing with chunks of varied sizes."""
    out = bytearray()
    i = 0
    k = 0
    while i < len(body):
        n = sizes[k % len(sizes)]
        k += 1
        piece = body[i:i + n]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
        i += n
    out += b"0\r\n\r\n"
    return bytes(out)


def start_with_config(proxy_factory, tmp_path, text, *flags):
    """Starts a proxy on the configuration file `text` (and more flags)."""
    path = tmp_path / "hourglass.yaml"
    path.write_text(text)
    return proxy_factory("--config", path, *flags)


def concurrent_gets(p, targets, timeout=5.0, gap=0.03):
    """GETs each target on its own connection, started `gap` apart in this
    order; {target: (response, seconds)}."""
    out = {}

    def one(t):
        c = p.client(timeout=timeout)
        t0 = time.monotonic()
        c.send(request_bytes("GET", t))
        r = c.read_response()
        out[t] = (r, time.monotonic() - t0)
        c.close()
    ths = [threading.Thread(target=one, args=(t,)) for t in targets]
    for th in ths:
        th.start()
        time.sleep(gap)
    for th in ths:
        th.join(timeout + 1)
    return out


def answering(delay, body=None):
    """A keep-alive upstream handler answering 200 after `delay` seconds,
    with `body` (default: the request target)."""
    async def handler(reader, writer, ctx):
        async def respond(ctx, req):
            if delay:
                await ctx.delay(delay)
            await ctx.respond(200, body if body is not None else req.target.encode())
        await ctx.serve_forever(respond)
    return handler


# --------------------------------------------------------------------------
# fake upstream (asyncio in a background thread)

class AioThread:
    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="fake-upstream", daemon=True)
        self.thread.start()

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro, timeout=5.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def soon(self, fn, *args):
        self.loop.call_soon_threadsafe(fn, *args)

    def stop(self):
        async def cancel_all():
            me = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not me]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        try:
            self.call(cancel_all(), 5)
        except Exception:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class UpRequest:
    def __init__(self, head, method, target, version, headers):
        self.head = head
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.body = b""
        self.raw_body = b""
        self.t = time.monotonic()

    def header(self, name):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def has(self, name):
        return self.header(name) is not None

    def __repr__(self):
        return f"<UpRequest {self.method} {self.target} {self.headers}>"


class UpConn:
    """One connection accepted by a FakeUpstream; also the handler's ctx."""

    def __init__(self, up, index, transport):
        self.up = up
        self.index = index
        self.transport = transport
        self.reader = None
        self.writer = None
        self.accepted_at = time.monotonic()
        self.received = bytearray()   # every byte the proxy sent on it
        self.requests = []            # UpRequest, as read by the handler
        self.eof_at = None            # proxy sent FIN
        self.lost_at = None           # connection gone (any cause)
        self.reset = False            # saw ECONNRESET
        self.closed_by_us = None      # "close" / "reset" / None
        self.handler_done = False
        self.error = None
        self._signal = None           # asyncio.Event created on the loop

    # --- state seen from the test thread ---------------------------------
    @property
    def proxy_closed_at(self):
        """When the proxy closed or reset this connection (monotonic), else None."""
        if self.eof_at is not None:
            return self.eof_at
        if self.lost_at is not None and self.closed_by_us is None:
            return self.lost_at
        return None

    def wait_proxy_closed(self, timeout=1.0):
        return wait_until(lambda: self.proxy_closed_at, timeout,
                          msg=f"proxy to close upstream connection #{self.index}")

    def signal(self):
        """Wakes a handler blocked in `await ctx.wait_signal()` (thread-safe)."""
        self.up.aio.soon(self._signal.set)

    # --- for handlers (run on the loop) ----------------------------------
    async def wait_signal(self, timeout=10.0):
        try:
            await asyncio.wait_for(self._signal.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    async def read_head(self):
        """Reads a request head; None on a clean EOF before any byte."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as e:
            if not e.partial:
                return None
            raise
        start, headers = parse_head(head)
        parts = start.split(" ")
        req = UpRequest(head, parts[0], parts[1] if len(parts) > 1 else "",
                        parts[2] if len(parts) > 2 else "", headers)
        self.requests.append(req)
        return req

    async def read_body(self, req):
        te = (req.header("transfer-encoding") or "").lower()
        cl = req.header("content-length")
        raw = bytearray()
        body = bytearray()
        if "chunked" in te:
            while True:
                line = await self.reader.readuntil(b"\r\n")
                raw += line
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while True:
                        l = await self.reader.readuntil(b"\r\n")
                        raw += l
                        if l == b"\r\n":
                            break
                    break
                d = await self.reader.readexactly(size)
                raw += d
                body += d
                raw += await self.reader.readexactly(2)
        elif cl is not None:
            n = int(cl)
            while n > 0:
                d = await self.reader.read(min(n, 1 << 16))
                if not d:
                    raise asyncio.IncompleteReadError(bytes(body), n)
                body += d
                n -= len(d)
            raw = body
        req.body = bytes(body)
        req.raw_body = bytes(raw)
        return req.body

    async def read_request(self):
        """Reads head and body; None on EOF before a request."""
        req = await self.read_head()
        if req is None:
            return None
        await self.read_body(req)
        return req

    async def read_some(self, n=1 << 16):
        return await self.reader.read(n)

    async def read_exactly(self, n):
        return await self.reader.readexactly(n)

    async def read_until_eof(self):
        while True:
            try:
                d = await self.reader.read(1 << 16)
            except ConnectionError:
                return
            if not d:
                return

    async def send(self, data):
        self.writer.write(data)
        await self.writer.drain()

    def write(self, data):
        self.writer.write(data)

    async def delay(self, seconds):
        await asyncio.sleep(seconds)

    async def drip(self, data, interval, step=1):
        """Sends data `step` bytes at a time, one piece per interval.
        Stops quietly when the connection goes away."""
        for i in range(0, len(data), step):
            if self.lost_at is not None or self.eof_at is not None:
                return False
            self.writer.write(data[i:i + step])
            await self.writer.drain()
            if i + step < len(data):
                await asyncio.sleep(interval)
        return True

    async def respond(self, status=200, body=b"", headers=(), reason="OK",
                      version="HTTP/1.1", length=True):
        lines = [f"{version} {status} {reason}"]
        for k, v in headers:
            lines.append(f"{k}: {v}")
        if length and not any(k.lower() in ("content-length", "transfer-encoding")
                              for k, _ in headers):
            lines.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        await self.send(data)

    async def serve_forever(self, respond):
        """Keep-alive loop: for each request, await respond(ctx, req)."""
        while True:
            req = await self.read_request()
            if req is None:
                return
            await respond(self, req)

    async def wait_lost(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        while self.lost_at is None and self.eof_at is None and time.monotonic() < deadline:
            await asyncio.sleep(0.005)

    def close(self):
        if self.closed_by_us is None and self.lost_at is None:
            self.closed_by_us = "close"
        self.writer.close()

    def reset_conn(self):
        """Closes with SO_LINGER 0: the proxy gets an RST."""
        if self.closed_by_us is None and self.lost_at is None:
            self.closed_by_us = "reset"
        sock = self.transport.get_extra_info("socket")
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.transport.abort()

    # alias used by the brief's wording
    reset_connection = reset_conn


class _RecordingProtocol(asyncio.StreamReaderProtocol):
    def __init__(self, up):
        self._up = up
        self._conn = None
        reader = asyncio.StreamReader(limit=64 * 1024)
        super().__init__(reader, self._connected)

    def connection_made(self, transport):
        sock = transport.get_extra_info("socket")
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self._conn = UpConn(self._up, len(self._up.conns), transport)
        self._conn._signal = asyncio.Event()
        self._up.conns.append(self._conn)
        super().connection_made(transport)

    def _connected(self, reader, writer):
        c = self._conn
        c.reader = reader
        c.writer = writer
        return self._up._run_handler(c)

    def data_received(self, data):
        self._conn.received += data
        super().data_received(data)

    def eof_received(self):
        if self._conn.eof_at is None:
            self._conn.eof_at = time.monotonic()
        return super().eof_received()

    def connection_lost(self, exc):
        c = self._conn
        if c is not None:
            c.lost_at = time.monotonic()
            if isinstance(exc, ConnectionResetError):
                c.reset = True
        super().connection_lost(exc)


class FakeUpstream:
    """A scripted upstream: handler(reader, writer, ctx) runs per connection,
    on host:port (port 0: any free one).

    ctx is the UpConn (see its helpers). After the handler returns the
    connection is left open (the proxy is expected to close or pool it) and
    EOF/reset from the proxy is still recorded."""

    def __init__(self, aio, handler, rcvbuf=None, host="127.0.0.1", port=0):
        self.aio = aio
        self.handler = handler
        self.conns = []
        self.errors = []
        self.host = host
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((host, port))
        sock.listen(512)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self.addr = f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

        async def mk():
            return await aio.loop.create_server(lambda: _RecordingProtocol(self), sock=sock)
        self.server = aio.call(mk())

    async def _run_handler(self, c):
        try:
            await self.handler(c.reader, c.writer, c)
        except (ConnectionError, asyncio.IncompleteReadError, BrokenPipeError):
            pass
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a test bug or an unexpected proxy behaviour
            c.error = e
            self.errors.append(e)
            print(f"fake upstream handler error on conn #{c.index}: {e!r}", file=sys.stderr)
        finally:
            c.handler_done = True
            # a handler that finished after the proxy's EOF: close our side
            if c.eof_at is not None and c.lost_at is None:
                try:
                    c.writer.close()
                except Exception:
                    pass

    # test-thread helpers
    def wait_conns(self, n, timeout=2.0):
        wait_until(lambda: len(self.conns) >= n, timeout,
                   msg=f"{n} upstream connection(s) on {self.addr} (have {len(self.conns)})")
        return self.conns

    def requests(self):
        return [r for c in list(self.conns) for r in c.requests]

    def wait_requests(self, n, timeout=2.0):
        wait_until(lambda: len(self.requests()) >= n, timeout,
                   msg=f"{n} request(s) at upstream {self.addr} (have {len(self.requests())})")
        return self.requests()

    def close(self):
        async def shut():
            self.server.close()
            for c in self.conns:
                if c.lost_at is None:
                    try:
                        c.transport.abort()
                    except Exception:
                        pass
        try:
            self.aio.call(shut(), 5)
        except Exception:
            pass


@pytest.fixture(scope="session")
def aio():
    t = AioThread()
    yield t
    t.stop()


@pytest.fixture
def upstream(aio):
    """make(handler, rcvbuf=None) -> FakeUpstream; all closed at teardown."""
    ups = []

    def make(handler, **kw):
        u = FakeUpstream(aio, handler, **kw)
        ups.append(u)
        return u
    yield make
    for u in ups:
        u.close()


# ready-made handlers --------------------------------------------------------

def ok_handler(body=b"hello\n", status=200, headers=()):
    """Answers every request on the connection (keep-alive) with body."""
    async def handler(reader, writer, ctx):
        async def respond(ctx, req):
            await ctx.respond(status, body, headers)
        await ctx.serve_forever(respond)
    return handler


def silent_handler():
    """Reads one request and never answers (EOF from the proxy is recorded)."""
    async def handler(reader, writer, ctx):
        await ctx.read_request()
    return handler


@pytest.fixture
def h2_upstream(aio):
    """make(handler=None, max_streams=100, ...) -> h2up.H2Upstream, a scripted
    HTTP/2 upstream; closed at teardown, and a protocol error the proxy made
    or an error in a handler fails the test."""
    from h2up import H2Upstream
    ups = []

    def make(handler=None, **kw):
        u = H2Upstream(aio, handler, **kw)
        ups.append(u)
        return u
    yield make
    errors = []
    for u in ups:
        u.close()
        errors += u.errors
    if errors:
        pytest.fail("h2 upstream errors:\n" + "\n".join(errors))


# --------------------------------------------------------------------------
# blackhole

class Blackhole:
    """A loopback listener whose accept queue is full: further SYNs are
    dropped, so connect() to it hangs."""

    def __init__(self, host="127.0.0.1"):
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.bind((host, 0))
        self.lsock.listen(0)
        self.port = self.lsock.getsockname()[1]
        self.addr = f"{host}:{self.port}"
        self.fillers = []
        self.ok = False
        for _ in range(6):
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            probe.settimeout(0.2)
            try:
                probe.connect((host, self.port))
            except (socket.timeout, TimeoutError):
                probe.close()
                self.ok = True
                break
            except OSError:
                probe.close()
                break
            self.fillers.append(probe)  # it got in: keep it as a filler

    def close(self):
        for s in self.fillers:
            s.close()
        self.lsock.close()


@pytest.fixture
def blackhole():
    b = Blackhole()
    if not b.ok:
        b.close()
        pytest.skip("kernel does not drop SYNs to a loopback listener with a full "
                    "accept queue: cannot build a blackhole upstream")
    yield b
    b.close()


# --------------------------------------------------------------------------
# misc

def log_int(line, key):
    v = line[key]
    assert v != "-", f"{key} is '-' in {line}"
    return int(v)


def assert_window(elapsed, target, lo_slack=0.005, hi_slack=0.25, what="elapsed"):
    assert target - lo_slack <= elapsed <= target + hi_slack, (
        f"{what} {elapsed * 1000:.1f} ms outside [{(target - lo_slack) * 1000:.0f}, "
        f"{(target + hi_slack) * 1000:.0f}] ms")
