"""gRPC through hourglass (issue 16): HTTP/2 pools (`protocol: h2`), a
call's grpc-timeout as its total deadline (route `grpc:` timeout, max_timeout,
streaming), the deadline passed on to the upstream with a 5 ms hop reserve,
the proxy's own endings as gRPC statuses (Trailers-Only before the response
headers, trailers after them), trailers relayed, cancellation both ways,
multiplexing on one upstream connection, the access log's grpc_status and
grpc_timeout_ms, and hourglass_grpc_calls_total.

The real gRPC stack is Debian's python3-grpcio (a C core): a generic server
with raw-bytes methods (no protobuf) that records what each call saw, and
the stock client. Where the exact frames matter, the client is H2Client
(test_http2.py) and the upstream the scripted HTTP/2 server of h2up.py,
which ignores grpc-timeout, so that only hourglass can end the call.

Everything talks to 127.0.0.1 only.
"""

import itertools
import json
import re
import threading
import time
from concurrent import futures
from urllib.parse import unquote

import grpc
import pytest

from conftest import assert_window, free_port, is_sanitized, request_bytes, scrape, wait_port, \
    wait_until
from h2up import CANCEL, grpc_message, grpc_messages
from test_http2 import NO_ERROR, H2Client

SLOW = 2.0 if is_sanitized() else 1.0
HI = 0.08 * SLOW          # late slack of a time window
LO = 0.02                 # early slack (a clock read in another thread, rounding)

STATUS = {s.value[0]: s for s in grpc.StatusCode}

RSS_LIMIT_KB = (64 if is_sanitized() else 8) * 1024


# --------------------------------------------------------------------------
# the gRPC server

class Call:
    """What one call looked like from the server's side."""

    def __init__(self, method, request, ctx):
        self.method = method
        self.request = request
        self.t_start = time.monotonic()
        tr = ctx.time_remaining()      # no deadline: None, or ~9.2e18 (grpcio 1.51)
        self.time_remaining = None if tr is None or tr > 1e6 else tr
        self.metadata = {k: v for k, v in ctx.invocation_metadata()}
        self.peer = ctx.peer()                         # "ipv4:127.0.0.1:PORT"
        self.handler_done = False
        self.t_done = None        # the RPC terminated (callback)
        self.cancelled = False    # it terminated while the handler still ran
        self.t_cancel = None
        self.sent = 0             # messages yielded by a streaming handler

    def on_done(self):
        now = time.monotonic()
        self.t_done = now
        if not self.handler_done:
            self.cancelled = True
            self.t_cancel = now

    def __repr__(self):
        return (f"<Call {self.method} {self.request!r} remaining={self.time_remaining} "
                f"peer={self.peer} cancelled={self.cancelled} sent={self.sent}>")


