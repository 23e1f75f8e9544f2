"""The master and its workers (--workers N): start-up, replacement of a dead
worker, SIGHUP reloads (under load, applied, refused), SIGTERM drain through
the master, /metrics summed across workers; and the deadline header keys of
the configuration file (per listener trust, per route off switch).

Worker pids are the master's children (/proc/<master>/task/<master>/children).
Which worker owns a connection is found from /proc/<pid>/fd and /proc/net/tcp.
"""
import os
import re
import signal
import socket
import threading
import time

import pytest

from conftest import (LOG_KEYS, Client, Proxy, free_port, is_sanitized, ok_handler,
                      request_bytes, wait_port, wait_until)

# sanitizer builds start and run slower; the margins below are scaled by this
SLOW = 2.0 if is_sanitized() else 1.0

STARTED = r"worker (\d+) \(pid (\d+)\) started \(generation (\d+)\)"
SERVING = r"reload: generation (\d+) serving; generation (\d+) draining"


# --------------------------------------------------------------------------
# helpers: processes

def children(p):
    """The master's current children (pids); remembered for the teardown check."""
    try:
        with open(f"/proc/{p.pid}/task/{p.pid}/children") as f:
            kids = {int(x) for x in f.read().split()}
    except (FileNotFoundError, ProcessLookupError):
        kids = set()
    seen = getattr(p, "seen_workers", None)
    if seen is None:
        seen = p.seen_workers = set()
    seen |= kids
    return kids


def pid_alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def started_lines(p):
    """[(slot, pid, generation)] of every `started` line so far, in order."""
    return [(int(a), int(b), int(c)) for a, b, c in re.findall(STARTED, p.stderr_text())]


def wait_workers(p, n, generation=1, timeout=5.0):
    """Waits until the master has exactly n children and each one logged
    `started (generation G)`; returns their pids."""
    def ready():
        kids = children(p)
        gen = {pid for _, pid, g in started_lines(p) if g == generation}
        return kids if len(kids) == n and kids <= gen else None
    return wait_for(p, ready, timeout * SLOW, f"{n} workers of generation {generation}",
                    interval=0.01)


def wait_for(p, pred, timeout, what, interval=0.005):
    """wait_until, failing with the master's stderr as it is at the timeout."""
    try:
        return wait_until(pred, timeout, interval=interval, msg=what)
    except AssertionError as e:
        raise AssertionError(f"{e}\nchildren: {sorted(children(p))}\nstderr:\n"
                             f"{p.stderr_text()[-3000:]}") from None


def reap(p, timeout):
    """Waits for the master to exit on its own; returns (status, seconds waited)."""
    t0 = time.monotonic()
    rc = p.proc.wait(timeout)
    dt = time.monotonic() - t0
    p.stopped = True
    for f in (p._err, p._out):
        f.close()
    err = p.stderr_text()
    for needle in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
        assert needle not in err, err[-4000:]
    return rc, dt


def hup(p):
    os.kill(p.pid, signal.SIGHUP)


# --------------------------------------------------------------------------
# helpers: who holds which connection

def _tcp_table():
    """[(local_port, remote_port, state, inode)] of every TCP socket."""
    rows = []
    for fn in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            f = open(fn)
        except FileNotFoundError:
            continue
        with f:
            next(f)
            for line in f:
                parts = line.split()
                lport = int(parts[1].rsplit(":", 1)[1], 16)
                rport = int(parts[2].rsplit(":", 1)[1], 16)
                rows.append((lport, rport, parts[3], int(parts[9])))
    return rows


def _socket_inodes(pid):
    out = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except (FileNotFoundError, ProcessLookupError):
        return out
    for fd in fds:
        try:
            t = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if t.startswith("socket:["):
            out.add(int(t[8:-1]))
    return out


def holds_connection_to(pid, port):
    """True if pid holds an established TCP connection to port (e.g. a pooled
    upstream connection)."""
    inodes = _socket_inodes(pid)
    return any(r == port and st == "01" and ino in inodes
               for _, r, st, ino in _tcp_table())


# --------------------------------------------------------------------------
# helpers: clients

