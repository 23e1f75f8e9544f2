"""Timeouts and aborts must not leak descriptors or memory."""

from concurrent.futures import ThreadPoolExecutor

from conftest import (free_port, is_sanitized, request_bytes, silent_handler,
                      wait_until)

BATCH = 50

# ASan keeps freed memory in quarantine, so RSS is not a leak signal there;
# LeakSanitizer at exit covers real leaks in that build.
RSS_LIMIT_KB = (64 if is_sanitized() else 8) * 1024


def _one(proxy, target, want_status):
    c = proxy.client(timeout=5)
    try:
        c.send(request_bytes("GET", target))
        r = c.read_response(timeout=5)
        return r.status if r is not None else None
    finally:
        c.close()


def _run_batches(proxy, n, want_status, prefix):
    statuses = []
    with ThreadPoolExecutor(BATCH) as ex:
        for start in range(0, n, BATCH):
            futs = [ex.submit(_one, proxy, f"/{prefix}{i}", want_status)
                    for i in range(start, min(n, start + BATCH))]
            statuses += [f.result() for f in futs]
    return statuses


def _settle_fds(proxy, baseline, timeout=2.0):
    try:
        wait_until(lambda: proxy.fd_count() <= baseline, timeout)
    except AssertionError:
        pass
    return proxy.fd_count()


def test_read_timeouts_do_not_leak(proxy_factory, upstream):
    up = upstream(silent_handler())
    p = proxy_factory("--read-timeout", "50ms", "--total-timeout", "5s", upstreams=[up])
    # warm-up: one timed-out request so lazily created state exists
    assert _one(p, "/warm", 504) == 504
    p.wait_log(1)
    wait_until(lambda: all(c.proxy_closed_at for c in up.conns), 2.0,
               msg="warm-up upstream connection closed")
    fd0, rss0 = p.fd_count(), p.rss_kb()
    n = 300
    statuses = _run_batches(p, n, 504, "rt")
    assert statuses == [504] * n, {s: statuses.count(s) for s in set(statuses)}
    lines = p.wait_log(n + 1, timeout=5)
    reasons = {l["reason"] for l in lines}
    assert reasons == {"read_timeout"}, reasons
    wait_until(lambda: all(c.proxy_closed_at for c in up.conns), 2.0,
               msg="all upstream connections closed by the proxy")
    assert len(up.conns) == n + 1
    fd1 = _settle_fds(p, fd0)
    assert fd1 <= fd0, f"fd count {fd0} -> {fd1} after {n} read timeouts"
    growth = p.rss_kb() - rss0
    assert growth < RSS_LIMIT_KB, f"RSS grew by {growth} kB after {n} read timeouts"


def test_refused_do_not_leak(proxy_factory):
    dead = f"127.0.0.1:{free_port()}"
    p = proxy_factory("--connect-timeout", "1s", upstreams=[dead])
    assert _one(p, "/warm", 502) == 502
    p.wait_log(1)
    fd0, rss0 = p.fd_count(), p.rss_kb()
    n = 300
    statuses = _run_batches(p, n, 502, "rf")
    assert statuses == [502] * n, {s: statuses.count(s) for s in set(statuses)}
    lines = p.wait_log(n + 1, timeout=5)
    assert {l["reason"] for l in lines} == {"upstream_refused"}
    fd1 = _settle_fds(p, fd0)
    assert fd1 <= fd0, f"fd count {fd0} -> {fd1} after {n} refused connects"
    growth = p.rss_kb() - rss0
    assert growth < RSS_LIMIT_KB, f"RSS grew by {growth} kB after {n} refused connects"


def test_client_aborts_do_not_leak(proxy_factory, upstream):
    async def handler(reader, writer, ctx):
        await ctx.read_request()
        await ctx.delay(10)
    up = upstream(handler)
    p = proxy_factory("--read-timeout", "20s", "--total-timeout", "30s", upstreams=[up])

    def abort_batch(start, count):
        clients = []
        for i in range(start, start + count):
            c = p.client(timeout=5)
            c.send(request_bytes("GET", f"/ab{i}"))
            clients.append(c)
        up.wait_requests(start + count, timeout=5)
        for c in clients:
            c.close()

    abort_batch(0, 1)   # warm-up
    p.wait_log(1)
    wait_until(lambda: all(c.proxy_closed_at for c in up.conns), 2.0,
               msg="warm-up upstream connection closed")
    fd0, rss0 = p.fd_count(), p.rss_kb()
    n = 200
    for start in range(1, n + 1, BATCH):
        abort_batch(start, min(BATCH, n + 1 - start))
    lines = p.wait_log(n + 1, timeout=5)
    assert {l["reason"] for l in lines} == {"client_abort"}
    assert {l["status"] for l in lines} == {"499"}
    wait_until(lambda: all(c.proxy_closed_at for c in up.conns), 2.0,
               msg="all upstream connections closed after client aborts")
    fd1 = _settle_fds(p, fd0)
    assert fd1 <= fd0, f"fd count {fd0} -> {fd1} after {n} client aborts"
    growth = p.rss_kb() - rss0
    assert growth < RSS_LIMIT_KB, f"RSS grew by {growth} kB after {n} client aborts"