class GrpcServer:
    """svc/Echo, svc/Sleep ("MS"), svc/Stream ("K,MS"), svc/Abort ("CODE,MESSAGE")."""

    def __init__(self, workers=64):
        self.calls = []
        self.lock = threading.Lock()
        handlers = {
            "Echo": grpc.unary_unary_rpc_method_handler(self._echo),
            "Sleep": grpc.unary_unary_rpc_method_handler(self._sleep),
            "Stream": grpc.unary_stream_rpc_method_handler(self._stream),
            "Abort": grpc.unary_unary_rpc_method_handler(self._abort),
        }
        # the stream limit is advertised explicitly: one connection can carry
        # the 1,000 calls of test_thousand_calls_one_upstream_connection
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers),
                                  options=[("grpc.max_concurrent_streams", 4096),
                                           ("grpc.so_reuseport", 0)])
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("svc", handlers),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.addr = f"127.0.0.1:{self.port}"
        self.server.start()

    def _begin(self, method, request, ctx):
        c = Call(method, request, ctx)
        with self.lock:
            self.calls.append(c)
        ctx.add_callback(c.on_done)
        return c

    @staticmethod
    def _nap(c, ctx, seconds):
        """Sleeps in steps; False as soon as the call is no longer active."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if not ctx.is_active():
                return False
            time.sleep(0.005)
        return ctx.is_active()

    def _echo(self, request, ctx):
        c = self._begin("Echo", request, ctx)
        try:
            ctx.send_initial_metadata((("x-initial", "hi"),))
            ctx.set_trailing_metadata((("x-trailer", "bye"),
                                       ("x-trailer-bin", b"\x00\xff\x01")))
            return request
        finally:
            c.handler_done = True

    def _sleep(self, request, ctx):
        c = self._begin("Sleep", request, ctx)
        try:
            self._nap(c, ctx, int(request) / 1000)
            return b"slept " + request
        finally:
            c.handler_done = True

    def _stream(self, request, ctx):
        c = self._begin("Stream", request, ctx)
        try:
            k, ms = (int(x) for x in request.split(b","))
            for i in range(k):
                if not self._nap(c, ctx, ms / 1000):
                    return
                c.sent += 1
                yield b"msg %d" % i
        finally:
            c.handler_done = True

    def _abort(self, request, ctx):
        c = self._begin("Abort", request, ctx)
        try:
            code, msg = request.decode().split(",", 1)
            ctx.set_trailing_metadata((("x-why", "because"),))
            ctx.abort(STATUS[int(code)], msg)
        finally:
            c.handler_done = True

    # test side --------------------------------------------------------------
    def wait_calls(self, n, timeout=2.0):
        wait_until(lambda: len(self.calls) >= n, timeout * SLOW,
                   msg=f"{n} call(s) at the gRPC server (have {len(self.calls)})")
        return list(self.calls)

    def peers(self):
        return {c.peer for c in self.calls}

    def stop(self):
        self.server.stop(0)


@pytest.fixture
def gsrv():
    s = GrpcServer()
    yield s
    s.stop()


# --------------------------------------------------------------------------
# the proxy and the client

_cfg_ids = itertools.count()


def grpc_doc(server, total=None, grpc_keys=None, protocol="h2", timeouts=None, limits=None):
    """A configuration: pool g (HTTP/2 to server unless protocol is None) and
    one route / to it, with timeouts.total and the grpc keys given."""
    pool = {"servers": [server]}
    if protocol is not None:
        pool["protocol"] = protocol
    route = {"path": "/", "pool": "g"}
    t = dict(timeouts or {})
    if total is not None:
        t["total"] = total
    if t:
        route["timeouts"] = t
    if grpc_keys is not None:
        route["grpc"] = grpc_keys
    doc = {"pools": {"g": pool}, "routes": [route]}
    if limits:
        doc["limits"] = limits
    return doc


def start(proxy_factory, tmp_path, doc, *flags):
    """Runs the proxy from doc (JSON, which YAML reads); proxy_factory adds
    --listen, --access-log and --single-process."""
    path = tmp_path / f"grpc-{next(_cfg_ids)}.yaml"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return proxy_factory("--config", path, *flags)


def channel(p):
    """A client channel to the proxy, connected; its own connection (no
    shared subchannel), no proxy from the environment, no client retries."""
    ch = grpc.insecure_channel(f"127.0.0.1:{p.port}",
                               options=[("grpc.enable_http_proxy", 0),
                                        ("grpc.enable_retries", 0),
                                        ("grpc.use_local_subchannel_pool", 1)])
    grpc.channel_ready_future(ch).result(timeout=3 * SLOW)
    return ch


@pytest.fixture
def channels():
    chs = []

    def make(p):
        ch = channel(p)
        chs.append(ch)
        return ch
    yield make
    for ch in chs:
        ch.close()


class Result:
    def __init__(self, code, details, response, initial, trailing, elapsed):
        self.code, self.details, self.response = code, details, response
        self.initial = dict(initial or ())
        self.trailing = dict(trailing or ())
        self.elapsed = elapsed

    def __repr__(self):
        return (f"<Result {self.code} {self.details!r} resp={self.response!r} "
                f"trailing={self.trailing} {self.elapsed * 1000:.0f} ms>")


def unary(ch, method, request=b"", timeout=None, metadata=None):
    fn = ch.unary_unary(f"/svc/{method}")
    t0 = time.monotonic()
    try:
        resp, call = fn.with_call(request, timeout=timeout, metadata=metadata)
        return Result(grpc.StatusCode.OK, call.details(), resp, call.initial_metadata(),
                      call.trailing_metadata(), time.monotonic() - t0)
    except grpc.RpcError as e:
        return Result(e.code(), e.details(), None, e.initial_metadata(), e.trailing_metadata(),
                      time.monotonic() - t0)


def launch(fn, request, timeout=None):
    """Starts a call; returns (future, t0, box) where box["t"] is set when
    it completes (a done-callback: the time does not depend on the order
    the test collects the results in)."""
    box = {}
    t0 = time.monotonic()
    fut = fn.future(request, timeout=timeout)
    fut.add_done_callback(lambda f: box.setdefault("t", time.monotonic()))
    return fut, t0, box


def result_of(launched):
    fut, t0, box = launched
    try:
        resp = fut.result()
        code, details, initial, trailing = (grpc.StatusCode.OK, fut.details(),
                                            fut.initial_metadata(), fut.trailing_metadata())
    except grpc.RpcError as e:
        resp = None
        code, details, initial, trailing = (e.code(), e.details(), e.initial_metadata(),
                                            e.trailing_metadata())
    wait_until(lambda: "t" in box, 1.0, msg="the done-callback")
    return Result(code, details, resp, initial, trailing, box["t"] - t0)


def field(line, key):
    """A field of an access log line; fails clearly when it is missing."""
    assert key in line, f"access log line has no {key}=: {line}"
    return line[key]


def grpc_status(line):
    return field(line, "grpc_status")


def grpc_timeout_ms(line):
    v = field(line, "grpc_timeout_ms")
    return None if v == "-" else int(v)


def one_log(p, timeout=2.0):
    """The access log's only line (waits for it)."""
    lines = p.wait_log(1, timeout * SLOW)
    assert len(lines) == 1, "one access log line expected:\n" + "\n".join(p.raw_log_lines())
    return lines[0]