def fetch_new(port, target="/", host="127.0.0.1", timeout=3.0, headers=None):
    """One GET on a new connection. Returns (t_open, outcome, response):
    outcome is "ok" (complete 200), "closed"/"reset" (no response byte),
    "cut ..." (response cut), "connect ...", "timeout" or "status N"."""
    t0 = time.monotonic()
    try:
        c = Client(port, host=host, timeout=timeout)
    except OSError as e:
        return t0, f"connect {e!r}", None
    try:
        c.send(request_bytes("GET", target, headers=headers))
        r = c.read_response()
    except (BrokenPipeError, ConnectionResetError):
        return t0, "reset", None
    except TimeoutError:
        return t0, "timeout", None
    finally:
        c.close()
    if r is None:
        return t0, "reset" if c.reset else "closed", None
    if not r.complete:
        return t0, f"cut {r!r}", r
    if r.status != 200:
        return t0, f"status {r.status} {r!r}", r
    return t0, "ok", r


def switch_to_new_generation(port, old_body, new_body):
    """After the master's "serving" line: the old workers stop accepting when
    their loop takes the master's signal, and a connection they accept in
    between is theirs to serve, whole. GETs /switch on new connections until
    the new generation answers (within a second); returns how many the old
    one served meanwhile."""
    deadline = time.monotonic() + 1.0 * SLOW
    old = 0
    while True:
        _, o, r = fetch_new(port, "/switch")
        assert o == "ok" and r.body in (old_body, new_body), (o, r)
        if r.body == new_body:
            return old
        old += 1
        assert time.monotonic() < deadline, "the old generation kept accepting after the reload"


def connection_error(outcome):
    return outcome in ("closed", "reset") or outcome.startswith("cut")


class Load:
    """Client threads looping GETs until stopped.

    `fresh` threads open a new connection per request; `keepalive` threads
    reuse one connection, and when a reused connection is closed or reset
    before any response byte they reconnect and send the request again (what
    HTTP clients do for idempotent requests); that is counted in `resent`,
    not as an error. Any other failure is an error."""

    def __init__(self, port, fresh=4, keepalive=0, target="/load"):
        self.port = port
        self.target = target
        self.results = []       # (t_open, outcome, thread name)
        self.resent = 0
        self.keepalive_ok = 0
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.threads = ([threading.Thread(target=self._fresh, args=(f"fresh{i}",), daemon=True)
                         for i in range(fresh)]
                        + [threading.Thread(target=self._keepalive, args=(f"ka{i}",), daemon=True)
                           for i in range(keepalive)])

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(10)
            assert not t.is_alive(), "a load thread is stuck"

    def _add(self, t0, outcome, name):
        with self.lock:
            self.results.append((t0, outcome, name))

    def _fresh(self, name):
        i = 0
        while not self.stop_ev.is_set():
            t0, outcome, _ = fetch_new(self.port, f"{self.target}/{name}/{i}")
            self._add(t0, outcome, name)
            i += 1

    def _keepalive(self, name):
        c = None
        i = 0
        while not self.stop_ev.is_set():
            reused = c is not None
            t0 = time.monotonic()
            if c is None:
                try:
                    c = Client(self.port, timeout=3.0)
                except OSError as e:
                    self._add(t0, f"connect {e!r}", name)
                    continue
            try:
                c.send(request_bytes("GET", f"{self.target}/{name}/{i}"))
                r = c.read_response()
            except (BrokenPipeError, ConnectionResetError):
                r = None
            except TimeoutError:
                c.close()
                c = None
                self._add(t0, "timeout", name)
                continue
            if r is None:               # closed before any response byte
                c.close()
                c = None
                if reused:
                    with self.lock:
                        self.resent += 1
                    continue            # the same request again, on a new connection
                self._add(t0, "closed (new connection)", name)
                continue
            i += 1
            if not r.complete:
                outcome = f"cut {r!r}"
            elif r.status != 200:
                outcome = f"status {r.status} {r!r}"
            else:
                outcome = "ok"
                with self.lock:
                    self.keepalive_ok += 1
            self._add(t0, outcome, name)
            if outcome != "ok" or (r.header("connection") or "").lower() == "close":
                c.close()
                c = None
        if c is not None:
            c.close()

    def ok_count(self, after=None):
        with self.lock:
            return sum(1 for t0, o, _ in self.results
                       if o == "ok" and (after is None or t0 > after))

    def failures(self):
        with self.lock:
            return [(t0, o, n) for t0, o, n in self.results if o != "ok"]


