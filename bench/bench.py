#!/usr/bin/python3
"""hourglass benchmark: CPU per request against nginx, HAProxy, h2o and a byte-relay floor.

Started by bench/run.sh (which checks the tools, builds the floor and raises the
open-file limit). Everything listens on 127.0.0.1, ports 18000-18099.
The helper roles (slow upstream, idle-connection client, timer client, upload
client) are this same file run with a leading "_role" argument.
"""
import argparse
import datetime
import hashlib
import http.client
import json
import math
import os
import re
import resource
import selectors
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PY = sys.executable or "/usr/bin/python3"
HZ = os.sysconf("SC_CLK_TCK")
LOOP = "127.0.0.1"

H2O = "h2o"
H2O_PORT = 18015
PORTS = {"origin": 18001, "slow": 18002, "floor": 18010, "hourglass": 18011,
         "nginx": 18012, "haproxy": 18013, H2O: H2O_PORT}
PROXIES = ["floor", "hourglass", "nginx", "haproxy", H2O]
# the peers hourglass is compared with (hg/PEER columns; hg/best = hourglass / the lowest of them)
PEERS = ["nginx", "haproxy", H2O]
# A/B mode (--baseline BIN): a sixth proxy, "hg-base", runs that binary with
# hourglass's flags and configuration; main() adds it to PORTS and PROXIES
# (right after hourglass) only then, so that without it nothing changes.
BASE = "hg-base"
BASE_PORT = 18014
BASELINE = None        # the --baseline binary
# Deferred accept (TCP_DEFER_ACCEPT, 1 s) on every listener under test: h2o
# sets it by default; nginx gets `deferred`, HAProxy `defer-accept`, hourglass
# `--defer-accept 1s`, the floor too. --no-defer-accept: none of them (h2o
# keeps its default, which has no switch).
DEFER_ACCEPT = True
BASE_DEFER = False     # the --baseline binary knows --defer-accept
SMALL_BODY = ("hourglass-bench " * 7)[:99] + "\n"          # 100 bytes
MiB = 1 << 20
GiB = 1 << 30

# Scenarios: name -> description. kind decides how a run is done and reported.
SCENARIOS = [
    ("small-ka-64", "wrk", "100 B responses, keep-alive, 64 connections"),
    ("small-ka-1000", "wrk", "100 B responses, keep-alive, 1000 connections"),
    ("small-ka-9900", "wrk", "100 B responses, keep-alive, 9900 connections (fewer if the open-file limit is low)"),
    ("conn-close", "wrk", "100 B responses, new client connection per request (64 at once)"),
    ("small-ab-k", "ab", "ab -k: HTTP/1.0 requests with Connection: Keep-Alive, 100 B responses, 50 at a time"),
    ("tls-keepalive", "wrk", "100 B responses over TLS 1.3 (proxy terminates it), keep-alive, 64 connections; "
                             "floor not run (no TLS)"),
    ("tls-handshake", "wrk", "100 B responses, a new TLS connection (full handshake) per request (64 at once); "
                             "floor not run (no TLS)"),
    ("tls-handshake-aes256", "wrk", "tls-handshake with wrk offering only TLS_AES_256_GCM_SHA384 in TLS 1.3 "
                                    "(every proxy runs the same suite); floor not run (no TLS)"),
    ("h2c-small", "h2load", "100 B responses, HTTP/2 with prior knowledge over cleartext (h2c), "
                            "64 connections x 10 streams; floor not run"),
    ("h2-tls-small", "h2load", "100 B responses, HTTP/2 over TLS 1.3 (ALPN h2), 64 connections x 10 streams; "
                               "floor not run"),
    ("grpc-unary", "grpc", "gRPC unary calls (h2load POST, a 105-byte length-prefixed message, echoed), HTTP/2 "
                           "to the client and to the upstream (grpc_upstream), 64 connections x 10 streams; "
                           "floor and h2o not run"),
    ("h2-upstream-small", "h2up", "100 B responses, HTTP/1.1 keep-alive from wrk (64 connections), HTTP/2 (h2c) to "
                                  "the upstream (grpc_upstream); floor, nginx and h2o not run"),
    ("resp-1m", "wrk", "1 MiB responses, keep-alive, 16 connections"),
    ("resp-64m", "wrk", "64 MiB responses, keep-alive, 4 connections"),
    ("upload-16m", "upload", "16 MiB chunked uploads (64 KiB chunks), 4 connections"),
    ("idle-10k", "idle", "idle keep-alive client connections: RSS per connection"),
    ("timer", "timer", "requests in flight to a silent upstream, read timeout 3 s, sent evenly over 2 s"),
    ("hedge-tail", "hedge", "latency tail and extra upstream load with hedging: 2 upstream servers answering in 5 ms, "
                            "1 request in 50 in 1 s; an open-loop client at a fixed rate; floor not run"),
]
PER_GIB = {"resp-1m", "resp-64m", "upload-16m"}
# the growth table: small keep-alive requests as the connections grow (row, wrk connections).
# small-ka-9900's count is lowered to what the open-file hard limit allows (main() sets BIG_CONNS):
# the proxy holds a client and an upstream descriptor per connection.
GROWTH = [("small-ka-64", 64), ("small-ka-1000", 1000), ("small-ka-9900", 9900)]
BIG_CONNS = 9900
# client -> proxy over TLS; the floor is a byte relay without TLS and does not run them
TLS_SCEN = {"tls-keepalive", "tls-handshake", "tls-handshake-aes256"}
# the TLS 1.3 suites wrk offers (the shim's WRK_TLS13_SUITES) and the probe too, per
# row; the others offer OpenSSL's default list. hourglass picks TLS_AES_128_GCM_SHA256
# from it (server order), nginx, HAProxy and h2o TLS_AES_256_GCM_SHA384 (the client's
# first): tls-handshake-aes256 offers only that one, so that the row compares the
# proxies with the same cryptography
WRK_TLS13_SUITES = {"tls-handshake-aes256": "TLS_AES_256_GCM_SHA384"}
# HTTP/2 to the client (h2load), upstream HTTP/1.1 keep-alive
H2_SCEN = {"h2c-small", "h2-tls-small"}
H2_TLS = {"h2-tls-small"}
H2_CONNS, H2_STREAMS = 64, 10         # h2load -c, -m
# h2-tls-small: h2load offers this one TLS 1.3 suite, so that every proxy runs the
# same cipher (the one nginx, HAProxy and h2o negotiate with wrk in the tls-* rows,
# and every proxy in tls-handshake-aes256); left
# to itself h2load prefers AES-128-GCM, which a server may or may not honour
H2_TLS13_CIPHER = "TLS_AES_256_GCM_SHA384"
# nginx's upstream keepalive (idle connections it keeps): 1024 in every row. With
# nginx's usual 64, the rows with 1,000 and 9,900 client connections (and the
# HTTP/2 rows: 640 requests in flight, each on its own HTTP/1.1 upstream
# connection) would close the rest after each response and reconnect, a cost
# of the configuration rather than of nginx. hourglass, HAProxy and h2o keep
# every idle one by default.
NGINX_KEEPALIVE = 1024
# HTTP/2 to the upstream: the proxies talk h2c (prior knowledge) to bench/grpc_upstream.c
# (port 18003, pinned with the load generator, started once for these rows).
# grpc-unary: h2load gRPC calls (HTTP/2 from the client too); h2-upstream-small:
# wrk HTTP/1.1 keep-alive to the proxy. main() adds the port only when one runs.
H2UP_SCEN = {"grpc-unary", "h2-upstream-small"}
H2UP_PORT = 18003
GRPC_PATH = "/bench.Bench/Unary"
GRPC_MSG = 100                        # the message's payload; 5 + 100 bytes on the wire
GRPC_HEADERS = ["content-type: application/grpc", "te: trailers", "grpc-timeout: 5S"]
H2UP_MAX_STREAMS = 100                # grpc_upstream's SETTINGS_MAX_CONCURRENT_STREAMS
# what cannot run a row, and why (a "-" in its cell; the reason under the table)
NOT_SUPPORTED = {
    ("grpc-unary", "h2o"): "h2o 2.2 proxies to HTTP/1.1 upstreams only (proxy.reverse.url: http:// or https://, "
                           "no HTTP/2 upstream), and gRPC needs HTTP/2 end to end (trailers): not run",
    ("h2-upstream-small", "h2o"): "h2o 2.2 has no HTTP/2 upstream: not run",
    ("hedge-tail", "h2o"): "h2o 2.2's proxy.reverse.url takes one upstream server (balancing came in 2.3); the row "
                           "needs a pool of two: not run",
    ("h2-upstream-small", "nginx"): "nginx's proxy_pass speaks HTTP/1.0 and 1.1 only (proxy_http_version); its "
                                    "one HTTP/2 upstream is grpc_pass, for gRPC: not run",
}
# scenarios the floor does not run (the timer: it has no timeouts)
NO_FLOOR = {"timer", "hedge-tail"} | TLS_SCEN | H2_SCEN | H2UP_SCEN
# hedge-tail (issue 18): one process, bench/hedge_upstream.c, listening on two
# ports = the two servers of the pool (a hedge goes to the other one); each
# answers a GET in HEDGE_FAST_MS, 1 request in 1/HEDGE_P in HEDGE_SLOW_MS. The
# client, bench/hedge_load.c, sends GET /h/ID at a fixed rate (open loop). The
# rows are configurations: three of hourglass (on their own ports, each with
# an admin listener for hourglass_hedges_total), nginx, HAProxy.
HEDGE_SCEN = "hedge-tail"
HEDGE_UP_PORTS = (18004, 18005)
HEDGE_P, HEDGE_FAST_MS, HEDGE_SLOW_MS = 0.02, 5, 1000
HEDGE_SEED = 18                       # the issue's number: which requests are slow (same for every row)
HEDGE_RATE = 1500                     # requests/s (--hedge-rate)
HEDGE_REQUESTS = 10000                # per run (--hedge-requests; --quick 3000); pooled over the rounds
HEDGE_MAX_ID = 1 << 22                # IDs hedge_upstream tracks (its MAXID)
HEDGE_CONNS = 128                     # client connections opened before a run (more are opened if all are busy)
HEDGE_GOAL_X, HEDGE_GOAL_LOAD = 3.0, 6.0   # p99 < 3 x the fast path, extra load < 6 %
HEDGE_ADAPTIVE = "{delay: p95}"       # the adaptive row's hedge mapping (--hedge-adaptive)
# (row, proxy, hedge mapping or None, port, admin port, label)
HEDGE_ROWS = [
    ("hg-no-hedge", "hourglass", None, 18011, 18018, "hourglass, no hedge"),
    ("hg-hedge-50ms", "hourglass", "{delay: 50ms}", 18016, 18019, "hourglass, hedge.delay 50ms"),
    ("hg-hedge-p95", "hourglass", "adaptive", 18017, 18020, "hourglass, hedge.delay p95 (adaptive)"),
    ("nginx", "nginx", None, 18012, None, "nginx (no hedging)"),
    ("haproxy", "haproxy", None, 18013, None, "HAProxy (no hedging)"),
]
HEDGE_UP_BIN = HEDGE_LOAD_BIN = None  # built by run.sh; main() sets them
TLS = None             # {"cert", "key", "pem", "shim"} once make_tls() has run
H2UP_BIN = None        # grpc_upstream (built by run.sh), GRPC_REQ h2load's request file: main() sets them
GRPC_REQ = None

# ----------------------------------------------------------------------------
# process bookkeeping: every pid we start is written to $BENCH_TMP/pids so that
# run.sh's trap can kill it even if this script dies hard.

CHILDREN = []


def spawn(argv, cpu=None, log=None, **kw):
    if cpu is not None and shutil.which("taskset"):
        argv = ["taskset", "-c", str(cpu)] + argv
    out = open(log, "ab") if log else subprocess.DEVNULL
    p = subprocess.Popen(argv, stdout=kw.pop("stdout", out), stderr=out, stdin=kw.pop("stdin", subprocess.DEVNULL), **kw)
    CHILDREN.append(p)
    with open(os.path.join(TMP, "pids"), "a") as f:
        f.write("%d\n" % p.pid)
    return p


def stop(p, sig=signal.SIGTERM, wait=5.0):
    if p is None or p.poll() is not None:
        return
    try:
        p.send_signal(sig)
        p.wait(wait)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        try:
            p.kill()
            p.wait(2)
        except Exception:
            pass


def stop_all():
    for p in reversed(CHILDREN):
        stop(p, wait=3.0)