def assert_cancelled_soon(call, t_ref, within, what):
    """The server saw the call cancelled (terminated while its handler
    ran) within `within` seconds after t_ref."""
    wait_until(lambda: call.cancelled or call.handler_done, within + 1.0 * SLOW,
               msg=f"the server's call to end ({what})")
    assert call.cancelled, f"{what}: the server's call was not cancelled: {call}"
    late = call.t_cancel - t_ref
    assert late <= within * SLOW, \
        f"{what}: the server saw the cancel {late * 1000:.0f} ms after it was due"


def assert_trailers_only(s, code, reason=None):
    """A Trailers-Only response made by the proxy: one HEADERS with
    END_STREAM, :status 200, content-type application/grpc, grpc-status."""
    assert s.ended and s.reset in (None, NO_ERROR), f"not ended with END_STREAM: {s}"
    assert s.status == 200, f"a gRPC call gets :status 200, not an HTTP error: {s}"
    assert (s.header("content-type") or "").startswith("application/grpc"), s.headers
    assert s.trailers is None, f"Trailers-Only is a single header block: {s.trailers}"
    assert not s.data, f"no message in a Trailers-Only response: {s.body!r}"
    assert s.header("grpc-status") == str(code), s.headers
    msg = unquote(s.header("grpc-message") or "")
    if reason is not None:
        assert reason in msg, f"grpc-message {msg!r} does not name {reason}"
    return msg


def grpc_request_headers(timeout=None, extra=()):
    h = [("content-type", "application/grpc"), ("te", "trailers")]
    if timeout is not None:
        h.append(("grpc-timeout", timeout))
    return h + list(extra)


def metric_sum(admin, name, **labels):
    """Sums name{...} over the series whose labels include labels."""
    code, text = scrape(admin)
    assert code == 200, text
    total, seen = 0.0, False
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
            seen = True
    assert seen, f"no {name}{labels} in /metrics:\n{text}"
    return total


# ==========================================================================
# calls that succeed: messages, metadata, trailers, statuses set by the server

def test_unary_echo_with_metadata_and_trailers(proxy_factory, tmp_path, gsrv, channels):
    p = start(proxy_factory, tmp_path, grpc_doc(gsrv.addr))
    ch = channels(p)
    r = unary(ch, "Echo", b"hello grpc", metadata=(("x-client", "abc"),))
    assert r.code == grpc.StatusCode.OK, r
    assert r.response == b"hello grpc"
    assert r.initial.get("x-initial") == "hi", r.initial
    assert r.trailing.get("x-trailer") == "bye", r.trailing
    assert r.trailing.get("x-trailer-bin") == b"\x00\xff\x01", r.trailing
    (call,) = gsrv.wait_calls(1)
    assert call.metadata.get("x-client") == "abc", call.metadata
    line = one_log(p)
    assert line["proto"] == "HTTP/2" and line["status"] == "200", line
    assert line["target"] == "/svc/Echo" and line["upstream"] == gsrv.addr, line
    assert grpc_status(line) == "0", line
    assert grpc_timeout_ms(line) is None, "no deadline sent: grpc_timeout_ms=-"


def test_server_abort_status_message_and_trailing_metadata(proxy_factory, tmp_path, gsrv,
                                                          channels):
    p = start(proxy_factory, tmp_path, grpc_doc(gsrv.addr))
    ch = channels(p)
    r = unary(ch, "Abort", b"5,nope")
    assert r.code == grpc.StatusCode.NOT_FOUND, r
    assert r.details == "nope", r
    assert r.trailing.get("x-why") == "because", r.trailing
    r = unary(ch, "Abort", b"9,not now: 100% busy")     # percent-encoded on the wire
    assert r.code == grpc.StatusCode.FAILED_PRECONDITION, r
    assert r.details == "not now: 100% busy", r
    lines = p.wait_log(2, 2 * SLOW)
    assert [grpc_status(l) for l in lines] == ["5", "9"], lines


# ==========================================================================
# deadlines

