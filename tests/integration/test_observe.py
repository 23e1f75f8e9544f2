"""Where the time went (issue 18): request IDs (generated, or a trusted
client's), W3C trace context passed through and its trace ID logged, the
access log's deadline_ms/deadline_from, queue_ms, left_ms and tries, the
Server-Timing field of routes that ask for it, and the /metrics histograms
and counters (durations by route and server, queue waits, time left at
dispatch, requests shed, hedge results).

Scripted upstreams on 127.0.0.1 only (conftest.py); HTTP/2 clients are the
frame-level H2Client of test_http2.py, HTTP/2 upstreams h2up.py's."""
import json
import re
import time

import pytest

from conftest import Client, Proxy, answering, concurrent_gets, free_port, is_sanitized, \
    ok_handler, request_bytes, scrape, silent_handler, wait_port
from conftest import answering as slow
from conftest import start_with_config as start_with
from h2up import grpc_message
from test_http2 import H2Client

SLOW = 2.0 if is_sanitized() else 1.0
HEX32 = re.compile(r"^[0-9a-f]{32}$")
TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TP_ID = "0af7651916cd43dd8448eb211c80319c"
TS = "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7"


@pytest.fixture
def file_proxy(tmp_path):
    """start(text, port) -> a Proxy whose listeners are the file's own
    (proxy_factory's --listen would replace them, and their keys)."""
    procs = []

    def start(text, port, *flags):
        path = tmp_path / f"listeners-{port}.yaml"
        path.write_text(text)
        p = Proxy(["--config", str(path), "--single-process", *[str(f) for f in flags]],
                  tmp_path, "127.0.0.1", port)
        procs.append(p)
        assert p.start(), p.stderr_text()
        return p
    yield start
    problems = []
    for p in procs:
        problems += p.stop()
    if problems:
        pytest.fail("\n".join(problems))


def get(p, target="/", headers=(), method="GET", port=None, timeout=5.0):
    c = p.client(timeout=timeout) if port is None else Client(port, timeout=timeout)
    try:
        c.send(request_bytes(method, target, headers=list(headers)))
        return c.read_response(method=method)
    finally:
        c.close()


def metric(text, name, **labels):
    """The value of one series, or None when absent."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pat = re.escape(name) + (r"\{" + re.escape(want) + r"\}" if labels else "") + r" (\S+)"
    m = re.search(r"^" + pat + r"$", text, re.M)
    return float(m.group(1)) if m else None


def buckets(text, name, **labels):
    """[(le, count)] of a histogram's series, in the order written."""
    want = "".join(f'{k}="{v}",' for k, v in labels.items())
    rx = re.compile(r"^" + re.escape(name) + r"_bucket\{" + re.escape(want) +
                    r'le="([^"]+)"\} (\S+)$', re.M)
    return [(le, float(v)) for le, v in rx.findall(text)]


# --------------------------------------------------------------------------
# request IDs

def test_request_id_generated_sent_up_returned_and_logged(proxy_factory, upstream):
    up = upstream(ok_handler(b"ok"))
    p = proxy_factory(upstreams=[up])
    r1 = get(p, "/a")
    r2 = get(p, "/b", headers=[("X-Request-Id", "client-chose-this")])   # not trusted
    for r in (r1, r2):
        assert r.status == 200, r
        assert len(r.header_all("x-request-id")) == 1, r.headers
        assert HEX32.match(r.header("x-request-id")), r.headers
    assert r1.header("x-request-id") != r2.header("x-request-id")
    reqs = up.wait_requests(2)
    for r, req in zip((r1, r2), reqs):
        assert req.header_all("x-request-id") == [r.header("x-request-id")], req.headers
    lines = p.wait_log(2)
    for r, line in zip((r1, r2), lines):
        assert line["request_id"] == r.header("x-request-id"), line
    assert "client-chose-this" not in "".join(p.raw_log_lines())


