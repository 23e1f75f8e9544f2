"""Slow and failing servers (issue 17): balance: ewma steers away from a slow
server, passive health counts what the pool's health.passive.on lists (read
timeouts by default, 5xx when listed), and slow_start ramps a server back
from its ejection. Pools come from a configuration file (--config)."""

import asyncio
import threading
import time

from conftest import ok_handler, request_bytes, silent_handler


def start_with(proxy_factory, tmp_path, text):
    path = tmp_path / "hourglass.yaml"
    path.write_text(text)
    return proxy_factory("--config", path)


def get(p, target="/", timeout=3.0):
    c = p.client(timeout=timeout)
    try:
        c.send(request_bytes("GET", target))
        r = c.read_response()
    finally:
        c.close()
    assert r is not None, f"no response to GET {target}"
    return r


def ejections(p):
    return [l for l in p.stderr_text().splitlines() if "ejected from pool" in l]


def delayed_handler(name, delay):
    """Keep-alive upstream answering `name` after `delay` seconds."""
    async def handler(reader, writer, ctx):
        async def respond(ctx, req):
            await asyncio.sleep(delay)
            await ctx.respond(200, name)
        await ctx.serve_forever(respond)
    return handler


def switch_handler(name, failing):
    """Keep-alive upstream answering 503 while the threading.Event `failing`
    is set, else 200 with `name`."""
    async def handler(reader, writer, ctx):
        async def respond(ctx, req):
            if failing.is_set():
                await ctx.respond(503, b"down", reason="Service Unavailable")
            else:
                await ctx.respond(200, name)
        await ctx.serve_forever(respond)
    return handler


def load(p, seconds, threads=8):
    """Requests on `threads` keep-alive client connections for `seconds`:
    a list of (time sent, body) of the answered ones."""
    results = []
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def run(i):
        c = p.client(timeout=5.0)
        try:
            k = 0
            while time.monotonic() < end:
                t = time.monotonic()
                c.send(request_bytes("GET", f"/t{i}/{k}"))
                r = c.read_response()
                assert r is not None and r.status == 200, r
                with lock:
                    results.append((t, r.body))
                k += 1
        finally:
            c.close()

    ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(seconds + 10)
    return results


# --------------------------------------------------------------------------
# balance: ewma

def test_ewma_sends_little_to_a_slow_server(proxy_factory, upstream, tmp_path):
    fast1 = upstream(delayed_handler(b"fast1", 0.005))
    fast2 = upstream(delayed_handler(b"fast2", 0.005))
    slow = upstream(delayed_handler(b"slow", 0.5))
    p = start_with(proxy_factory, tmp_path, f"""
pools:
  web:
    servers: ["{fast1.addr}", "{fast2.addr}", "{slow.addr}"]
    balance: ewma
""")
    t0 = time.monotonic()
    results = load(p, 3.0)
    later = [b for t, b in results if t >= t0 + 1.0]
    assert len(later) >= 100, f"only {len(later)} requests after the first second"
    to_slow = later.count(b"slow")
    assert to_slow < 0.10 * len(later), (
        f"the slow server got {to_slow} of {len(later)} requests after the first second")
    # both fast servers share the rest
    assert later.count(b"fast1") > 0.2 * len(later), later.count(b"fast1")
    assert later.count(b"fast2") > 0.2 * len(later), later.count(b"fast2")


# --------------------------------------------------------------------------
# passive health: what counts

TIMEOUT_POOL = """
pools:
  web:
    servers: ["{bad}", "{good}"]
    health:
      passive: {{failures: 3, ejection: 3s{on}}}
routes:
  - path: /
    pool: web
    timeouts: {{read: 100ms}}
"""


def test_read_timeouts_eject_by_default(proxy_factory, upstream, tmp_path):
    bad = upstream(silent_handler())
    good = upstream(ok_handler(b"good"))
    p = start_with(proxy_factory, tmp_path,
                   TIMEOUT_POOL.format(bad=bad.addr, good=good.addr, on=""))
    statuses = []
    while len([s for s in statuses if s == 504]) < 3:
        assert len(statuses) < 8, statuses
        statuses.append(get(p, f"/a{len(statuses)}").status)
    p.wait_stderr(r"ejected from pool web")
    (ej,) = ejections(p)
    assert bad.addr in ej and "3 failures in a row" in ej, ej
    lines = p.wait_log(len(statuses))
    assert [l["reason"] for l in lines if l["status"] == "504"] == ["read_timeout"] * 3
    # during the cool-down the silent server gets nothing
    n_bad = len(bad.requests())
    for i in range(10):
        r = get(p, f"/b{i}")
        assert r.status == 200 and r.body == b"good", r
    assert len(bad.requests()) == n_bad