def test_client_deadline_is_the_call_deadline(proxy_factory, tmp_path, gsrv, channels):
    p = start(proxy_factory, tmp_path, grpc_doc(gsrv.addr, total="10s"))
    ch = channels(p)
    r = unary(ch, "Sleep", b"2000", timeout=0.3)
    assert r.code == grpc.StatusCode.DEADLINE_EXCEEDED, r
    assert_window(r.elapsed, 0.3, LO, HI, "DEADLINE_EXCEEDED after")
    (call,) = gsrv.wait_calls(1)
    # hourglass passed the deadline on, less its hop reserve: the server's
    # clock runs out before the client's
    # (passed on unchanged, "300m" would leave the server ~0.300 s: grpc-core
    # rounds up)
    assert call.time_remaining is not None, "the server got no grpc-timeout"
    assert 0.15 < call.time_remaining < 0.297, call
    assert_cancelled_soon(call, call.t_start + 0.3, 0.1, "deadline")
    line = one_log(p)
    # grpc-core writes a 300 ms deadline as "300m" (rounded up)
    assert 299 <= grpc_timeout_ms(line) <= 301, line
    # the server's own deadline (5 ms earlier) ends the call with status 4;
    # on a loaded machine the client's own timer may reset the stream first
    assert grpc_status(line) == "4" or line["reason"] == "client_abort", line


def test_route_total_clamps_a_longer_client_deadline(proxy_factory, tmp_path, gsrv, channels):
    p = start(proxy_factory, tmp_path, grpc_doc(gsrv.addr, total="200ms"))
    ch = channels(p)
    r = unary(ch, "Sleep", b"2000", timeout=5)
    assert r.code == grpc.StatusCode.DEADLINE_EXCEEDED, r
    assert_window(r.elapsed, 0.2, LO, HI, "DEADLINE_EXCEEDED after")
    # the server's clock ("Deadline Exceeded") or hourglass's ("total_timeout")
    assert re.search(r"deadline|timeout", r.details or "", re.I), r
    (call,) = gsrv.wait_calls(1)
    assert call.time_remaining is not None and call.time_remaining < 0.2, call
    line = one_log(p)
    assert grpc_status(line) == "4", line
    assert 4900 <= grpc_timeout_ms(line) <= 5100, line     # the client's 5 s ("5010m")
    assert int(line["total_ms"]) < 200 + 100 * SLOW, line


def test_max_timeout_caps_the_client_deadline(proxy_factory, tmp_path, gsrv, channels):
    p = start(proxy_factory, tmp_path,
              grpc_doc(gsrv.addr, total="10s", grpc_keys={"max_timeout": "150ms"}))
    ch = channels(p)
    r = unary(ch, "Sleep", b"2000", timeout=5)
    assert r.code == grpc.StatusCode.DEADLINE_EXCEEDED, r
    assert_window(r.elapsed, 0.15, LO, HI, "DEADLINE_EXCEEDED after")
    (call,) = gsrv.wait_calls(1)
    assert call.time_remaining is not None and call.time_remaining < 0.15, call
    assert grpc_status(one_log(p)) == "4"


def test_timeout_ignore_route_total_still_applies(proxy_factory, tmp_path, gsrv, channels):
    p = start(proxy_factory, tmp_path,
              grpc_doc(gsrv.addr, total="200ms", grpc_keys={"timeout": "ignore"}))
    ch = channels(p)
    r = unary(ch, "Sleep", b"400", timeout=1)
    assert r.code == grpc.StatusCode.DEADLINE_EXCEEDED, r
    assert_window(r.elapsed, 0.2, LO, HI, "DEADLINE_EXCEEDED after")
    line = one_log(p)
    assert grpc_status(line) == "4", line
    # the requested timeout is logged even when ignored ("1010m" from grpc-core)
    assert 990 <= grpc_timeout_ms(line) <= 1020, line


def test_timeout_ignore_does_not_clamp_to_the_client(proxy_factory, tmp_path, gsrv, channels):
    p = start(proxy_factory, tmp_path,
              grpc_doc(gsrv.addr, total="2s", grpc_keys={"timeout": "ignore"}))
    ch = channels(p)
    r = unary(ch, "Sleep", b"1000", timeout=0.3)
    # the client library's own timer ends the call...
    assert r.code == grpc.StatusCode.DEADLINE_EXCEEDED, r
    assert_window(r.elapsed, 0.3, LO, HI, "client deadline after")
    (call,) = gsrv.wait_calls(1)
    # ...not hourglass: it sent the server its own deadline (the route's 2 s),
    # never the client's 300 ms
    assert call.time_remaining is None or call.time_remaining > 1.0, call
    line = one_log(p)
    assert line["reason"] == "client_abort", line
    assert 299 <= grpc_timeout_ms(line) <= 301, line
    # and the client's reset reached the server
    assert_cancelled_soon(call, call.t_start + 0.3, 0.15, "client deadline")