def test_trusted_listener_takes_a_valid_id_only(file_proxy, upstream):
    up = upstream(ok_handler(b"ok"))
    trusted, plain = free_port(), free_port()
    p = file_proxy(f"""
listen:
  - {{address: 127.0.0.1:{trusted}, trust_request_id: true}}
  - 127.0.0.1:{plain}
pools:
  app: {{servers: [{up.addr}]}}
routes:
  - {{path: /, pool: app}}
""", trusted)
    wait_port("127.0.0.1", plain)
    cases = [
        (trusted, "abc-123_x.y:z", True),
        (trusted, "a" * 64, True),
        (trusted, "a" * 65, False),             # too long
        (trusted, "has space", False),
        (trusted, "x" * 6000, False),           # huge: replaced, no crash
        (trusted, "semi;colon", False),
        (plain, "abc-123", False),              # not trusted there
    ]
    got = []
    for port, rid, kept in cases:
        r = get(p, "/t", headers=[("X-Request-Id", rid)], port=port)
        assert r is not None and r.status == 200, (rid[:80], r)
        sent = r.header("x-request-id")
        if kept:
            assert sent == rid, (rid, sent)
        else:
            assert HEX32.match(sent), (rid[:80], sent)
        got.append(sent)
    reqs = up.wait_requests(len(cases))
    assert [q.header_all("x-request-id") for q in reqs] == [[g] for g in got]
    lines = p.wait_log(len(cases))
    assert [l["request_id"] for l in lines] == got


def test_proxy_errors_carry_the_request_id(proxy_factory, upstream, tmp_path):
    dead = f"127.0.0.1:{free_port()}"
    p = start_with(proxy_factory, tmp_path, f"""
pools:
  dead: {{servers: [{dead}]}}
routes:
  - {{host: only.test, path: /, pool: dead}}
  - {{path: /dead, pool: dead}}
""")
    r404 = get(p, "/nowhere")
    r502 = get(p, "/dead")
    assert r404.status == 404 and r502.status == 502, (r404, r502)
    ids = [r404.header("x-request-id"), r502.header("x-request-id")]
    assert all(i and HEX32.match(i) for i in ids), (r404.headers, r502.headers)
    lines = p.wait_log(2)
    assert [l["request_id"] for l in lines] == ids
    # every error log sentence about a request names it
    p.wait_stderr(r"no route for this request \(client [^)]*request_id=" + ids[0])
    p.wait_stderr(r"upstream connect to .* failed: .*request_id=" + ids[1])
    assert lines[1]["tries"] == f"{dead}/upstream_refused/" + lines[1]["tries"].split("/")[-1]


def test_http2_client_and_upstream_see_the_request_id(proxy_factory, tmp_path, h2_upstream):
    up = h2_upstream()
    p = start_with(proxy_factory, tmp_path, f"""
pools:
  h: {{servers: [{up.addr}], protocol: h2}}
routes:
  - {{path: /, pool: h}}
""")
    c = H2Client(p.port)
    s = c.get("/x", headers=[("traceparent", TP), ("tracestate", TS),
                             ("x-request-id", "not-trusted")])
    c.close()
    assert s.status == 200, s
    rid = s.header("x-request-id")
    assert rid and HEX32.match(rid), s.headers
    (st,) = up.wait_streams(1)
    assert st.header_all("x-request-id") == [rid], st.headers
    assert st.header_all("traceparent") == [TP] and st.header_all("tracestate") == [TS]
    (line,) = p.wait_log(1)
    assert line["request_id"] == rid and line["trace_id"] == TP_ID, line


# --------------------------------------------------------------------------
# trace context

def test_trace_context_passed_through_and_trace_id_logged(proxy_factory, upstream):
    up = upstream(ok_handler(b"ok"))
    p = proxy_factory(upstreams=[up])
    assert get(p, "/1", headers=[("traceparent", TP), ("tracestate", TS)]).status == 200
    bad_tp = TP.upper()   # upper-case hex: not valid, still passed on untouched
    assert get(p, "/2", headers=[("traceparent", bad_tp), ("tracestate", "a=1")]).status == 200
    assert get(p, "/3").status == 200
    reqs = up.wait_requests(3)
    raw = [q.head for q in reqs]
    assert b"\r\ntraceparent: " + TP.encode() + b"\r\n" in raw[0]
    assert b"\r\ntracestate: " + TS.encode() + b"\r\n" in raw[0]
    assert reqs[1].header_all("traceparent") == [bad_tp]
    assert not reqs[2].has("traceparent")
    lines = p.wait_log(3)
    assert [l["trace_id"] for l in lines] == [TP_ID, "-", "-"]

    # from an HTTP/2 client to an HTTP/1.1 upstream
    c = H2Client(p.port)
    s = c.get("/4", headers=[("traceparent", TP), ("tracestate", TS)])
    c.close()
    assert s.status == 200, s
    q = up.wait_requests(4)[3]
    assert q.header_all("traceparent") == [TP] and q.header_all("tracestate") == [TS]
    assert p.wait_log(4)[3]["trace_id"] == TP_ID


