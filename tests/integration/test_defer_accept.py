"""defer_accept (TCP_DEFER_ACCEPT on a listener): the kernel hands a
connection to hourglass once its first bytes arrive, or after the period.

Observed from outside: a connection that sends nothing reaches hourglass
(and starts its idle clock) only when the period is over, so it is closed
at period + idle timeout instead of the idle timeout; one that sends its
request at once is served at once. Each timing test compares with the same
listener without the key, so it fails if the option is not set (or, after a
reload that drops it, not cleared)."""

import os
import re
import signal
import socket
import subprocess
import time

import pytest

from conftest import BIN, Proxy, free_port, is_sanitized, ok_handler, wait_until

SLOW = 2.0 if is_sanitized() else 1.0


def idle_close_after(port, limit=8.0):
    """Connects, sends nothing, returns the seconds until the proxy closes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=limit)
    t0 = time.monotonic()
    try:
        data = s.recv(100)
    finally:
        s.close()
    assert data == b"", data
    return time.monotonic() - t0


def get_at_once(port):
    """A request sent with the connection: (status line, seconds taken)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    t0 = time.monotonic()
    s.sendall(b"GET / HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n")
    data = b""
    while b"\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    dt = time.monotonic() - t0
    s.close()
    return data.split(b"\r\n", 1)[0], dt


def test_flag_defers_idle_connections_and_serves_requests_at_once(proxy_factory, upstream):
    up = upstream(ok_handler(b"ok"))
    plain = proxy_factory("--idle-timeout", "300ms", upstreams=[up])
    deferred = proxy_factory("--idle-timeout", "300ms", "--defer-accept", "1s", upstreams=[up])
    # without the option the idle clock starts at connect
    t = idle_close_after(plain.port)
    assert 0.295 <= t < 0.9, t
    # with it, the kernel holds the connection about 1 s (one SYN-ACK
    # retransmission) before hourglass sees it and starts the same clock
    t = idle_close_after(deferred.port)
    assert 1.25 <= t < 1.3 + 1.5 * SLOW, t
    # a client that speaks first is accepted with its request
    status, dt = get_at_once(deferred.port)
    assert status == b"HTTP/1.1 200 OK", status
    assert dt < 0.5 * SLOW, dt


def test_bytes_after_a_pause_are_served_when_they_arrive(proxy_factory, upstream):
    """A client that waits 300 ms before its request: accepted on its bytes,
    not at the end of the period."""
    up = upstream(ok_handler(b"ok"))
    p = proxy_factory("--defer-accept", "2s", upstreams=[up])
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    time.sleep(0.3)
    t0 = time.monotonic()
    s.sendall(b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n")
    assert s.recv(4096).startswith(b"HTTP/1.1 200 OK")
    assert time.monotonic() - t0 < 0.5 * SLOW
    s.close()


@pytest.fixture
def file_proxy(tmp_path):
    """start(text, port, workers=None): hourglass on the configuration file
    `text` alone (no --listen flag: the file's listeners are under test);
    port is one of them, waited for. Stopped at teardown like the others."""
    started = []

    def start(text, port, workers=None):
        cfg = tmp_path / f"hourglass-{port}.yaml"
        cfg.write_text(text)
        mode = ["--single-process"] if workers is None else ["--workers", str(workers)]
        p = Proxy(["--config", str(cfg)] + mode, tmp_path, "127.0.0.1", port)
        started.append(p)
        assert p.start(), p.stderr_text()
        p.cfg = cfg
        return p

    yield start
    problems = []
    for p in started:
        problems += p.stop()
    if problems:
        pytest.fail("\n".join(problems))


def test_yaml_key_per_listener(file_proxy, upstream):
    up = upstream(ok_handler(b"ok"))
    a, b = free_port(), free_port()
    file_proxy(f"listen:\n  - {{address: 127.0.0.1:{a}, defer_accept: 1s}}\n"
               f"  - {{address: 127.0.0.1:{b}, defer_accept: false}}\n"
               f"pools: {{web: {{servers: ['{up.addr}']}}}}\n"
               "timeouts: {idle: 300ms}\nroutes: [{pool: web}]\n", a)
    t = idle_close_after(a)
    assert 1.25 <= t < 1.3 + 1.5 * SLOW, t
    t = idle_close_after(b)
    assert 0.295 <= t < 0.9, t
    status, _ = get_at_once(a)
    assert status == b"HTTP/1.1 200 OK", status


@pytest.mark.parametrize("value,why", [
    ("1500ms", "whole seconds from 1s to 30s"),
    ("31s", "whole seconds from 1s to 30s"),
    ("0", "longer than 0"),
    ("soon", "expected a duration"),
])
def test_bad_key_names_file_line_and_key(tmp_path, value, why):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(f"listen:\n  - {{address: 127.0.0.1:1, defer_accept: {value}}}\n")
    r = subprocess.run([BIN, "-t", str(cfg)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert re.match(rf"^{re.escape(str(cfg))}:2:\d+: listen\[0\]\.defer_accept: .*{why}",
                    r.stderr), r.stderr


@pytest.mark.parametrize("value", ["0", "500ms", "1.5s", "31s", "x"])
def test_bad_flag_exits_2(value):
    r = subprocess.run([BIN, "--defer-accept", value, "-t"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "--defer-accept" in r.stderr and "whole seconds" in r.stderr, r.stderr


def test_reload_clears_it_on_the_kept_listener(file_proxy, upstream):
    """The master keeps its listening sockets over a reload: the new
    generation's value is set on them (here: the key removed, so off)."""
    up = upstream(ok_handler(b"ok"))
    port = free_port()
    body = (f"pools: {{web: {{servers: ['{up.addr}']}}}}\n"
            "timeouts: {idle: 300ms}\nroutes: [{pool: web}]\n")
    p = file_proxy(f"listen: [{{address: 127.0.0.1:{port}, defer_accept: 1s}}]\n" + body, port,
                   workers=1)
    wait_until(lambda: "started (generation 1)" in p.stderr_text(), 5 * SLOW, msg="a worker")
    t = idle_close_after(port)
    assert 1.25 <= t < 1.3 + 1.5 * SLOW, t
    p.cfg.write_text(f"listen: [127.0.0.1:{port}]\n" + body)
    os.kill(p.pid, signal.SIGHUP)
    wait_until(lambda: "generation 2 serving" in p.stderr_text(), 5 * SLOW, msg="the reload")
    t = idle_close_after(port)
    assert 0.295 <= t < 0.9, t