def test_read_timeouts_do_not_count_when_not_listed(proxy_factory, upstream, tmp_path):
    bad = upstream(silent_handler())
    good = upstream(ok_handler(b"good"))
    p = start_with(proxy_factory, tmp_path,
                   TIMEOUT_POOL.format(bad=bad.addr, good=good.addr,
                                       on=", on: [connect_failure]"))
    statuses = [get(p, f"/a{i}").status for i in range(10)]
    assert statuses.count(504) == 5 and statuses.count(200) == 5, statuses
    assert len(bad.requests()) == 5
    assert not ejections(p), ejections(p)


FIVEXX_POOL = """
pools:
  web:
    servers: ["{bad}", "{good}"]
    health:
      passive: {{failures: 3, ejection: 3s{on}}}
"""


def test_5xx_listed_ejects(proxy_factory, upstream, tmp_path):
    bad = upstream(ok_handler(b"unavailable", status=503))
    good = upstream(ok_handler(b"good"))
    p = start_with(proxy_factory, tmp_path,
                   FIVEXX_POOL.format(bad=bad.addr, good=good.addr, on=", on: [reset, 5xx]"))
    statuses = []
    while statuses.count(503) < 3:
        assert len(statuses) < 8, statuses
        if statuses.count(503) < 3:
            assert not ejections(p), f"ejected after {statuses.count(503)} 503s"
        statuses.append(get(p, f"/a{len(statuses)}").status)
    p.wait_stderr(r"ejected from pool web")
    assert bad.addr in ejections(p)[0]
    n_bad = len(bad.requests())
    for i in range(10):
        r = get(p, f"/b{i}")
        assert r.status == 200 and r.body == b"good", r
    assert len(bad.requests()) == n_bad


def test_5xx_not_listed_is_a_success(proxy_factory, upstream, tmp_path):
    bad = upstream(ok_handler(b"unavailable", status=503))
    good = upstream(ok_handler(b"good"))
    p = start_with(proxy_factory, tmp_path,
                   FIVEXX_POOL.format(bad=bad.addr, good=good.addr, on=""))
    statuses = [get(p, f"/a{i}").status for i in range(12)]
    assert statuses.count(503) == 6 and statuses.count(200) == 6, statuses
    assert not ejections(p), ejections(p)


# --------------------------------------------------------------------------
# slow_start

def test_slow_start_ramps_after_an_ejection(proxy_factory, upstream, tmp_path):
    failing = threading.Event()
    failing.set()
    a = upstream(switch_handler(b"a", failing))
    b = upstream(ok_handler(b"b"))
    p = start_with(proxy_factory, tmp_path, f"""
pools:
  web:
    servers: ["{a.addr}", "{b.addr}"]
    slow_start: 3s
    health:
      passive: {{failures: 1, ejection: 1s, on: [5xx]}}
""")
    # round-robin: within two requests `a` answers 503 and is ejected
    for i in range(2):
        if get(p, f"/x{i}").status == 503:
            break
    p.wait_stderr(r"ejected from pool web for 1000 ms")
    t_back = time.monotonic() + 1.0   # (the ejection was logged just before)
    failing.clear()
    c = p.client()
    seen = []   # (time sent, body)
    while time.monotonic() < t_back + 3.0:
        t = time.monotonic()
        c.send(request_bytes("GET", f"/r{len(seen)}"))
        r = c.read_response()
        assert r is not None and r.status == 200, r
        seen.append((t, r.body))
        time.sleep(0.001)   # about a thousand a second are plenty
    c.close()
    during = [body for t, body in seen if t < t_back - 0.05]
    assert during and b"a" not in during, "the ejected server got requests"

    def share(lo, hi):
        got = [body for t, body in seen if t_back + lo <= t < t_back + hi]
        assert len(got) >= 50, f"only {len(got)} requests in [{lo}, {hi}) s"
        return got.count(b"a") / len(got)

    first, last = share(0.05, 1.0), share(2.0, 2.95)
    # its weight goes from a tenth to all of it over 3 s: about 20 % of the
    # requests in the first second, about 45 % in the last
    assert first < 0.32, f"share in the first second {first:.2f}"
    assert last > 0.36, f"share in the last second {last:.2f}"
    assert last > first + 0.1, (first, last)