def port_free(port):
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((LOOP, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def wait_port(port, proc, what, timeout=10.0, logs=None):
    """logs: the files to quote if proc exits (default: every log of the run)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("%s exited with status %s:\n%s" % (
                what, proc.returncode, log_tail(logs) if logs else log_tail()))
        try:
            socket.create_connection((LOOP, port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("%s did not listen on %d" % (what, port))


def log_tail(paths=None):
    """The end of each log file: those given, or every *.log under TMP."""
    if paths is None:
        paths = [os.path.join(root, f) for root, _, files in os.walk(TMP) for f in files if f.endswith(".log")]
    out = []
    for path in paths:
        try:
            with open(path, errors="replace") as fh:
                t = fh.read()[-1500:].strip()
        except OSError:
            continue
        if t:
            out.append("--- %s\n%s" % (path, t))
    return "\n".join(out)


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])          # utime + stime (fields 14, 15)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def conns_to(port, pids):
    """Established TCP connections to 127.0.0.1:port held by the processes pids
    (their sockets' inodes in /proc/PID/fd, matched in /proc/net/tcp)."""
    inodes = set()
    try:
        for pid in pids:
            d = "/proc/%d/fd" % pid
            for fd in os.listdir(d):
                try:
                    t = os.readlink(os.path.join(d, fd))
                except OSError:
                    continue
                if t.startswith("socket:["):
                    inodes.add(t[8:-1])
        n = 0
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                x = line.split()
                if x[3] == "01" and int(x[2].split(":")[1], 16) == port and x[9] in inodes:
                    n += 1
        return n
    except OSError:
        return -1


def children_of(pid):
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    rest = f.read().rsplit(")", 1)[1].split()
                if int(rest[1]) == pid:
                    kids.append(int(d))
            except OSError:
                pass
    return kids


# ----------------------------------------------------------------------------
# configurations

def nginx_common(prefix, conns, level="warn"):
    user = "user root;\n" if os.geteuid() == 0 else ""
    return (user +
            "worker_processes 1;\n"
            "daemon off;\nmaster_process on;\n"
            "pid %(p)s/nginx.pid;\nerror_log %(p)s/error.log %(l)s;\n"
            "worker_rlimit_nofile %(n)d;\n"
            "events { worker_connections %(n)d; }\n") % {"p": prefix, "n": conns, "l": level}


def nginx_temp(prefix, body_dir=None):
    paths = {k: "%s/%s" % (prefix, k) for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    if body_dir:
        paths["client_body"] = body_dir
    return "".join("%s_temp_path %s;\n    " % kv for kv in paths.items())


def write_origin(prefix, port):
    os.makedirs(prefix + "/www", exist_ok=True)
    for name, size in (("1m", MiB), ("64m", 64 * MiB)):
        path = "%s/www/%s" % (prefix, name)
        if not os.path.exists(path) or os.path.getsize(path) != size:
            with open(path, "wb") as f:
                block = bytes(range(256)) * 4096          # 1 MiB
                for _ in range(size // MiB):
                    f.write(block)
    # request bodies the origin reads go to memory (tmpfs) when available
    body_dir = prefix + "/body"
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        body_dir = tempfile.mkdtemp(prefix="hgbench-body.", dir="/dev/shm")
        os.chmod(body_dir, 0o777)
        with open(os.path.join(TMP, "cleanup"), "a") as f:
            f.write(body_dir + "\n")
    with open(prefix + "/www/ok", "w") as f:
        f.write("ok\n")
    with open(prefix + "/www/upload", "w") as f:       # must exist for the 405 below
        f.write("ok\n")
    # /upload: mirror (request body on) makes nginx read the WHOLE body before
    # the content phase; the static handler then refuses POST to the existing
    # file www/upload with 405, which
    # error_page turns into "200 ok". A bare `return 200` would answer before
    # the body has arrived, so the proxies would see an early response.
    conf = nginx_common(prefix, 20000, "error") + """
http {
    %(temp)s
    access_log off;
    server_tokens off;
    default_type text/plain;
    sendfile on;
    keepalive_timeout 300s;
    keepalive_requests 100000000;
    client_max_body_size 0;
    client_body_buffer_size 64k;
    server {
        listen %(addr)s:%(port)d backlog=4096;
        root %(prefix)s/www;
        location = /small  { return 200 "%(small)s"; }
        location = /1m     { }
        location = /64m    { }
        location = /ok     { }
        location = /status { stub_status; }
        location = /upload {
            mirror /sink;
            mirror_request_body on;
            error_page 405 =200 /ok;
        }
        location = /sink   { internal; return 204; }
    }
}
""" % {"temp": nginx_temp(prefix, body_dir), "addr": LOOP, "port": port, "prefix": prefix,
       "small": SMALL_BODY.replace("\n", "\\n")}
    path = prefix + "/nginx.conf"
    with open(path, "w") as f:
        f.write(conf)
    return path


def write_nginx_proxy(prefix, port, upstream, read_timeout, tls=None, h2=False):
    """h2: HTTP/2 to the client, `http2` on the listen line (nginx 1.22; the
    `http2 on;` directive is 1.25.1+): with ssl, ALPN h2 (and http/1.1); without,
    h2c with prior knowledge only. Upstream stays HTTP/1.1 keep-alive. upstream:
    a port, or a list of ports (hedge-tail: one `server` line each, nginx's
    default round-robin)."""
    os.makedirs(prefix, exist_ok=True)
    ssl = ""
    if tls:
        # TLS 1.2 and 1.3 like the others; session tickets (nginx's default)
        # and a shared session cache, as HAProxy (its default cache) and
        # hourglass (tickets + a session cache) have
        ssl = ("\n        ssl_certificate %(cert)s;\n        ssl_certificate_key %(key)s;\n"
               "        ssl_protocols TLSv1.2 TLSv1.3;\n        ssl_session_cache shared:SSL:10m;" % tls)
    conf = nginx_common(prefix, 20000) + """
http {
    %(temp)s
    access_log off;
    server_tokens off;
    keepalive_timeout 60s;
    keepalive_requests 100000000;
    client_header_timeout 10s;
    client_body_timeout 15s;
    send_timeout 15s;
    client_max_body_size 0;
    upstream origin {
%(servers)s        keepalive %(ka)d;
        keepalive_requests 100000000;
        keepalive_timeout 30s;
    }
    server {
        listen %(addr)s:%(port)d%(ssl_listen)s backlog=4096%(defer)s;%(ssl)s
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout 1s;
            proxy_read_timeout %(rt)s;
            proxy_send_timeout 15s;
            proxy_request_buffering off;
            proxy_buffering on;
            proxy_max_temp_file_size 0;
            proxy_buffer_size 16k;
            proxy_buffers 4 16k;
        }
    }
}
""" % {"temp": nginx_temp(prefix), "addr": LOOP, "port": port,
       "servers": "".join("        server %s:%d;\n" % (LOOP, u)
                          for u in (upstream if isinstance(upstream, (list, tuple)) else [upstream])),
       "rt": read_timeout, "ssl_listen": (" ssl" if tls else "") + (" http2" if h2 else ""), "ssl": ssl,
       "defer": " deferred" if DEFER_ACCEPT else "",
       "ka": NGINX_KEEPALIVE}
    path = prefix + "/nginx.conf"
    with open(path, "w") as f:
        f.write(conf)
    return path


def write_hourglass_tls(prefix, port, tls):
    """A YAML file with one TLS listener; the rest comes from the flags."""
    os.makedirs(prefix, exist_ok=True)
    path = prefix + "/hourglass.yaml"
    with open(path, "w") as f:
        f.write("listen:\n  - address: %s:%d\n    tls:\n      cert: %s\n      key: %s\n"
                "      min_version: \"1.2\"\n" % (LOOP, port, tls["cert"], tls["key"]))
    return path


def write_hourglass_h2up(prefix, port, upstream):
    """The HTTP/2-upstream rows: a YAML file with the plain listener (HTTP/1.1,
    and h2c with prior knowledge, hourglass's default) and one pool of one
    server with `protocol: h2`; the rest comes from the flags."""
    os.makedirs(prefix, exist_ok=True)
    path = prefix + "/hourglass.yaml"
    with open(path, "w") as f:
        f.write("listen: [\"%s:%d\"]\npools:\n  origin:\n    protocol: h2\n    servers: [\"%s:%d\"]\n"
                "routes:\n  - {path: /, pool: origin}\n" % (LOOP, port, LOOP, upstream))
    return path


def write_hourglass_hedge(prefix, port, servers, hedge):
    """hedge-tail: a YAML file with the listener, one pool of the two servers
    (round_robin, the default budget: 20 %, min 3) and one route, with
    `hedge: HEDGE` if hedge is not None; the rest comes from the flags."""
    os.makedirs(prefix, exist_ok=True)
    path = prefix + "/hourglass.yaml"
    with open(path, "w") as f:
        f.write("listen: [\"%s:%d\"]\npools:\n  origin:\n    servers: [%s]\nroutes:\n  - path: /\n    pool: origin\n%s"
                % (LOOP, port, ", ".join("\"%s:%d\"" % (LOOP, u) for u in servers),
                   "    hedge: %s\n" % hedge if hedge else ""))
    return path


def write_nginx_grpc(prefix, port, upstream, read_timeout):
    """grpc-unary: HTTP/2 (h2c) from the client on a listen line with `http2`,
    grpc_pass to the HTTP/2 upstream with keep-alive. nginx's gRPC proxy puts
    one call on an upstream connection at a time (no multiplexing), so the
    upstream keepalive is as high as in the HTTP/2 rows (640 calls in flight)."""
    os.makedirs(prefix, exist_ok=True)
    conf = nginx_common(prefix, 20000) + """
http {
    %(temp)s
    access_log off;
    server_tokens off;
    keepalive_timeout 60s;
    keepalive_requests 100000000;
    client_header_timeout 10s;
    client_body_timeout 15s;
    send_timeout 15s;
    client_max_body_size 0;
    upstream h2origin {
        server %(addr)s:%(up)d;
        keepalive %(ka)d;
        keepalive_requests 100000000;
        keepalive_timeout 30s;
    }
    server {
        listen %(addr)s:%(port)d http2 backlog=4096%(defer)s;
        location / {
            grpc_pass grpc://h2origin;
            grpc_connect_timeout 1s;
            grpc_read_timeout %(rt)s;
            grpc_send_timeout 15s;
            grpc_buffer_size 16k;
        }
    }
}
""" % {"temp": nginx_temp(prefix), "addr": LOOP, "up": upstream, "port": port, "rt": read_timeout,
       "ka": NGINX_KEEPALIVE, "defer": " deferred" if DEFER_ACCEPT else ""}
    path = prefix + "/nginx.conf"
    with open(path, "w") as f:
        f.write(conf)
    return path


def write_haproxy(prefix, port, upstream, read_timeout, maxconn, tls=None, h2=False, server_h2=False):
    """h2: HTTP/2 to the client: `proto h2` on a plain bind (h2c, prior
    knowledge), `alpn h2,http/1.1` on a TLS one. server_h2: HTTP/2 (h2c, prior
    knowledge) to the upstream, `proto h2` on the server line; else HTTP/1.1.
    upstream: a port, or a list of ports (hedge-tail: `balance roundrobin`, one
    `server` line each)."""
    os.makedirs(prefix, exist_ok=True)
    # HAProxy refuses to start if 2 * maxconn (+ a few) exceeds the open-file hard limit
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY:
        maxconn = min(maxconn, (hard - 100) // 2)
    conf = """global
    nbthread 1
    maxconn %(mc)d
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 1s
    timeout server %(rt)s
    timeout client 60s
    timeout http-request 10s
    timeout http-keep-alive 60s
frontend fe
    bind %(addr)s:%(port)d%(ssl)s%(defer)s
    maxconn %(mc)d
    default_backend be
backend be
%(servers)s""" % {"mc": maxconn, "rt": read_timeout, "addr": LOOP, "port": port,
       "servers": ("    balance roundrobin\n" + "".join(
           "    server origin%d %s:%d\n" % (i, LOOP, u) for i, u in enumerate(upstream))
           if isinstance(upstream, (list, tuple)) else
           "    server origin %s:%d%s\n" % (LOOP, upstream, " proto h2" if server_h2 else "")),
       # HAProxy wants the certificate and its key in one PEM file; session
       # tickets and its shared session cache are on by default
       "ssl": (" ssl crt %s ssl-min-ver TLSv1.2" % tls["pem"] if tls else "") +
              ((" alpn h2,http/1.1" if tls else " proto h2") if h2 else ""),
       "defer": " defer-accept" if DEFER_ACCEPT else ""}
    path = prefix + "/haproxy.cfg"
    with open(path, "w") as f:
        f.write(conf)
    return path


def write_h2o(prefix, port, upstream, read_timeout, maxconn, tls=None):
    """h2o: one thread, one listener (HTTP/1.1, and h2c with prior knowledge,
    on a plain one; HTTP/1.1 or, by ALPN, h2 with TLS), proxy.reverse.url to the
    origin with upstream keep-alive. h2o 2.2 has no separate connect timeout:
    its proxy.timeout.io covers connect, read and write. Buffers above 32 MiB
    (a request body it reads whole, a response it reads faster than the client
    takes it) are mmap'd files in temp-buffer-path: tmpfs when there is one, so
    that, as with the other proxies, no body touches the disk."""
    os.makedirs(prefix, exist_ok=True)
    ssl = ""
    if tls:
        # its defaults kept: session cache + tickets (ssl-session-resumption);
        # no OCSP fetcher (a self-signed certificate names no responder)
        ssl = ("\n  ssl:\n    certificate-file: %(cert)s\n    key-file: %(key)s\n"
               "    minimum-version: TLSv1.2\n    ocsp-update-interval: 0" % tls)
    tmp = prefix
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        tmp = tempfile.mkdtemp(prefix="hgbench-h2o.", dir="/dev/shm")
        with open(os.path.join(TMP, "cleanup"), "a") as f:
            f.write(tmp + "\n")
    conf = """%(user)snum-threads: 1
max-connections: %(mc)d
error-log: %(p)s/error.log
temp-buffer-path: %(tmp)s
http1-request-timeout: 10
http2-idle-timeout: 60
proxy.timeout.io: %(rt)d
proxy.timeout.keepalive: 30000
listen:
  host: %(addr)s
  port: %(port)d%(ssl)s
hosts:
  default:
    paths:
      "/":
        proxy.reverse.url: http://%(addr)s:%(up)d/
""" % {"user": "user: root\n" if os.geteuid() == 0 else "", "mc": maxconn, "p": prefix,
       "rt": int(parse_dur(read_timeout)), "addr": LOOP, "port": port, "ssl": ssl, "up": upstream,
       "tmp": tmp}
    path = prefix + "/h2o.yaml"
    with open(path, "w") as f:
        f.write(conf)
    return path


class Proxy:
    """One proxy under test; .pid is the process whose CPU and RSS we read
    (.pids: those whose CPU counts, see cpu())."""

    def __init__(self, name, upstream, read_timeout="15s", maxconn=10000, tls=None, h2=False, h2up=None,
                 hedge=None):
        """h2up: the HTTP/2-upstream rows, "grpc" (HTTP/2 from the client too)
        or "small" (HTTP/1.1 from the client); upstream is then grpc_upstream.
        hedge: a row of hedge-tail, {"row", "port", "admin", "hedge"}: upstream
        is then the list of the two servers' ports, the proxy listens on the
        row's port, and hourglass gets a YAML file (hedge mapping, if any) and
        an admin listener."""
        self.name, self.port, self.tls = name, PORTS[name], tls
        if hedge:
            self.port = hedge["port"]
        d = "%s/%s-%s%s%s%s" % (TMP, hedge["row"] if hedge else name, "h2-" if h2 else "",
                                "h2up-%s-" % h2up if h2up else "", "tls-" if tls else "",
                                "-".join(str(u) for u in upstream) if isinstance(upstream, (list, tuple))
                                else upstream)
        log = d + ".log"
        self.logs = [log, d + "/error.log"]       # its output; nginx's and h2o's error logs
        os.makedirs(d, exist_ok=True)
        if name == "floor":
            if tls:
                raise RuntimeError("the floor has no TLS")
            argv = [FLOOR, str(self.port), str(upstream)] + (["defer"] if DEFER_ACCEPT else [])
        elif name in ("hourglass", BASE):
            # a TLS listener is only written in the YAML file; without --listen
            # the file's listeners are used, and the flags below set the rest.
            # hg-base (--baseline) gets exactly the same, on its own port.
            # The HTTP/2-upstream rows: listener, pool (protocol: h2) and route
            # in a YAML file, no --listen/--upstream.
            if hedge:
                where = ["--config", write_hourglass_hedge(d, self.port, upstream, hedge["hedge"]),
                         "--admin", "%s:%d" % (LOOP, hedge["admin"])]
            elif h2up:
                where = ["--config", write_hourglass_h2up(d, self.port, upstream)]
            elif tls:
                where = ["--config", write_hourglass_tls(d, self.port, tls), "--upstream", "%s:%d" % (LOOP, upstream)]
            else:
                where = ["--listen", "%s:%d" % (LOOP, self.port), "--upstream", "%s:%d" % (LOOP, upstream)]
            argv = [HOURGLASS if name == "hourglass" else BASELINE] + where + [
                    "--connect-timeout", "1s", "--read-timeout", read_timeout,
                    "--write-timeout", "15s", "--send-timeout", "15s",
                    "--header-timeout", "10s", "--body-timeout", "15s",
                    "--idle-timeout", "60s", "--upstream-idle-timeout", "30s",
                    "--max-connections", str(maxconn), "--access-log", "off"] + (
                    ["--defer-accept", "1s"] if DEFER_ACCEPT and (name == "hourglass" or BASE_DEFER) else []) + [
                    # one process, as nginx and HAProxy run one worker here:
                    # /proc of this pid is all the CPU the proxy spends
                    "--single-process"]
        elif name == "nginx":
            if h2up and h2up != "grpc":
                raise RuntimeError("nginx has no HTTP/2 upstream but for gRPC (grpc_pass)")
            argv = ["/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else "nginx",
                    "-p", d, "-c", write_nginx_grpc(d, self.port, upstream, read_timeout) if h2up else
                    write_nginx_proxy(d, self.port, upstream, read_timeout, tls, h2),
                    "-e", d + "/error.log"]
        elif name == "haproxy":
            argv = ["/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else "haproxy",
                    "-db", "-f", write_haproxy(d, self.port, upstream, read_timeout, maxconn, tls,
                                               h2 or h2up == "grpc", server_h2=bool(h2up))]
        elif name == H2O:
            if h2up:
                raise RuntimeError("h2o 2.2 has no HTTP/2 upstream")
            if hedge:
                raise RuntimeError("h2o does not run hedge-tail")
            argv = [shutil.which("h2o") or "/usr/bin/h2o", "-c", write_h2o(d, self.port, upstream, read_timeout,
                                                                            maxconn, tls)]
        else:
            raise RuntimeError("unknown proxy %r" % name)
        self.proc = spawn(argv, cpu=CPU_PROXY, log=log)
        try:
            self.started(name)
        except BaseException:
            self.close()                          # not left running (the HTTP/2 rows go on without it)
            raise

    def started(self, name):
        self.pid = self.proc.pid
        wait_port(self.port, self.proc, name, logs=self.logs)
        if name == "nginx":                       # measure the worker, not the master
            end = time.monotonic() + 5
            kids = []
            while not kids and time.monotonic() < end:
                kids = children_of(self.proc.pid)
                time.sleep(0.02)
            if len(kids) != 1:
                raise RuntimeError("nginx: expected one worker, found %r" % kids)
            self.pid = kids[0]
            with open(os.path.join(TMP, "pids"), "a") as f:
                f.write("%d\n" % self.pid)
        self.pids = [self.pid]
        if name == H2O:
            # h2o forks helpers at start (pinned with it, as taskset's mask is
            # inherited): with a TLS listener neverbleed, which holds the
            # private key and does the handshake's signatures, and a
            # crash-report script that sleeps. Their CPU is the proxy's too:
            # every descendant counts.
            time.sleep(0.2)
            todo = children_of(self.pid)
            while todo:
                x = todo.pop()
                self.pids.append(x)
                todo += children_of(x)
            with open(os.path.join(TMP, "pids"), "a") as f:
                f.write("".join("%d\n" % x for x in self.pids[1:]))

    def last_log_line(self):
        lines = [ln for ln in log_tail(self.logs).splitlines() if ln.strip() and not ln.startswith("--- ")]
        return lines[-1].strip() if lines else ""

    def cpu(self):
        """CPU seconds so far: the measured process (plus h2o's helpers)."""
        t = cpu_ticks(self.pid)
        for pid in self.pids[1:]:
            try:
                t += cpu_ticks(pid)
            except OSError:
                pass
        return t / HZ

    def close(self):
        stop(self.proc, signal.SIGTERM)
        if self.pid != self.proc.pid:             # nginx worker, in case the master was killed
            try:
                os.kill(self.pid, signal.SIGKILL)
            except OSError:
                pass


# ----------------------------------------------------------------------------
# wrk

def parse_dur(s):
    m = re.match(r"([\d.]+)(us|ms|s|m|h)", s)
    if not m:
        return float("nan")
    return float(m.group(1)) * {"us": 1e-3, "ms": 1, "s": 1e3, "m": 6e4, "h": 3.6e6}[m.group(2)]


def parse_size(s):
    m = re.match(r"([\d.]+)([KMGT]?B)", s)
    return float(m.group(1)) * {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}[m.group(2)]


def origin_requests():
    """The requests the origin has handled so far (nginx's stub_status)."""
    c = http.client.HTTPConnection(LOOP, PORTS["origin"], timeout=5)
    try:
        c.request("GET", "/status")
        return int(c.getresponse().read().decode().splitlines()[2].split()[2])
    finally:
        c.close()


def steady_skip(conns):
    """The growth rows: the least time at the start of a wrk run left out of
    the steady-state window (wrk opening its connections, the proxy accepting
    them and filling its upstream pool): 0.6 s at 9900 connections on the bench
    machine; twice that with some margin for a loaded machine. The window also
    waits for STEADY_ROUNDS x conns requests at the origin (see run_wrk)."""
    return 0.25 + conns / 10000.0


STEADY_ROUNDS = 2      # the growth rows: the window opens once the origin has seen this many requests per connection
STEADY_TAIL = 0.2      # the growth rows: seconds before the end of the wrk run where the window closes


def steady_min(conns):
    """The growth rows: the shortest window a run is planned for (s)."""
    return 0.3 + conns / 10000.0


def steady_secs(duration, conns):
    """A growth row's run: --duration, or longer if the window would be shorter
    than steady_min (--quick: 1 s at 64 and 1000 connections, 3 s at 9900)."""
    return max(duration, int(math.ceil(steady_skip(conns) + STEADY_TAIL + steady_min(conns))))


def run_wrk(port, path, conns, secs, close=False, tls=False, window=None, suites=None):
    """window: the growth rows, the Proxy: its CPU and the origin's request
    count are also sampled when the window opens and STEADY_TAIL s before wrk
    ends (r["win_cpu"], r["win_req"]): the steady state with every connection
    open, without wrk's connection setup and teardown. The window opens
    steady_skip(conns) s after wrk starts, or later, once the origin has counted
    STEADY_ROUNDS x conns requests since the start (so every connection is
    open and has carried requests even through a proxy slow to ramp up); if
    that takes until 0.2 s before the end, it opens then, marked late.
    suites: the only TLS 1.3 suites wrk offers (WRK_TLS13_SUITES, by the shim)."""
    argv = ["wrk", "-t1", "-c%d" % conns, "-d%ds" % secs, "--latency", "--timeout", "10s"]
    if close:
        argv += ["-H", "Connection: close"]
    argv.append("%s://%s:%d%s" % ("https" if tls else "http", LOOP, port, path))
    if CPU_LOAD is not None:
        argv = ["taskset", "-c", str(CPU_LOAD)] + argv
    env = None
    if tls and (close or suites):
        # wrk would resume the previous session on each reconnect (SSL_clear
        # keeps it); the shim makes every connection a full handshake, and
        # restricts the TLS 1.3 suites wrk offers if told to
        env = dict(os.environ, LD_PRELOAD=TLS["shim"])
        env.pop("WRK_TLS13_SUITES", None)
        if suites:
            env["WRK_TLS13_SUITES"] = suites
    samples = []
    if window is not None:
        def sample():
            if CPU_LOAD is not None:                           # this thread: off the proxy's CPU
                os.sched_setaffinity(0, {CPU_LOAD})
            try:
                time.sleep(max(0.0, t0 + steady_skip(conns) - time.monotonic()))
                late = t0 + secs - STEADY_TAIL - 0.2
                while True:
                    n = origin_requests()
                    if n - n0 >= STEADY_ROUNDS * conns or time.monotonic() >= late:
                        samples.append((window.cpu(), n, time.monotonic() - t0, n - n0 < STEADY_ROUNDS * conns))
                        break
                    time.sleep(0.05)
                time.sleep(max(0.0, t0 + secs - STEADY_TAIL - time.monotonic()))
                n = origin_requests()
                samples.append((window.cpu(), n, time.monotonic() - t0, False))
            except (OSError, ValueError, IndexError, http.client.HTTPException):
                pass
        n0 = origin_requests()
        t0 = time.monotonic()
        th = threading.Thread(target=sample)
        th.start()
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=secs + 60, env=env).stdout
    finally:
        if window is not None:
            th.join()
    r = {"raw": out}
    if window is not None:
        if len(samples) != 2 or samples[1][1] <= samples[0][1]:
            raise RuntimeError("%d connections: no steady-state window (the proxy's CPU and the origin's request "
                               "count (its /status) could not be sampled %.2f s or more after wrk started and %.1f s "
                               "before it ended; is the origin up? a longer --duration may help)" % (
                                   conns, steady_skip(conns), STEADY_TAIL))
        r["win_cpu"] = samples[1][0] - samples[0][0]
        r["win_req"] = samples[1][1] - samples[0][1]
        r["win_start"], r["win_end"], r["win_late"] = samples[0][2], samples[1][2], samples[0][3]
    m = re.search(r"(\d+) requests in ([\d.]+\w+), ([\d.]+\w+) read", out)
    if not m:
        raise RuntimeError("cannot parse wrk output:\n" + out)
    r["requests"] = int(m.group(1))
    r["bytes"] = parse_size(m.group(3))
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    r["rps"] = float(m.group(1)) if m else 0.0
    for q in ("50", "99"):
        m = re.search(r"^\s+%s%%\s+(\S+)" % q, out, re.M)
        r["p" + q] = parse_dur(m.group(1)) if m else float("nan")
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    r["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    r["errors"] = sum(int(x) for x in m.groups()) if m else 0
    r["errdetail"] = m.group(0) if m else ""
    return r


def grpc_args():
    """h2load's arguments for a gRPC unary call: POST of the request file (a
    length-prefixed message: flag 0, 4-byte big-endian length, the payload;
    h2load sends it with content-length) with gRPC's request headers."""
    argv = ["-d", GRPC_REQ]
    for h in GRPC_HEADERS:
        argv += ["-H", h]
    return argv


def run_h2load(port, path, secs, tls, conns=H2_CONNS, streams=H2_STREAMS, n=None, timeout=None, extra=()):
    """h2load (nghttp2): HTTP/2 with prior knowledge on http:// (h2c), ALPN h2
    only on https:// (a server that does not select h2 fails rather than being
    measured on HTTP/1.1). One thread, `conns` connections x `streams` streams,
    for `secs` seconds (-D), or n requests in all if n is given. TLS: h2load's
    defaults (session handling included) but for the one TLS 1.3 suite.
    extra: more arguments (grpc_args())."""
    argv = ["h2load", "-t1", "-c%d" % conns, "-m%d" % streams] + list(extra)
    argv += ["-n%d" % n] if n else ["-D%d" % secs]
    if tls:
        argv += ["--npn-list=h2", "--tls13-ciphers=" + H2_TLS13_CIPHER]
    argv.append("%s://%s:%d%s" % ("https" if tls else "http", LOOP, port, path))
    if CPU_LOAD is not None:
        argv = ["taskset", "-c", str(CPU_LOAD)] + argv
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout or secs + 60)
    except subprocess.TimeoutExpired:
        raise RuntimeError("h2load did not finish within %d s" % (timeout or secs + 60))
    out = p.stdout
    r = {"raw": out}
    m = re.search(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored, (\d+) timeout", out, re.M)
    if not m:
        raise RuntimeError("cannot parse h2load output (exit status %d):\n%s%s" % (
            p.returncode, out[-2000:], p.stderr[-2000:]))
    r["total"], r["started"], r["done"], r["requests"], r["failed"], r["errored"], r["timeout"] = (
        int(x) for x in m.groups())
    m = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out, re.M)
    r["codes"] = [int(x) for x in m.groups()] if m else [0, 0, 0, 0]
    r["non2xx"] = sum(r["codes"][1:])
    m = re.search(r"^traffic: \S+ \((\d+)\) total", out, re.M)
    r["bytes"] = int(m.group(1)) if m else 0
    m = re.search(r"^traffic: .* \((\d+)\) data", out, re.M)
    r["data"] = int(m.group(1)) if m else -1
    m = re.search(r"^finished in [\d.]+\w+, ([\d.]+) req/s", out, re.M)
    r["rps"] = float(m.group(1)) if m else 0.0
    m = re.search(r"^time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", out, re.M)
    r["min"], r["max"], r["mean"], r["sd"] = (parse_dur(x) for x in m.groups()) if m else (float("nan"),) * 4
    r["p50"] = r["p99"] = float("nan")                         # h2load gives no percentiles
    m = re.search(r"^Application protocol: (\S+)", out, re.M)
    r["proto"] = m.group(1) if m else "none"
    for k, pat in (("version", r"^TLS Protocol: (\S+)"), ("cipher", r"^Cipher: (\S+)"),
                   ("group", r"^Server Temp Key: (\S+)")):
        m = re.search(pat, out, re.M)
        r[k] = m.group(1) if m else "?"
    # "failed" counts every request that did not succeed: errored (reset,
    # closed, refused), timed out and non-2xx/3xx answers alike
    r["errors"] = r["failed"]
    r["errlabel"] = "failed"
    r["errdetail"] = "h2load: %d failed, %d errored, %d timeout" % (r["failed"], r["errored"], r["timeout"])
    r["stderr"] = p.stderr.strip()
    return r


def h2_probe(port, tls, grpc=False):
    """A few requests over one HTTP/2 connection before measuring: the
    protocol h2load ended up with, TLS version/cipher/group, and whether they
    all succeeded. grpc: gRPC calls (grpc-unary), whose answers must also hold
    the echoed messages (DATA bytes = calls x message size). Returns (info,
    None) or (info, why it is not usable)."""
    try:
        r = run_h2load(port, GRPC_PATH if grpc else "/small", 0, tls, conns=1, streams=H2_STREAMS, n=H2_STREAMS,
                       timeout=15, extra=grpc_args() if grpc else ())
    except RuntimeError as e:
        return {}, str(e).splitlines()[0]
    want = "h2" if tls else "h2c"
    if r["proto"] != want:
        err = (r["stderr"].splitlines() or [""])[-1]
        return r, "no HTTP/2: h2load negotiated %s, expected %s%s" % (
            "no protocol" if r["proto"] == "none" else r["proto"], want, " (%s)" % err if err else "")
    if r["requests"] != H2_STREAMS or r["codes"][0] != H2_STREAMS:
        return r, "%s: %d of %d requests answered 2xx (h2load: %d failed, %d errored, %d timeout; " \
                  "2xx/3xx/4xx/5xx %s)" % (want, r["codes"][0], H2_STREAMS, r["failed"], r["errored"], r["timeout"],
                                           "/".join(str(x) for x in r["codes"]))
    if tls and r["version"] != "TLSv1.3":
        return r, "expected TLSv1.3, got %s" % r["version"]
    if grpc and r["data"] != H2_STREAMS * (5 + GRPC_MSG):
        return r, "gRPC: %d bytes of response DATA for %d calls, expected %d (%d-byte messages echoed)" % (
            r["data"], H2_STREAMS, H2_STREAMS * (5 + GRPC_MSG), 5 + GRPC_MSG)
    return r, None


def http1_probe(port, n=3):
    """h2-upstream-small: n GET /small over one HTTP/1.1 keep-alive connection
    before measuring; each must answer 200 with the 100-byte body. Returns
    (info, None) or (info, why it is not usable)."""
    info = {"ok": 0, "n": n, "statuses": []}
    try:
        c = http.client.HTTPConnection(LOOP, port, timeout=5)
        for _ in range(n):
            c.request("GET", "/small")
            r = c.getresponse()
            body = r.read()
            info["statuses"].append(r.status)
            if r.status == 200 and body == SMALL_BODY.encode():
                info["ok"] += 1
        c.close()
    except (OSError, http.client.HTTPException) as e:
        return info, "GET /small: %s: %s" % (type(e).__name__, e)
    if info["ok"] != n:
        return info, "GET /small: %d of %d answered 200 with the 100-byte body (statuses %s)" % (
            info["ok"], n, info["statuses"])
    return info, None


GRPCIO_CALLS = 3       # grpc-unary: calls the grpcio check makes on one channel
GRPCIO_TIMEOUT = 2.0   # each one's deadline (s)


def grpcio_check(port):
    """grpc-unary: GRPCIO_CALLS unary calls with a real gRPC client (python3-grpcio,
    if installed) on one channel, before measuring. Informational: h2load, which
    measures, sends content-length and no real client does; the result is listed
    under the table and does not stop the row."""
    argv = [PY, os.path.abspath(__file__), "_grpcio", str(port)]
    if CPU_LOAD is not None:
        argv = ["taskset", "-c", str(CPU_LOAD)] + argv
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        return json.loads(p.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, ValueError, IndexError) as e:
        return {"error": "%s %s" % (type(e).__name__, (p.stderr.strip().splitlines() or [""])[-1]
                                    if "p" in locals() else "")}


def grpcio_summary(g):
    if "skipped" in g or "error" in g:
        return g.get("skipped") or "check failed: " + g["error"]
    return ", ".join("%s%s %.0f ms" % (c["code"], "" if c["echo"] or c["code"] != "OK" else " (not the echo)", c["ms"])
                     for c in g["calls"])


def grpcio_ok(g):
    return "calls" in g and all(c["code"] == "OK" and c["echo"] for c in g["calls"])


AB_CONC = 50           # small-ab-k: ab -c
AB_PER_SECOND = 40000  # small-ab-k: default requests per run = this * --duration


def run_ab(port, path, conc, n):
    """ab -k -c conc -n n: HTTP/1.0 requests with "Connection: Keep-Alive".
    "Keep-Alive requests" counts the responses after which the proxy kept the
    connection open; a proxy that closes it makes ab open a new one."""
    argv = ["ab", "-k", "-q", "-r", "-s", "10", "-c", str(conc), "-n", str(n),
            "http://%s:%d%s" % (LOOP, port, path)]
    if CPU_LOAD is not None:
        argv = ["taskset", "-c", str(CPU_LOAD)] + argv
    p = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    out = p.stdout

    def num(pat, default=None):
        m = re.search(pat, out, re.M)
        if m:
            return float(m.group(1))
        if default is None:
            raise RuntimeError("cannot parse ab output (exit status %d):\n%s%s" % (p.returncode, out, p.stderr[-2000:]))
        return default

    r = {"raw": out, "n": n}
    r["requests"] = int(num(r"^Complete requests:\s+(\d+)"))
    r["failed"] = int(num(r"^Failed requests:\s+(\d+)"))
    r["keepalive"] = int(num(r"^Keep-Alive requests:\s+(\d+)"))
    r["non2xx"] = int(num(r"^Non-2xx responses:\s+(\d+)", 0))
    r["bytes"] = num(r"^Total transferred:\s+(\d+) bytes", 0)
    r["rps"] = num(r"^Requests per second:\s+([\d.]+)", 0)
    for q in ("50", "99"):                                     # whole milliseconds
        r["p" + q] = num(r"^\s+%s%%\s+(\d+)" % q, float("nan"))
    m = re.search(r"^Failed requests:.*\n\s+\((.*)\)", out, re.M)
    r["errdetail"] = m.group(1) if m else ""
    r["errors"] = r["failed"]
    r["errlabel"] = "failed"
    return r


# ----------------------------------------------------------------------------
# TLS: a certificate for the proxies, the wrk shim, a probe of what is negotiated

def make_tls(d):
    """ECDSA P-256 self-signed certificate + key (and both in one PEM file for
    HAProxy) with the openssl CLI, and the wrk shim (bench/wrk_fresh_tls.c)."""
    os.makedirs(d, exist_ok=True)
    t = {"cert": d + "/cert.pem", "key": d + "/key.pem", "pem": d + "/combined.pem",
         "shim": d + "/wrk_fresh_tls.so"}
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", t["key"], "-out", t["cert"], "-days", "2",
                        "-subj", "/CN=bench.test", "-addext", "subjectAltName=DNS:bench.test,IP:127.0.0.1"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("openssl req failed:\n" + r.stderr)
    with open(t["pem"], "w") as f:
        f.write(open(t["cert"]).read() + open(t["key"]).read())
    r = subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-shared", "-fPIC", "-o", t["shim"],
                        os.path.join(HERE, "wrk_fresh_tls.c"), "-ldl"], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("cannot build the wrk shim:\n" + r.stderr)
    return t


def tls_probe(port, suites=None):
    """One request with openssl s_client (the same library defaults as wrk):
    what the proxy negotiates, how many session tickets it sends, the status.
    suites: the only TLS 1.3 suites offered (as wrk does in that row)."""
    req = "GET /small HTTP/1.1\r\nHost: bench.test\r\nConnection: close\r\n\r\n"
    try:
        out = subprocess.run(["openssl", "s_client", "-connect", "%s:%d" % (LOOP, port), "-servername",
                              "bench.test", "-ign_eof"] + (["-ciphersuites", suites] if suites else []),
                             input=req, capture_output=True, text=True, timeout=10).stdout
    except subprocess.TimeoutExpired:
        out = ""
    m = re.search(r"^New, (\S+), Cipher is (\S+)", out, re.M)
    g = re.search(r"^Server Temp Key: ([^,\n]+)", out, re.M)
    sig = re.search(r"^Peer signature type: (\S+)", out, re.M)
    st = re.search(r"^HTTP/1\.1 (\d+)", out, re.M)
    return {"version": m.group(1) if m else "?", "cipher": m.group(2) if m else "?",
            "group": g.group(1) if g else "?", "sig": sig.group(1) if sig else "?",
            "tickets": out.count("New Session Ticket arrived"), "status": st.group(1) if st else "none"}


# ----------------------------------------------------------------------------
# helper roles (run as separate processes, pinned with the load generator)

def role_slow(port, logpath):
    """An upstream that accepts, reads and never answers. For each request
    line "GET /slow/TAG/I" it appends "TAG I T" to logpath, T being the
    kernel's receive timestamp (CLOCK_REALTIME) of its first bytes."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    ts_opt = getattr(socket, "SO_TIMESTAMPNS", 35)
    log = open(logpath, "a")
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.setsockopt(socket.SOL_SOCKET, ts_opt, 1)
    ls.bind((LOOP, port))
    ls.listen(4096)
    ls.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(ls, selectors.EVENT_READ)
    while True:
        evs = sel.select(0.05)
        if not evs:
            log.flush()
        for key, _ in evs:
            if key.fileobj is ls:
                while True:
                    try:
                        c, _ = ls.accept()
                    except BlockingIOError:
                        break
                    c.setblocking(False)
                    c.setsockopt(socket.SOL_SOCKET, ts_opt, 1)
                    sel.register(c, selectors.EVENT_READ, [b"", None])
            else:
                st = key.data
                try:
                    data, anc, _, _ = key.fileobj.recvmsg(65536, socket.CMSG_SPACE(16))
                except OSError:
                    data, anc = b"", []
                if not data:
                    sel.unregister(key.fileobj)
                    key.fileobj.close()
                    continue
                for lvl, typ, val in anc:
                    if st[1] is None and lvl == socket.SOL_SOCKET and typ == ts_opt and len(val) >= 16:
                        sec, nsec = struct.unpack("qq", val[:16])
                        st[1] = sec + nsec * 1e-9
                if st[0] is not None:
                    st[0] += data
                    m = re.match(rb"[A-Z]+ /slow/(\w+)/(\d+) ", st[0])
                    if m:
                        log.write("%s %s %.6f\n" % (m.group(1).decode(), m.group(2).decode(), st[1] or time.time()))
                        st[0] = None
                    elif len(st[0]) > 4096:
                        st[0] = None


def open_many(port, n, request, on_response, batch=500, deadline=60.0, kernel_ts=False,
              spread=0.0):
    """Open n connections (batch at a time), send `request` on each when it is
    connected and call on_response(i, t_sent, t_got, first_bytes) per reply.
    With kernel_ts, t_got is the kernel's receive timestamp of the reply
    (SO_TIMESTAMPNS) and times are CLOCK_REALTIME, so the client's own delay
    in getting round to a socket does not count. With spread > 0, connection i
    is started no earlier than i * spread / n seconds after the first. Returns
    the sockets (kept open) and the number that failed."""
    clock = time.time if kernel_ts else time.monotonic
    ts_opt = getattr(socket, "SO_TIMESTAMPNS", 35)
    sel = selectors.DefaultSelector()
    socks, sent, failed = [None] * n, [0.0] * n, 0
    buf, buf_t = {}, {}
    started = pending = 0
    t_begin = time.monotonic()
    end = t_begin + deadline
    while (started < n or pending) and time.monotonic() < end:
        while started < n and pending < batch and (
                not spread or time.monotonic() >= t_begin + started * spread / n):
            s = socket.socket()
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if kernel_ts:
                s.setsockopt(socket.SOL_SOCKET, ts_opt, 1)
            try:
                s.connect((LOOP, port))
            except BlockingIOError:
                pass
            socks[started] = s
            sel.register(s, selectors.EVENT_WRITE, started)
            started += 1
            pending += 1
        for key, ev in sel.select(0.001 if spread and started < n else 0.5):
            i = key.data
            s = key.fileobj
            if ev & selectors.EVENT_WRITE and not sent[i]:
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    sel.unregister(s)
                    failed += 1
                    pending -= 1
                    continue
                s.send(request[i] if isinstance(request, list) else request)
                sent[i] = clock()
                sel.modify(s, selectors.EVENT_READ, i)
                continue
            t = None
            try:
                data, anc, _, _ = s.recvmsg(65536, socket.CMSG_SPACE(16))
                for lvl, typ, val in anc:
                    if lvl == socket.SOL_SOCKET and typ == ts_opt and len(val) >= 16:
                        sec, nsec = struct.unpack("qq", val[:16])
                        t = sec + nsec * 1e-9
            except OSError:
                data = b""
            if t is None:
                t = clock()
            b = buf.get(i, b"") + data
            if not data or b"\r\n\r\n" in b:
                sel.unregister(s)
                pending -= 1
                first = buf.pop(i, None)
                on_response(i, sent[i], t if first is None else buf_t.pop(i, t), b if data else b"")
                if not data:
                    failed += 1
            else:
                buf[i] = b
                buf_t.setdefault(i, t)
    return socks, failed


def role_idle(port, n):
    """Open n connections, one request each, read each response, keep them
    open; print one JSON line when done and wait for stdin to close."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    codes = {}

    def on_resp(i, t0, t1, head):
        code = head[9:12].decode("ascii", "replace") if head else "none"
        codes[code] = codes.get(code, 0) + 1

    req = b"GET /small HTTP/1.1\r\nHost: bench\r\n\r\n"
    socks, failed = open_many(port, n, req, on_resp, batch=200)
    print(json.dumps({"codes": codes, "failed": failed}), flush=True)
    sys.stdin.read()
    for s in socks:
        if s:
            s.close()


IDLE_SETTLE_S = 2.5    # idle-10k: seconds idle before RSS is sampled
TIMER_MS = 3000        # read timeout in the timer scenario
# the status a proxy answers a read timeout with: 504, but h2o 2.2 answers every
# upstream error, an I/O timeout included, with "502 Gateway Error"
TIMEOUT_REPLY = {H2O: "502"}
TIMER_SPREAD_S = 2.0   # requests sent evenly over this time (< TIMER_MS)
# Lateness is taken from the upstream's kernel receive time of each request,
# which follows the moment the proxy finished sending it (when its read clock
# starts) by the loopback delivery time: a reading down to -0.1 ms is that
# delivery time, not an early timeout.
EARLY_SLACK_MS = 0.1


def cpu_steal_ms(cpu):
    """Milliseconds the hypervisor has taken from CPU `cpu` (all CPUs when
    None) since boot: the steal column of /proc/stat. A timer cannot fire
    while its CPU is stolen, so the timer row reports it per round."""
    name = "cpu" if cpu is None else "cpu%d" % cpu
    try:
        with open("/proc/stat") as f:
            for line in f:
                w = line.split()
                if w and w[0] == name and len(w) > 8:
                    return int(w[8]) * 1000.0 / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        pass
    return float("nan")


GAP_HZ = 2000          # --cpu-gaps: samples per second of the proxy's CPU
GAP_MS = 2.0           # no sample for longer than this: the virtual CPU was not running


def gap_probe_start(cpu, path):
    """--cpu-gaps: samples CPU `cpu` at GAP_HZ with perf (cpu-clock, every
    task, idle included, on CLOCK_MONOTONIC) until gap_probe_stop; None when
    perf is missing or refuses. The samples come from a timer interrupt that
    fires whatever the CPU runs: a stretch with none means the virtual CPU
    itself did not run (the hypervisor held it, or woke it late from a halt)."""
    perf = shutil.which("perf")
    if perf is None or cpu is None:
        return None
    try:
        pr = subprocess.Popen([perf, "record", "-q", "-k", "CLOCK_MONOTONIC", "-a", "-C", str(cpu),
                               "-e", "cpu-clock", "-F", str(GAP_HZ), "-o", path, "--", "sleep", "600"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        return None
    time.sleep(0.3)                                  # (perf's own start-up)
    return (pr, path) if pr.poll() is None else None


def gap_probe_stop(probe):
    """The gaps of the samples, [(start, end)] in CLOCK_REALTIME seconds, or
    None without a probe."""
    if probe is None:
        return None
    pr, path = probe
    pr.send_signal(signal.SIGINT)
    try:
        pr.wait(timeout=20)
        out = subprocess.run([shutil.which("perf"), "script", "-i", path, "-F", "time"],
                             capture_output=True, text=True, timeout=120).stdout
    except (OSError, subprocess.TimeoutExpired):
        pr.kill()
        return None
    off = time.time() - time.monotonic()
    ts = []
    for line in out.split():
        try:
            ts.append(float(line.rstrip(":")))
        except ValueError:
            pass
    ts.sort()
    return [(a + off, b + off) for a, b in zip(ts, ts[1:]) if (b - a) * 1000.0 > GAP_MS]


def role_timer(port, n, tag):
    """n requests in flight against a silent upstream; per request: the time it
    was sent and the kernel receive time of the reply (CLOCK_REALTIME)."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    res = []

    def on_resp(i, t0, t1, head):
        code = head[9:12].decode("ascii", "replace") if head else "none"
        res.append((i, code, t0, t1))

    reqs = [b"GET /slow/%s/%d HTTP/1.1\r\nHost: bench\r\n\r\n" % (tag.encode(), i) for i in range(n)]
    # Paced: the requests go out evenly over TIMER_SPREAD_S, so that at the
    # peak all n timers are armed, yet they expire a few per millisecond:
    # lateness then measures the timers, not the time to serve a herd of
    # thousands of timeouts falling due in the same millisecond.
    socks, failed = open_many(port, n, reqs, on_resp, batch=n, deadline=30.0, kernel_ts=True,
                              spread=TIMER_SPREAD_S)
    for s in socks:
        if s:
            s.close()
    print(json.dumps({"res": res, "failed": failed, "n": n}), flush=True)


def role_grpcio(port):
    """GRPCIO_CALLS unary calls of GRPC_PATH with python3-grpcio on one channel
    (one HTTP/2 connection), a GRPC_MSG-byte message each; one JSON line."""
    try:
        import grpc                                            # python3-grpcio, optional
    except ImportError:
        print(json.dumps({"skipped": "python3-grpcio is not installed: no check with a real gRPC client"}))
        return
    ch = grpc.insecure_channel("%s:%d" % (LOOP, port), options=[("grpc.enable_http_proxy", 0)])
    call = ch.unary_unary(GRPC_PATH)
    res = []
    for i in range(GRPCIO_CALLS):
        payload = (b"%d" % i) * GRPC_MSG
        payload = payload[:GRPC_MSG]
        t0 = time.monotonic()
        try:
            resp, c = call.with_call(payload, timeout=GRPCIO_TIMEOUT)
            res.append({"code": c.code().name, "echo": resp == payload, "ms": (time.monotonic() - t0) * 1e3})
        except grpc.RpcError as e:
            res.append({"code": e.code().name, "echo": False, "ms": (time.monotonic() - t0) * 1e3})
    ch.close()
    print(json.dumps({"calls": res}), flush=True)


def role_upload(port, conns, count, size, chunk):
    """`count` chunked uploads of `size` bytes over `conns` keep-alive connections."""
    piece = bytes(range(256)) * (chunk // 256)
    body = (b"%x\r\n" % chunk + piece + b"\r\n") * (size // chunk) + b"0\r\n\r\n"
    req = (b"POST /upload HTTP/1.1\r\nHost: bench\r\nContent-Type: application/octet-stream\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n" + body)
    lat, codes, errors = [], {}, [0]
    lock = threading.Lock()
    per = [count // conns + (1 if i < count % conns else 0) for i in range(conns)]

    def worker(k):
        s = None
        for _ in range(per[k]):
            try:
                if s is None:
                    s = socket.create_connection((LOOP, port))
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                t0 = time.monotonic()
                s.sendall(req)
                data = b""
                while b"\r\n\r\n" not in data:
                    d = s.recv(65536)
                    if not d:
                        raise ConnectionError("closed")
                    data += d
                head, rest = data.split(b"\r\n\r\n", 1)
                m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
                need = int(m.group(1)) if m else 0
                while len(rest) < need:
                    d = s.recv(65536)
                    if not d:
                        raise ConnectionError("closed")
                    rest += d
                t1 = time.monotonic()
                code = head[9:12].decode()
                with lock:
                    lat.append((t1 - t0) * 1000)
                    codes[code] = codes.get(code, 0) + 1
                if re.search(rb"(?i)\r\nconnection:\s*close", head):
                    s.close()
                    s = None
            except OSError:
                with lock:
                    errors[0] += 1
                if s:
                    s.close()
                s = None
        if s:
            s.close()

    t0 = time.monotonic()
    ths = [threading.Thread(target=worker, args=(k,)) for k in range(conns)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    el = time.monotonic() - t0
    lat.sort()
    ok = sum(v for c, v in codes.items() if c.startswith("2"))
    print(json.dumps({"requests": len(lat), "ok": ok, "codes": codes, "errors": errors[0],
                      "elapsed": el, "bytes": len(lat) * size,
                      "rps": len(lat) / el if el else 0,
                      "p50": pct(lat, 50), "p99": pct(lat, 99)}), flush=True)


def pct(xs, q):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = max(0, min(len(xs) - 1, int(round(q / 100.0 * len(xs) + 0.5)) - 1))
    return xs[k]


def up_get(path):
    """hedge-tail: GET /count or /reset of hedge_upstream (its first port), as JSON."""
    c = http.client.HTTPConnection(LOOP, HEDGE_UP_PORTS[0], timeout=5)
    try:
        c.request("GET", path)
        return json.loads(c.getresponse().read())
    finally:
        c.close()


def hg_hedges(admin):
    """hedge-tail: hedges started, from hourglass's /metrics (None if unreadable):
    hourglass_hedges_started_total (called hourglass_hedges_total, without
    labels, before issue 18's metrics)."""
    try:
        c = http.client.HTTPConnection(LOOP, admin, timeout=5)
        c.request("GET", "/metrics")
        body = c.getresponse().read().decode("ascii", "replace")
        c.close()
    except (OSError, http.client.HTTPException):
        return None
    m = re.search(r"^hourglass_hedges_(?:started_)?total (\d+)", body, re.M)
    return int(m.group(1)) if m else None


def pct_rank(xs, q):
    """hedge-tail: the nearest-rank percentile, exactly: the ceil(q/100 x n)-th
    smallest sample (p99.9 of 30,000: the 29,970th, 30 samples above it)."""
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = math.ceil(round(q * len(xs) / 100.0, 6))
    return xs[max(0, min(len(xs), k) - 1)]


def helper(argv, cpu=None, **kw):
    return spawn([PY, os.path.abspath(__file__)] + argv, cpu=cpu, **kw)


# ----------------------------------------------------------------------------
# the benchmark

def order_for(rnd, u):
    """Round rnd's order: a rotation of the proxies u, reversed every other round."""
    k = rnd % len(u)
    o = u[k:] + u[:k]
    return list(reversed(o)) if rnd % 2 else o


class Bench:
    def __init__(self, a):
        self.a = a
        self.results = {}          # (scenario, proxy) -> list of run dicts
        self.tls_info = {}         # (scenario, proxy) -> what tls_probe() found
        self.h2_info = {}          # (scenario, proxy) -> what h2_probe() found
        self.failed = {}           # (scenario, proxy) -> why that cell has no figure (HTTP/2 rows)
        self.grpcio = {}           # (scenario, proxy) -> what grpcio_check() found (grpc-unary)
        self.h2up = None           # grpc_upstream, once an HTTP/2-upstream row runs
        self.hedge = {}            # hedge-tail: row -> list of run dicts
        self.hedge_na = {}         # hedge-tail: row -> why it has no figure (not available, failed)
        self.hedge_info = {}       # hedge-tail: row -> notes (log lines, config)
        self.step = 0
        self.total = 0

    def proxies_for(self, s):
        """The proxies a scenario runs: those selected, less the floor where it cannot take
        part, and what cannot run the row (NOT_SUPPORTED)."""
        return [p for p in PROXIES if p in self.a.proxies and not (p == "floor" and s in NO_FLOOR)
                and (s, p) not in NOT_SUPPORTED]

    def order(self, rnd, s):
        # rotated over the proxies of the scenario's kind: every proxy in the
        # HTTP/1 and TLS rows (the floor dropped after where it does not run);
        # the HTTP/2 rows without the floor; the HTTP/2-upstream rows over
        # hourglass (hg-base), nginx and HAProxy
        if s in H2UP_SCEN:
            u = [p for p in PROXIES if p not in ("floor", H2O)]
        else:
            u = [p for p in PROXIES if p != "floor" or s not in H2_SCEN]
        return [p for p in order_for(rnd, u) if p in self.proxies_for(s)]

    def progress(self, rnd, proxy, scen, extra=""):
        self.step += 1
        print("[%d/%d] round %d %-9s %-14s ...%s" % (self.step, self.total, rnd + 1, proxy, scen, extra),
              end="", flush=True)

    def count_steps(self, scens):
        n = 0
        for s, kind, _ in SCENARIOS:
            if s in scens:
                n += self.a.rounds * len(self.hedge_rows() if s == HEDGE_SCEN else self.proxies_for(s))
        self.total = n

    def run(self, scens):
        self.count_steps(scens)
        for s, kind, desc in SCENARIOS:
            if s not in scens:
                continue
            print("== %s: %s" % (s, desc), flush=True)
            if not self.proxies_for(s):
                print("   (none of the selected proxies runs it)", flush=True)
                continue
            if s in H2UP_SCEN and self.h2up is None:
                # the HTTP/2 upstream, pinned with the origin and the load generator
                self.h2up = spawn([H2UP_BIN, str(H2UP_PORT), str(H2UP_MAX_STREAMS)], cpu=CPU_LOAD,
                                  log=os.path.join(TMP, "grpc_upstream.log"))
                wait_port(H2UP_PORT, self.h2up, "grpc_upstream", logs=[os.path.join(TMP, "grpc_upstream.log")])
            getattr(self, "scen_" + kind)(s)

    def fleet(self, upstream=PORTS["origin"], read_timeout="15s", names=PROXIES, maxconn=10000, tls=None):
        fl = {}
        try:
            for n in names:
                fl[n] = Proxy(n, upstream, read_timeout, maxconn, tls)
        except BaseException:
            for x in fl.values():
                x.close()
            raise
        return fl

    def scen_wrk(self, s):
        a = self.a
        path, conns, close = {"small-ka-64": ("/small", 64, False),
                              "small-ka-1000": ("/small", 1000, False),
                              "small-ka-9900": ("/small", BIG_CONNS, False),
                              "conn-close": ("/small", 64, True),
                              "tls-keepalive": ("/small", 64, False),
                              "tls-handshake": ("/small", 64, True),
                              "tls-handshake-aes256": ("/small", 64, True),
                              "resp-1m": ("/1m", 16, False),
                              "resp-64m": ("/64m", 4, False)}[s]
        tls = s in TLS_SCEN
        suites = WRK_TLS13_SUITES.get(s)
        names = self.proxies_for(s)
        if s == "small-ka-9900":
            return self.scen_big(s, path, conns)
        fl = self.fleet(names=names, tls=TLS if tls else None)
        try:
            if tls:                                            # same protocol, cipher, group for all?
                for p in names:
                    i = self.tls_info[(s, p)] = tls_probe(fl[p].port, suites)
                    print("   %-9s %s %s, %s, %s certificate, %d session ticket(s), status %s" % (
                        p, i["version"], i["cipher"], i["group"], i["sig"], i["tickets"], i["status"]), flush=True)
                    if i["version"] != "TLSv1.3" or i["status"] != "200":
                        raise RuntimeError("%s: expected TLSv1.3 and a 200 from %s, got %s and %s" % (
                            s, p, i["version"], i["status"]))
                    if suites and i["cipher"] not in suites.split(":"):
                        raise RuntimeError("%s: offered only %s, %s negotiated %s" % (s, suites, p, i["cipher"]))
            for p in names:                                    # warm-up, not measured
                run_wrk(fl[p].port, path, conns, a.warmup, close, tls, suites=suites)
            if s in dict(GROWTH):
                # the growth rows: CPU per request in the steady state (a window
                # inside the run, see run_wrk), the run long enough for some of it
                secs = steady_secs(a.duration, conns)
                self.measure(s, fl, lambda x: run_wrk(x.port, path, conns, secs, close, tls, window=x,
                                                      suites=suites))
            else:
                self.measure(s, fl, lambda x: run_wrk(x.port, path, conns, a.duration, close, tls, suites=suites))
        finally:
            for x in fl.values():
                x.close()

    def scen_big(self, s, path, conns):
        """small-ka-9900: a fresh proxy for each measurement (started, warmed up,
        measured, stopped), as in idle-10k. With every proxy up at once, the idle
        upstream connections each keeps after its warm-up (9900 for hourglass,
        HAProxy and h2o) would add up to more than the origin's 20,000
        descriptors and the 28,000 local ports to its one address."""
        a = self.a
        secs = steady_secs(a.duration, conns)
        for rnd in range(a.rounds):
            for p in self.order(rnd, s):
                self.progress(rnd, p, s)
                x = self.fleet(names=[p])[p]
                try:
                    run_wrk(x.port, path, conns, a.warmup)      # warm-up, not measured
                    c0 = x.cpu()
                    r = run_wrk(x.port, path, conns, secs, window=x)
                    time.sleep(0.2)                            # let it finish closing
                    r["cpu"] = x.cpu() - c0
                    self.record(s, p, r)
                finally:
                    x.close()

    def measure(self, s, fl, go):
        """The measured runs: every round, each proxy in that round's order, with
        its CPU ticks read before and after go(proxy) runs the client."""
        for rnd in range(self.a.rounds):
            for p in self.order(rnd, s):
                self.progress(rnd, p, s)
                c0 = fl[p].cpu()                               # h2o: with its helpers
                r = go(fl[p])
                time.sleep(0.2)                                # let it finish closing
                r["cpu"] = fl[p].cpu() - c0
                self.record(s, p, r)

    def scen_h2load(self, s):
        """The HTTP/2 rows. Unlike the others, a proxy that cannot do the row
        (it does not start, does not speak HTTP/2 on that listener, or fails
        during a run) does not stop the benchmark: its cell is marked failed
        with the reason, and the other proxies go on."""
        a = self.a
        tls = s in H2_TLS
        fl = {}

        def fail(p, why):
            if p in fl and fl[p].last_log_line():
                why += "; its log ends: " + fl[p].last_log_line()
            self.failed[(s, p)] = why
            self.results.pop((s, p), None)                     # no figure from a part of the rounds
            print("   %-9s !! FAILED: %s -- no figure for it in %s; the others go on" % (p, why, s), flush=True)
            if p in fl:
                fl.pop(p).close()

        try:
            for p in self.proxies_for(s):
                try:
                    fl[p] = Proxy(p, PORTS["origin"], tls=TLS if tls else None, h2=True)
                except (RuntimeError, OSError) as e:
                    ls = [ln for ln in str(e).splitlines() if ln.strip() and not ln.startswith("--- ")]
                    fail(p, "did not start: %s" % " | ".join(ls[:1] + ls[1:][-3:]))
                    continue
                i, why = h2_probe(fl[p].port, tls)
                if i:
                    self.h2_info[(s, p)] = i
                    print("   %-9s protocol %s%s, %d/%d answered 2xx" % (
                        p, i["proto"], " (%s %s, %s)" % (i["version"], i["cipher"], i["group"]) if tls else "",
                        i["codes"][0], H2_STREAMS), flush=True)
                if why:
                    fail(p, why)
            for p in list(fl):                                 # warm-up, not measured
                try:
                    r = run_h2load(fl[p].port, "/small", a.warmup, tls)
                    if not r["requests"]:
                        fail(p, "warm-up: no request succeeded (%s)" % r["errdetail"])
                except RuntimeError as e:
                    fail(p, "warm-up: %s" % str(e).splitlines()[0])
            for rnd in range(a.rounds):
                for p in self.order(rnd, s):
                    self.progress(rnd, p, s)
                    if p not in fl:
                        print(" !! skipped: %s failed in %s (reason above)" % (p, s), flush=True)
                        continue
                    x = fl[p]
                    try:
                        c0 = x.cpu()
                        r = run_h2load(x.port, "/small", a.duration, tls)
                        time.sleep(0.2)                        # let it finish closing
                        if x.proc.poll() is not None:
                            raise RuntimeError("exited during the run (status %s)" % x.proc.returncode)
                        r["cpu"] = x.cpu() - c0
                    except (RuntimeError, OSError) as e:
                        print(" !! FAILED", flush=True)
                        fail(p, "round %d: %s" % (rnd + 1, str(e).splitlines()[0]))
                        continue
                    if not r["requests"]:
                        print(" !! FAILED", flush=True)
                        fail(p, "round %d: no request succeeded (%s)" % (rnd + 1, r["errdetail"]))
                        continue
                    self.record(s, p, r)
        finally:
            for x in fl.values():
                x.close()

    def scen_grpc(self, s):
        self.h2up_rows(s)

    def scen_h2up(self, s):
        self.h2up_rows(s)

    def h2up_rows(self, s):
        """The HTTP/2-upstream rows: the proxies speak h2c to grpc_upstream.
        grpc-unary: h2load gRPC unary calls (HTTP/2 from the client);
        h2-upstream-small: wrk, HTTP/1.1 keep-alive from the client. As in the
        HTTP/2 rows, a proxy that fails (does not start, answers wrongly, no
        request succeeds, exits) is marked failed and the others go on. The
        upstream's CPU per request is recorded too (it must not be the bottleneck)."""
        a = self.a
        grpc = s == "grpc-unary"
        fl = {}

        def fail(p, why):
            if p in fl and fl[p].last_log_line():
                why += "; its log ends: " + fl[p].last_log_line()
            self.failed[(s, p)] = why
            self.results.pop((s, p), None)
            print("   %-9s !! FAILED: %s -- no figure for it in %s; the others go on" % (p, why, s), flush=True)
            if p in fl:
                fl.pop(p).close()

        if grpc:
            go = lambda port, secs: run_h2load(port, GRPC_PATH, secs, False, extra=grpc_args())
        else:
            go = lambda port, secs: run_wrk(port, "/small", 64, secs)
        try:
            for p in self.proxies_for(s):
                try:
                    fl[p] = Proxy(p, H2UP_PORT, h2up="grpc" if grpc else "small")
                except (RuntimeError, OSError) as e:
                    ls = [ln for ln in str(e).splitlines() if ln.strip() and not ln.startswith("--- ")]
                    fail(p, "did not start: %s" % " | ".join(ls[:1] + ls[1:][-3:]))
                    continue
                if grpc:
                    i, why = h2_probe(fl[p].port, False, grpc=True)
                    if i:
                        self.h2_info[(s, p)] = i
                        print("   %-9s protocol %s, %d/%d calls answered 2xx, %d bytes of messages" % (
                            p, i["proto"], i["codes"][0], H2_STREAMS, i["data"]), flush=True)
                    if not why:
                        g = self.grpcio[(s, p)] = grpcio_check(fl[p].port)
                        print("   %-9s %sgrpcio, %d calls on one channel: %s" % (
                            p, "" if grpcio_ok(g) or "calls" not in g else "!! ", GRPCIO_CALLS, grpcio_summary(g)),
                            flush=True)
                else:
                    i, why = http1_probe(fl[p].port)
                    self.h2_info[(s, p)] = i
                    print("   %-9s HTTP/1.1 GET /small: %d/%d answered 200 with the body" % (p, i["ok"], i["n"]),
                          flush=True)
                if why:
                    fail(p, why)
            for p in list(fl):                                 # warm-up, not measured
                try:
                    r = go(fl[p].port, a.warmup)
                    if not r["requests"]:
                        fail(p, "warm-up: no request succeeded (%s)" % r.get("errdetail", ""))
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    fail(p, "warm-up: %s" % str(e).splitlines()[0])
            for rnd in range(a.rounds):
                for p in self.order(rnd, s):
                    self.progress(rnd, p, s)
                    if p not in fl:
                        print(" !! skipped: %s failed in %s (reason above)" % (p, s), flush=True)
                        continue
                    x = fl[p]
                    try:
                        c0, u0 = x.cpu(), cpu_ticks(self.h2up.pid)
                        # its upstream connections halfway through the run
                        mid = {}
                        tm = threading.Timer(a.duration / 2.0, lambda: mid.setdefault("n", conns_to(H2UP_PORT, x.pids)))
                        tm.start()
                        try:
                            r = go(x.port, a.duration)
                        finally:
                            tm.cancel()
                        time.sleep(0.2)                        # let it finish closing
                        if x.proc.poll() is not None:
                            raise RuntimeError("exited during the run (status %s)" % x.proc.returncode)
                        r["cpu"] = x.cpu() - c0
                        r["up_cpu"] = (cpu_ticks(self.h2up.pid) - u0) / HZ
                        r["up_conns"] = mid.get("n", -1)
                    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
                        print(" !! FAILED", flush=True)
                        fail(p, "round %d: %s" % (rnd + 1, str(e).splitlines()[0]))
                        continue
                    if not r["requests"]:
                        print(" !! FAILED", flush=True)
                        fail(p, "round %d: no request succeeded (%s)" % (rnd + 1, r.get("errdetail", "")))
                        continue
                    self.record(s, p, r)
        finally:
            for x in fl.values():
                x.close()

    def scen_ab(self, s):
        """ab -k: a fixed number of requests (--ab-requests), AB_CONC at a time."""
        a = self.a
        names = self.proxies_for(s)
        fl = self.fleet(names=names)
        try:
            warm = max(1000, a.ab_requests * a.warmup // max(a.duration, 1))
            for p in names:                                    # warm-up, not measured
                run_ab(fl[p].port, "/small", AB_CONC, warm)
            self.measure(s, fl, lambda x: run_ab(x.port, "/small", AB_CONC, a.ab_requests))
        finally:
            for x in fl.values():
                x.close()

    def scen_upload(self, s):
        a = self.a
        names = self.proxies_for(s)
        fl = self.fleet(names=names)
        try:
            for p in names:
                self.upload(fl[p].port, max(2, a.uploads // 8))
            for rnd in range(a.rounds):
                for p in self.order(rnd, s):
                    self.progress(rnd, p, s)
                    c0 = fl[p].cpu()
                    r = self.upload(fl[p].port, a.uploads)
                    time.sleep(0.2)
                    r["cpu"] = fl[p].cpu() - c0
                    r["non2xx"] = r["requests"] - r["ok"]
                    self.record(s, p, r)
        finally:
            for x in fl.values():
                x.close()

    def upload(self, port, count):
        out = subprocess.run(
            (["taskset", "-c", str(CPU_LOAD)] if CPU_LOAD is not None else []) +
            [PY, os.path.abspath(__file__), "_upload", str(port), "4", str(count), str(16 * MiB), str(64 * 1024)],
            capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            raise RuntimeError("upload client failed: " + out.stderr[-2000:])
        return json.loads(out.stdout)

    def scen_idle(self, s):
        a = self.a
        n = a.conns
        for rnd in range(a.rounds):
            for p in self.order(rnd, s):
                self.progress(rnd, p, s)
                fl = self.fleet(names=[p], maxconn=n + 100)
                x = fl[p]
                cl = None
                try:
                    run_wrk(x.port, "/small", 4, 1)            # warm the request path
                    time.sleep(0.3)
                    r0 = rss_kib(x.pid)
                    cl = helper(["_idle", str(x.port), str(n)], cpu=CPU_LOAD,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                    line = cl.stdout.readline()
                    info = json.loads(line) if line else {"codes": {}, "failed": n}
                    # Sampled once the connections have been idle a while,
                    # for every proxy alike: memory a proxy gives back after
                    # the burst that opened them (hourglass trims spare
                    # buffers each second) is not held by idle connections.
                    time.sleep(IDLE_SETTLE_S)
                    r1 = rss_kib(x.pid)
                    ok = info["codes"].get("200", 0)
                    r = {"rss0": r0, "rss1": r1, "ok": ok, "failed": info["failed"], "codes": info["codes"],
                         "per_conn": (r1 - r0) * 1024.0 / max(1, ok), "n": n}
                    self.record(s, p, r)
                finally:
                    if cl:
                        try:
                            cl.stdin.close()
                        except OSError:
                            pass
                        stop(cl)
                    x.close()

    def scen_timer(self, s):
        a = self.a
        n = a.conns
        slog = os.path.join(TMP, "slow-arrivals")
        slow = helper(["_slow", str(PORTS["slow"]), slog], cpu=CPU_LOAD)
        try:
            wait_port(PORTS["slow"], slow, "slow upstream")
            for rnd in range(a.rounds):
                for p in self.order(rnd, s):
                    self.progress(rnd, p, s)
                    tag = "%s%d" % (re.sub(r"\W", "", p), rnd)    # a word: the slow upstream's pattern
                    fl = self.fleet(upstream=PORTS["slow"], read_timeout="%dms" % TIMER_MS, names=[p],
                                    maxconn=n + 50)
                    try:
                        steal0 = cpu_steal_ms(CPU_PROXY)
                        probe = gap_probe_start(CPU_PROXY, os.path.join(TMP, "gaps.data")) if a.cpu_gaps else None
                        out = subprocess.run(
                            (["taskset", "-c", str(CPU_LOAD)] if CPU_LOAD is not None else []) +
                            [PY, os.path.abspath(__file__), "_timer", str(fl[p].port), str(n), tag],
                            capture_output=True, text=True, timeout=120)
                        steal = cpu_steal_ms(CPU_PROXY) - steal0
                        gaps = gap_probe_stop(probe)
                        d = json.loads(out.stdout)
                        time.sleep(0.2)                        # let the upstream flush its log
                        arr = {}
                        with open(slog) as f:
                            for line in f:
                                t, i, ts = line.split()
                                if t == tag:
                                    arr[int(i)] = float(ts)
                        codes = {}
                        late, total, late_out = [], [], []
                        for i, code, t0, t1 in d["res"]:
                            codes[code] = codes.get(code, 0) + 1
                            if code == TIMEOUT_REPLY.get(p, "504"):
                                total.append((t1 - t0) * 1000.0 - TIMER_MS)
                                if i in arr:
                                    late.append((t1 - arr[i]) * 1000.0 - TIMER_MS)
                                    due = arr[i] + TIMER_MS / 1000.0
                                    if gaps is not None and not any(g0 <= due <= g1 for g0, g1 in gaps):
                                        late_out.append(late[-1])
                        r = {"n": n, "got504": len(total), "codes": codes, "failed": d["failed"],
                             "missing": n - len(d["res"]), "matched": len(late),
                             "p50": pct(late, 50), "p99": pct(late, 99),
                             "max": max(late) if late else float("nan"),
                             "min": min(late) if late else float("nan"),
                             "early": sum(1 for x in late if x < -EARLY_SLACK_MS), "lat": late, "total": total,
                             "steal_ms": steal}
                        if gaps is not None:
                            r.update(gaps=len(gaps), gap_ms=sum(g1 - g0 for g0, g1 in gaps) * 1000.0,
                                     gap_max=max([g1 - g0 for g0, g1 in gaps] or [0]) * 1000.0,
                                     in_gap=len(late) - len(late_out), p99_out=pct(late_out, 99))
                        self.record(s, p, r)
                    finally:
                        fl[p].close()
        finally:
            stop(slow)

    # ------------------------------------------------------------------------
    # hedge-tail (issue 18)

    def hedge_rows(self):
        """The rows of hedge-tail whose proxy is selected (--proxies)."""
        return [r for r in HEDGE_ROWS if r[1] in self.proxies_for(HEDGE_SCEN)]

    def hedge_plain_ok(self):
        """Does the binary accept the configuration without hedge (then one it
        refuses with a hedge mapping is a feature it lacks, not a broken binary)?"""
        path = write_hourglass_hedge(os.path.join(TMP, "plain-check"), HEDGE_ROWS[0][3], HEDGE_UP_PORTS, None)
        try:
            return subprocess.run([HOURGLASS, "-t", path], capture_output=True, timeout=20).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    def hedge_mapping(self, hedge):
        """A row's hedge mapping (YAML flow text), None for no hedging."""
        return self.a.hedge_adaptive if hedge == "adaptive" else hedge

    def scen_hedge(self, s):
        """Each row: a proxy in front of the two servers of hedge_upstream; per
        run, hedge_load sends --hedge-requests GET /h/ID at --hedge-rate (open
        loop) and records each one's latency; the upstream counts what it
        received. Rows alternate within each round like the proxies elsewhere;
        the percentiles pool every round's samples. A row the binary cannot
        run (hourglass -t refuses its configuration: an older build without
        adaptive hedging) reads "not available in this build"; a proxy that
        fails is marked failed; the other rows go on."""
        a = self.a
        rows = self.hedge_rows()
        up_log = os.path.join(TMP, "hedge_upstream.log")
        env = dict(os.environ, HEDGE_P=str(HEDGE_P), HEDGE_FAST_MS=str(HEDGE_FAST_MS),
                   HEDGE_SLOW_MS=str(HEDGE_SLOW_MS))
        up = spawn([HEDGE_UP_BIN, str(HEDGE_SEED)] + [str(x) for x in HEDGE_UP_PORTS], cpu=CPU_LOAD, log=up_log,
                   env=env)
        fl = {}
        warm_n = max(500, int(a.hedge_rate * a.warmup))

        def fail(row, why):
            x = fl.pop(row, None)
            if x and x.last_log_line():
                why += "; its log ends: " + x.last_log_line()
            self.hedge_na[row] = "failed: " + why
            self.hedge.pop(row, None)
            print("   %-13s !! FAILED: %s -- no figure for it; the other rows go on" % (row, why), flush=True)
            if x:
                x.close()

        try:
            for port in HEDGE_UP_PORTS:
                wait_port(port, up, "hedge_upstream", logs=[up_log])
            for row, proxy, hedge, port, admin, _ in rows:
                cfg = {"row": row, "port": port, "admin": admin, "hedge": self.hedge_mapping(hedge)}
                if proxy == "hourglass":
                    # can this binary run the row? (hedge.delay: p95 is newer than some builds)
                    d = os.path.join(TMP, row + "-check")
                    path = write_hourglass_hedge(d, port, HEDGE_UP_PORTS, cfg["hedge"])
                    try:
                        c = subprocess.run([HOURGLASS, "-t", path], capture_output=True, text=True, timeout=20)
                        rc, said = c.returncode, (c.stdout + c.stderr).strip()
                    except (OSError, subprocess.TimeoutExpired) as e:
                        rc, said = -1, str(e)
                    self.hedge_info.setdefault(row, []).append("`hedge: %s`" % cfg["hedge"] if cfg["hedge"]
                                                               else "no `hedge`")
                    if rc != 0:
                        said = " | ".join(said.splitlines()[:2]).replace(path, "hourglass.yaml")
                        if cfg["hedge"] and self.hedge_plain_ok():
                            # the binary runs hourglass but not this hedge mapping: an older build
                            why = "not available in this build: `hourglass -t` refused `hedge: %s` (exit %d: %s)" % (
                                cfg["hedge"], rc, said)
                        else:
                            why = "failed: `%s -t hourglass.yaml` (%s) exited %d: %s -- build hourglass " \
                                  "(make) or point HOURGLASS_BIN at a working binary" % (
                                HOURGLASS, "`hedge: %s`" % cfg["hedge"] if cfg["hedge"] else "no hedge", rc, said)
                        self.hedge_na[row] = why
                        print("   %-13s %s" % (row, why), flush=True)
                        continue
                try:
                    fl[row] = Proxy(proxy, list(HEDGE_UP_PORTS), hedge=cfg)
                except (RuntimeError, OSError) as e:
                    ls = [ln for ln in str(e).splitlines() if ln.strip() and not ln.startswith("--- ")]
                    fail(row, "did not start: %s" % " | ".join(ls[:1] + ls[1:][-3:]))
            for row in list(fl):                               # warm-up, not measured
                try:
                    r = self.hedge_load(fl[row].port, warm_n)
                    if not r["ok"]:
                        fail(row, "warm-up: no request answered 200 (%s)" % json.dumps(r))
                except RuntimeError as e:
                    fail(row, "warm-up: %s" % str(e).splitlines()[0])
            names = [r[0] for r in rows]
            for rnd in range(a.rounds):
                for row in order_for(rnd, names):
                    self.progress(rnd, row, s)
                    if row not in fl:
                        print(" -- %s" % ("not available in this build" if "not available" in
                                          self.hedge_na.get(row, "") else "skipped (failed, reason above)"),
                              flush=True)
                        continue
                    try:
                        r = self.hedge_run(fl[row], row, rnd)
                    except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as e:
                        print(" !! FAILED", flush=True)
                        fail(row, "round %d: %s" % (rnd + 1, str(e).splitlines()[0]))
                        continue
                    self.hedge.setdefault(row, []).append(r)
                    bad = r["sent"] - r["ok"]
                    print(" p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, extra load %.2f %%%s%s" % (
                        pct_rank(r["lat"], 50), pct_rank(r["lat"], 99), pct_rank(r["lat"], 99.9), r["extra"],
                        ", %d hedges" % r["hedges"] if r["hedges"] is not None else "",
                        "  (!! %d of %d requests not answered 200: %d non-200, %d errors, %d timeouts)" % (
                            bad, r["sent"], r["non200"], r["errors"], r["timeouts"]) if bad else ""), flush=True)
        finally:
            for x in fl.values():
                x.close()
            stop(up)

    def hedge_load(self, port, n, out=None, base=0):
        """Runs hedge_load (pinned with the upstream): n requests at --hedge-rate,
        IDs from base. Returns its JSON summary (and, with out, the latencies are
        in that file)."""
        out = out or os.path.join(TMP, "hedge-warmup.txt")
        argv = [HEDGE_LOAD_BIN, str(port), str(self.a.hedge_rate), str(n), str(HEDGE_CONNS), out, "10", str(base)]
        if CPU_LOAD is not None:
            argv = ["taskset", "-c", str(CPU_LOAD)] + argv
        p = subprocess.run(argv, capture_output=True, text=True, timeout=n / self.a.hedge_rate + 60)
        if p.returncode != 0:
            raise RuntimeError("hedge_load exited with status %d: %s" % (
                p.returncode, (p.stderr.strip().splitlines() or ["(no message)"])[-1]))
        return json.loads(p.stdout.strip().splitlines()[-1])

    def hedge_run(self, x, row, rnd):
        """One measured run of a row: upstream counters reset, the client run,
        the upstream's counts, hourglass's hedges (its /metrics) and what its
        error log said meanwhile. Round rnd's requests have IDs rnd * N .. +N-1:
        the same slow ones for every row of a round, other ones in each round."""
        admin = next(r[4] for r in HEDGE_ROWS if r[0] == row)
        time.sleep(0.1)                 # the last run's cancelled attempts have reached the upstream
        up_get("/reset")
        h0 = hg_hedges(admin) if admin else None
        log0 = os.path.getsize(x.logs[0]) if os.path.exists(x.logs[0]) else 0
        c0 = x.cpu()
        out = os.path.join(TMP, "hedge-%s.txt" % row)
        r = self.hedge_load(x.port, self.a.hedge_requests, out, rnd * self.a.hedge_requests)
        time.sleep(0.1)
        if x.proc.poll() is not None:
            raise RuntimeError("exited during the run (status %s)" % x.proc.returncode)
        r["cpu"] = x.cpu() - c0
        u = up_get("/count")
        r["up"] = u
        h1 = hg_hedges(admin) if admin else None
        r["hedges"] = h1 - h0 if h0 is not None and h1 is not None else None
        lat, failed = [], 0
        with open(out) as f:
            for line in f:
                i, ms, lag, st = line.split()
                if st == "200":
                    lat.append(float(ms) / 1000.0)
        r["lat"] = lat
        r["extra"] = (u["requests"] / max(r["sent"], 1) - 1.0) * 100.0
        # what the proxy's log said during the run (hourglass logs each hedge at info)
        with open(x.logs[0], errors="replace") as f:
            f.seek(log0)
            new = f.read().splitlines()
        r["log_hedging"] = sum(1 for ln in new if "hedging to" in ln)
        r["log_budget"] = [ln for ln in new if "budget" in ln]
        r["log_warn"] = [ln for ln in new if re.search(r"\b(warn|error|crit)\b", ln)]
        return r

    def record(self, s, p, r):
        self.results.setdefault((s, p), []).append(r)
        if "cpu" in r:
            if s in PER_GIB:
                msg = " %.3f CPU s/GiB, %.0f req/s" % (r["cpu"] / max(r["bytes"], 1) * GiB, r["rps"])
            elif "win_cpu" in r:
                msg = " %.1f CPU us/req in the steady state (%.2f-%.2f s; %.1f over the whole run), %.0f req/s" % (
                    r["win_cpu"] / max(r["win_req"], 1) * 1e6, r["win_start"], r["win_end"],
                    r["cpu"] / max(r["requests"], 1) * 1e6, r["rps"])
                if r["win_late"]:
                    msg += "  (!! the window opened late: the origin had not yet counted %d requests per " \
                           "connection; a longer --duration would help)" % STEADY_ROUNDS
            else:
                msg = " %.1f CPU us/req, %.0f req/s" % (r["cpu"] / max(r["requests"], 1) * 1e6, r["rps"])
            if "keepalive" in r:
                msg += ", keep-alive %d/%d" % (r["keepalive"], r["requests"])
            bad = r.get("non2xx", 0) + r.get("errors", 0)
            if bad:
                msg += "  (!! %d non-2xx, %d %s%s)" % (r.get("non2xx", 0), r.get("errors", 0),
                                                     r.get("errlabel", "socket errors"),
                                                     ": " + r["errdetail"] if r.get("errdetail") else "")
        elif "per_conn" in r:
            msg = " %.2f KiB/conn (%d ok, %d failed)" % (r["per_conn"] / 1024, r["ok"], r["failed"])
        else:
            msg = " lateness p50 %.1f ms, p99 %.1f ms, max %.1f ms, early %d, timeout replies %d/%d" % (
                r["p50"], r["p99"], r["max"], r["early"], r["got504"], r["n"])
        print(msg, flush=True)


# ----------------------------------------------------------------------------
# report

def med(xs):
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def fmt(x, nd=1):
    return "-" if x != x else ("%.*f" % (nd, x))


def ratio(a, b):
    return "-" if (a != a or b != b or b == 0) else "%.2f" % (a / b)


def table(head, rows):
    w = [max(len(str(r[i])) for r in [head] + rows) for i in range(len(head))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w[i]) if i == 0 else str(c).rjust(w[i])
                                        for i, c in enumerate(r)) + " |"
    sep = "|" + "|".join("-" * (x + 1) + ":" if i else ":" + "-" * (x + 1) for i, x in enumerate(w)) + "|"
    return "\n".join([line(head), sep] + [line(r) for r in rows])


def report_ab(R, a, metric):
    """small-ab-k: how many of ab's requests the proxy kept the connection for."""
    s = "small-ab-k"
    m = {p: med([metric(s, r) for r in R.get((s, p), [])]) for p in PROXIES}
    rows, kn = [], {}
    for p in PROXIES:
        rs = R.get((s, p), [])
        if not rs:
            continue
        kn[p] = med([r["keepalive"] / max(r["requests"], 1) for r in rs])
        rows.append([p, rs[0]["n"], " ".join(str(r["keepalive"]) for r in rs), "%.2f" % kn[p],
                     sum(r["failed"] for r in rs), sum(r["non2xx"] for r in rs), fmt(m[p], 1),
                     "-" if p == "hourglass" else ratio(m["hourglass"], m[p])])
    out = ["### ab -k: HTTP/1.0 keep-alive (%d requests per run, %d at a time)\n" % (a.ab_requests, AB_CONC),
           table(["proxy", "requests per run", "keep-alive requests (every round)", "keep-alive / requests (median)",
                  "failed (all rounds)", "non-2xx", "CPU us/req (median)", "hg / this"], rows),
           "\nab sends HTTP/1.0 requests with `Connection: Keep-Alive`. Keep-alive requests = ab's \"Keep-Alive "
           "requests\": the responses after which the proxy kept the connection open. Equal to the requests: "
           "keep-alive honoured on every one; 0: the proxy closed the client connection after each response and "
           "ab opened a new one. Failed = ab's \"Failed requests\" (connect, receive, length, exceptions).\n"]
    if kn and max(kn.values()) - min(kn.values()) > 0.01:
        out.append("!! The keep-alive fractions differ (%s): a proxy that closes after each response pays a new "
                   "client connection per request, as in conn-close, so the CPU ratios on this row compare "
                   "unlike work.\n" % ", ".join("%s %.2f" % kv for kv in kn.items()))
    return "\n".join(out)


def report_h2(b, h2_s, peers):
    """Under the CPU table: what the HTTP/2 rows are, what each proxy negotiated,
    and why a cell has no figure."""
    out = ["h2c-small, h2-tls-small: h2load (nghttp2), one thread, %d connections x %d concurrent streams, "
           "GET /small (the same 100 B responses as the other small rows); HTTP/2 from the client to the proxy "
           "(h2c: cleartext with prior knowledge; h2-tls: TLS 1.3 with ALPN h2 only, suite %s, h2load's session "
           "handling), HTTP/1.1 keep-alive from the proxy to the origin. CPU per request = / requests h2load "
           "counted as succeeded. The floor speaks no HTTP/2: not run (-). Issue 15's goal for these rows: "
           "hg/best (against %s) at most 0.8. Protocol each proxy answered with "
           "(a probe of %d requests before the runs):\n" % (
               H2_CONNS, H2_STREAMS, H2_TLS13_CIPHER, ", ".join(peers), H2_STREAMS)]
    for s in h2_s:
        for p in PROXIES:
            i = b.h2_info.get((s, p))
            if i:
                out.append("- %s, %s: protocol %s%s, %d/%d answered 2xx" % (
                    s, p, i["proto"], " (%s %s, %s)" % (i["version"], i["cipher"], i["group"]) if s in H2_TLS else "",
                    i["codes"][0], H2_STREAMS))
    fails = [(s, p) for s in h2_s for p in PROXIES if (s, p) in b.failed]
    if fails:
        out.append("\n!! Cells marked failed have no figure (and no ratio); the other proxies ran as usual:\n")
        for s, p in fails:
            out.append("- %s, %s: %s" % (s, p, b.failed[(s, p)]))
    out.append("")
    return "\n".join(out)


def report_h2up(b, ss, metric):
    """Under the CPU table: the HTTP/2-upstream rows (grpc-unary,
    h2-upstream-small): what runs, the same-round ratios, the checks made
    before measuring, what did not run and why, the upstream's own CPU."""
    R = b.results
    out = ["grpc-unary, h2-upstream-small: the proxies speak HTTP/2 with prior knowledge (h2c) to bench/grpc_upstream.c "
           "(libnghttp2, one thread, pinned with the load generator; SETTINGS_MAX_CONCURRENT_STREAMS %d). grpc-unary: "
           "h2load, one thread, %d connections x %d streams, POST %s with a %d-byte length-prefixed message (flag 0, "
           "4-byte length, %d bytes; h2load sends content-length: %d) and `%s`; the upstream answers HEADERS, the "
           "echoed message in one DATA frame and trailers `grpc-status: 0`. CPU per call = / calls h2load counted "
           "as succeeded (2xx: h2load does not read grpc-status). h2-upstream-small: wrk, 64 HTTP/1.1 keep-alive "
           "connections, GET /small, answered by the upstream with 100 B (content-length, no trailers). "
           "hourglass: a pool with `protocol: h2`; nginx: grpc_pass (grpc-unary only); HAProxy: `server ... proto h2`."
           % (H2UP_MAX_STREAMS, H2_CONNS, H2_STREAMS, GRPC_PATH, 5 + GRPC_MSG, GRPC_MSG, 5 + GRPC_MSG,
              "`, `".join(GRPC_HEADERS)),
           "\nSame-round ratios: hourglass's CPU per request divided by the peer's **in the same round**, the median "
           "of the rounds' ratios (as in the CPU table's hg/ columns), then each round's:\n"]
    rows = []
    for s in ss:
        for p in ("nginx", "haproxy"):
            h, g = R.get((s, "hourglass"), []), R.get((s, p), [])
            rr = [metric(s, x) / metric(s, y) if metric(s, y) else float("nan") for x, y in zip(h, g)]
            why = ("not run" if (s, p) in NOT_SUPPORTED else "failed" if (s, p) in b.failed or
                   (s, "hourglass") in b.failed else "-")
            rows.append([s, "hg/" + p, fmt(med(rr), 2) if rr else why, " ".join(fmt(x, 2) for x in rr) or why])
    out.append(table(["scenario", "ratio", "median of same-round ratios", "every round"], rows))
    out.append("\nBefore measuring, each proxy answered (grpc-unary: %d gRPC calls by h2load over one connection, "
               "response DATA checked for the echoed messages; then %d calls by python3-grpcio on one channel, deadline "
               "%.0f s each, which is informational: no real gRPC client sends content-length, h2load does; "
               "h2-upstream-small: 3 GET /small on one HTTP/1.1 connection):\n" % (
                   H2_STREAMS, GRPCIO_CALLS, GRPCIO_TIMEOUT))
    for s in ss:
        for p in PROXIES:
            i = b.h2_info.get((s, p))
            if not i:
                continue
            if s == "grpc-unary":
                g = b.grpcio.get((s, p))
                out.append("- %s, %s: %s, %d/%d calls 2xx, %d bytes of messages%s" % (
                    s, p, i["proto"], i["codes"][0], H2_STREAMS, i["data"],
                    "; grpcio: %s%s" % ("" if grpcio_ok(g) or "calls" not in g else "!! ", grpcio_summary(g))
                    if g else ""))
            else:
                out.append("- %s, %s: %d/%d answered 200 with the 100-byte body" % (s, p, i["ok"], i["n"]))
    ns = [(s, p) for s in ss for p in PROXIES if (s, p) in NOT_SUPPORTED]
    if ns:
        out.append("\nNot run (`-`):\n")
        for s, p in ns:
            out.append("- %s, %s: %s" % (s, p, NOT_SUPPORTED[(s, p)]))
    fails = [(s, p) for s in ss for p in PROXIES if (s, p) in b.failed]
    if fails:
        out.append("\n!! Cells marked failed have no figure (and no ratio); the other proxies ran as usual:\n")
        for s, p in fails:
            out.append("- %s, %s: %s" % (s, p, b.failed[(s, p)]))
    rows = []
    for s in ss:
        for p in PROXIES:
            rs = R.get((s, p), [])
            if rs:
                rows.append([s, p, fmt(med([r["up_cpu"] / max(r["requests"], 1) * 1e6 for r in rs]), 1),
                             " ".join(str(r["up_conns"]) for r in rs)])
    if rows:
        out.append("\nThe upstream's side: grpc_upstream's own CPU per request (median; it shares its CPU with the "
                   "load generator, so what it spends the load generator has not), and the proxy's HTTP/2 "
                   "connections to it (established, counted halfway through each run):\n")
        out.append(table(["scenario", "proxy", "upstream CPU us/req", "upstream connections (every round)"], rows))
    out.append("")
    return "\n".join(out)


def report_h2_load(b, h2_s):
    rows = []
    for s in h2_s:
        for p in PROXIES:
            rs = b.results.get((s, p), [])
            if not rs:
                continue
            rows.append([s, p, fmt(med([r["rps"] for r in rs]), 0), fmt(med([r["mean"] for r in rs]), 2),
                         fmt(max(r["max"] for r in rs), 2), sum(r["requests"] for r in rs),
                         sum(r["failed"] for r in rs), sum(r["errored"] for r in rs), sum(r["timeout"] for r in rs),
                         sum(r["non2xx"] for r in rs)])
    if not rows:
        return ""
    return "\n".join([
        "\n### h2load rows: throughput and latency (h2load; machine-bound like the others)\n",
        table(["scenario", "proxy", "req/s", "mean ms", "max ms", "succeeded (all rounds)", "failed", "errored",
               "timeout", "non-2xx"], rows),
        "\nh2load gives no percentiles: mean and max of its \"time for request\" (stream open to close). "
        "\"failed\" counts every request that did not succeed (errored, timed out, or a status other than 2xx/3xx)."
        "\n"])


def report_growth(b, metric, best_ratios):
    """Small keep-alive requests as the connections grow: each proxy's CPU per
    request at 64, 1000 and BIG_CONNS connections (medians, steady state), its
    ratio to its own cost at 64, the largest row's whole-run figure; hg/best per
    connection count."""
    R = b.results
    ss = [(s, BIG_CONNS if s == "small-ka-9900" else n) for s, n in GROWTH if any((s, p) in R for p in PROXIES)]
    if len(ss) < 2:
        return ""
    first, last = ss[0], ss[-1]
    rows = []
    for p in PROXIES:
        m = [med([metric(s, r) for r in R.get((s, p), [])]) for s, _ in ss]
        if all(x != x for x in m):
            continue
        whole = med([r["cpu"] / max(r["requests"], 1) * 1e6 for r in R.get((last[0], p), [])])
        rows.append([p] + [fmt(x, 1) for x in m] + [ratio(x, m[0]) for x in m[1:]] + [fmt(whole, 1)])
    rows.append(["hg/best"] + [fmt(med(best_ratios(s)), 2) if best_ratios(s) else "-" for s, _ in ss] +
                [""] * (len(ss) - 1) + [""])
    head = (["proxy"] + ["%d conns" % n for _, n in ss] + ["%d / %d" % (n, first[1]) for _, n in ss[1:]] +
            ["%d conns, whole run" % last[1]])
    late = ["%s %s round %d" % (s, p, i + 1) for s, _ in ss for p in PROXIES
            for i, r in enumerate(R.get((s, p), [])) if r.get("win_late")]
    spans = ", ".join("%d conns %s s" % (n, "/".join("%.1f" % (r["win_end"] - r["win_start"])
                                                     for p in PROXIES for r in R.get((s, p), [])[:1]))
                      for s, n in ss)
    return "\n".join([
        "### Growth: small keep-alive requests as the connections grow (CPU us/req, steady state)\n",
        table(head, rows),
        "\nThe rows %s of the CPU table side by side (medians; wrk, one thread, GET /small, 100 B, keep-alive). "
        "\"N / %d\" = the proxy's CPU per request at N connections / its own at %d (ratio of the medians: the rows "
        "run one after the other, not in the same round); hg/best as in the CPU table. Steady state: these rows "
        "count the proxy's CPU and the requests (the origin's count, from its stub_status) over a window of each "
        "wrk run that opens %.2f s + 0.1 s per 1000 connections after wrk started, or later, once the origin has "
        "counted %d requests per connection since the start, and closes %.1f s before wrk ends: wrk opens its "
        "connections anew in each run and closes them at the end, and at %d connections that setup (the proxy's "
        "accepts, its upstream connections) would weigh heavily on a run of a few seconds, the more so the "
        "shorter the run. The last column is that whole-run figure (CPU over the run / requests wrk completed), "
        "for comparison. Windows (first round, in proxy order): %s. The floor opens an upstream connection per "
        "client connection; nginx keeps 1024 idle upstream connections and closes the rest after each response "
        "(`keepalive 1024`), so at 9,900 connections it connects upstream for many requests.\n" % (
            ", ".join(s for s, _ in ss), first[1], first[1], 0.25, STEADY_ROUNDS, STEADY_TAIL, last[1], spans)] +
        (["!! Windows that opened late (the origin had not counted %d requests per connection 0.2 s before the "
          "window had to close; the figure includes some ramp-up): %s.\n" % (STEADY_ROUNDS, ", ".join(late))]
         if late else []))


def report(b, a, meta):
    R = b.results
    out = []
    F = b.failed
    scen_run = [s for s, k, _ in SCENARIOS if any((s, p) in R or (s, p) in F for p in PROXIES)]

    def metric(s, r):
        if s in PER_GIB:
            return r["cpu"] / max(r["bytes"], 1) * GiB
        if "win_cpu" in r:                                     # the growth rows: the steady-state window
            return r["win_cpu"] / max(r["win_req"], 1) * 1e6
        return r["cpu"] / max(r["requests"], 1) * 1e6

    ab_mode = BASE in PROXIES

    def same_round(s, p):
        """hourglass / p per round: round i of the one against round i of the other."""
        if (s, p) in F or (s, "hourglass") in F:
            return []
        return [metric(s, h) / metric(s, g) if metric(s, g) else float("nan")
                for h, g in zip(R.get((s, "hourglass"), []), R.get((s, p), []))]

    base_ratios = lambda s: same_round(s, BASE)
    peers = PEERS

    def best_ratios(s):
        """hourglass / the lowest of the peers' figures in the same round (the
        peers that have one on this row)."""
        out = []
        for i, h in enumerate([] if (s, "hourglass") in F else R.get((s, "hourglass"), [])):
            xs = [metric(s, R[(s, p)][i]) for p in peers if (s, p) not in F and len(R.get((s, p), [])) > i]
            xs = [x for x in xs if x == x and x > 0]
            out.append(metric(s, h) / min(xs) if xs else float("nan"))
        return out

    def rcell(rs):
        return fmt(med(rs), 2) if rs else "-"

    def cell(s, p, x, nd):
        return "failed" if (s, p) in F else fmt(x, nd)

    cpu_s = [s for s in scen_run if s not in ("idle-10k", "timer")]
    if cpu_s:
        rows, rng = [], []
        for s in cpu_s:
            m = {p: med([metric(s, r) for r in R.get((s, p), [])]) for p in PROXIES}
            unit = "CPU s/GiB" if s in PER_GIB else "CPU us/req"
            nd = 3 if s in PER_GIB else 1
            rows.append([s, unit] + [cell(s, p, m[p], nd) for p in PROXIES] +
                        [rcell(same_round(s, p)) for p in peers] + [rcell(best_ratios(s))] +
                        [rcell(same_round(s, "floor"))] +
                        ([fmt(med(base_ratios(s)), 3)] if ab_mode else []))
            rr = []
            for p in PROXIES:
                xs = [metric(s, r) for r in R.get((s, p), [])]
                rr.append("failed" if (s, p) in F else " ".join(fmt(x, nd) for x in xs) if xs else "-")
            rr.append(" ".join(fmt(x, 2) for x in best_ratios(s)) or "-")
            if ab_mode:
                rr.append(" ".join(fmt(x, 3) for x in base_ratios(s)) or "-")
            rng.append([s] + rr)
        out.append("### CPU per request (median of %d rounds; lower is better)\n" % a.rounds)
        out.append(table(["scenario", "unit"] + PROXIES + ["hg/" + p for p in peers] + ["hg/best", "hg/floor"] +
                         (["hg/hg-base"] if ab_mode else []), rows))
        out.append("\nCPU = utime+stime of the proxy process (nginx: its one worker; h2o: its process and the "
                   "helpers it forks, neverbleed among them, which does the TLS private-key operations) from "
                   "/proc/PID/stat, sampled around each run; per request = / requests completed by the client; "
                   "per GiB = / bytes of response (or request body) the client received (sent). "
                   "hg/PEER = hourglass's figure / the peer's **in the same round**, the median of the rounds' "
                   "ratios (each round's in the \"every round\" table); hg/best = hourglass / the lowest of %s "
                   "in that round (those with a figure on the row). Below 1: hourglass spent less.\n" % ", ".join(peers))
        g = report_growth(b, metric, best_ratios)
        if g:
            out.append(g)
        if ab_mode:
            out.append("hg-base = the --baseline binary with exactly hourglass's flags and configuration. "
                       "hg/hg-base = hourglass's CPU per request (per GiB) / hg-base's in the same round, "
                       "the median of the rounds' ratios (every round's below); below 1 means the new binary "
                       "spent less.\n")
        tls_s = [s for s in cpu_s if s in TLS_SCEN]
        if tls_s:
            out.append("tls-*: client -> proxy TLS, terminated by the proxy (self-signed ECDSA P-256 certificate); "
                       "proxy -> origin plain HTTP with keep-alive, as in the other rows. tls-handshake: wrk with "
                       "`Connection: close`, a full handshake per request (no resumption). tls-handshake-aes256: "
                       "the same, with wrk offering only TLS_AES_256_GCM_SHA384 in TLS 1.3, the suite nginx, "
                       "HAProxy and h2o pick from wrk's default list (hourglass prefers TLS_AES_128_GCM_SHA256): "
                       "every proxy runs the same cryptography. The floor relays bytes and has no TLS: not run (-). "
                       "Negotiated with each proxy (openssl s_client, the library defaults wrk uses too; in "
                       "tls-handshake-aes256 with `-ciphersuites TLS_AES_256_GCM_SHA384`):\n")
            for p in PROXIES:
                seen = {}                                      # one line per proxy unless the scenarios differ
                for s in tls_s:
                    i = b.tls_info.get((s, p))
                    if i:
                        seen.setdefault("%s %s, %s, %s certificate, %d session ticket(s) sent per connection" % (
                            i["version"], i["cipher"], i["group"], i["sig"], i["tickets"]), []).append(s)
                for txt, ss in seen.items():
                    out.append("- %s%s: %s" % (p, "" if len(seen) == 1 else " (%s)" % ", ".join(ss), txt))
            out.append("")
        h2_s = [s for s in cpu_s if s in H2_SCEN]
        if h2_s:
            out.append(report_h2(b, h2_s, peers))
        h2up_s = [s for s in cpu_s if s in H2UP_SCEN]
        if h2up_s:
            out.append(report_h2up(b, h2up_s, metric))
        if "small-ab-k" in cpu_s:
            out.append(report_ab(R, a, metric))
        out.append("#### Every round (same units, in run order)\n")
        out.append(table(["scenario"] + PROXIES + ["hg/best"] + (["hg/hg-base"] if ab_mode else []), rng))
        rows = []
        for s in cpu_s:
            if s in H2_SCEN or s == "grpc-unary":             # their own table below (h2load)
                continue
            for p in PROXIES:
                rs = R.get((s, p), [])
                if not rs:
                    continue
                err = sum(r.get("errors", 0) for r in rs)
                n2 = sum(r.get("non2xx", 0) for r in rs)
                rows.append([s, p, fmt(med([r["rps"] for r in rs]), 0), fmt(med([r["p50"] for r in rs]), 2),
                             fmt(med([r["p99"] for r in rs]), 2), sum(r["requests"] for r in rs), n2, err])
        if rows:
            out.append("\n### Throughput and latency (machine-bound: 2 shared cores, load generator and origin "
                       "on one)\n")
            out.append(table(["scenario", "proxy", "req/s", "p50 ms", "p99 ms", "requests (all rounds)",
                              "non-2xx", "socket errors"], rows))
        if "small-ab-k" in cpu_s:
            out.append("\nsmall-ab-k: \"socket errors\" is ab's \"Failed requests\"; ab gives latencies in whole "
                       "milliseconds.\n")
        if h2_s or "grpc-unary" in cpu_s:
            out.append(report_h2_load(b, h2_s + [s for s in cpu_s if s == "grpc-unary"]))
    if "idle-10k" in scen_run:
        rows = []
        m = {}
        for p in PROXIES:
            rs = R.get(("idle-10k", p), [])
            if not rs:
                continue
            m[p] = med([r["per_conn"] for r in rs])
            rows.append([p, rs[0]["n"], fmt(m[p] / 1024, 2), " ".join(fmt(r["per_conn"] / 1024, 2) for r in rs),
                         "%.1f -> %.1f" % (rs[-1]["rss0"] / 1024, rs[-1]["rss1"] / 1024),
                         sum(r["ok"] for r in rs), sum(r["failed"] for r in rs)])
        out.append("\n### Idle keep-alive connections: proxy RSS per connection\n")
        out.append(table(["proxy", "connections", "KiB/conn (median)", "every round", "VmRSS MiB (last round)",
                          "200s (all rounds)", "failed"], rows))
        if "hourglass" in m:
            out.append("\nhourglass/nginx %s, hourglass/haproxy %s, hourglass/h2o %s, hourglass/floor %s%s. VmRSS "
                       "counts user-space memory only (h2o: its main process'); kernel socket buffers are not in "
                       "it.\n" % (
                           ratio(m.get("hourglass", float("nan")), m.get("nginx", float("nan"))),
                           ratio(m.get("hourglass", float("nan")), m.get("haproxy", float("nan"))),
                           ratio(m.get("hourglass", float("nan")), m.get(H2O, float("nan"))),
                           ratio(m.get("hourglass", float("nan")), m.get("floor", float("nan"))),
                           ", hourglass/hg-base %s" % ratio(m["hourglass"], m.get(BASE, float("nan")))
                           if BASE in PROXIES else ""))
    if "timer" in scen_run:
        rows = []
        for p in PROXIES:
            rs = R.get(("timer", p), [])
            if not rs:
                continue
            lat = [x for r in rs for x in r["lat"]]
            other = {}
            for r in rs:
                for c, v in r["codes"].items():
                    if c != TIMEOUT_REPLY.get(p, "504"):
                        other[c] = other.get(c, 0) + v
            tot = [x for r in rs for x in r["total"]]
            rows.append([p, rs[0]["n"], len(tot), fmt(pct(lat, 50), 1), fmt(pct(lat, 99), 1),
                         fmt(max(lat) if lat else float("nan"), 1), fmt(min(lat) if lat else float("nan"), 1),
                         sum(1 for x in lat if x < -EARLY_SLACK_MS), fmt(pct(tot, 50), 1), fmt(pct(tot, 99), 1),
                         ", ".join("%s: %d" % kv for kv in sorted(other.items())) or "none",
                         sum(r["missing"] + r["failed"] for r in rs)])
        out.append("\n### Timer accuracy: read timeout 3 s, ~10,000 requests in flight to a silent upstream, sent evenly over 2 s\n")
        out.append(table(["proxy", "in flight", "504s (all rounds)%s" % (
                              "; h2o: 502s" if R.get(("timer", H2O)) else ""), "p50 late ms", "p99 late ms", "max late ms",
                          "min late ms", "early (< -0.1 ms)", "p50 from send", "p99 from send",
                          "other replies", "no reply"], rows))
        each = [[p] + [fmt(r["p99"], 1) for r in R[("timer", p)]] +
                [" ".join(fmt(r.get("steal_ms", float("nan")), 0) for r in R[("timer", p)])]
                for p in PROXIES if R.get(("timer", p))]
        if each:
            k = max(len(r) for r in each) - 2
            each = [r[:-1] + ["-"] * (k + 2 - len(r)) + r[-1:] for r in each]
            out.append("\nEvery round, in run order: p99 late ms, and the milliseconds the hypervisor stole "
                       "from the proxy's CPU during the round (/proc/stat steal; a timer cannot fire while its "
                       "CPU is stolen, and every timer due during a stall of d ms is late by up to d):\n")
            out.append(table(["proxy"] + ["p99 round %d" % (i + 1) for i in range(k)] + ["steal ms per round"],
                             each))
        gp = [[p] + [("%s / %d / %s / %d / %s" % (fmt(r["gap_ms"], 0), r["gaps"], fmt(r["gap_max"], 1),
                                                  r["in_gap"], fmt(r["p99_out"], 1))) for r in R[("timer", p)]]
              for p in PROXIES if R.get(("timer", p)) and all("gaps" in r for r in R[("timer", p)])]
        if gp:
            k = max(len(r) for r in gp) - 1
            out.append("\nWhere the CPU went away (--cpu-gaps): perf sampled the proxy's CPU at %d Hz (cpu-clock, "
                       "every task, idle included) during each round; a stretch of more than %.0f ms without a "
                       "sample is a gap in which the virtual CPU did not run. Per round: gap ms in all / gaps / "
                       "longest gap ms / timers due inside a gap / p99 late ms of the timers due outside any "
                       "gap:\n" % (GAP_HZ, GAP_MS))
            out.append(table(["proxy"] + ["round %d" % (i + 1) for i in range(k)],
                             [r + ["-"] * (k + 1 - len(r)) for r in gp]))
        out.append("\nLate = (kernel receive time of the 504 at the client - kernel receive time of the request "
                   "at the silent upstream) - %d ms (the read timeout): how long after it was due the 504 reached "
                   "the client. \"From send\" counts instead from the client's send(), so it adds the time the "
                   "proxy took to accept the connection, read the request and connect upstream while thousands "
                   "of others arrived at once. Early = a 504 more than %.1f ms (the loopback delivery time) before "
                   "the read timeout was due.%s\n" % (TIMER_MS, EARLY_SLACK_MS,
                   " h2o 2.2 answers the timeout (its proxy.timeout.io, 3 s here) with `502 Gateway Error` (it "
                   "answers every upstream error with a 502): its 502s are what the others' 504s are."
                   if R.get(("timer", H2O)) else ""))
    if b.hedge or b.hedge_na:
        out.append("\n" + report_hedge(b, a, meta))
    return "\n".join(out)


def report_hedge(b, a, meta):
    """hedge-tail: the table of issue 18 (percentiles over every round's
    samples pooled, extra upstream load), whether the goal is met, each round,
    and what the upstream and hourglass's log say about the hedges."""
    rows, rr, notes = [], [], []
    labels = {r[0]: r[5] for r in HEDGE_ROWS}
    fast, fast_from = float("nan"), None
    for row in ("hg-no-hedge", "nginx", "haproxy"):            # the fast path: p50 without hedging
        if b.hedge.get(row):
            fast, fast_from = pct_rank([x for r in b.hedge[row] for x in r["lat"]], 50), labels[row]
            break
    limit = HEDGE_GOAL_X * fast
    met, missed = [], []
    for row, proxy, hedge, _, _, label in b.hedge_rows():
        rs = b.hedge.get(row)
        if not rs:
            why = b.hedge_na.get(row, "not run")
            rows.append([label] + ["not available in this build" if "not available" in why else "failed"] +
                        ["-"] * 9)
            continue
        lat = [x for r in rs for x in r["lat"]]
        sent = sum(r["sent"] for r in rs)
        upn = sum(r["up"]["requests"] for r in rs)
        extra = (upn / max(sent, 1) - 1.0) * 100.0
        bad = sum(r["sent"] - r["ok"] for r in rs)
        hedges = [r["hedges"] for r in rs]
        p99 = pct_rank(lat, 99)
        ok = p99 < limit and extra < HEDGE_GOAL_LOAD and not bad
        (met if ok else missed).append(label)
        rows.append([label, fmt(pct_rank(lat, 50), 2), fmt(p99, 2), fmt(pct_rank(lat, 99.9), 2), fmt(extra, 2), sent,
                     fmt(max(lat) if lat else float("nan"), 1),
                     "-" if proxy != "hourglass" else str(sum(hedges)) if None not in hedges else "?",
                     sum(r["up"]["slow_first_unhedged"] for r in rs), bad,
                     "yes" if ok else "no (%s)" % ", ".join(
                         ([] if p99 < limit else ["p99"]) + ([] if extra < HEDGE_GOAL_LOAD else ["load"]) +
                         (["failures"] if bad else []))])
        for i, r in enumerate(rs):
            rr.append([label, i + 1, fmt(pct_rank(r["lat"], 50), 2), fmt(pct_rank(r["lat"], 99), 2), fmt(pct_rank(r["lat"], 99.9), 2),
                       fmt(r["extra"], 2), r["sent"], r["up"]["requests"], r["up"]["slow_first"],
                       r["up"]["slow_first_unhedged"], r["up"]["cancelled"],
                       "-" if r["hedges"] is None else r["hedges"], r["connections"], fmt(r["max_send_lag_ms"], 1),
                       fmt(r["cpu"] / max(r["sent"], 1) * 1e6, 1)])
        if proxy == "hourglass" and hedge:
            lb = sum(len(r["log_budget"]) for r in rs)
            lw = [ln for r in rs for ln in r["log_warn"]]
            notes.append("- %s: `hedge: %s`; its error log during the runs: %d \"hedging to\" lines "
                         "(one per hedge started), %d mentioning the budget%s; slow first attempts not hedged: %d "
                         "of %d." % (label, b.hedge_mapping(hedge), sum(r["log_hedging"] for r in rs), lb,
                                     ", %d warn/error lines, e.g. `%s`" % (len(lw), lw[0][-200:]) if lw else
                                     ", no warn or error line",
                                     sum(r["up"]["slow_first_unhedged"] for r in rs),
                                     sum(r["up"]["slow_first"] for r in rs)))
    out = ["### Hedging: latency tail and extra upstream load (hedge-tail, issue 18)\n",
           "Two upstream servers (bench/hedge_upstream.c, one process on ports %s, pinned with the client) answer "
           "each GET after %d ms with 100 B, but 1 request in %d (p = %.2f, drawn per client request ID from seed %d, "
           "so every row gets the same requests slow: round r sends IDs r x N .. r x N + N - 1; a hedge or "
           "any later arrival of an ID draws again) after %d ms. "
           "bench/hedge_load.c sends GET /h/ID open-loop at %d requests/s (request ID due at start + ID / rate, "
           "whatever became of the others; latency from the time it was due to the last byte of the response), "
           "%d requests per run, %d round(s): the percentiles are computed exactly from the %d samples of all rounds "
           "pooled. Extra upstream load = requests the upstream received during the runs / requests the client sent "
           "- 1 (counted on arrival, so a hedge cancelled before its answer counts).\n" % (
               " and ".join(str(x) for x in HEDGE_UP_PORTS), HEDGE_FAST_MS, round(1 / HEDGE_P), HEDGE_P, HEDGE_SEED,
               HEDGE_SLOW_MS, a.hedge_rate, a.hedge_requests, a.rounds, a.hedge_requests * a.rounds),
           table(["config", "p50 ms", "p99 ms", "p99.9 ms", "extra upstream load %", "requests", "max ms",
                  "hedges started", "slow, not hedged", "failed", "goal met"], rows)]
    if fast == fast:
        out.append("\n**Goal** (issue 18): p99 below %g x the fast path with under %g %% extra upstream load. Fast "
                   "path = the p50 of %s = %.2f ms (%d ms upstream + proxy and client), so p99 < %.2f ms. %s\n" % (
                       HEDGE_GOAL_X, HEDGE_GOAL_LOAD, fast_from, fast, HEDGE_FAST_MS, limit,
                       ("**Met** by: %s." % ", ".join(met) if met else "**Not met** by any row.") +
                       (" Not met by: %s." % ", ".join(missed) if met and missed else "")))
    out.append("- nginx and HAProxy do not hedge: nginx's `proxy_next_upstream` and HAProxy's `retries`/`redispatch` "
               "send a request again only after an error or a timeout, never while the first attempt is merely "
               "slow; their rows are the tail without hedging, on the same upstream (2 servers, round-robin, "
               "upstream keep-alive; read timeout 15 s).")
    out.append("- hourglass rows: a pool of the two servers (round_robin) with the default retry budget "
               "(`budget.percent` 20, `budget.min` 3), which hedges count against; a hedge goes to the other server. "
               "\"Hedges started\" = hourglass_hedges_started_total (its /metrics) over the runs. \"Slow, not hedged\" = client "
               "requests whose first attempt drew a slow answer and which never reached the upstream a second time "
               "(the upstream tracks each ID): for the no-hedge rows all slow ones; for a hedging row, hedges not "
               "started (hourglass logs each hedge the budget refuses, `hedge skipped: retry budget of pool P "
               "spent`, at level info, and counts it in hourglass_hedges_total{result=\"skipped\"}).")
    out.extend(notes)
    for row, _, _, _, _, label in b.hedge_rows():
        if row in b.hedge_na:
            out.append("- %s: %s" % (label, b.hedge_na[row]))
    if BASE in PROXIES:
        out.append("- hg-base (--baseline) does not run this row: to compare two builds, run it with each as "
                   "HOURGLASS_BIN.")
    if meta.get("hedge_bin"):
        out.append("- hourglass binary: %s" % meta["hedge_bin"])
    out.append("\n#### hedge-tail, every round\n")
    out.append(table(["config", "round", "p50 ms", "p99 ms", "p99.9 ms", "extra load %", "client requests",
                      "upstream requests", "slow first attempts", "slow, not hedged", "cancelled upstream",
                      "hedges", "client connections", "max send lag ms", "proxy CPU us/req"], rr))
    out.append("\nCancelled upstream = requests whose connection the proxy closed before their answer was due "
               "(the losing attempt of a hedge). Client connections = those hedge_load held (%d opened before the "
               "run, more when all were busy). Max send lag = the most a request went out after it was due (the "
               "client's own delay; its latency counts from the due time anyway). Proxy CPU: as in the CPU table "
               "(informational: at this rate a run is a few hundred ms of CPU).\n" % HEDGE_CONNS)
    return "\n".join(out)


def main():
    global TMP, FLOOR, HOURGLASS, BASELINE, CPU_PROXY, CPU_LOAD, TLS, H2UP_BIN, GRPC_REQ, HEDGE_UP_BIN, HEDGE_LOAD_BIN
    global BIG_CONNS, DEFER_ACCEPT, BASE_DEFER
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        role, args = sys.argv[1], sys.argv[2:]
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
        if role == "_slow":
            role_slow(int(args[0]), args[1])
        elif role == "_idle":
            role_idle(int(args[0]), int(args[1]))
        elif role == "_timer":
            role_timer(int(args[0]), int(args[1]), args[2])
        elif role == "_upload":
            role_upload(*[int(x) for x in args])
        elif role == "_grpcio":
            role_grpcio(int(args[0]))
        return

    ap = argparse.ArgumentParser(description="hourglass vs nginx vs HAProxy vs h2o vs a byte-relay floor")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 round, short runs (~3.5 minutes)")
    ap.add_argument("--rounds", type=int, help="rounds (default 3; --quick 1)")
    ap.add_argument("--duration", type=int, help="seconds per wrk (and h2load) run (default 4; --quick 1)")
    ap.add_argument("--warmup", type=int, help="seconds of warm-up per proxy and scenario (default 1)")
    ap.add_argument("--uploads", type=int, help="16 MiB uploads per run (default 64; --quick 12)")
    ap.add_argument("--ab-requests", type=int,
                    help="requests per ab run in small-ab-k (default 40000 per second of --duration: "
                         "160000; --quick 40000)")
    ap.add_argument("--conns", type=int,
                    help="idle connections (idle-10k) and requests in flight (timer); default 10000, "
                         "lowered to what the open-file hard limit allows; --quick 2000")
    ap.add_argument("--hedge-requests", type=int,
                    help="hedge-tail: requests per run and row (default %d; --quick 3000); the percentiles pool "
                         "every round's" % HEDGE_REQUESTS)
    ap.add_argument("--hedge-rate", type=int, default=HEDGE_RATE,
                    help="hedge-tail: requests per second, open loop (default %d)" % HEDGE_RATE)
    ap.add_argument("--hedge-adaptive", default=HEDGE_ADAPTIVE, metavar="MAPPING",
                    help="hedge-tail: the adaptive row's `hedge` mapping, YAML flow style (default %r)" %
                         HEDGE_ADAPTIVE)
    ap.add_argument("--scenarios", default="all",
                    help="comma-separated subset of: " + ", ".join(s for s, _, _ in SCENARIOS) +
                         " (e.g. --scenarios h2c-small,h2-tls-small: the HTTP/2 rows only)")
    ap.add_argument("--proxies", default="all",
                    help="comma-separated subset of: " + ", ".join(PROXIES) + ", " +
                         BASE + " (with --baseline) (the others show -)")
    ap.add_argument("--baseline", metavar="BIN",
                    help="A/B mode: also run BIN as a sixth proxy, " + BASE + ", with exactly hourglass's flags "
                         "and configuration, in every scenario hourglass runs; the tables get a column "
                         "hg/hg-base (hourglass = $HOURGLASS_BIN or build/hourglass). A relative path is taken "
                         "from the repository root")
    ap.add_argument("--output", default=os.path.join(HERE, "results.md"))
    ap.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    ap.add_argument("--cpu-gaps", action="store_true",
                    help="timer: also sample the proxy's CPU with perf (linux-perf) at %d Hz during each round "
                         "and report the gaps without a sample (the virtual CPU not running) and the p99 of the "
                         "timers due outside them; off by default, as the sampling adds interrupts" % GAP_HZ)
    ap.add_argument("--no-defer-accept", action="store_true",
                    help="accept connections at once on every listener (default: deferred accept, "
                         "TCP_DEFER_ACCEPT 1 s, on all of them; h2o keeps its default, which defers)")
    a = ap.parse_args()
    q = a.quick
    a.rounds = a.rounds or (1 if q else 3)
    a.duration = a.duration or (1 if q else 4)
    a.warmup = a.warmup if a.warmup is not None else 1
    a.uploads = a.uploads or (12 if q else 64)
    a.ab_requests = a.ab_requests or AB_PER_SECOND * a.duration
    a.hedge_requests = a.hedge_requests or (3000 if q else HEDGE_REQUESTS)
    if a.hedge_rate <= 0 or a.hedge_requests <= 0:
        ap.error("--hedge-rate and --hedge-requests must be positive")
    if a.hedge_requests * a.rounds > HEDGE_MAX_ID:
        ap.error("--hedge-requests x --rounds may be at most %d (the request IDs hedge_upstream tracks)" % HEDGE_MAX_ID)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    cap = (hard - 200) // 2 if hard != resource.RLIM_INFINITY else 10000
    a.conns = min(a.conns or (2000 if q else 10000), cap)
    BIG_CONNS = min(BIG_CONNS, cap)                           # small-ka-9900 (--quick too: it is the point)
    names = [s for s, _, _ in SCENARIOS]
    scens = names if a.scenarios == "all" else a.scenarios.split(",")
    for s in scens:
        if s not in names:
            ap.error("unknown scenario %r" % s)
    if H2UP_SCEN & set(scens):
        PORTS["h2origin"] = H2UP_PORT
    if HEDGE_SCEN in scens:                                    # its upstream, hourglass rows, admin listeners
        for i, port in enumerate(HEDGE_UP_PORTS):
            PORTS["hedge-up%d" % i] = port
        for row in HEDGE_ROWS:
            PORTS[row[0]] = row[3]
            if row[4]:
                PORTS[row[0] + "-admin"] = row[4]
    if a.baseline:
        a.baseline = os.path.abspath(a.baseline)
        if not (os.path.isfile(a.baseline) and os.access(a.baseline, os.X_OK)):
            ap.error("--baseline %s: not an executable file" % a.baseline)
        PORTS[BASE] = BASE_PORT
        PROXIES.insert(PROXIES.index("hourglass") + 1, BASE)
    a.proxies = PROXIES if a.proxies == "all" else a.proxies.split(",")
    for p in a.proxies:
        if p == BASE and not a.baseline:
            ap.error("proxy %r needs --baseline BIN" % p)
        if p not in PROXIES:
            ap.error("unknown proxy %r" % p)

    TMP = os.environ.get("BENCH_TMP") or __import__("tempfile").mkdtemp(prefix="hgbench.")
    FLOOR = os.environ.get("FLOOR_BIN", os.path.join(TMP, "floor"))
    H2UP_BIN = os.environ.get("GRPC_UPSTREAM_BIN", os.path.join(TMP, "grpc_upstream"))
    if H2UP_SCEN & set(scens):
        if not os.access(H2UP_BIN, os.X_OK):
            sys.exit("bench: %s: no grpc_upstream binary (bench/run.sh builds bench/grpc_upstream.c)" % H2UP_BIN)
        GRPC_REQ = os.path.join(TMP, "grpc-request.bin")       # h2load -d: one length-prefixed message
        with open(GRPC_REQ, "wb") as f:
            f.write(b"\0" + struct.pack(">I", GRPC_MSG) + b"g" * GRPC_MSG)
    HEDGE_UP_BIN = os.environ.get("HEDGE_UPSTREAM_BIN", os.path.join(TMP, "hedge_upstream"))
    HEDGE_LOAD_BIN = os.environ.get("HEDGE_LOAD_BIN", os.path.join(TMP, "hedge_load"))
    if HEDGE_SCEN in scens:
        for b_ in (HEDGE_UP_BIN, HEDGE_LOAD_BIN):
            if not os.access(b_, os.X_OK):
                sys.exit("bench: %s: not built (bench/run.sh builds bench/hedge_upstream.c and bench/hedge_load.c; "
                         "run the bench through it)" % b_)
    HOURGLASS = os.environ.get("HOURGLASS_BIN", os.path.join(ROOT, "build", "hourglass"))
    BASELINE = a.baseline
    DEFER_ACCEPT = not a.no_defer_accept
    if BASELINE:   # an older binary may not know --defer-accept
        BASE_DEFER = "--defer-accept" in subprocess.run([BASELINE, "--help"], capture_output=True,
                                                         text=True).stdout
    ncpu = len(os.sched_getaffinity(0))
    if a.no_pin or ncpu < 2:
        CPU_PROXY = CPU_LOAD = None
    else:
        cpus = sorted(os.sched_getaffinity(0))
        CPU_PROXY, CPU_LOAD = cpus[0], cpus[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    busy = [p for p in sorted(set(PORTS.values())) if not port_free(p)]
    if busy:
        sys.exit("bench: ports in use on 127.0.0.1: %s (another benchmark running?)" % busy)

    def on_signal(sig, _):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_signal)

    def ver(argv, pat):
        try:
            o = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout
        except OSError:
            return "?"
        m = re.search(pat, o)
        return m.group(1) if m else o.strip().splitlines()[0] if o.strip() else "?"

    def git(*args, where=ROOT):
        try:
            return subprocess.run(["git", "-C", where] + list(args), capture_output=True, text=True).stdout.strip()
        except OSError:
            return "?"

    def describe_bin(path):
        """A/B mode: the binary, a digest of it and the commit of the git tree it sits in, if any."""
        path = os.path.abspath(path)
        try:
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()[:12]
        except OSError:
            return "%s (cannot read it)" % path, None
        d = os.path.dirname(path)
        c = git("rev-parse", "--short", "HEAD", where=d) if os.path.isdir(d) else ""
        if c and git("status", "--porcelain", "--untracked-files=no", where=d):
            c += ", uncommitted changes"
        return "%s (sha256 %s%s)" % (path, digest, ", tree at commit " + c if c else ""), digest

    cpu_model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    dirty = " (working tree has uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else ""
    meta = {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "commit": git("rev-parse", "--short", "HEAD") + dirty,
        "kernel": os.uname().release,
        "cpu": "%s, %d CPUs online (os.cpu_count %d)" % (cpu_model, ncpu, os.cpu_count() or 0),
        "nginx": ver(["nginx", "-v"], r"nginx version: (\S+)"),
        "haproxy": ver(["haproxy", "-v"], r"(HAProxy version \S+)"),
        "wrk": ver(["wrk", "-v"], r"(wrk \S+)"),
        "ab": "ab " + ver(["ab", "-V"], r"ApacheBench, Version (\S+)"),
        "openssl": ver(["openssl", "version"], r"(OpenSSL \S+)"),
        "python": sys.version.split()[0],
        "load": open("/proc/loadavg").read().split()[:3],
    }
    if H2UP_SCEN & set(scens):
        try:
            import grpc                                        # only to name its version
            gv = "python3-grpcio %s" % grpc.__version__
        except ImportError:
            gv = "no python3-grpcio (the gRPC client check is skipped)"
        meta["h2up"] = "bench/grpc_upstream.c with %s, %s, %s" % (
            ver([H2UP_BIN, "-V"], r"(libnghttp2 \S+)"), ver(["h2load", "--version"], r"(h2load \S+)"), gv)
    if HEDGE_SCEN in scens:
        meta["hedge_bin"] = describe_bin(HOURGLASS)[0]
        print("bench: hedge-tail: hourglass %s; %d requests per run at %d/s, adaptive row `hedge: %s`" % (
            meta["hedge_bin"], a.hedge_requests, a.hedge_rate, a.hedge_adaptive), flush=True)
    meta["h2o"] = "h2o " + ver(["h2o", "--version"], r"h2o version (\S+)")
    if H2_SCEN & set(scens):
        meta["h2"] = ver(["h2load", "--version"], r"(h2load \S+)")
    if a.baseline:
        (meta["hg_bin"], d1), (meta["base_bin"], d2) = describe_bin(HOURGLASS), describe_bin(BASELINE)
        for p in ("hourglass", BASE):
            print("bench: %-9s %s" % (p, meta["hg_bin" if p == "hourglass" else "base_bin"]), flush=True)
        if d1 and d1 == d2:
            print("bench: !! hourglass and %s are the same binary" % BASE, flush=True)
    print("bench: %d round(s), %ds per wrk/h2load run, %d requests per ab run, %d uploads, %d idle/in-flight "
          "connections, small-ka-9900 with %d, pinning: %s" % (
        a.rounds, a.duration, a.ab_requests, a.uploads, a.conns, BIG_CONNS,
        "proxy on CPU %s, origin + load generator on CPU %s" % (CPU_PROXY, CPU_LOAD) if CPU_PROXY is not None
        else "off"), flush=True)
    print("bench: nginx %s, %s, %s, %s, %s%s; load average %s" % (
        meta["nginx"], meta["haproxy"], meta["h2o"], meta["wrk"], meta["ab"],
        ", " + meta["h2"] if "h2" in meta else "",
        " ".join(meta["load"])), flush=True)
    if "h2up" in meta:
        print("bench: HTTP/2 upstream: %s" % meta["h2up"], flush=True)

    b = Bench(a)
    origin = None
    t0 = time.monotonic()
    try:
        od = os.path.join(TMP, "origin")
        os.makedirs(od, exist_ok=True)
        os.chmod(TMP, 0o755)
        origin = spawn(["nginx", "-p", od, "-c", write_origin(od, PORTS["origin"]), "-e", od + "/error.log"],
                       cpu=CPU_LOAD, log=od + ".log")
        wait_port(PORTS["origin"], origin, "origin nginx")
        if (TLS_SCEN | H2_TLS) & set(scens):
            TLS = make_tls(os.path.join(TMP, "tls"))
        b.run(scens)
    except KeyboardInterrupt:
        print("\nbench: interrupted; cleaning up", file=sys.stderr)
        stop_all()
        sys.exit(130)
    finally:
        stop(origin)
        stop_all()
    el = time.monotonic() - t0
    body = report(b, a, meta)
    head = ("# hourglass benchmark results\n\n"
            "- date: %(date)s\n- git commit: %(commit)s\n- kernel: %(kernel)s\n- CPU: %(cpu)s\n"
            "- nginx: %(nginx)s (proxy and origin), %(haproxy)s, %(h2o)s, %(wrk)s, %(ab)s, Python %(python)s\n"
            "- TLS library: %(openssl)s (the openssl CLI; wrk, nginx, HAProxy and h2o link the system libssl)\n"
            "%(h2line)s%(h2upline)s"
            "- load average at start: %(ld)s (the machine is shared)\n" % dict(
                meta, ld=" ".join(meta["load"]),
                h2line="- HTTP/2 rows: %s (it links the system libssl too)\n" % meta["h2"] if "h2" in meta else "",
                h2upline="- HTTP/2-upstream rows: %s\n" % meta["h2up"] if "h2up" in meta else ""))
    head += ("- settings: %d round(s), %d s per wrk/h2load run (+%d s warm-up per proxy and scenario), %d requests per "
             "ab run, %d uploads per run, %d idle/in-flight connections, %d connections in small-ka-9900, "
             "pinning: %s, %s, wall time %.0f s\n"
             "- command: `%s`\n\n" % (
                 a.rounds, a.duration, a.warmup, a.ab_requests, a.uploads, a.conns, BIG_CONNS,
                 "proxy on CPU %s, origin + clients on CPU %s" % (CPU_PROXY, CPU_LOAD)
                 if CPU_PROXY is not None else "off",
                 "deferred accept (TCP_DEFER_ACCEPT 1 s) on every listener under test: nginx `deferred`, "
                 "HAProxy `defer-accept`, h2o's default, hourglass `--defer-accept 1s`, the floor too"
                 if DEFER_ACCEPT else "no deferred accept (--no-defer-accept; h2o still defers, its default)",
                 el, " ".join(["bench.py"] + sys.argv[1:])))
    if HEDGE_SCEN in scens:
        head = head[:-1] + "- hedge-tail: %d requests per run and row at %d requests/s (open loop), +%d s warm-up per " \
            "row; hourglass = %s\n\n" % (a.hedge_requests, a.hedge_rate, a.warmup, meta["hedge_bin"])
    if a.proxies != PROXIES:
        head = head[:-1] + "- proxies run: %s (the others show -)\n\n" % ", ".join(a.proxies)
    if a.baseline:
        head = head[:-1] + "- A/B: hourglass = %s; %s = %s (--baseline), same flags and configuration\n\n" % (
            meta["hg_bin"], BASE, meta["base_bin"])
    print("\n" + body)
    with open(a.output, "w") as f:
        f.write(head + body + "\n")
    print("\nbench: wrote %s (%.0f s)" % (os.path.relpath(a.output, os.getcwd()), el))


if __name__ == "__main__":
    main()