def test_streaming_true_no_deadline_without_grpc_timeout(proxy_factory, tmp_path, gsrv,
                                                        channels):
    p = start(proxy_factory, tmp_path,
              grpc_doc(gsrv.addr, total="200ms", grpc_keys={"streaming": True}))
    ch = channels(p)
    r = unary(ch, "Sleep", b"500")
    assert r.code == grpc.StatusCode.OK, f"a call without grpc-timeout has no total: {r}"
    assert r.response == b"slept 500" and r.elapsed >= 0.5, r
    line = one_log(p)
    assert grpc_status(line) == "0" and grpc_timeout_ms(line) is None, line
    # with a grpc-timeout, the call has its deadline again
    r = unary(ch, "Sleep", b"500", timeout=0.1)
    assert r.code == grpc.StatusCode.DEADLINE_EXCEEDED, r
    assert_window(r.elapsed, 0.1, LO, HI, "DEADLINE_EXCEEDED after")
    calls = gsrv.wait_calls(2)
    assert calls[1].time_remaining is not None and calls[1].time_remaining < 0.1, calls[1]
    line = p.wait_log(2, 2 * SLOW)[1]
    assert 99 <= grpc_timeout_ms(line) <= 102, line       # "101m" from grpc-core


def test_server_streaming_cut_by_route_total(proxy_factory, tmp_path, gsrv, channels):
    p = start(proxy_factory, tmp_path, grpc_doc(gsrv.addr, total="350ms"))
    ch = channels(p)
    fn = ch.unary_stream("/svc/Stream")
    t0 = time.monotonic()
    it = fn(b"10,100")        # 10 messages, one every 100 ms
    got = []
    with pytest.raises(grpc.RpcError) as ei:
        for m in it:
            got.append(m)
    elapsed = time.monotonic() - t0
    assert ei.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, (ei.value, got)
    assert 2 <= len(got) <= 4, f"~3 messages before the 350 ms deadline, got {got}"
    assert got == [b"msg %d" % i for i in range(len(got))]
    assert_window(elapsed, 0.35, LO, HI, "DEADLINE_EXCEEDED after")
    line = one_log(p)
    assert line["status"] == "200" and grpc_status(line) == "4", line
    (call,) = gsrv.wait_calls(1)
    wait_until(lambda: call.handler_done, 2 * SLOW, msg="the streaming handler to stop")
    assert call.sent < 10, call


# ==========================================================================
# what hourglass itself does, seen frame by frame (scripted HTTP/2 upstream
# that ignores grpc-timeout, raw HTTP/2 client)

def test_grpc_timeout_sent_upstream_with_hop_reserve(proxy_factory, tmp_path, h2_upstream):
    async def handler(s):
        await s.read_body()
        await s.grpc_respond([b"ok"])
    up = h2_upstream(handler)
    p = start(proxy_factory, tmp_path, grpc_doc(up.addr, total="1s"))
    c = H2Client(p.port)
    cases = [("300m", 250, 295),      # the client's deadline, less 5 ms and the hop
             ("5S", 900, 995),        # the route's 1 s is shorter
             (None, 900, 995)]        # no grpc-timeout: the route's total still is one
    for i, (tmo, lo, hi) in enumerate(cases):
        s = c.response(c.request("/svc/Echo", method="POST", headers=grpc_request_headers(tmo),
                                 body=grpc_message(b"x")))
        assert s.status == 200 and s.trailers is not None, s
        assert dict(s.trailers).get("grpc-status") == "0", s.trailers
        up.wait_streams(i + 1)
        st = up.served()[i]
        sent = st.header_all("grpc-timeout")
        assert len(sent) == 1, f"one grpc-timeout upstream, got {sent} ({st.headers})"
        m = re.fullmatch(r"(\d{1,8})m", sent[0])
        assert m, f"grpc-timeout upstream is written in milliseconds: {sent[0]!r}"
        assert lo <= int(m.group(1)) <= hi, f"client {tmo}: upstream got {sent[0]}"
    c.close()


def test_trailers_only_when_hourglass_ends_the_call(proxy_factory, tmp_path, h2_upstream):
    async def silent(s):
        await s.wait_reset(10)
    up = h2_upstream(silent)
    p = start(proxy_factory, tmp_path, grpc_doc(up.addr, total="200ms"))
    c = H2Client(p.port)
    s = c.response(c.request("/svc/Sleep", method="POST", headers=grpc_request_headers("5S"),
                             body=grpc_message(b"2000")))
    assert_window(s.t_end - s.t_sent, 0.2, LO, HI, "Trailers-Only after")
    assert_trailers_only(s, 4, "total_timeout")
    (st,) = up.wait_streams(1)
    wait_until(lambda: st.reset_received is not None, 1 * SLOW,
               msg="RST_STREAM at the upstream")
    assert st.conn.rst_codes(st.sid) == [CANCEL], st.conn.frame_names()
    line = one_log(p)
    assert line["reason"] == "total_timeout" and grpc_status(line) == "4", line
    c.close()


