"""The admin listener: /metrics counters match the requests sent; /healthz."""
import os
import re
import signal
import socket
import time

from conftest import free_port, ok_handler, request_bytes, scrape, silent_handler


def value(text, name, **labels):
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pat = re.escape(name) + (r"\{" + re.escape(want) + r"\}" if labels else "") + r" (\S+)"
    m = re.search(r"^" + pat + r"$", text, re.M)
    assert m, f"{name}{{{want}}} missing"
    return float(m.group(1))


def test_metrics_count_what_was_sent(proxy_factory, upstream):
    ok = upstream(ok_handler(b"ok"))
    silent = upstream(silent_handler())
    admin = free_port()
    p = proxy_factory("--admin", f"127.0.0.1:{admin}", "--read-timeout", "100ms",
                      upstreams=[ok, silent])
    for i in range(6):   # round-robin: 3 to each server
        c = p.client()
        c.send(request_bytes("GET", f"/m{i}"))
        c.read_response()
        c.close()
    p.wait_log(6)
    code, text = scrape(admin)
    assert code == 200
    assert value(text, "hourglass_requests_total", route="/", **{"class": "2xx"}) == 3
    assert value(text, "hourglass_requests_total", route="/", **{"class": "5xx"}) == 3
    assert value(text, "hourglass_timeouts_total", kind="read") == 3
    assert value(text, "hourglass_exchanges_ended_total", reason="ok") == 3
    assert value(text, "hourglass_upstream_first_byte_seconds_count", route="/") == 3
    assert value(text, "hourglass_upstream_first_byte_seconds_bucket", route="/", le="+Inf") == 3
    assert value(text, "hourglass_pool_idle_connections", pool="default") >= 1
    assert value(text, "hourglass_client_connections") == 0
    assert "# TYPE hourglass_requests_total counter" in text
    # the loop's lag: each of the 3 read timeouts is a timer served, and a
    # timer served is never early, so every sample falls in a bucket
    late_n = value(text, "hourglass_timer_lateness_seconds_count")
    assert late_n >= 3, late_n
    assert value(text, "hourglass_timer_lateness_seconds_bucket", le="+Inf") == late_n
    assert value(text, "hourglass_timer_lateness_seconds_sum") >= 0


def test_healthz_and_unknown_paths(proxy_factory, upstream):
    ok = upstream(ok_handler(b"ok"))
    admin = free_port()
    p = proxy_factory("--admin", f"127.0.0.1:{admin}", upstreams=[ok])
    assert scrape(admin, "/healthz") == (200, "ok\n")
    assert scrape(admin, "/nope")[0] == 404