# --------------------------------------------------------------------------
# the deadline, its source, the time left

def test_deadline_and_its_source(file_proxy, upstream, tmp_path, h2_upstream):
    up = upstream(ok_handler(b"ok"))
    g = h2_upstream()

    async def grpc_ok(s):
        await s.read_body()
        await s.grpc_respond([b"ok"])
    g.handler = grpc_ok
    port = free_port()
    p = file_proxy(f"""
listen:
  - {{address: 127.0.0.1:{port}, trust_deadline_header: true}}
pools:
  app: {{servers: [{up.addr}]}}
  g: {{servers: [{g.addr}], protocol: h2}}
routes:
  - {{path: /g/, pool: g, timeouts: {{total: 2s}}}}
  - {{path: /, pool: app, timeouts: {{total: 2s}}}}
""", port)
    assert get(p, "/route").status == 200
    assert get(p, "/hdr", headers=[("X-Request-Deadline-Ms", "700")]).status == 200
    assert get(p, "/long", headers=[("X-Request-Deadline-Ms", "9000")]).status == 200
    c = H2Client(port)
    s = c.response(c.request("/g/svc/Echo", method="POST",
                             headers=[("content-type", "application/grpc"), ("te", "trailers"),
                                      ("grpc-timeout", "300m")],
                             body=grpc_message(b"x")))
    c.close()
    assert s.status == 200, s
    lines = p.wait_log(4)
    got = [(l["deadline_ms"], l["deadline_from"]) for l in lines]
    assert got == [("2000", "route"), ("700", "header"), ("2000", "route"), ("300", "grpc")], got
    for l in lines:
        left = int(l["left_ms"])
        assert 0.8 * int(l["deadline_ms"]) <= left <= int(l["deadline_ms"]), l
        assert l["queue_ms"] == "0", l


# --------------------------------------------------------------------------
# the queue

def test_queue_ms_when_the_pool_is_busy(proxy_factory, upstream, tmp_path):
    up = upstream(slow(0.3))
    admin = free_port()
    p = start_with(proxy_factory, tmp_path, f"""
pools:
  app:
    servers: [{up.addr}]
    max_connections: 1
routes:
  - {{path: /, pool: app, timeouts: {{connect: 2s}}}}
""", "--admin", f"127.0.0.1:{admin}")
    res = {t: r for t, (r, _) in concurrent_gets(p, ["/a", "/b"], gap=0.05).items()}
    assert res["/a"].status == 200 and res["/b"].status == 200, res
    lines = {l["target"]: l for l in p.wait_log(2)}
    assert lines["/a"]["queue_ms"] == "0", lines["/a"]
    q = int(lines["/b"]["queue_ms"])
    # b waited for a's connection: about a's 300 ms less the 50 ms head start
    assert 150 <= q <= 300 + 150 * SLOW, lines["/b"]
    _, text = scrape(admin)
    assert metric(text, "hourglass_queue_wait_seconds_count", pool="app") == 1
    assert 0.15 <= metric(text, "hourglass_queue_wait_seconds_sum", pool="app") <= 0.5
    bs = dict(buckets(text, "hourglass_queue_wait_seconds", pool="app"))
    assert bs["0.1"] == 0 and bs["0.5"] == 1 and bs["+Inf"] == 1, bs


def test_queue_timeout_counts_as_shed(proxy_factory, upstream, tmp_path):
    up = upstream(slow(0.6))
    admin = free_port()
    p = start_with(proxy_factory, tmp_path, f"""
pools:
  app:
    servers: [{up.addr}]
    max_connections: 1
routes:
  - {{path: /, pool: app, timeouts: {{connect: 150ms}}}}
""", "--admin", f"127.0.0.1:{admin}")
    res = {t: r for t, (r, _) in concurrent_gets(p, ["/a", "/b"], gap=0.05).items()}
    assert res["/a"].status == 200 and res["/b"].status == 503, res
    lines = {l["target"]: l for l in p.wait_log(2)}
    assert lines["/b"]["reason"] == "queue_timeout" and lines["/b"]["tries"] == "-", lines["/b"]
    assert 100 <= int(lines["/b"]["queue_ms"]) <= 150 + 100 * SLOW, lines["/b"]
    _, text = scrape(admin)
    assert metric(text, "hourglass_requests_shed_total", reason="queue_timeout") == 1
    assert metric(text, "hourglass_requests_shed_total", reason="deadline_unmeetable") == 0


