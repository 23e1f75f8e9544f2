"""The command line."""

import os
import signal
import socket
import subprocess

import pytest

from conftest import REPO, BIN, Client, free_port, ok_handler, request_bytes, wait_port

RUN_DEMO = str(REPO / "scripts" / "run-demo.sh")


def run(*args, timeout=3):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help(flag):
    r = run(flag)
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    for f in ("--listen", "--upstream", "--read-timeout", "--total-timeout",
              "--access-log", "-h, --help", "-V, --version"):
        assert f in out, f"{f} missing from {flag}"


def test_short_help_is_long_help():
    assert run("-h").stdout == run("--help").stdout


def test_help_single_process_reload():
    """With --single-process, SIGHUP reloads the TLS certificates (README, man
    page, test_tls): --help says so, and not that it cannot reload."""
    out = run("--help").stdout
    i = out.index("--single-process")
    entry = out[i:out.index("\n  -", i)]
    text = " ".join(entry.split())
    assert "cannot reload" not in text, entry
    assert "SIGHUP reloads the TLS certificates only" in text, entry


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(flag):
    r = run(flag)
    assert r.returncode == 0, r.stderr
    out = (r.stdout + r.stderr).strip()
    assert out, f"{flag} printed nothing"
    assert any(ch.isdigit() for ch in out), out
    assert r.stdout == run("--version").stdout


@pytest.mark.parametrize("flag", ["-x", "-v", "-H"])
def test_unknown_short_flag(flag):
    r = run(flag)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert flag in r.stderr, r.stderr


def test_unknown_flag():
    r = run("--no-such-flag")
    assert r.returncode == 2
    assert "--no-such-flag" in r.stderr


@pytest.mark.parametrize("flag,value", [
    ("--read-timeout", "5x"),
    ("--read-timeout", "abc"),
    ("--connect-timeout", "-1s"),
    ("--total-timeout", ""),
    ("--idle-timeout", "1.5.5s"),
])
def test_bad_duration(flag, value):
    port = free_port()
    r = run("--listen", f"127.0.0.1:{port}", flag, value)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert flag.lstrip("-") in r.stderr, r.stderr


def test_missing_value():
    r = run("--read-timeout")
    assert r.returncode == 2
    assert "read-timeout" in r.stderr


@pytest.mark.parametrize("flag,value", [
    ("--listen", "127.0.0.1:99999"),
    ("--listen", "127.0.0.1"),
    ("--upstream", "127.0.0.1:notaport"),
    ("--max-connections", "many"),
    ("--max-concurrent-streams", "0"),
    ("--max-concurrent-streams", "10001"),
    ("--max-concurrent-streams", "many"),
])
def test_bad_values(flag, value):
    r = run(flag, value)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert flag.lstrip("-") in r.stderr, r.stderr


def test_http2_flags_in_help():
    out = run("--help").stdout
    assert "--no-http2" in out and "--max-concurrent-streams N" in out, out


def test_no_http2_takes_no_value():
    r = run("--no-http2=yes")
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "no-http2" in r.stderr, r.stderr


@pytest.mark.parametrize("args", [["--no-http2"], ["--max-concurrent-streams", "1"],
                                  ["--max-concurrent-streams", "10000", "--no-http2"]])
def test_http2_flags_start(proxy_factory, upstream, args):
    """HTTP/1.1 is served with either flag."""
    up = upstream(ok_handler(b"h1"))
    p = proxy_factory(*args, upstreams=[up])
    c = p.client()
    c.send(request_bytes("GET", "/h1"))
    assert c.read_response().body == b"h1"


@pytest.mark.parametrize("value", ["250ms", "1.5s", "2m", "7"])
def test_good_durations_start(proxy_factory, upstream, value):
    up = upstream(ok_handler(b"dur"))
    p = proxy_factory("--read-timeout", value, "--total-timeout", "3m", upstreams=[up])
    c = p.client()
    c.send(request_bytes("GET", "/d"))
    assert c.read_response().body == b"dur"


