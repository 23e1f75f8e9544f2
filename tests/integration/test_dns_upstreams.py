"""Dynamic upstreams (issue 17): pool servers written as host names or SRV
names, resolved on the proxy's loop through a fake DNS server on 127.0.0.1
(fakedns.py), again when the answer's TTL runs out.

Network rule: every packet stays on loopback. Every proxy started here gets
--resolver pointing at FakeDNS, whose table holds loopback addresses only;
servers listen on 127.0.0.2 and 127.0.0.3 (Linux routes all of 127/8 to lo).
"""

import re
import subprocess
import threading
import time

import pytest

from conftest import (BIN, free_port, is_sanitized, ok_handler, request_bytes, scrape,
                      wait_until)
from fakedns import SILENT, T_SRV, FakeDNS

SLOW = 2.0 if is_sanitized() else 1.0


@pytest.fixture
def dns(aio):
    d = FakeDNS(aio)
    yield d
    d.close()
    assert not d.errors, f"fake DNS could not read queries: {d.errors}"


def write_config(tmp_path, servers, resolve="{min_interval: 100ms, max_interval: 1s}",
                 pool_extra="", route_extra="", top=""):
    path = tmp_path / "dyn.yaml"
    path.write_text(f"""{top}
pools:
  web:
    servers: [{servers}]
    resolve: {resolve}
{pool_extra}
routes:
  - path: /
    pool: web
{route_extra}
""")
    return path


def start(proxy_factory, dns, path, *flags):
    return proxy_factory("--config", str(path), "--resolver", dns.addr, *flags)


def twins(upstream, handler_a, handler_b, hosts=("127.0.0.2", "127.0.0.3")):
    """Two upstreams on the same port of two loopback addresses."""
    for _ in range(20):
        a = upstream(handler_a, host=hosts[0])
        try:
            b = upstream(handler_b, host=hosts[1], port=a.port)
        except OSError:
            a.close()
            continue
        return a, b
    pytest.fail("no port free on both 127.0.0.2 and 127.0.0.3")


def get(p, target="/"):
    """One request on a connection of its own: the response."""
    c = p.client(timeout=3.0 * SLOW)
    try:
        c.send(request_bytes("GET", target))
        return c.read_response()
    finally:
        c.close()


def body(p, target="/"):
    r = get(p, target)
    assert r is not None and r.status == 200, (r, p.stderr_text()[-2000:])
    return r.body


def now_line(name, now, was):
    return re.escape(f"info: pool web: {name} now {now} (was {was})")


def metric(admin, line_re):
    code, text = scrape(admin)
    assert code == 200
    m = re.search(line_re + r" (\d+)", text)
    assert m, f"no {line_re} in:\n{text}"
    return int(m.group(1))


# --------------------------------------------------------------------------

def test_answer_change_moves_traffic_within_its_ttl(proxy_factory, dns, upstream, tmp_path):
    a, b = twins(upstream, ok_handler(b"a"), ok_handler(b"b"))
    name = f"backend.test:{a.port}"
    dns.set("backend.test", ["127.0.0.2"], ttl=1)
    p = start(proxy_factory, dns, write_config(tmp_path, name))
    p.wait_stderr(now_line(name, f"127.0.0.2:{a.port}", "none"), timeout=2.0 * SLOW)
    assert body(p) == b"a"
    dns.set("backend.test", ["127.0.0.3"], ttl=1)
    t0 = time.monotonic()
    wait_until(lambda: body(p) == b"b", 2.0 * SLOW, interval=0.05,
               msg="traffic to move to 127.0.0.3")
    took = time.monotonic() - t0
    assert took < 1.0 + 0.3 * SLOW, f"moved after {took:.2f}s with a TTL of 1s"
    p.wait_stderr(now_line(name, f"127.0.0.3:{b.port}", f"127.0.0.2:{a.port}"))
    assert all(body(p) == b"b" for _ in range(4))
    assert dns.asked("backend.test", 1) and dns.asked("backend.test", 28)