def write_conf(path, up_addr, port, extra=""):
    """A minimal config: one listener, pool web with one server, route /.
    Line numbers: 1 listen, 2 pools, 3 web, 4 servers, 5 routes, 6-7 the route,
    then `extra` from line 8."""
    path.write_text(f"listen: [127.0.0.1:{port}]\n"
                    f"pools:\n"
                    f"  web:\n"
                    f"    servers: [{up_addr}]\n"
                    f"routes:\n"
                    f"  - path: /\n"
                    f"    pool: web\n" + extra)
    return path


# --------------------------------------------------------------------------
# fixture: proxies started with exact flags, and no worker may outlive them

@pytest.fixture
def tracked(tmp_path, proxy_factory):
    """tracked.factory(...): proxy_factory, tracked. tracked.start(args, port):
    a Proxy with exactly these flags (plus --access-log) so that the listeners
    can come from a config file. At teardown every proxy is stopped (SIGTERM)
    and every worker pid ever seen must be gone within 3 s (else SIGKILL and
    the test fails)."""
    procs = []

    class T:
        def factory(self, *a, **kw):
            p = proxy_factory(*a, **kw)
            procs.append(p)
            return p

        def start(self, args, port):
            p = Proxy([str(a) for a in args], tmp_path, "127.0.0.1", port)
            procs.append(p)
            if not p.start():
                p.stopped = True
                p._err.close()
                p._out.close()
                pytest.fail(f"proxy exited at start-up ({p.proc.returncode}):\n"
                            f"argv: {p.argv}\n{p.stderr_text()}")
            return p

    yield T()
    problems = []
    for p in procs:
        if not p.stopped and p.alive():
            children(p)
        problems += p.stop()
    for p in procs:
        left = set(getattr(p, "seen_workers", ()))
        deadline = time.monotonic() + 3.0 * SLOW
        while left and time.monotonic() < deadline:
            left = {pid for pid in left if pid_alive(pid)}
            time.sleep(0.02)
        left = {pid for pid in left if pid_alive(pid)}
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if left:
            problems.append(f"worker(s) {sorted(left)} still alive after the master "
                            f"(pid {p.pid}) stopped; stderr:\n{p.stderr_text()[-2000:]}")
    if problems:
        pytest.fail("\n".join(problems))


# --------------------------------------------------------------------------
# 1. two workers start and both serve

def test_two_workers_start_and_both_serve(tracked, upstream):
    up = upstream(ok_handler(b"ok"))
    p = tracked.factory(upstreams=[up], workers=2)
    pids = wait_workers(p, 2)
    lines = started_lines(p)
    assert len(lines) == 2, p.stderr_text()
    assert sorted(slot for slot, _, _ in lines) == [0, 1], lines
    assert {pid for _, pid, _ in lines} == pids
    assert p.pid not in pids

    outcomes = [fetch_new(p.port, f"/n{i}")[1] for i in range(200)]
    bad = [o for o in outcomes if o != "ok"]
    assert not bad, bad[:5]
    lines = p.wait_log(200, timeout=3)
    assert len(lines) == 200 and all(l["status"] == "200" for l in lines)
    # SO_REUSEPORT spreads 200 new connections over both workers' sockets
    # (all on one: probability 2^-199). A worker that served keeps an idle
    # pooled connection to the upstream, so both must hold one.
    for pid in pids:
        assert holds_connection_to(pid, up.port), (
            f"worker {pid} holds no connection to the upstream: it served nothing "
            f"(upstream saw {len(up.conns)} connection(s))")
    assert children(p) == pids