# --------------------------------------------------------------------------
# the tries

def test_tries_list_a_read_timeout_then_a_good_server(proxy_factory, upstream, tmp_path):
    stall = upstream(silent_handler())
    good = upstream(ok_handler(b"good"))
    p = start_with(proxy_factory, tmp_path, f"""
pools:
  app:
    servers: [{stall.addr}, {good.addr}]
    health: {{passive: {{failures: 1000}}}}
routes:
  - path: /
    pool: app
    timeouts: {{read: 200ms}}
    retry: {{attempts: 2, on: [read_timeout], backoff: {{base: 1ms, max: 1ms}}}}
""")
    r = get(p, "/first")   # smooth round-robin: the silent one first
    assert r.status == 200 and r.body == b"good", r
    (line,) = p.wait_log(1)
    assert line["attempts"] == "2", line
    tries = line["tries"].split(",")
    assert len(tries) == 2, line
    s1, o1, ms1 = tries[0].split("/")
    s2, o2, ms2 = tries[1].split("/")
    assert (s1, o1) == (stall.addr, "read_timeout") and 200 <= int(ms1) <= 200 + 100 * SLOW
    assert (s2, o2) == (good.addr, "ok") and 0 <= int(ms2) <= 100 * SLOW, line
    assert line["upstream"] == good.addr


def test_json_access_log_has_the_same_fields(proxy_factory, upstream):
    up = upstream(ok_handler(b"ok"))
    p = proxy_factory("--access-log-format", "json", upstreams=[up])
    assert get(p, "/j", headers=[("traceparent", TP)]).status == 200
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and not p.log_path.exists():
        time.sleep(0.01)
    time.sleep(0.1)
    (e,) = [json.loads(l) for l in p.raw_log_lines()]
    assert HEX32.match(e["request_id"]) and e["trace_id"] == TP_ID, e
    assert e["deadline_from"] == "route" and e["deadline_ms"] > 0 and e["queue_ms"] == 0, e
    assert e["left_ms"] <= e["deadline_ms"], e
    assert e["tries"] == [{"server": up.addr, "outcome": "ok", "ms": e["tries"][0]["ms"]}], e
    assert e["tries_more"] == 0
    assert list(e)[-1] == "reason"


# --------------------------------------------------------------------------
# Server-Timing

def test_server_timing_only_on_routes_that_ask(proxy_factory, upstream, tmp_path):
    async def timed(reader, writer, ctx):
        async def respond(ctx, req):
            await ctx.delay(0.05)
            await ctx.respond(200, b"ok", headers=[("Server-Timing", "db;dur=7")])
        await ctx.serve_forever(respond)
    up = upstream(timed)
    p = start_with(proxy_factory, tmp_path, f"""
pools:
  app: {{servers: [{up.addr}]}}
routes:
  - {{path: /timed, pool: app, server_timing: true}}
  - {{path: /, pool: app}}
""")
    r = get(p, "/timed")
    plain = get(p, "/plain")
    assert r.status == 200 and plain.status == 200
    assert plain.header_all("server-timing") == ["db;dur=7"], plain.headers
    st = r.header_all("server-timing")
    assert st[0] == "db;dur=7" and len(st) == 2, r.headers
    m = re.fullmatch(r"queue;dur=(\d+\.\d), connect;dur=(\d+\.\d), upstream;dur=(\d+\.\d), "
                     r"total;dur=(\d+\.\d)", st[1])
    assert m, st[1]
    queue, connect, up_ms, total = (float(x) for x in m.groups())
    assert queue == 0.0 and 45 <= up_ms <= 50 + 100 * SLOW, st[1]
    assert up_ms <= total <= up_ms + connect + 50 * SLOW, st[1]

    c = H2Client(p.port)
    s = c.get("/timed")
    s2 = c.get("/plain")
    c.close()
    assert s.status == 200 and len(s.header_all("server-timing")) == 2, s.headers
    assert s.header_all("server-timing")[1].startswith("queue;dur="), s.headers
    assert s2.header_all("server-timing") == ["db;dur=7"], s2.headers


# --------------------------------------------------------------------------
# /metrics