def test_two_records_share_traffic(proxy_factory, dns, upstream, tmp_path):
    a, b = twins(upstream, ok_handler(b"a"), ok_handler(b"b"))
    name = f"backend.test:{a.port}"
    dns.set("backend.test", ["127.0.0.2", "127.0.0.3"], ttl=60)
    admin = free_port()
    p = start(proxy_factory, dns, write_config(tmp_path, name), "--admin", f"127.0.0.1:{admin}")
    p.wait_stderr(now_line(name, f"127.0.0.2:{a.port}, 127.0.0.3:{b.port}", "none"),
                  timeout=2.0 * SLOW)
    got = [body(p) for _ in range(10)]
    assert got.count(b"a") == 5 and got.count(b"b") == 5, got
    assert metric(admin, r'hourglass_pool_servers\{pool="web",state="in_service"\}') == 2
    assert metric(admin, r'hourglass_pool_servers\{pool="web",state="leaving"\}') == 0
    assert metric(admin, r'hourglass_dns_resolutions_total\{pool="web",result="ok"\}') == 1


def test_a_failed_resolution_keeps_the_last_servers_and_logs_once(proxy_factory, dns, upstream,
                                                                  tmp_path):
    up = upstream(ok_handler(b"a"), host="127.0.0.2")
    name = f"backend.test:{up.port}"
    dns.set("backend.test", ["127.0.0.2"], ttl=0)   # TTL 0: again after min_interval
    admin = free_port()
    p = start(proxy_factory, dns,
              write_config(tmp_path, name, "{min_interval: 100ms, max_interval: 200ms}"),
              "--dns-timeout", "300ms", "--admin", f"127.0.0.1:{admin}")
    p.wait_stderr(now_line(name, f"127.0.0.2:{up.port}", "none"), timeout=2.0 * SLOW)

    def nx_answers():
        return [s for s in list(dns.sent) if s[0] == "backend.test" and s[2] == 3 and s[1] == 1]
    dns.drop("backend.test")
    wait_until(lambda: len(nx_answers()) >= 4, 3.0 * SLOW, interval=0.02,
               msg="four NXDOMAIN answers")
    assert body(p) == b"a"   # still served by the last good answer
    nx = f"warn: pool web: cannot resolve {name}: no such name, or no address; keeping its " \
         f"servers: 127.0.0.2:{up.port}"
    assert p.stderr_text().count(nx) == 1, p.stderr_text()[-3000:]
    asked = len(dns.asked("backend.test", 1))
    dns.set("backend.test", SILENT)   # another cause: logged once more
    wait_until(lambda: len(dns.asked("backend.test", 1)) >= asked + 6, 3.0 * SLOW,
               interval=0.02, msg="two timed-out resolutions (3 tries each)")
    assert body(p) == b"a"
    err = p.stderr_text()
    assert err.count("no DNS server answered in time") == 1, err[-3000:]
    assert err.count(nx) == 1
    assert metric(admin, r'hourglass_dns_resolutions_total\{pool="web",result="nxdomain"\}') >= 4
    assert metric(admin, r'hourglass_dns_resolutions_total\{pool="web",result="timeout"\}') >= 1
    assert metric(admin, r'hourglass_pool_servers\{pool="web",state="in_service"\}') == 1
    dns.set("backend.test", ["127.0.0.2"], ttl=0)
    p.wait_stderr(re.escape(f"info: pool web: {name} resolves again: 127.0.0.2:{up.port}"),
                  timeout=2.0 * SLOW)