def test_error_lines_name_the_process_that_wrote_them(tracked):
    """The pid in an error line is the writer's: the master's for its own
    lines, each worker's for the requests it served (the pid is read once
    per process, so a worker must not keep the master's after fork)."""
    dead = free_port()            # nothing listens: every request is a 502
    p = tracked.factory(upstreams=[f"127.0.0.1:{dead}"], workers=2)
    pids = wait_workers(p, 2)
    assert f"hourglass[{p.pid}]: info: worker 0 (pid" in p.stderr_text(), p.stderr_text()
    for i in range(40):
        fetch_new(p.port, f"/e{i}")
    refused = r"hourglass\[(\d+)\]: \w+: upstream connect.*refused"
    wait_until(lambda: len(re.findall(refused, p.stderr_text())) >= 40, 5 * SLOW,
               msg="a refused-connect line per request")
    writers = {int(x) for x in re.findall(refused, p.stderr_text())}
    # SO_REUSEPORT spreads 40 connections over both (all on one: 2^-39)
    assert writers == pids, (writers, pids, p.pid)


# --------------------------------------------------------------------------
# 2. a killed worker is replaced

def test_killed_worker_is_replaced(tracked, upstream):
    up = upstream(ok_handler(b"ok"))
    p = tracked.factory(upstreams=[up], workers=2)
    pids = wait_workers(p, 2)
    slot_of = {pid: slot for slot, pid, _ in started_lines(p)}
    tasks = 4
    load = Load(p.port, fresh=tasks).start()
    try:
        wait_until(lambda: load.ok_count() >= 50, 5 * SLOW, msg="50 requests before the kill")
        victim = min(pids)
        t_kill = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        died = (rf"worker {slot_of[victim]} \(pid {victim}\) died \(killed by signal 9\); "
                r"starting a new one")

        def replaced():
            new = children(p) - pids
            if len(new) != 1:
                return None
            (npid,) = new
            err = p.stderr_text()
            d = re.search(died, err)
            s = re.search(rf"worker (\d+) \(pid {npid}\) started", err)
            return (npid, d, s) if d and s else None
        npid, d, s = wait_for(p, replaced, 2.0 * SLOW,
                              f"a replacement for worker {victim} and the lines "
                              f"{died!r} / 'worker N (pid NEW) started'")
        t_seen = time.monotonic()
        assert d.start() < s.start(), "the replacement's `started` line comes before `died`"
        assert int(s.group(1)) == slot_of[victim], (s.group(0), slot_of)
        # keep going after the replacement is up
        wait_until(lambda: load.ok_count(after=t_seen) >= 100, 5 * SLOW,
                   msg="100 requests after the replacement started")
    finally:
        load.stop()
    assert children(p) == (pids - {victim}) | {npid}
    fails = load.failures()
    after = [f for f in fails if f[0] > t_seen]
    assert not after, f"requests opened after the replacement was up failed: {after[:5]}"
    # before it: at most the requests in flight when the worker died (one per
    # client thread), and only as a dropped connection
    assert len(fails) <= tasks, fails
    assert all(connection_error(o) for _, o, _ in fails), fails
    assert all(t0 < t_seen for t0, _, _ in fails)
    print(f"replacement seen {(t_seen - t_kill) * 1000:.0f} ms after the kill; "
          f"{len(load.results)} requests, failures: {fails}")


# --------------------------------------------------------------------------
# 3. reloads under load lose nothing