def _have_ipv6_loopback():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


def test_listen_ipv6_and_repeated_listen(proxy_factory, upstream):
    if not _have_ipv6_loopback():
        pytest.skip("no IPv6 loopback")
    up = upstream(ok_handler(b"six"))
    port6 = free_port("::1")
    port4 = free_port()
    p = proxy_factory(upstreams=[up], listen=f"[::1]:{port6}",
                      extra_listen=[f"127.0.0.1:{port4}"])
    c6 = Client(port6, host="::1")
    c6.send(request_bytes("GET", "/v6"))
    assert c6.read_response().body == b"six"
    wait_port("127.0.0.1", port4, 5)
    c4 = Client(port4)
    c4.send(request_bytes("GET", "/v4"))
    assert c4.read_response().body == b"six"
    lines = p.wait_log(2)
    assert lines[0]["client"].startswith("[::1]:"), lines[0]
    assert lines[1]["client"].startswith("127.0.0.1:"), lines[1]


def test_access_log_stdout(proxy_factory, upstream):
    from conftest import parse_log_line, wait_until
    up = upstream(ok_handler(b"out"))
    p = proxy_factory(upstreams=[up], access_log="-")
    c = p.client()
    c.send(request_bytes("GET", "/to-stdout"))
    assert c.read_response().body == b"out"
    line = wait_until(lambda: [l for l in p.stdout_text().splitlines() if "target=" in l],
                      2.0, msg="access log line on stdout")[0]
    d = parse_log_line(line)
    assert d["target"] == "/to-stdout" and d["reason"] == "ok", line
    assert not p.log_path.exists()


def test_access_log_off(proxy_factory, upstream):
    up = upstream(ok_handler(b"quiet"))
    p = proxy_factory(upstreams=[up], access_log="off")
    c = p.client()
    c.send(request_bytes("GET", "/quiet"))
    assert c.read_response().body == b"quiet"
    c.close()
    assert p.stop() == []           # exits cleanly: whatever was buffered is out
    assert "target=" not in p.stdout_text()
    assert not p.log_path.exists()
    assert not (p.workdir / "off").exists()


# --------------------------------------------------------------------------
# make run (scripts/run-demo.sh)

def test_run_demo_with_own_upstream_starts_no_demo(upstream):
    """make run ARGS="--upstream ...": the proxy forwards there; the demo
    upstream is not started and its curl lines are not printed."""
    up = upstream(ok_handler(b"mine"))
    demo_port, listen = free_port(), free_port()
    env = dict(os.environ, HOURGLASS_BIN=BIN, DEMO_PORT=str(demo_port))
    p = subprocess.Popen(
        ["bash", RUN_DEMO, "--listen", f"127.0.0.1:{listen}",
         "--upstream", up.addr, "--single-process", "--access-log", "off"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env)
    try:
        assert wait_port("127.0.0.1", listen, 10.0, p), "run-demo.sh exited early"
        c = Client(listen)
        c.send(request_bytes("GET", "/x"))
        assert c.read_response().body == b"mine"
        c.close()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", demo_port), timeout=1).close()
    finally:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=20)
    lines = out.splitlines()
    assert lines == [f"hourglass on http://127.0.0.1:{listen} forwards to {up.addr} "
                     "(your --upstream; no demo upstream started); Ctrl-C stops it"], (out, err)
    assert "demo upstream" not in err and "upstream.py" not in err, err


@pytest.mark.parametrize("flag", ["-h", "-V", "--version"])
def test_run_demo_passes_questions_to_the_proxy(flag):
    """-h/-V go straight to the proxy (no demo upstream, no banner)."""
    env = dict(os.environ, HOURGLASS_BIN=BIN, DEMO_PORT=str(free_port()))
    r = subprocess.run(["bash", RUN_DEMO, flag], env=env,
                       capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert r.stdout == run(flag).stdout