def test_srv_priorities_and_weights(proxy_factory, dns, upstream, tmp_path):
    """Priority 10: a (weight 3) and c (weight 0, counted as 1) share the
    traffic 3:1; b (priority 20) gets nothing until both are out (refused
    connects eject them), then everything."""
    a, c, b = (upstream(ok_handler(n)) for n in (b"a", b"c", b"b"))
    for t in ("a.test", "b.test", "c.test"):
        dns.set(t, ["127.0.0.1"], ttl=60)
    dns.set_srv("_http._tcp.web.test", [(20, 5, b.port, "b.test"), (10, 3, a.port, "a.test"),
                                        (10, 0, c.port, "c.test")], ttl=60)
    path = write_config(tmp_path, "{srv: _http._tcp.web.test}",
                        pool_extra="    health: {passive: {failures: 1, max_ejected_percent: 100}}",
                        route_extra="    retry: {attempts: 3, on: [connect_failure]}")
    p = start(proxy_factory, dns, path)
    p.wait_stderr(re.escape(f"info: pool web: _http._tcp.web.test now 127.0.0.1:{a.port}, "
                            f"127.0.0.1:{c.port}, 127.0.0.1:{b.port} (was none)"),
                  timeout=2.0 * SLOW)
    assert dns.asked("_http._tcp.web.test", T_SRV)
    got = [body(p) for _ in range(8)]
    assert got.count(b"a") == 6 and got.count(b"c") == 2, got
    a.close()
    c.close()
    got = [body(p) for _ in range(4)]   # the first one retries twice
    assert got == [b"b"] * 4, got
    err = p.stderr_text()
    assert f"upstream 127.0.0.1:{a.port} ejected" in err and \
           f"upstream 127.0.0.1:{c.port} ejected" in err, err[-3000:]


def test_srv_targets_that_fail(proxy_factory, dns, upstream, tmp_path):
    """A target that does not exist is left out; one that does not answer in
    time fails the whole resolution: the last good servers stay."""
    a = upstream(ok_handler(b"a"))
    dns.set("a.test", ["127.0.0.1"], ttl=60)
    dns.set_srv("_http._tcp.web.test", [(10, 1, a.port, "a.test"), (10, 1, 9, "gone.test")],
                ttl=0)
    p = start(proxy_factory, dns,
              write_config(tmp_path, "{srv: _http._tcp.web.test}",
                           "{min_interval: 100ms, max_interval: 200ms}"),
              "--dns-timeout", "300ms")
    p.wait_stderr(re.escape(f"info: pool web: _http._tcp.web.test now 127.0.0.1:{a.port} "
                            f"(was none)"), timeout=2.0 * SLOW)
    assert dns.asked("gone.test")
    dns.set("a.test", SILENT)
    p.wait_stderr(re.escape("warn: pool web: cannot resolve _http._tcp.web.test: no DNS server "
                            f"answered in time; keeping its servers: 127.0.0.1:{a.port}"),
                  timeout=3.0 * SLOW)
    assert body(p) == b"a"
    assert "now none" not in p.stderr_text()


def test_no_such_name_at_start_then_served(proxy_factory, dns, upstream, tmp_path):
    up = upstream(ok_handler(b"late"), host="127.0.0.2")
    name = f"late.test:{up.port}"
    p = start(proxy_factory, dns,
              write_config(tmp_path, name, "{min_interval: 100ms, max_interval: 400ms}"))
    p.wait_stderr(re.escape(f"warn: pool web: cannot resolve {name}: no such name, or no "
                            f"address; no server yet"), timeout=2.0 * SLOW)
    r = get(p)
    assert r is not None and r.status == 503, r
    assert p.wait_log(1)[-1]["reason"] == "no_healthy_upstream"
    dns.set("late.test", ["127.0.0.2"], ttl=60)
    t0 = time.monotonic()
    p.wait_stderr(now_line(name, f"127.0.0.2:{up.port}", "none"), timeout=2.0 * SLOW)
    assert time.monotonic() - t0 < 0.4 + 0.3 * SLOW   # the retries' backoff is capped
    assert body(p) == b"late"