def test_reload_under_load_loses_nothing(tracked, upstream, tmp_path):
    up = upstream(ok_handler(b"ok"))
    port = free_port()
    cfg = write_conf(tmp_path / "hg.yaml", up.addr, port)
    drain = 2.0
    p = tracked.start(["--config", cfg, "--workers", "2", "--drain-timeout", "2s"], port)
    wait_workers(p, 2)
    load = Load(port, fresh=4, keepalive=1).start()
    try:
        wait_until(lambda: load.ok_count() >= 40, 5 * SLOW, msg="load running")
        hups = []
        for i in range(5):
            hups.append(time.monotonic())
            hup(p)
            time.sleep(0.3)
        # each SIGHUP made a generation; the last one is 6
        wait_for(p, lambda: len(re.findall(SERVING, p.stderr_text())) >= 5, 3 * SLOW,
                 "5 `generation N serving` lines")
        t_last = time.monotonic()
        serving = [(int(a), int(b)) for a, b in re.findall(SERVING, p.stderr_text())]
        assert serving == [(2, 1), (3, 2), (4, 3), (5, 4), (6, 5)], serving
        assert "reload refused" not in p.stderr_text()
        last = wait_workers(p, 2, generation=6, timeout=drain + 1.0)
        t_settled = time.monotonic()
        ok_before = load.ok_count()
        wait_until(lambda: load.ok_count() >= ok_before + 40, 5 * SLOW,
                   msg="requests after the last reload")
    finally:
        load.stop()
    fails = load.failures()

    def since_hup(t0):
        before = [h for h in hups if h <= t0]
        return f"{(t0 - before[-1]) * 1000:+.1f} ms after SIGHUP #{len(before)}" if before \
            else f"{(t0 - hups[0]) * 1000:+.1f} ms from SIGHUP #1"
    assert not fails, (f"{len(fails)} failed request(s) of {len(load.results)} "
                       f"({load.resent} keep-alive resends): "
                       + "; ".join(f"{n} {o} opened {since_hup(t0)}" for t0, o, n in fails[:10]))
    oks = load.ok_count()
    assert load.keepalive_ok >= 10, load.keepalive_ok
    gen6 = {pid for _, pid, g in started_lines(p) if g == 6}
    assert children(p) == last == gen6
    # every old worker is gone: the master has its 2 current children only
    everyone = {pid for _, pid, _ in started_lines(p)}
    assert len(everyone) == 12, started_lines(p)
    assert not [pid for pid in everyone - gen6 if pid_alive(pid)]
    # all workers append whole lines to the one access log: one per response
    lines = p.wait_log(oks, timeout=3)
    raw = p.raw_log_lines()
    assert len(raw) == oks, (len(raw), oks)
    for l in lines:
        assert list(l) == LOG_KEYS, l       # a whole line, not two interleaved
        assert l["status"] == "200" and l["reason"] == "ok" and l["target"].startswith("/load/"), l
    print(f"{oks} requests ({load.keepalive_ok} keep-alive, {load.resent} resent after a "
          f"closed keep-alive connection); old generations gone "
          f"{(t_settled - t_last) * 1000:.0f} ms after the last `serving` line")


# --------------------------------------------------------------------------
# 4. a reload applies the new configuration

def test_reload_applies_new_config(tracked, upstream, tmp_path):
    a = upstream(ok_handler(b"from A"))
    b = upstream(ok_handler(b"from B"))
    port = free_port()
    cfg = write_conf(tmp_path / "hg.yaml", a.addr, port)
    p = tracked.start(["--config", cfg, "--workers", "2"], port)
    old = wait_workers(p, 2)
    for i in range(6):
        _, o, r = fetch_new(port, f"/a{i}")
        assert o == "ok" and r.body == b"from A", (o, r)
    write_conf(cfg, b.addr, port)
    hup(p)
    p.wait_stderr(r"reload: reading the configuration again", 2 * SLOW)
    p.wait_stderr(r"reload: generation 2 serving; generation 1 draining", 3 * SLOW)
    late = switch_to_new_generation(port, b"from A", b"from B")
    for i in range(20):
        _, o, r = fetch_new(port, f"/b{i}")
        assert o == "ok", (i, o)
        assert r.body == b"from B", (i, r)
    new = wait_workers(p, 2, generation=2, timeout=3)
    assert not new & old
    lines = p.wait_log(26 + late + 1)
    assert [l["upstream"] for l in lines if l["target"].startswith("/b")] == [b.addr] * 20
    assert len(b.requests()) == 20 + 1 and len(a.requests()) == 6 + late


# --------------------------------------------------------------------------
# 5. a bad configuration is refused on reload, then a fixed one applies