def test_deadline_after_headers_ends_with_trailers(proxy_factory, tmp_path, h2_upstream):
    async def one_then_silence(s):
        await s.read_body()
        await s.send_headers([(":status", "200"), ("content-type", "application/grpc")])
        await s.send_data(grpc_message(b"first"))
        await s.wait_reset(10)
    up = h2_upstream(one_then_silence)
    p = start(proxy_factory, tmp_path, grpc_doc(up.addr, total="300ms"))
    c = H2Client(p.port)
    s = c.response(c.request("/svc/Stream", method="POST", headers=grpc_request_headers(),
                             body=grpc_message(b"10,100")))
    assert s.status == 200 and grpc_messages(s.data) == [b"first"], s
    assert s.ended and s.reset in (None, NO_ERROR), f"trailers, not a reset: {s}"
    assert s.trailers is not None, f"the status comes in trailers after the headers: {s}"
    t = dict(s.trailers)
    assert t.get("grpc-status") == "4", t
    assert "total_timeout" in unquote(t.get("grpc-message", "")), t
    assert_window(s.t_end - s.t_sent, 0.3, LO, HI, "trailers after")
    (st,) = up.wait_streams(1)
    wait_until(lambda: st.reset_received is not None, 1 * SLOW,
               msg="RST_STREAM at the upstream")
    assert st.conn.rst_codes(st.sid) == [CANCEL]
    assert grpc_status(one_log(p)) == "4"
    c.close()


@pytest.mark.parametrize("value", ["12x", "123456789m", "S", "10", "1.5S"])
def test_malformed_grpc_timeout_is_internal(proxy_factory, tmp_path, gsrv, value):
    p = start(proxy_factory, tmp_path, grpc_doc(gsrv.addr))
    c = H2Client(p.port)
    s = c.response(c.request("/svc/Echo", method="POST", headers=grpc_request_headers(value),
                             body=grpc_message(b"x")))
    assert_trailers_only(s, 13)
    line = one_log(p)
    assert grpc_status(line) == "13", line
    time.sleep(0.05)
    assert gsrv.calls == [], "a call with a malformed grpc-timeout never goes upstream"
    c.close()


# ==========================================================================
# hourglass's own failures as gRPC statuses (an HTTP/1.1 pool is enough here)

async def _garbage(reader, writer, ctx):
    await ctx.read_request()
    await ctx.send(b"this is not HTTP\r\n\r\n")


async def _reset(reader, writer, ctx):
    await ctx.read_request()
    ctx.reset_conn()


async def _silent(reader, writer, ctx):
    await ctx.read_request()
    await ctx.wait_lost(10)


@pytest.mark.parametrize("case,code,reason", [
    ("refused", 14, "upstream_refused"),
    ("connect_timeout", 14, "connect_timeout"),
    ("reset", 14, "upstream_reset"),
    ("bad_response", 13, "bad_upstream_response"),
    ("read_timeout", 4, "read_timeout"),
])
def test_proxy_failures_map_to_grpc_statuses(proxy_factory, upstream, request, case, code,
                                            reason):
    flags = ["--connect-timeout", "150ms", "--read-timeout", "150ms"]
    if case == "refused":
        addr = f"127.0.0.1:{free_port()}"
    elif case == "connect_timeout":
        addr = request.getfixturevalue("blackhole").addr
    else:
        addr = upstream({"reset": _reset, "bad_response": _garbage,
                         "read_timeout": _silent}[case]).addr
    p = proxy_factory(*flags, upstreams=[addr])
    c = H2Client(p.port)
    s = c.response(c.request("/svc/Echo", method="POST", headers=grpc_request_headers(),
                             body=grpc_message(b"x")))
    msg = assert_trailers_only(s, code)
    line = one_log(p)
    assert line["reason"] == reason, line
    assert reason in msg, f"grpc-message {msg!r} names the reason {reason}"
    assert grpc_status(line) == str(code), line
    c.close()


@pytest.mark.parametrize("http,code", [(503, 14), (404, 12), (401, 16), (500, 2)])
def test_http_error_without_grpc_status_is_mapped(proxy_factory, upstream, http, code):
    """An (HTTP/1.1) upstream answering a gRPC call with an HTTP error and no
    grpc-status: the client gets gRPC's HTTP-to-status mapping, Trailers-Only,
    with the upstream's HTTP status named in grpc-message."""
    async def error(reader, writer, ctx):
        await ctx.read_request()
        await ctx.send(f"HTTP/1.1 {http} Nope\r\nContent-Length: 4\r\n\r\nnope".encode())
    p = proxy_factory(upstreams=[upstream(error)])
    c = H2Client(p.port)
    s = c.response(c.request("/svc/Echo", method="POST", headers=grpc_request_headers(),
                             body=grpc_message(b"x")))
    msg = assert_trailers_only(s, code)
    assert f"HTTP status {http}" in msg, msg
    line = one_log(p)
    assert line["reason"] == "upstream_http_status" and grpc_status(line) == str(code), line
    c.close()