def test_duration_histograms_by_route_and_server(proxy_factory, upstream, tmp_path):
    a = upstream(ok_handler(b"a"))
    b = upstream(slow(0.03))
    admin = free_port()
    p = start_with(proxy_factory, tmp_path, f"""
pools:
  app: {{servers: [{a.addr}, {b.addr}]}}
routes:
  - {{path: /x, pool: app}}
  - {{path: /, pool: app}}
""", "--admin", f"127.0.0.1:{admin}")
    _, before = scrape(admin)
    assert metric(before, "hourglass_request_duration_seconds_count", route="/x") == 0
    for i in range(4):
        assert get(p, f"/x{i}").status == 200
    assert get(p, "/other").status == 200
    p.wait_log(5)
    _, text = scrape(admin)
    assert "# TYPE hourglass_request_duration_seconds histogram" in text
    assert metric(text, "hourglass_request_duration_seconds_count", route="/x") == 4
    assert metric(text, "hourglass_request_duration_seconds_count", route="/") == 1
    assert metric(text, "hourglass_upstream_header_seconds_count", route="/x") == 4
    assert metric(text, "hourglass_deadline_left_at_dispatch_seconds_count", route="/x") == 4
    for srv, n in ((a.addr, 3), (b.addr, 2)):   # round-robin over 5 requests
        labels = {"pool": "app", "server": srv}
        assert metric(text, "hourglass_server_request_duration_seconds_count", **labels) == n
        assert metric(text, "hourglass_server_header_seconds_count", **labels) == n
        bs = buckets(text, "hourglass_server_header_seconds", **labels)
        assert [le for le, _ in bs][-1] == "+Inf" and len(bs) == 14, bs
        counts = [v for _, v in bs]
        assert counts == sorted(counts) and counts[-1] == n, bs   # cumulative
    # b answers after 30 ms: none of its heads under 25 ms, all under 250 ms
    bb = dict(buckets(text, "hourglass_server_header_seconds", pool="app", server=b.addr))
    assert bb["0.025"] == 0 and bb["0.25"] == 2, bb
    s = metric(text, "hourglass_server_header_seconds_sum", pool="app", server=b.addr)
    assert 0.06 <= s <= 0.06 + 0.2 * SLOW, s


# --------------------------------------------------------------------------
# hedges

def hedge_config(a, b):
    return f"""
pools:
  app: {{servers: [{a}, {b}]}}
routes:
  - {{path: /, pool: app, hedge: {{delay: 50ms}}}}
"""


def test_hedge_won_is_counted_and_listed(proxy_factory, upstream, tmp_path):
    slow_up = upstream(answering(1.0, b"slow"))
    fast = upstream(answering(0, b"fast"))
    admin = free_port()
    p = start_with(proxy_factory, tmp_path, hedge_config(slow_up.addr, fast.addr),
                   "--admin", f"127.0.0.1:{admin}")
    r = get(p, "/h")
    assert r.status == 200 and r.body == b"fast", r
    (line,) = p.wait_log(1)
    tries = [t.split("/") for t in line["tries"].split(",")]
    assert [(t[0], t[1]) for t in tries] == [(slow_up.addr, "hedge_lost"), (fast.addr, "ok")], line
    assert 50 <= int(tries[0][2]) <= 50 + 100 * SLOW, line
    _, text = scrape(admin)
    assert metric(text, "hourglass_hedges_total", result="won") == 1
    assert metric(text, "hourglass_hedges_total", result="lost") == 0
    assert metric(text, "hourglass_hedges_started_total") == 1


def test_hedge_lost_and_skipped_are_counted(proxy_factory, upstream, tmp_path):
    first = upstream(answering(0.15, b"first"))
    second = upstream(answering(1.0, b"second"))
    admin = free_port()
    p = start_with(proxy_factory, tmp_path, hedge_config(first.addr, second.addr),
                   "--admin", f"127.0.0.1:{admin}")
    r = get(p, "/h")
    assert r.status == 200 and r.body == b"first", r
    (line,) = p.wait_log(1)
    tries = [t.split("/")[:2] for t in line["tries"].split(",")]
    assert tries == [[first.addr, "ok"], [second.addr, "hedge_lost"]], line
    # a POST is never hedged: the hedge is skipped (round-robin: second's turn,
    # whose 1 s answer outlasts the 50 ms delay)
    c = p.client(timeout=5)
    c.send(request_bytes("POST", "/p", body=b"x"))
    assert c.read_response().status == 200
    c.close()
    p.wait_log(2)
    _, text = scrape(admin)
    assert metric(text, "hourglass_hedges_total", result="lost") == 1
    assert metric(text, "hourglass_hedges_total", result="won") == 0
    assert metric(text, "hourglass_hedges_total", result="skipped") == 1