@pytest.mark.parametrize("bad", ["unknown_key", "yaml_syntax"])
def test_reload_refuses_bad_config(tracked, upstream, tmp_path, bad):
    a = upstream(ok_handler(b"from A"))
    b = upstream(ok_handler(b"from B"))
    port = free_port()
    cfg = write_conf(tmp_path / "hg.yaml", a.addr, port)
    p = tracked.start(["--config", cfg, "--workers", "2"], port)
    pids = wait_workers(p, 2)
    assert fetch_new(port, "/a0")[2].body == b"from A"

    if bad == "unknown_key":
        # line 8 `timeouts:`, line 9 col 3 the unknown key
        write_conf(cfg, b.addr, port, "timeouts:\n  raed: 1s\n")
        where = rf"{re.escape(str(cfg))}:9:3: timeouts\.raed: unknown key"
    else:
        write_conf(cfg, b.addr, port, "  - {path: /x, pool: web\n")
        where = rf"{re.escape(str(cfg))}:\d+:\d+: "
    hup(p)
    p.wait_stderr(r"reload refused: ", 3 * SLOW)
    p.wait_stderr(r"generation 1 keeps serving", 1)
    err = p.stderr_text()
    assert re.search(where, err), f"no error line matching {where!r}:\n{err[-2000:]}"
    assert "reload: reading the configuration again" in err
    assert not re.search(SERVING, err)
    assert len(started_lines(p)) == 2, started_lines(p)     # nobody was (re)started
    assert p.alive()
    assert children(p) == pids
    for i in range(10):
        _, o, r = fetch_new(port, f"/a{i + 1}")
        assert o == "ok" and r.body == b"from A", (i, o, r)
    assert not b.conns
    # nothing killed after the refusal
    time.sleep(0.2)
    assert children(p) == pids

    write_conf(cfg, b.addr, port)
    hup(p)
    m = p.wait_stderr(r"reload: generation (\d+) serving; generation 1 draining", 3 * SLOW)
    gen = int(m.group(1))
    switch_to_new_generation(port, b"from A", b"from B")
    for i in range(10):
        _, o, r = fetch_new(port, f"/b{i}")
        assert o == "ok" and r.body == b"from B", (i, o, r)
    new = wait_workers(p, 2, generation=gen, timeout=3)
    assert not new & pids


# --------------------------------------------------------------------------
# 6. SIGTERM to the master drains the workers

def delayed(delay, body=b"done"):
    async def handler(reader, writer, ctx):
        async def respond(ctx, req):
            await ctx.delay(delay)
            await ctx.respond(200, body)
        await ctx.serve_forever(respond)
    return handler


def test_sigterm_to_master_drains_workers(tracked, upstream):
    up = upstream(delayed(0.5))
    drain = 2.0
    p = tracked.factory("--drain-timeout", "2s", upstreams=[up], workers=2)
    pids = wait_workers(p, 2)
    clients = []
    for i in range(6):
        c = p.client(timeout=5)
        c.send(request_bytes("GET", f"/inflight{i}"))
        clients.append(c)
    up.wait_requests(6, timeout=2 * SLOW)
    t_term = time.monotonic()
    os.kill(p.pid, signal.SIGTERM)

    # new connections are refused while the requests in flight finish
    def refused():
        s = socket.socket()
        s.settimeout(0.2)
        try:
            return s.connect_ex(("127.0.0.1", p.port)) != 0
        finally:
            s.close()
    wait_until(refused, 0.3, interval=0.01,
               msg="new connections refused after SIGTERM (the upstream answers 0.5 s "
                   "after the requests arrived)")
    refused_at = time.monotonic() - t_term
    for i, c in enumerate(clients):
        r = c.read_response()
        assert r is not None and r.status == 200 and r.complete and r.body == b"done", (i, r)
        assert (r.header("connection") or "").lower() == "close", r.headers
        c.close()           # as told by Connection: close
    rc, _ = reap(p, drain + 1.0 + (5 if SLOW > 1 else 0))
    dt = time.monotonic() - t_term
    assert rc == 0, (rc, p.stderr_text()[-2000:])
    assert dt <= drain + 1.0 * SLOW, dt
    # the requests finished by themselves, well before the drain timeout
    assert "drain timeout" not in p.stderr_text(), p.stderr_text()[-2000:]
    left = [pid for pid in pids if pid_alive(pid)]
    assert not left, f"workers {left} outlived the master"
    lines = p.wait_log(6)
    assert sorted(l["target"] for l in lines) == sorted(f"/inflight{i}" for i in range(6))
    assert all(l["status"] == "200" and l["reason"] == "ok" for l in lines), lines
    print(f"refused {refused_at * 1000:.0f} ms after SIGTERM; master exited after "
          f"{dt * 1000:.0f} ms")


# --------------------------------------------------------------------------
# 7. /metrics sums the counters of all workers