def test_queue_timeout_and_no_healthy_upstream_are_unavailable(proxy_factory, tmp_path, upstream):
    # queue_timeout: the only connection the pool may open is busy past the
    # queue timeout (by default the connect timeout)
    held = upstream(_silent)
    doc = grpc_doc(held.addr, protocol=None)
    doc["pools"]["g"]["max_connections"] = 1
    doc["timeouts"] = {"connect": "150ms"}
    p = start(proxy_factory, tmp_path, doc)
    c = H2Client(p.port)
    first = c.request("/svc/Sleep", method="POST", headers=grpc_request_headers(),
                      body=grpc_message(b"hold"))
    held.wait_requests(1)
    s = c.response(c.request("/svc/Echo", method="POST", headers=grpc_request_headers(),
                             body=grpc_message(b"x")))
    assert_trailers_only(s, 14, "queue_timeout")
    c.reset(first)
    c.close()
    line = next(l for l in p.wait_log(2, 2 * SLOW) if l["reason"] == "queue_timeout")
    assert grpc_status(line) == "14", line

    # no_healthy_upstream: one refused connect ejects the only server
    dead = f"127.0.0.1:{free_port()}"
    doc = grpc_doc(dead, protocol=None)
    doc["pools"]["g"]["health"] = {"passive": {"failures": 1, "ejection": "10s",
                                               "max_ejected_percent": 100}}
    p2 = start(proxy_factory, tmp_path, doc)
    c = H2Client(p2.port)
    for want in ("upstream_refused", "no_healthy_upstream"):
        s = c.response(c.request("/svc/Echo", method="POST", headers=grpc_request_headers(),
                                 body=grpc_message(b"x")))
        assert_trailers_only(s, 14, want)
    c.close()
    lines = p2.wait_log(2, 2 * SLOW)
    assert [(l["reason"], grpc_status(l)) for l in lines] == \
        [("upstream_refused", "14"), ("no_healthy_upstream", "14")], lines


def test_upstream_down_is_unavailable(proxy_factory, tmp_path, channels):
    dead = f"127.0.0.1:{free_port()}"
    p = start(proxy_factory, tmp_path, grpc_doc(dead))
    ch = channels(p)
    r = unary(ch, "Echo", b"x", timeout=5)
    assert r.code == grpc.StatusCode.UNAVAILABLE, r
    assert r.elapsed < 0.5 * SLOW, r
    assert "upstream_refused" in (r.details or ""), r
    line = one_log(p)
    assert grpc_status(line) == "14" and line["reason"] == "upstream_refused", line


# ==========================================================================
# cancellation

def test_client_cancel_cancels_the_server_call(proxy_factory, tmp_path, gsrv, channels):
    p = start(proxy_factory, tmp_path, grpc_doc(gsrv.addr, total="10s"))
    ch = channels(p)
    fut = ch.unary_unary("/svc/Sleep").future(b"3000")
    (call,) = gsrv.wait_calls(1)
    time.sleep(0.05)
    t_cancel = time.monotonic()
    assert fut.cancel()
    assert_cancelled_soon(call, t_cancel, 0.1, "client cancel")
    line = one_log(p)
    assert line["reason"] == "client_abort", line


# ==========================================================================
# two hops

def test_chain_of_two_proxies_propagates_the_deadline(proxy_factory, tmp_path, gsrv, channels):
    hg2 = start(proxy_factory, tmp_path, grpc_doc(gsrv.addr, total="5s"))
    hg1 = start(proxy_factory, tmp_path, grpc_doc(f"127.0.0.1:{hg2.port}", total="1s"))
    ch = channels(hg1)
    r = unary(ch, "Sleep", b"3000", timeout=5)
    assert r.code == grpc.StatusCode.DEADLINE_EXCEEDED, r
    assert_window(r.elapsed, 1.0, 0.03, 0.1 * SLOW, "DEADLINE_EXCEEDED after")
    (call,) = gsrv.wait_calls(1)
    assert call.time_remaining is not None and call.time_remaining < 0.995, call
    l1 = one_log(hg1)
    l2 = one_log(hg2)
    assert grpc_status(l1) == "4" and grpc_status(l2) == "4", (l1, l2)
    assert 4900 <= grpc_timeout_ms(l1) <= 5100, l1           # the client's 5 s
    assert 900 <= grpc_timeout_ms(l2) < 1000, f"hg1 passed on its 1 s, less its reserve: {l2}"
    assert int(l2["total_ms"]) <= int(l1["total_ms"]), (l1, l2)