def test_check_config_resolves_nothing(dns, tmp_path):
    """-t on a file whose names resolve nowhere: ok, and no query sent."""
    path = write_config(tmp_path, "nowhere.invalid:80, {srv: _http._tcp.nowhere.invalid}",
                        top=f"resolver: {{servers: [\"{dns.addr}\"]}}")
    r = subprocess.run([BIN, "-t", str(path)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{path}: ok\n"
    time.sleep(0.1)
    assert dns.queries == []


def test_leaving_server_finishes_its_request_and_its_idle_connection_closes(
        proxy_factory, dns, upstream, tmp_path):
    async def slow_or_fast(reader, writer, ctx):
        while True:
            req = await ctx.read_request()
            if req is None:
                return
            if req.target == "/slow":
                await ctx.wait_signal()
            await ctx.respond(200, b"a")
    a, b = twins(upstream, slow_or_fast, ok_handler(b"b"))
    name = f"backend.test:{a.port}"
    dns.set("backend.test", ["127.0.0.2"], ttl=1)
    admin = free_port()
    p = start(proxy_factory, dns, write_config(tmp_path, name),
              "--admin", f"127.0.0.1:{admin}")
    p.wait_stderr(now_line(name, f"127.0.0.2:{a.port}", "none"), timeout=2.0 * SLOW)
    slow = p.client(timeout=5.0 * SLOW)
    slow.send(request_bytes("GET", "/slow"))
    wait_until(lambda: a.requests(), 2.0 * SLOW, msg="the slow request upstream")
    assert body(p, "/fast") == b"a"   # a second connection, then idle in the pool
    busy, idle = a.conns[0], a.conns[1]
    dns.set("backend.test", ["127.0.0.3"], ttl=60)
    p.wait_stderr(now_line(name, f"127.0.0.3:{b.port}", f"127.0.0.2:{a.port}"),
                  timeout=2.0 * SLOW)
    idle.wait_proxy_closed(1.0 * SLOW)
    assert busy.proxy_closed_at is None
    assert metric(admin, r'hourglass_pool_servers\{pool="web",state="leaving"\}') == 1
    assert body(p) == b"b"
    busy.signal()
    r = slow.read_response()
    assert r is not None and r.status == 200 and r.body == b"a", r
    busy.wait_proxy_closed(1.0 * SLOW)   # not pooled: its server left
    assert metric(admin, r'hourglass_pool_servers\{pool="web",state="leaving"\}') == 0
    assert metric(admin, r'hourglass_pool_servers\{pool="web",state="in_service"\}') == 1
    assert len(a.conns) == 2


def test_upstream_flag_with_a_name(proxy_factory, dns, upstream):
    up = upstream(ok_handler(b"flag"), host="127.0.0.2")
    dns.set("flag.test", ["127.0.0.2"], ttl=60)
    p = proxy_factory("--resolver", dns.addr, upstreams=[f"flag.test:{up.port}"])
    p.wait_stderr(re.escape(f"info: pool default: flag.test:{up.port} now "
                            f"127.0.0.2:{up.port} (was none)"), timeout=2.0 * SLOW)
    assert body(p) == b"flag"


def health_handler(name, state):
    """Answers requests with `name`, /healthz with 200 or 503 by state["ok"]."""
    async def handler(reader, writer, ctx):
        while True:
            req = await ctx.read_request()
            if req is None:
                return
            if req.target != "/healthz":
                await ctx.respond(200, name)
                continue
            if state["ok"]:
                await ctx.respond(200, b"fine\n")
            else:
                await ctx.respond(503, b"sick\n", reason="Service Unavailable")
            return   # the proxy closes the connection
    return handler


def test_active_health_checks_follow_the_answer(proxy_factory, dns, upstream, tmp_path):
    """A server of a name is checked while it is in the answer: marked down
    and back up like any server; once it leaves, its checks stop and the
    new address is checked instead."""
    sa, sb = {"ok": True}, {"ok": True}
    a, b = twins(upstream, health_handler(b"a", sa), health_handler(b"b", sb))
    name = f"backend.test:{a.port}"
    dns.set("backend.test", ["127.0.0.2"], ttl=60)
    path = write_config(tmp_path, name, "{min_interval: 100ms, max_interval: 200ms}",
                        pool_extra="    health: {active: {path: /healthz, interval: 100ms, "
                                   "timeout: 50ms, healthy: 1, unhealthy: 1}}")
    p = start(proxy_factory, dns, path)

    def checks(up):
        return sum(1 for r in up.requests() if r.target == "/healthz")
    wait_until(lambda: checks(a) >= 1, 2.0 * SLOW, msg="a health check of 127.0.0.2")
    sa["ok"] = False
    p.wait_stderr(re.escape(f"upstream 127.0.0.2:{a.port} marked down by health check of pool "
                            f"web: status 503"), timeout=2.0 * SLOW)
    r = get(p)
    assert r is not None and r.status == 503, r
    sa["ok"] = True
    p.wait_stderr(re.escape(f"upstream 127.0.0.2:{a.port} back up by health check"),
                  timeout=2.0 * SLOW)
    assert body(p) == b"a"
    assert checks(b) == 0
    dns.set("backend.test", ["127.0.0.3"], ttl=60)
    p.wait_stderr(now_line(name, f"127.0.0.3:{b.port}", f"127.0.0.2:{a.port}"),
                  timeout=2.0 * SLOW)
    wait_until(lambda: checks(b) >= 2, 2.0 * SLOW, msg="health checks of 127.0.0.3")
    n = checks(a)
    time.sleep(0.3)
    assert checks(a) == n   # no more checks of the server that left
    assert body(p) == b"b"


def test_http2_connections_of_a_leaving_server_close(proxy_factory, dns, h2_upstream,
                                                      tmp_path):
    """An HTTP/2 pool: of the connections to a server that leaves the
    answer, one without streams ends at once (GOAWAY, close), one with a
    stream in flight takes no other, lets it finish, then closes. New
    requests go to the new server. (SRV records give the ports.)"""
    gate = threading.Event()

    async def slow_or_ok(st):
        await st.read_body()
        if st.path == "/slow":
            await st.wait_gate(gate)
        await st.respond(200, b"ok " + (st.path or "").encode())
    a, b = h2_upstream(slow_or_ok), h2_upstream()
    dns.set("a.test", ["127.0.0.1"], ttl=60)
    dns.set("b.test", ["127.0.0.1"], ttl=60)
    dns.set_srv("_h2._tcp.web.test", [(10, 1, a.port, "a.test")], ttl=1)
    path = write_config(tmp_path, "{srv: _h2._tcp.web.test}", pool_extra="    protocol: h2")
    p = start(proxy_factory, dns, path)
    p.wait_stderr(re.escape(f"info: pool web: _h2._tcp.web.test now 127.0.0.1:{a.port} "
                            f"(was none)"), timeout=2.0 * SLOW)
    assert body(p, "/one") == b"ok /one"
    assert len(a.conns) == 1 and a.conns[0].closed_at is None
    dns.set_srv("_h2._tcp.web.test", [(10, 1, b.port, "b.test")], ttl=60)
    p.wait_stderr(re.escape(f"info: pool web: _h2._tcp.web.test now 127.0.0.1:{b.port} "
                            f"(was 127.0.0.1:{a.port})"), timeout=2.0 * SLOW)
    a.conns[0].wait_closed(1.0 * SLOW)   # no stream: closed at once
    assert a.conns[0].goaway_received is not None
    assert body(p, "/two") == b"ok /two"
    assert len(a.conns) == 1 and len(b.conns) == 1

    # the other way round, with a stream in flight on the leaving server
    dns.set_srv("_h2._tcp.web.test", [(10, 1, a.port, "a.test")], ttl=1)
    p.wait_stderr(re.escape(f"info: pool web: _h2._tcp.web.test now 127.0.0.1:{a.port} "
                            f"(was 127.0.0.1:{b.port})"), timeout=3.0 * SLOW)
    slow = p.client(timeout=5.0 * SLOW)
    slow.send(request_bytes("GET", "/slow"))
    wait_until(lambda: len(a.conns) == 2 and a.conns[1].streams, 2.0 * SLOW,
               msg="the slow stream at a")
    dns.set_srv("_h2._tcp.web.test", [(10, 1, b.port, "b.test")], ttl=60)
    p.wait_stderr(re.escape(f"info: pool web: _h2._tcp.web.test now 127.0.0.1:{b.port} "
                            f"(was 127.0.0.1:{a.port})"), timeout=3.0 * SLOW)
    assert body(p, "/three") == b"ok /three"   # on b's connection
    assert a.conns[1].closed_at is None        # its stream still runs
    gate.set()
    r = slow.read_response()
    assert r is not None and r.status == 200 and r.body == b"ok /slow", r
    a.conns[1].wait_closed(1.0 * SLOW)          # then it closes
    assert len(a.conns) == 2 and len(b.conns) == 1