def test_metrics_sum_across_workers(tracked, upstream):
    from test_metrics import scrape, value
    up = upstream(ok_handler(b"ok"))
    admin = free_port()
    p = tracked.factory("--admin", f"127.0.0.1:{admin}", upstreams=[up], workers=2)
    pids = wait_workers(p, 2)
    for i in range(40):
        _, o, _ = fetch_new(p.port, f"/m{i}")
        assert o == "ok", (i, o)
    p.wait_log(40)
    # both workers served some of the 40 (each keeps a pooled upstream
    # connection), so no single worker's own count is 40
    for pid in pids:
        assert holds_connection_to(pid, up.port), f"worker {pid} served nothing"
    for k in range(8):
        code, text = scrape(admin)
        assert code == 200, text
        got = value(text, "hourglass_requests_total", route="/", **{"class": "2xx"})
        assert got == 40, f"scrape {k}: hourglass_requests_total 2xx = {got}, want 40"
        assert value(text, "hourglass_exchanges_ended_total", reason="ok") == 40


# --------------------------------------------------------------------------
# 8. deadline header keys: per-listener trust, per-route off switch

def test_deadline_header_config_keys(tracked, upstream, tmp_path):
    slow = upstream(delayed(1.0, b"slow"))
    fast = upstream(ok_handler(b"fast"))
    trusted, untrusted = free_port(), free_port()
    cfg = tmp_path / "dl.yaml"
    cfg.write_text(f"""deadline_header: X-Deadline
listen:
  - address: 127.0.0.1:{trusted}
    trust_deadline_header: true
  - 127.0.0.1:{untrusted}
timeouts:
  read: 5s
  total: 5s
pools:
  slow:
    servers: [{slow.addr}]
  fast:
    servers: [{fast.addr}]
routes:
  - path: /
    pool: slow
  - path: /with/
    pool: fast
  - path: /without/
    pool: fast
    deadline_header: false
""")
    p = tracked.start(["--config", cfg, "--single-process"], trusted)
    wait_port("127.0.0.1", untrusted)
    assert children(p) == set(), "--single-process forked"

    # trusted listener: the client's 200 ms cap the route's 5 s
    c = Client(trusted, timeout=5)
    t0 = c.send(request_bytes("GET", "/cap", headers=[("X-Deadline", "200")]))
    r = c.read_response()
    dt = time.monotonic() - t0
    c.close()
    assert r is not None and r.status == 504 and b"total_timeout" in r.body, r
    assert 0.15 <= dt < 0.2 + 0.15 * SLOW, f"504 after {dt * 1000:.0f} ms, want ~200"
    (req,) = slow.wait_requests(1)
    vals = req.header_all("x-deadline")
    assert len(vals) == 1 and 100 <= int(vals[0]) <= 200, req.headers

    # untrusted listener: the same header is ignored, the slow answer arrives
    c = Client(untrusted, timeout=5)
    t0 = c.send(request_bytes("GET", "/nocap", headers=[("X-Deadline", "200")]))
    r = c.read_response()
    dt = time.monotonic() - t0
    c.close()
    assert r is not None and r.status == 200 and r.body == b"slow", r
    assert dt >= 0.95, dt
    req = slow.wait_requests(2)[1]
    vals = req.header_all("x-deadline")
    assert len(vals) == 1 and 4000 < int(vals[0]) <= 5000, req.headers  # ours, not the client's

    # per route: /with/ sends the header (renamed), /without/ sends none
    for target in ("/with/x", "/without/x"):
        _, o, r = fetch_new(untrusted, target)
        assert o == "ok" and r.body == b"fast", (target, o, r)
    with_, without = fast.wait_requests(2)
    assert with_.target == "/with/x" and without.target == "/without/x"
    vals = with_.header_all("x-deadline")
    assert len(vals) == 1 and 4000 < int(vals[0]) <= 5000, with_.headers
    assert not with_.has("x-request-deadline-ms"), with_.headers
    assert not without.has("x-deadline"), without.headers
    assert not without.has("x-request-deadline-ms"), without.headers
    lines = p.wait_log(4)
    assert [l["status"] for l in lines] == ["504", "200", "200", "200"], lines


# --------------------------------------------------------------------------
# the retry budget is the generation's, not each worker's