# ==========================================================================
# many calls on one upstream connection

def test_thousand_calls_one_upstream_connection(proxy_factory, tmp_path, gsrv):
    p = start(proxy_factory, tmp_path, grpc_doc(gsrv.addr, total="20s"),
              "--max-concurrent-streams", "1000")
    n = 1000
    # one call first: until the server's SETTINGS arrive, an opening
    # connection is assumed to take 100 streams, and a burst of 1000 calls
    # read before then (seen under ASan) rightly opens a second connection
    ch = channel(p)
    assert unary(ch, "Echo", b"warm").code == grpc.StatusCode.OK
    ch.close()

    def round_(tag):
        ch = channel(p)
        try:
            fn = ch.unary_unary("/svc/Echo")
            payloads = [b"%s-%d" % (tag, i) for i in range(n)]
            futs = [fn.future(x, timeout=15) for x in payloads]
            got = [f.result() for f in futs]
        finally:
            ch.close()
        assert got == payloads

    round_(b"one")
    assert len(gsrv.calls) == n + 1
    assert len(gsrv.peers()) == 1, f"{n} calls took {len(gsrv.peers())} upstream connections"
    p.wait_log(n + 1, 5 * SLOW)
    # a settled baseline after the first round, then the same again
    time.sleep(0.3)
    fd0, rss0 = p.fd_count(), p.rss_kb()
    round_(b"two")
    lines = p.wait_log(2 * n + 1, 5 * SLOW)
    assert {grpc_status(l) for l in lines} == {"0"}
    assert len(gsrv.peers()) == 1, "the second round reuses the pooled connection"
    try:
        wait_until(lambda: p.fd_count() <= fd0, 2 * SLOW)
    except AssertionError:
        pass
    assert p.fd_count() <= fd0, f"fd count {fd0} -> {p.fd_count()} after {n} more calls"
    growth = p.rss_kb() - rss0
    assert growth < RSS_LIMIT_KB, f"RSS grew by {growth} kB after {n} more calls"


def test_neighbours_keep_going_when_one_deadline_fires(proxy_factory, tmp_path, gsrv, channels):
    p = start(proxy_factory, tmp_path, grpc_doc(gsrv.addr, total="10s"))
    ch = channels(p)
    unary(ch, "Echo", b"warm")            # one upstream connection, set up
    fn = ch.unary_unary("/svc/Sleep")
    calls = [launch(fn, b"400", timeout=0.1 if i % 2 else None) for i in range(50)]
    res = [result_of(c) for c in calls]
    for i, r in enumerate(res):
        if i % 2:
            assert r.code == grpc.StatusCode.DEADLINE_EXCEEDED, (i, r)
            assert r.elapsed < 0.1 + HI, (i, r)
        else:
            assert r.code == grpc.StatusCode.OK and r.response == b"slept 400", (i, r)
            assert 0.4 <= r.elapsed < 0.4 + 0.3 * SLOW, (i, r)
    # Every call that succeeded reached the server; a call whose deadline fired
    # may have been reset before the server's thread pool started its handler
    # (seen under ASan), so those are not counted.
    assert len(gsrv.wait_calls(26)) >= 26
    assert len(gsrv.peers()) == 1, f"calls spread over {gsrv.peers()}"
    lines = p.wait_log(51, 3 * SLOW)
    assert sum(grpc_status(l) == "0" for l in lines) == 26, lines
    # the other 25: the proxy's deadline (4), or the client's own, which fires
    # at the same moment and resets the stream first (1, CANCELLED)
    assert sum(grpc_status(l) in ("1", "4") for l in lines) == 25, lines


# ==========================================================================
# metrics

def test_grpc_calls_counted_by_status(proxy_factory, tmp_path, gsrv, channels):
    admin = free_port()
    p = start(proxy_factory, tmp_path, grpc_doc(gsrv.addr, total="200ms"),
              "--admin", f"127.0.0.1:{admin}")
    wait_port("127.0.0.1", admin)
    ch = channels(p)
    assert unary(ch, "Echo", b"x").code == grpc.StatusCode.OK
    assert unary(ch, "Sleep", b"1000").code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert unary(ch, "Abort", b"5,nope").code == grpc.StatusCode.NOT_FOUND
    p.wait_log(3, 2 * SLOW)
    assert metric_sum(admin, "hourglass_grpc_calls_total", status="0") >= 1
    assert metric_sum(admin, "hourglass_grpc_calls_total", status="4") >= 1
    assert metric_sum(admin, "hourglass_grpc_calls_total", status="5") >= 1
    # a plain HTTP request is not a gRPC call
    c = p.client()
    c.send(request_bytes("GET", "/plain"))
    c.read_response()
    c.close()
    p.wait_log(4, 2 * SLOW)
    assert metric_sum(admin, "hourglass_grpc_calls_total") == 3