def test_retry_budget_shared_by_the_workers(tracked, upstream, tmp_path):
    """budget {min: 2, percent: 0}: at most 2 retries in flight in the whole
    generation, however the connections spread over the two workers (each
    worker counted alone allowed 2 of its own: up to 4). The first attempt
    goes to a refusing server (weight 1000 against 1); its retry to a server
    that holds every request, so what it holds at once is the retries in
    flight."""
    held = {"now": 0, "max": 0}
    lock = threading.Lock()

    async def hold(reader, writer, ctx):
        req = await ctx.read_request()
        with lock:
            held["now"] += 1
            held["max"] = max(held["max"], held["now"])
        await ctx.delay(1.0 * SLOW)
        with lock:
            held["now"] -= 1
        await ctx.respond(200, b"second")
    b = upstream(hold)
    dead = f"127.0.0.1:{free_port()}"
    port = free_port()
    cfg = tmp_path / "budget.yaml"
    cfg.write_text(f"listen: [127.0.0.1:{port}]\n"
                   f"pools:\n"
                   f"  web:\n"
                   f"    servers: [{{address: {dead}, weight: 1000}}, {{address: {b.addr}, weight: 1}}]\n"
                   f"    budget: {{min: 2, percent: 0}}\n"
                   f"    health: {{passive: {{failures: 1000}}}}\n"
                   f"routes:\n"
                   f"  - path: /\n"
                   f"    pool: web\n"
                   f"    retry: {{attempts: 2, on: [connect_failure]}}\n")
    p = tracked.start(["--config", cfg, "--workers", "2"], port)
    wait_workers(p, 2)
    results = []

    def one(i):
        results.append(fetch_new(port, f"/r{i}", timeout=5 * SLOW)[1])
    threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10 * SLOW)
    lines = p.wait_log(16, timeout=5 * SLOW)
    served = [l for l in lines if l["status"] == "200"]
    assert held["max"] <= 2, f"{held['max']} retries in flight at once across the workers"
    assert 1 <= len(served) <= 4, [(l["status"], l["reason"]) for l in lines]
    assert "retry budget of pool web spent" in p.stderr_text()


# --------------------------------------------------------------------------
# one view of each server: passive ejections and active checks are the
# generation's

def test_ejection_and_health_checks_shared_by_the_workers(tracked, upstream, tmp_path):
    """--workers 2: a refusing server is ejected once, after `failures`
    failures counted across both workers (each worker on its own needed as
    many, and ejected it again); one worker runs the active checks (one check
    per interval, not one per worker)."""
    checks = []

    async def ok(reader, writer, ctx):
        async def respond(ctx, req):
            if req.target == "/hz":
                checks.append(time.monotonic())
            await ctx.respond(200, b"ok")
        await ctx.serve_forever(respond)
    b = upstream(ok)
    dead = f"127.0.0.1:{free_port()}"
    port = free_port()
    cfg = tmp_path / "shared.yaml"
    cfg.write_text(f"listen: [127.0.0.1:{port}]\n"
                   f"pools:\n"
                   f"  web:\n"
                   f"    servers: [{dead}, {b.addr}]\n"
                   f"    health: {{passive: {{failures: 3}}}}\n"
                   f"  checked:\n"
                   f"    servers: [{b.addr}]\n"
                   f"    health: {{active: {{path: /hz, interval: 100ms, timeout: 90ms}}}}\n"
                   f"routes:\n"
                   f"  - path: /\n"
                   f"    pool: web\n"
                   f"  - path: /c\n"
                   f"    pool: checked\n")
    p = tracked.start(["--config", cfg, "--workers", "2"], port)
    wait_workers(p, 2)
    time.sleep(0.3)   # the first checks, at random within the interval
    n0 = len(checks)
    time.sleep(1.0)
    per_second = len(checks) - n0
    assert 6 <= per_second <= 14, f"{per_second} checks of the server in 1 s at 100 ms"
    for i in range(40):
        fetch_new(port, f"/r{i}")
    err = p.stderr_text()
    assert err.count("ejected from pool web") == 1, err[-3000:]
    assert err.count(f"upstream connect to {dead} failed") <= 4, err[-3000:]
