"""TLS: listeners (certificates, SNI, ALPN, versions, session resumption, the
handshake timeout, clean and unclean ends), TLS to upstreams (verification,
server name, client certificates, the connect timeout over the handshake,
keep-alive, sessions), configuration errors, certificate reloads (SIGHUP to
the master and in single-process mode), CONNECT on a TLS forward listener and
the hourglass_tls_handshakes_total metric.

Every socket is on 127.0.0.1. Certificates (EC P-256) are made once per
session with the openssl command line into a temporary directory:

  ca      the test CA                     otherca  another CA
  site    CN=localhost, SAN DNS:localhost, DNS:a.example.test, IP:127.0.0.1 (ca)
  site2   the same names, another subject and serial (ca): the "new" certificate
  b       SAN DNS:b.example.test (ca)     wild     SAN DNS:*.wild.test (ca)
  rogue   the names of site, signed by otherca
  client  CN=hourglass client, clientAuth (ca)

Clients: Python's ssl module (wrap_socket with suppress_ragged_eofs=False, so
that an EOF without close_notify raises instead of looking like a clean end)
and curl. Proxies are started from a configuration file (JSON, which YAML
reads) holding a TLS listener, a plain listener (waited on, so no probe ever
touches the TLS port) and an admin listener for /metrics.
"""

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import warnings
from pathlib import Path

import pytest

from conftest import (BIN, WRAPPER, Client, FakeUpstream, Proxy, _EOF, _RecordingProtocol, chunked,
                      free_port, is_sanitized, ok_handler, request_bytes, scrape, silent_handler,
                      wait_until)

# sanitizer builds run slower: upper bounds of timing windows are scaled by this
SLOW = 2.0 if is_sanitized() else 1.0

STARTED = r"worker (\d+) \(pid (\d+)\) started \(generation (\d+)\)"


# --------------------------------------------------------------------------
# certificates

def _openssl(args, cwd):
    r = subprocess.run(["openssl", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                       timeout=30)
    if r.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(map(str, args))} failed:\n{r.stderr}")


class Certs:
    def __init__(self, d):
        self.dir = Path(d)

    def pem(self, name):
        return str(self.dir / f"{name}.pem")

    def key(self, name):
        return str(self.dir / f"{name}.key")

    def pair(self, name):
        return {"cert": self.pem(name), "key": self.key(name)}

    def der(self, name):
        return ssl.PEM_cert_to_DER_cert((self.dir / f"{name}.pem").read_text())

    @property
    def ca(self):
        return self.pem("ca")


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make test certificates")
    d = tmp_path_factory.mktemp("certs")

    def key(name):
        _openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                  "-out", f"{name}.key"], d)

    def ca(name, cn):
        key(name)
        _openssl(["req", "-x509", "-new", "-key", f"{name}.key", "-out", f"{name}.pem",
                  "-days", "30", "-subj", f"/CN={cn}",
                  "-addext", "basicConstraints=critical,CA:TRUE",
                  "-addext", "keyUsage=critical,keyCertSign,cRLSign"], d)

    def leaf(name, cn, san, ca_name, serial, eku="serverAuth"):
        key(name)
        _openssl(["req", "-new", "-key", f"{name}.key", "-out", f"{name}.csr",
                  "-subj", f"/CN={cn}"], d)
        ext = ("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
               f"extendedKeyUsage={eku}\n" + (f"subjectAltName={san}\n" if san else ""))
        (d / f"{name}.ext").write_text(ext)
        _openssl(["x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca_name}.pem",
                  "-CAkey", f"{ca_name}.key", "-set_serial", serial, "-days", "30",
                  "-extfile", f"{name}.ext", "-out", f"{name}.pem"], d)

    names = "DNS:localhost,DNS:a.example.test,IP:127.0.0.1"
    ca("ca", "hourglass test CA")
    ca("otherca", "some other CA")
    leaf("site", "localhost", names, "ca", 1001)
    leaf("site2", "reloaded.localhost", names, "ca", 1002)
    leaf("b", "b.example.test", "DNS:b.example.test", "ca", 1003)
    leaf("wild", "wild.test", "DNS:*.wild.test", "ca", 1004)
    leaf("rogue", "localhost", names, "otherca", 1005)
    leaf("client", "hourglass client", None, "ca", 1006, eku="clientAuth")
    return Certs(d)


# --------------------------------------------------------------------------
# clients

def client_ctx(certs, min_v=None, max_v=None, alpn=None, check_hostname=True):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # Python 3.10 and 3.11 set this by default with OpenSSL 3, which makes an
    # EOF without close_notify read as a clean end: the tests must tell them
    # apart
    ctx.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    ctx.load_verify_locations(certs.ca)
    ctx.check_hostname = check_hostname
    if min_v is not None:
        ctx.minimum_version = min_v
    if max_v is not None:
        ctx.maximum_version = max_v
    if alpn is not None:
        ctx.set_alpn_protocols(alpn)
    return ctx


V12 = ssl.TLSVersion.TLSv1_2
V13 = ssl.TLSVersion.TLSv1_3


class TLSClient(Client):
    """conftest.Client over TLS. How the stream ended is recorded:
    close_notify (recv returned b'' after the peer's close_notify), unclean
    (the exception: SSLEOFError for an EOF without close_notify, any other
    SSLError, or ConnectionResetError, then reset is True too)."""

    def __init__(self, port, ctx, server_hostname="localhost", session=None, timeout=3.0):
        super().__init__(port, timeout=timeout * SLOW)
        self.raw = self.sock
        self.close_notify = False
        self.unclean = None
        self.sock = ctx.wrap_socket(self.raw, server_hostname=server_hostname, session=session,
                                    suppress_ragged_eofs=False)

    def _fill(self, deadline):
        if self.eof:
            raise _EOF()
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("client read timed out")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(1 << 18)
            if not data:
                self.close_notify = True
        except TimeoutError:
            raise TimeoutError("client read timed out") from None
        except ConnectionResetError as e:
            self.reset = True
            self.unclean = e
            data = b""
        except ssl.SSLError as e:
            self.unclean = e
            data = b""
        if not data:
            self.eof = True
            self.t_eof = time.monotonic()
            raise _EOF()
        self.buf += data

    def end(self, timeout=2.0):
        """Reads to the end of the stream: "close_notify", "unclean" or "open"
        (nothing within timeout)."""
        try:
            self.read_until_close(timeout * SLOW)
        except TimeoutError:
            return "open"
        return "close_notify" if self.close_notify else "unclean"

    def peer_der(self):
        return self.sock.getpeercert(binary_form=True)


def tconn(p, certs, ctx=None, sni="localhost", session=None, timeout=3.0):
    return TLSClient(p.tls_port, ctx or client_ctx(certs), server_hostname=sni,
                     session=session, timeout=timeout)


def get(c, target="/", headers=None, host="localhost"):
    c.send(request_bytes("GET", target, headers=headers, host=host))
    return c.read_response()


def client_hello(certs):
    """The bytes of a real ClientHello (TLS 1.2/1.3 offering client)."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_ctx(certs).wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    data = out.read()
    assert data[:1] == b"\x16" and len(data) > 100, data[:20]
    return data


# --------------------------------------------------------------------------
# metrics

def metric(p, name, **labels):
    """The value of name{labels} (labels in any order), 0 when absent."""
    code, text = scrape(p.admin_port, timeout=3 * SLOW)
    assert code == 200, text
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if got == labels:
            return float(m.group(3))
    return 0.0


def hs(p, side, result):
    return metric(p, "hourglass_tls_handshakes_total", side=side, result=result)


def wait_metric(p, side, result, want, timeout=2.0):
    """Waits until the handshake counter reaches want; fails showing the value."""
    last = [None]

    def ok():
        last[0] = hs(p, side, result)
        return last[0] >= want
    try:
        wait_until(ok, timeout * SLOW, interval=0.02)
    except AssertionError:
        raise AssertionError(f'hourglass_tls_handshakes_total{{side="{side}",result="{result}"}}'
                             f" is {last[0]}, wanted {want}\nstderr:\n"
                             f"{p.stderr_text()[-2000:]}") from None
    return last[0]


# --------------------------------------------------------------------------
# TLS upstream (asyncio server with ssl=...)

class TLSUpstream(FakeUpstream):
    """FakeUpstream over TLS. conns holds the connections whose handshake
    succeeded; sni the server names clients sent (None: no SNI), one per
    handshake attempt."""

    def __init__(self, aio, handler, certs, cert="site", require_client_cert=False,
                 max_version=None):
        self.aio = aio
        self.handler = handler
        self.conns = []
        self.errors = []
        self.host = "127.0.0.1"
        self.sni = []
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certs.pem(cert), certs.key(cert))
        ctx.set_alpn_protocols(["http/1.1"])
        if require_client_cert:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(certs.ca)
        if max_version is not None:
            ctx.maximum_version = max_version

        def on_sni(obj, name, c):
            self.sni.append(name)
        ctx.sni_callback = on_sni
        self.ctx = ctx
        sock = socket.socket(socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self.addr = f"127.0.0.1:{self.port}"

        async def mk():
            return await aio.loop.create_server(lambda: _RecordingProtocol(self), sock=sock,
                                                ssl=ctx, ssl_handshake_timeout=10)
        self.server = aio.call(mk())


def tls_info(ctx):
    obj = ctx.transport.get_extra_info("ssl_object")
    return {"reused": obj.session_reused, "alpn": obj.selected_alpn_protocol(),
            "version": obj.version(), "cipher": obj.cipher()[0],
            "peercert": ctx.transport.get_extra_info("peercert")}


def tls_ok_handler(body=b"secure"):
    """Records tls_info(ctx) as ctx.tls, then answers every request with body."""
    async def handler(reader, writer, ctx):
        ctx.tls = tls_info(ctx)

        async def respond(ctx, req):
            await ctx.respond(200, body)
        await ctx.serve_forever(respond)
    return handler


@pytest.fixture
def tls_upstream(aio, certs):
    ups = []

    def make(handler, **kw):
        u = TLSUpstream(aio, handler, certs, **kw)
        ups.append(u)
        return u
    yield make
    for u in ups:
        u.close()


# --------------------------------------------------------------------------
# proxies from a configuration file

def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return {int(x) for x in f.read().split()}
    except (FileNotFoundError, ProcessLookupError):
        return set()


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


@pytest.fixture
def hg(tmp_path, certs):
    """hg.start(tls="site", up=..., pool={...}, timeouts={...}, ...) -> a running
    Proxy with tls_port, plain_port, admin_port and cfg (the file's path).

    tls: a certificate name (cert + key), a dict (the listener's whole tls
    mapping) or None (no TLS listener). The plain listener comes last in the
    listen list and is the one waited on."""
    procs = []
    count = [0]

    class HG:
        def doc(self, tls="site", up=None, pool=None, timeouts=None, listen_opts=None,
                forward=None, top=None):
            tls_port, plain_port = free_port(), free_port()
            listen = []
            if tls is not None:
                item = {"address": f"127.0.0.1:{tls_port}"}
                item.update(listen_opts or {})
                item["tls"] = certs.pair(tls) if isinstance(tls, str) else tls
                listen.append(item)
            listen.append(f"127.0.0.1:{plain_port}")
            d = {"listen": listen}
            if timeouts:
                d["timeouts"] = dict(timeouts)
            if WRAPPER and "connect" not in d.get("timeouts", {}):
                # under valgrind a TLS 1.2 handshake with a client certificate
                # takes about the default 1 s connect timeout: give it room
                # (the tests about the connect timeout set it, and do not run there)
                d.setdefault("timeouts", {})["connect"] = "10s"
            web = {"servers": [up.addr if up is not None else f"127.0.0.1:{free_port()}"]}
            web.update(pool or {})
            d["pools"] = {"web": web}
            d["routes"] = [{"path": "/", "pool": "web"}]
            if forward is not None:
                d["forward"] = forward
                # no DNS query can leave: the only server is a closed loopback port
                d["resolver"] = {"servers": [f"127.0.0.1:{free_port()}"]}
            d.update(top or {})
            return d, tls_port, plain_port

        def write(self, d, path=None):
            if path is None:
                count[0] += 1
                path = tmp_path / f"hg{count[0]}.yaml"
            Path(path).write_text(json.dumps(d, indent=1) + "\n")
            return Path(path)

        def start(self, tls="site", up=None, pool=None, timeouts=None, listen_opts=None,
                  forward=None, top=None, flags=(), workers=None):
            d, tls_port, plain_port = self.doc(tls, up, pool, timeouts, listen_opts, forward,
                                               top)
            cfg = self.write(d)
            admin = free_port()
            args = ["--config", str(cfg), "--admin", f"127.0.0.1:{admin}",
                    "--drain-timeout", "1s", *map(str, flags)]
            args += ["--single-process"] if workers is None else ["--workers", str(workers)]
            p = Proxy(args, tmp_path, "127.0.0.1", plain_port)
            p.tls_port, p.plain_port, p.admin_port, p.cfg, p.doc = \
                tls_port, plain_port, admin, cfg, d
            p.workers = set()
            procs.append(p)
            if not p.start():
                p.stopped = True
                p._err.close()
                p._out.close()
                pytest.fail(f"proxy exited at start-up ({p.proc.returncode}):\n"
                            f"argv: {p.argv}\nconfig:\n{cfg.read_text()}\n"
                            f"stderr:\n{p.stderr_text()}")
            return p

        def wait_workers(self, p, n, generation=1, timeout=5.0):
            def ready():
                gen = {int(pid) for _, pid, g in re.findall(STARTED, p.stderr_text())
                       if int(g) == generation}
                kids = children(p.pid)
                p.workers |= kids
                return kids if len(gen) >= n and len(kids) == n and kids <= gen else None
            try:
                return wait_until(ready, timeout * SLOW, interval=0.01)
            except AssertionError:
                raise AssertionError(f"{n} workers of generation {generation} not seen;"
                                     f" stderr:\n{p.stderr_text()[-3000:]}") from None

    yield HG()
    problems = []
    for p in procs:
        if not p.stopped and p.alive():
            p.workers |= children(p.pid)
        problems += p.stop()
    for p in procs:
        left = set(p.workers)
        deadline = time.monotonic() + 3.0 * SLOW
        while left and time.monotonic() < deadline:
            left = {pid for pid in left if pid_alive(pid)}
            time.sleep(0.02)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if left:
            problems.append(f"workers {sorted(left)} outlived their master {p.pid}")
    if problems:
        pytest.fail("\n".join(problems))


def run(*args, timeout=10):
    return subprocess.run([BIN, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout * SLOW, stdin=subprocess.DEVNULL)


# ==========================================================================
# listener: basics

@pytest.mark.parametrize("version", [V12, V13], ids=["tls1.2", "tls1.3"])
def test_get_over_tls_python(hg, upstream, certs, version):
    up = upstream(ok_handler(b"hello over tls\n"))
    p = hg.start(up=up)
    ctx = client_ctx(certs, min_v=version, max_v=version)
    c = tconn(p, certs, ctx)
    assert c.sock.version() == {V12: "TLSv1.2", V13: "TLSv1.3"}[version]
    assert c.peer_der() == certs.der("site")
    r = get(c, "/py")
    assert r is not None and r.status == 200 and r.complete, r
    assert r.body == b"hello over tls\n"
    (req,) = up.wait_requests(1)
    assert req.method == "GET" and req.target == "/py"
    assert req.header_all("x-forwarded-proto") == ["https"], req.headers
    (line,) = p.wait_log(1)
    assert line["status"] == "200" and line["target"] == "/py", line
    assert line["upstream"] == up.addr
    c.close()


def test_plain_listener_says_http(hg, upstream, certs):
    """The same proxy's plain listener forwards X-Forwarded-Proto: http, and
    a client's own value is replaced on both."""
    up = upstream(ok_handler(b"plain"))
    p = hg.start(up=up)
    c = Client(p.plain_port)
    c.send(request_bytes("GET", "/plain", headers=[("X-Forwarded-Proto", "https")]))
    r = c.read_response()
    assert r is not None and r.status == 200, r
    c.close()
    t = tconn(p, certs)
    r = get(t, "/tls", headers=[("X-Forwarded-Proto", "http")])
    assert r is not None and r.status == 200, r
    t.close()
    a, b = up.wait_requests(2)
    assert a.header_all("x-forwarded-proto") == ["http"], a.headers
    assert b.header_all("x-forwarded-proto") == ["https"], b.headers


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("want,args", [("TLSv1.2", ["--tlsv1.2", "--tls-max", "1.2"]),
                                       ("TLSv1.3", ["--tlsv1.3"])], ids=["tls1.2", "tls1.3"])
def test_get_over_tls_curl(hg, upstream, certs, want, args):
    up = upstream(ok_handler(b"hello curl\n"))
    p = hg.start(up=up)
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    r = subprocess.run(["curl", "-q", "-sS", "-v", "--noproxy", "*", "--max-time", str(5 * SLOW),
                        "--cacert", certs.ca, "--http1.1",
                        "--resolve", f"a.example.test:{p.tls_port}:127.0.0.1", *args,
                        "-w", "\n%{http_code}",
                        f"https://a.example.test:{p.tls_port}/curl?x=1"],
                       capture_output=True, text=True, timeout=10 * SLOW, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hello curl\n\n200", r.stdout
    assert re.search(rf"SSL connection using {want}", r.stderr), r.stderr
    # curl --http1.1 offers http/1.1 alone, which the proxy picks
    assert re.search(r"ALPN[:,] server accepted (to use )?http/1\.1", r.stderr), r.stderr
    (req,) = up.wait_requests(1)
    assert req.target == "/curl?x=1"
    assert req.header("host") == f"a.example.test:{p.tls_port}"


# (client's offer, listener options, flags, protocol chosen): h2 first
# whatever the client's order, unless the listener has HTTP/2 off (its
# http2 key, --no-http2, or a forward proxy listener)
ALPN_CASES = [
    (["h2", "http/1.1"], {}, [], "h2"),
    (["http/1.1", "h2"], {}, [], "h2"),
    (["h2"], {}, [], "h2"),
    (["http/1.1"], {}, [], "http/1.1"),
    (["spdy/3", "http/1.1"], {}, [], "http/1.1"),
    (None, {}, [], None),
    (["h2", "http/1.1"], {"http2": False}, [], "http/1.1"),
    (["h2"], {"http2": False}, [], None),
    (["h2", "http/1.1"], {"http2": True}, ["--no-http2"], "http/1.1"),
    (["h2", "http/1.1"], {"mode": "forward"}, [], "http/1.1"),
]


@pytest.mark.parametrize("offer,opts,flags,want", ALPN_CASES,
                         ids=["h2+http1.1", "http1.1+h2", "h2", "http1.1", "other+http1.1", "none",
                              "off:h2+http1.1", "off:h2", "flag-off", "forward"])
def test_alpn(hg, upstream, certs, offer, opts, flags, want):
    up = upstream(ok_handler(b"alpn"))
    p = hg.start(up=up, listen_opts=opts, flags=flags,
                 forward={} if opts.get("mode") == "forward" else None)
    c = tconn(p, certs, client_ctx(certs, alpn=offer))
    assert c.sock.selected_alpn_protocol() == want
    if want != "h2":
        # HTTP/1.1 is spoken without h2 (a forward proxy refuses an origin-form target)
        r = get(c, "/alpn")
        assert r is not None, r
        if opts.get("mode") == "forward":
            assert r.status == 400, r
        else:
            assert r.status == 200 and r.body == b"alpn", r
    c.close()


@pytest.mark.parametrize("opts,flags,want", [({}, [], "h2"), ({"http2": False}, [], "http/1.1"),
                                             ({}, ["--no-http2"], "http/1.1")],
                         ids=["on", "off", "flag-off"])
def test_alpn_openssl_s_client(hg, certs, opts, flags, want):
    """What a client outside Python sees: openssl s_client offering h2 and
    http/1.1."""
    p = hg.start(listen_opts=opts, flags=flags)
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{p.tls_port}",
                        "-servername", "localhost", "-CAfile", certs.ca, "-alpn", "h2,http/1.1"],
                       input=b"", capture_output=True, timeout=10 * SLOW)
    # (with h2 the proxy's SETTINGS frame follows the handshake: binary)
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    assert re.search(rf"^ALPN protocol: {re.escape(want)}$", out, re.M), out


@pytest.mark.parametrize("http2,want", [(True, "h2"), (False, "http/1.1")], ids=["on", "off"])
def test_alpn_follows_sni_certificate(hg, certs, http2, want):
    """The certificate SNI picks answers ALPN as the listener's default one does."""
    p = hg.start(tls={**certs.pair("site"), "certificates": [certs.pair("b")]},
                 listen_opts={"http2": http2})
    c = tconn(p, certs, client_ctx(certs, alpn=["http/1.1", "h2"]), sni="b.example.test")
    assert c.peer_der() == certs.der("b")
    assert c.sock.selected_alpn_protocol() == want
    c.close()


def _tls11_ctx(certs, server=False):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if server:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(certs.pem("site"), certs.key("site"))
        else:
            ctx = client_ctx(certs)
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = ssl.TLSVersion.TLSv1_1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    return ctx


def _tls11_control(certs):
    """True when this Python/OpenSSL can do a TLS 1.1 handshake at all
    (against a local Python server that allows it)."""
    l = socket.socket()
    l.bind(("127.0.0.1", 0))
    l.listen(1)
    l.settimeout(5)
    sctx = _tls11_ctx(certs, server=True)
    res = {}

    def serve():
        try:
            a, _ = l.accept()
        except OSError:
            return
        a.settimeout(3)
        try:
            s = sctx.wrap_socket(a, server_side=True)
            res["version"] = s.version()
            s.close()
        except (OSError, ssl.SSLError) as e:
            res["error"] = e
            a.close()
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        s = _tls11_ctx(certs).wrap_socket(
            socket.create_connection(l.getsockname(), timeout=3), server_hostname="localhost")
        v = s.version()
        s.close()
    except (OSError, ssl.SSLError):
        v = None
    t.join(3)
    l.close()
    return v == "TLSv1.1"


def test_tls11_refused(hg, upstream, certs):
    if not _tls11_control(certs):
        pytest.skip("this OpenSSL cannot do TLS 1.1 even against a server allowing it")
    up = upstream(ok_handler())
    p = hg.start(up=up)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        c = TLSClient(p.tls_port, _tls11_ctx(certs))
        c.close()
    p.wait_stderr(r"TLS handshake with client.*failed", 2 * SLOW)
    wait_metric(p, "client", "failed", 1)
    assert hs(p, "client", "ok") == 0
    # TLS 1.2 still works on the same listener
    c = tconn(p, certs, client_ctx(certs, max_v=V12))
    assert get(c, "/after").status == 200
    assert len(up.requests()) == 1, "the refused handshake reached the upstream"


def test_min_version_13(hg, upstream, certs):
    up = upstream(ok_handler(b"13"))
    p = hg.start(tls={**certs.pair("site"), "min_version": "1.3"}, up=up)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        tconn(p, certs, client_ctx(certs, max_v=V12))
    c = tconn(p, certs, client_ctx(certs, min_v=V13))
    assert c.sock.version() == "TLSv1.3"
    assert get(c, "/v13").body == b"13"
    wait_metric(p, "client", "failed", 1)


# --------------------------------------------------------------------------
# SNI

SNI_CASES = [
    ("a.example.test", "site"),
    ("localhost", "site"),
    ("b.example.test", "b"),
    ("x.wild.test", "wild"),
    ("a.b.wild.test", "site"),        # a wildcard covers one label only
    ("wild.test", "site"),            # ... and never the bare suffix
    ("unknown.example.test", "site"),
    (None, "site"),                   # no SNI: the default certificate
]


@pytest.mark.parametrize("sni,want", SNI_CASES, ids=[str(s) for s, _ in SNI_CASES])
def test_sni_selects_certificate(hg, upstream, certs, sni, want):
    up = upstream(ok_handler(b"sni"))
    p = hg.start(tls={**certs.pair("site"),
                      "certificates": [certs.pair("b"), certs.pair("wild")]}, up=up)
    # chain verified against the test CA; the name is checked here, by DER
    c = tconn(p, certs, client_ctx(certs, check_hostname=False), sni=sni)
    got = c.peer_der()
    names = {certs.der(n): n for n in ("site", "b", "wild")}
    assert got == certs.der(want), f"SNI {sni!r}: got {names.get(got, '?')}, wanted {want}"
    r = get(c, "/sni", host=sni or "localhost")
    assert r.status == 200 and r.body == b"sni"
    c.close()


@pytest.mark.parametrize("sni,want", [(None, "b"), ("b.example.test", "b"),
                                      ("a.example.test", "site"), ("nope.test", "b")])
def test_certificates_list_only(hg, upstream, certs, sni, want):
    """Without cert/key the first of `certificates` is the default."""
    up = upstream(ok_handler(b"list"))
    p = hg.start(tls={"certificates": [certs.pair("b"), certs.pair("site")]}, up=up)
    c = tconn(p, certs, client_ctx(certs, check_hostname=False), sni=sni)
    assert c.peer_der() == certs.der(want)
    assert get(c, "/l").body == b"list"
    c.close()


# --------------------------------------------------------------------------
# session resumption

@pytest.mark.parametrize("version", [V12, V13], ids=["tls1.2", "tls1.3"])
def test_session_resumption(hg, upstream, certs, version):
    up = upstream(ok_handler(b"resume"))
    p = hg.start(up=up)
    ctx = client_ctx(certs, min_v=version, max_v=version)
    c1 = tconn(p, certs, ctx)
    assert not c1.sock.session_reused
    # a whole exchange first: TLS 1.3 tickets arrive after the handshake
    assert get(c1, "/first").status == 200
    sess = c1.sock.session
    assert sess is not None
    assert sess.ticket_lifetime_hint == 3600, sess.ticket_lifetime_hint   # tls.ticket_lifetime
    c1.close()
    c2 = tconn(p, certs, ctx, session=sess)
    assert c2.sock.session_reused, f"{c2.sock.version()} session not resumed"
    assert get(c2, "/second").body == b"resume"
    c2.close()
    p.wait_log(2)
    wait_metric(p, "client", "resumed", 1)
    assert hs(p, "client", "ok") == 1


# --------------------------------------------------------------------------
# HTTP over TLS

def test_keepalive_and_pipelining(hg, upstream, certs):
    up = upstream(ok_handler(b"ka"))
    p = hg.start(up=up)
    c = tconn(p, certs)
    for i in range(5):
        r = get(c, f"/ka{i}")
        assert r is not None and r.status == 200 and r.body == b"ka", (i, r)
    # three requests in one write, three responses in order
    c.send(b"".join(request_bytes("GET", f"/pipe{i}") for i in range(3)))
    for i in range(3):
        r = c.read_response()
        assert r is not None and r.status == 200 and r.body == b"ka", (i, r)
    lines = p.wait_log(8)
    assert [l["target"] for l in lines] == [f"/ka{i}" for i in range(5)] + \
                                          [f"/pipe{i}" for i in range(3)]
    # all on one TLS connection: one full handshake
    assert hs(p, "client", "ok") == 1
    c.close()


def bio_handshake(p, ctx):
    """A TLS client over memory BIOs on a raw socket to p's TLS port, its
    handshake driven until the client side is done: (raw, inc, out, obj).
    The client's last flight (its Finished) is still in out, unsent, so a
    test chooses what goes with it."""
    raw = socket.create_connection(("127.0.0.1", p.tls_port), timeout=3 * SLOW)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            if out.pending:
                raw.sendall(out.read())
            data = raw.recv(65536)
            assert data, "closed during the handshake"
            inc.write(data)
    return raw, inc, out, obj


def test_tls13_ticket_goes_with_the_first_response(hg, upstream, certs):
    """A TLS 1.3 session ticket is sent with the proxy's first bytes, not
    on its own after the handshake: nothing comes while the client says
    nothing, then one ticket arrives with the response and resumes."""
    up = upstream(ok_handler(b"tk"))
    p = hg.start(up=up)
    ctx = client_ctx(certs, max_v=V13)
    raw, inc, out, obj = bio_handshake(p, ctx)
    raw.sendall(out.read())          # the Finished
    raw.settimeout(0.3)
    with pytest.raises(socket.timeout):
        raw.recv(65536)              # no ticket on its own
    obj.write(request_bytes("GET", "/tk"))
    raw.sendall(out.read())
    got = b""
    raw.settimeout(3 * SLOW)
    while b"tk" not in got.partition(b"\r\n\r\n")[2]:
        data = raw.recv(65536)
        assert data, got
        inc.write(data)
        try:
            got += obj.read(65536)
        except ssl.SSLWantReadError:
            pass
    assert got.startswith(b"HTTP/1.1 200"), got
    sess = obj.session
    assert sess is not None and sess.has_ticket
    raw.close()
    c = tconn(p, certs, ctx, session=sess)
    assert c.sock.session_reused
    assert get(c, "/again").status == 200
    c.close()


def test_records_that_arrive_together_are_all_served(hg, upstream, certs):
    # read-ahead: one read(2) takes several TLS records, and the engine holds
    # those past the first. Three requests, each in its own record, arrive
    # in one segment right behind the client's Finished: all three are
    # answered without another byte from the client (edge-triggered epoll
    # gives no new edge for bytes the engine already holds); it fails if
    # tls_read stops after one record. (A handshake that ends on a write
    # edge with a request read ahead: tests/unit/base/test_conn.c.)
    up = upstream(ok_handler(b"rec"))
    p = hg.start(up=up)
    raw, inc, out, obj = bio_handshake(p, client_ctx(certs, max_v=V13))
    for i in range(3):
        obj.write(request_bytes("GET", f"/rec{i}"))
    raw.sendall(out.read())        # Finished + three records, one send
    got = b""
    deadline = time.monotonic() + 3 * SLOW
    while got.count(b"HTTP/1.1 200") < 3 and time.monotonic() < deadline:
        raw.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = raw.recv(65536)
        except socket.timeout:
            break
        if not data:
            break
        inc.write(data)
        while True:
            try:
                got += obj.read(65536)
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                break
    raw.close()
    assert got.count(b"HTTP/1.1 200") == 3, got
    assert [l["target"] for l in p.wait_log(3)] == ["/rec0", "/rec1", "/rec2"]


def _digest_handler(big):
    """Answers each request with big (Content-Length, or chunked for
    /chunked-back) and X-Sha256: the digest of the request body it read."""
    async def handler(reader, writer, ctx):
        while True:
            req = await ctx.read_request()
            if req is None:
                return
            digest = hashlib.sha256(req.body).hexdigest()
            if req.target == "/chunked-back":
                await ctx.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                               b"X-Sha256: " + digest.encode() + b"\r\n\r\n"
                               + chunked(big, sizes=(1000, 65536, 7, 300000)))
            else:
                await ctx.respond(200, big, [("X-Sha256", digest)])
    return handler


@pytest.mark.parametrize("framing", ["chunked", "length"])
def test_large_request_body(hg, upstream, certs, framing):
    """A 300 kB request body over TLS (more than a few TLS records, more than
    the socket buffers hold) reaches the upstream whole."""
    up = upstream(_digest_handler(b"got it"))
    p = hg.start(up=up, timeouts={"read": "3s", "total": "10s"})
    c = tconn(p, certs, timeout=3)
    body = os.urandom(300_000)
    if framing == "chunked":
        c.send(request_bytes("POST", "/upload", headers=[("Transfer-Encoding", "chunked")])
               + chunked(body))
    else:
        c.send(request_bytes("POST", "/upload", body=body))
    try:
        r = c.read_response()
    except TimeoutError:
        lines = p.log_lines()
        raise AssertionError(f"no response within 3 s; upstream got "
                             f"{sum(len(x.received) for x in up.conns)} bytes; "
                             f"access log: {lines}") from None
    assert r is not None and r.status == 200 and r.complete, r
    assert r.header("x-sha256") == hashlib.sha256(body).hexdigest()
    assert r.body == b"got it"
    (req,) = up.wait_requests(1)
    assert req.body == body
    (line,) = p.wait_log(1)
    assert line["status"] == "200" and line["reason"] == "ok", line
    c.close()


def test_large_response_bodies(hg, upstream, certs):
    """1 MiB responses over TLS, Content-Length and chunked, on one connection."""
    big = os.urandom(1 << 20)
    up = upstream(_digest_handler(big))
    p = hg.start(up=up, timeouts={"read": "5s", "total": "10s"})
    c = tconn(p, certs, timeout=5)
    c.send(request_bytes("POST", "/length", body=b"small body"))
    r = c.read_response()
    assert r is not None and r.status == 200 and r.complete and r.framing == "length", r
    assert r.header("x-sha256") == hashlib.sha256(b"small body").hexdigest()
    assert len(r.body) == len(big) and r.body == big
    c.send(request_bytes("POST", "/chunked-back", body=b"small"))
    r = c.read_response()
    assert r is not None and r.status == 200 and r.complete and r.framing == "chunked", r
    assert r.header("x-sha256") == hashlib.sha256(b"small").hexdigest()
    assert r.body == big
    lines = p.wait_log(2)
    assert [l["reason"] for l in lines] == ["ok", "ok"], lines
    c.close()


PLAIN_400 = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
             b"Content-Length: 51\r\nConnection: close\r\n\r\n"
             b"400 Bad Request: plain HTTP was sent to a TLS port\n")


def test_plain_http_to_tls_port(hg, upstream, certs):
    up = upstream(ok_handler())
    p = hg.start(up=up)
    c = Client(p.tls_port, timeout=3 * SLOW)
    t0 = c.send(request_bytes("GET", "/plain"))
    data = c.read_until_close(3 * SLOW)
    assert c.t_eof - t0 < 1.0 * SLOW, "the connection stayed open"
    # closed, possibly after a plain-text 400 saying what went wrong (never
    # anything proxied)
    assert data in (b"", PLAIN_400), data[:300]
    p.wait_stderr(r"TLS handshake with client.*failed", 2 * SLOW)
    wait_metric(p, "client", "failed", 1)
    assert not up.conns
    assert p.log_lines() == [] or all(l["target"] != "/plain" for l in p.log_lines())


# --------------------------------------------------------------------------
# handshake timeout

@pytest.mark.parametrize("how", ["nothing_config", "partial_hello_flag"])
def test_handshake_timeout(hg, upstream, certs, how):
    up = upstream(ok_handler(b"late ok"))
    if how == "nothing_config":
        p = hg.start(up=up, timeouts={"handshake": "300ms"})
    else:
        p = hg.start(up=up, flags=["--handshake-timeout", "300ms"])
    c = Client(p.tls_port, timeout=3 * SLOW)
    t0 = time.monotonic()
    if how == "partial_hello_flag":
        hello = client_hello(certs)
        c.send(hello[:len(hello) // 2])
    data = c.read_until_close(3 * SLOW)
    elapsed = c.t_eof - t0
    assert 0.25 <= elapsed <= 0.3 + 0.6 * SLOW, f"closed after {elapsed * 1000:.0f} ms"
    assert not data.startswith(b"HTTP/"), data[:100]
    p.wait_stderr(r"client TLS handshake timeout after 300 ms", 2 * SLOW)
    wait_metric(p, "client", "timeout", 1)
    assert hs(p, "client", "failed") == 0
    # a handshake done in time is not cut by the handshake timer
    c2 = tconn(p, certs)
    time.sleep(0.5)   # past the 300 ms handshake timeout on purpose
    r = get(c2, "/after-handshake")
    assert r is not None and r.status == 200 and r.body == b"late ok", r
    assert hs(p, "client", "timeout") == 1
    c2.close()


# --------------------------------------------------------------------------
# ends of a TLS connection

def test_read_timeout_mid_body_cuts_without_close_notify(hg, upstream, certs):
    async def handler(reader, writer, ctx):
        await ctx.read_request()
        await ctx.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"a" * 100)
        await ctx.wait_lost(10)
    up = upstream(handler)
    p = hg.start(up=up, timeouts={"read": "300ms", "total": "5s"})
    c = tconn(p, certs)
    t0 = c.send(request_bytes("GET", "/stall"))
    r = c.read_response(timeout=3 * SLOW)
    assert r is not None and r.status == 200, r
    assert not r.complete and r.body == b"a" * 100, r
    elapsed = r.t_end - t0
    assert 0.28 <= elapsed <= 0.3 + 0.4 * SLOW, f"cut after {elapsed * 1000:.0f} ms"
    assert not c.close_notify, "a cut response ended with close_notify (looks complete)"
    assert isinstance(c.unclean, (ssl.SSLEOFError, ssl.SSLError, ConnectionResetError)), \
        c.unclean
    (line,) = p.wait_log(1)
    assert line["reason"] == "read_timeout", line
    assert line["status"] == "200"


def test_504_before_first_byte_over_tls(hg, upstream, certs):
    up = upstream(silent_handler())
    p = hg.start(up=up, timeouts={"read": "300ms", "total": "5s"})
    c = tconn(p, certs)
    t0 = c.send(request_bytes("GET", "/silent"))
    r = c.read_response(timeout=3 * SLOW)
    assert r is not None and r.status == 504 and r.complete, r
    assert r.body == b"504 Gateway Timeout: read_timeout after 300 ms\n"
    assert (r.header("connection") or "").lower() == "close"
    assert 0.28 <= r.t_head - t0 <= 0.3 + 0.4 * SLOW
    (line,) = p.wait_log(1)
    assert line["status"] == "504" and line["reason"] == "read_timeout", line
    # a complete response with Connection: close ends cleanly
    assert c.end() == "close_notify", c.unclean


def test_connection_close_sends_close_notify(hg, upstream, certs):
    up = upstream(ok_handler(b"bye"))
    p = hg.start(up=up)
    c = tconn(p, certs)
    r = get(c, "/close", headers=[("Connection", "close")])
    assert r is not None and r.status == 200 and r.body == b"bye", r
    assert c.end() == "close_notify", f"no close_notify: {c.unclean!r}"
    assert not c.reset


def _segments_in(raw):
    """(segments, segments with data) the socket has received (TCP_INFO
    tcpi_segs_in, tcpi_data_segs_in)."""
    import struct
    info = raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return struct.unpack_from("I", info, 140)[0], struct.unpack_from("I", info, 152)[0]


def test_connection_close_response_close_notify_and_fin_in_one_segment(hg, upstream, certs):
    # the socket is corked for the response's last record: that record, the
    # close_notify alert and the FIN leave together (one segment, not three)
    up = upstream(ok_handler(b"c" * 100))
    p = hg.start(up=up)
    for i in range(3):
        c = tconn(p, certs)
        time.sleep(0.1 * SLOW)          # the session ticket after the handshake is in
        segs0, data0 = _segments_in(c.sock)
        r = get(c, f"/cork{i}", headers=[("Connection", "close")])
        assert r is not None and r.status == 200 and r.body == b"c" * 100, r
        assert c.end() == "close_notify", c.unclean
        segs, data = _segments_in(c.sock)
        c.close()
        # the data segment, and at most an ACK of the request beside it
        assert data - data0 == 1 and segs - segs0 <= 2, (
            f"connection {i}: {segs - segs0} segments in after the request, "
            f"{data - data0} with data: response, close_notify and FIN came apart")


def test_idle_timeout_sends_close_notify(hg, upstream, certs):
    up = upstream(ok_handler(b"idle"))
    p = hg.start(up=up, timeouts={"idle": "300ms"})
    c = tconn(p, certs)
    r = get(c, "/idle")
    assert r.status == 200
    t0 = time.monotonic()
    assert c.end(3) == "close_notify", f"no close_notify: {c.unclean!r}"
    assert 0.25 <= c.t_eof - t0 <= 0.3 + 0.6 * SLOW


# --------------------------------------------------------------------------
# upstream TLS

def test_upstream_tls_basic(hg, tls_upstream, certs):
    up = tls_upstream(tls_ok_handler(b"from tls upstream"))
    p = hg.start(up=up, pool={"tls": {"ca": certs.ca}})
    c = tconn(p, certs)
    r = get(c, "/up")
    assert r is not None and r.status == 200 and r.body == b"from tls upstream", r
    (conn,) = up.wait_conns(1)
    (req,) = up.wait_requests(1)
    assert req.target == "/up"
    assert conn.tls["alpn"] == "http/1.1", conn.tls
    # an IP literal server: no SNI
    assert up.sni == [None], up.sni
    wait_metric(p, "upstream", "ok", 1)
    assert hs(p, "upstream", "failed") == 0
    c.close()


def test_upstream_tls_from_plain_listener(hg, tls_upstream, certs):
    """TLS upstream behind a plain listener (the two are independent)."""
    up = tls_upstream(tls_ok_handler(b"plain in, tls out"))
    p = hg.start(tls=None, up=up, pool={"tls": {"ca": certs.ca}})
    c = p.client()
    c.send(request_bytes("GET", "/pt"))
    r = c.read_response()
    assert r is not None and r.status == 200 and r.body == b"plain in, tls out", r


VERIFY_FAIL = [
    # (upstream cert, pool tls, what OpenSSL says)
    ("rogue", "ca", "certificate verify failed"),       # signed by another CA
    ("site", "default", "certificate verify failed"),   # system store: not our CA
    ("b", "ca", "certificate verify failed"),           # no IP SAN for 127.0.0.1
]


@pytest.mark.parametrize("cert,tls,why", VERIFY_FAIL, ids=["other_ca", "system_store",
                                                           "ip_mismatch"])
def test_upstream_verify_failure(hg, tls_upstream, certs, cert, tls, why):
    up = tls_upstream(tls_ok_handler(), cert=cert)
    pool_tls = {"ca": certs.ca} if tls == "ca" else {}
    p = hg.start(up=up, pool={"tls": pool_tls})
    c = tconn(p, certs)
    t0 = c.send(request_bytes("GET", "/vf"))
    r = c.read_response()
    assert r is not None and r.status == 502, r
    assert r.body.startswith(b"502 Bad Gateway: upstream_tls_error"), r.body
    assert r.t_head - t0 < 1.0 * SLOW
    (line,) = p.wait_log(1)
    assert line["reason"] == "upstream_tls_error", line
    assert line["upstream"] == up.addr
    p.wait_stderr(rf"upstream TLS handshake with {re.escape(up.addr)}.*failed:.*{why}",
                  2 * SLOW)
    wait_metric(p, "upstream", "failed", 1)
    assert not up.requests(), "a request was sent over an unverified connection"
    c.close()


def test_upstream_verify_false(hg, tls_upstream, certs):
    up = tls_upstream(tls_ok_handler(b"unverified"), cert="rogue")
    p = hg.start(up=up, pool={"tls": {"ca": certs.ca, "verify": False}})
    c = tconn(p, certs)
    r = get(c, "/nv")
    assert r is not None and r.status == 200 and r.body == b"unverified", r
    c.close()


@pytest.mark.parametrize("name,cert,ok", [("wrong.example.test", "site", False),
                                          ("a.example.test", "site", True),
                                          ("b.example.test", "b", True)])
def test_upstream_server_name(hg, tls_upstream, certs, name, cert, ok):
    up = tls_upstream(tls_ok_handler(b"named"), cert=cert)
    p = hg.start(up=up, pool={"tls": {"ca": certs.ca, "server_name": name}})
    c = tconn(p, certs)
    r = get(c, "/sn")
    assert r is not None, "no response"
    assert up.sni and up.sni[0] == name, f"SNI sent: {up.sni}"
    if ok:
        assert r.status == 200 and r.body == b"named", r
    else:
        assert r.status == 502, r
        (line,) = p.wait_log(1)
        assert line["reason"] == "upstream_tls_error", line
        p.wait_stderr(rf"upstream TLS handshake with {re.escape(up.addr)}.*failed:", 2 * SLOW)
        assert not up.requests()
    c.close()


class AlertingTLSServer:
    """A blocking TLS server in a thread that requires a client certificate.
    A failed handshake is answered the way OpenSSL does it (its alert goes
    out), then whatever the client sends is read until it closes, so the
    alert is never lost to a reset. results: ("ok", peercert) or
    ("failed", error text) per connection."""

    def __init__(self, certs, max_version):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(certs.pem("site"), certs.key("site"))
        self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.ctx.load_verify_locations(certs.ca)
        self.ctx.maximum_version = max_version
        self.results = []
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.addr = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                a, _ = self.lsock.accept()
            except OSError:
                return
            a.settimeout(5)
            # a second descriptor: wrap_socket closes its own on failure, and
            # this one keeps the connection open for the drain
            keep = a.dup()
            try:
                s = self.ctx.wrap_socket(a, server_side=True)
            except (ssl.SSLError, OSError) as e:
                self.results.append(("failed", str(e)))
                try:
                    while keep.recv(65536):
                        pass
                except OSError:
                    pass
                keep.close()
                continue
            keep.close()
            self.results.append(("ok", s.getpeercert()))
            try:
                s.recv(65536)
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nmtls")
            except OSError:
                pass
            s.close()

    def close(self):
        self.lsock.close()


@pytest.mark.parametrize("version", [V12, V13], ids=["tls1.2", "tls1.3"])
def test_upstream_client_certificate_missing(hg, certs, version):
    """The upstream requires a client certificate and the pool has none:
    its alert (during the handshake in TLS 1.2, on the first read in TLS 1.3)
    is a 502 upstream_tls_error."""
    up = AlertingTLSServer(certs, version)
    try:
        p = hg.start(up=up, pool={"tls": {"ca": certs.ca}})
        c = tconn(p, certs)
        r = get(c, "/mtls")
        assert r is not None and r.status == 502, r
        (line,) = p.wait_log(1)
        assert line["reason"] == "upstream_tls_error", line
        # one line naming the upstream, TLS and the alert
        p.wait_stderr(rf"(?m)^(?=.*upstream)(?=.*TLS)(?=.*{re.escape(up.addr)}).*alert",
                      2 * SLOW)
        assert [k for k, _ in up.results] == ["failed"], up.results
        c.close()
    finally:
        up.close()


@pytest.mark.parametrize("version", [V12, V13], ids=["tls1.2", "tls1.3"])
def test_upstream_client_certificate(hg, tls_upstream, certs, version):
    up = tls_upstream(tls_ok_handler(b"mtls"), require_client_cert=True, max_version=version)
    p = hg.start(up=up, pool={"tls": {"ca": certs.ca, **certs.pair("client")}})
    c = tconn(p, certs)
    r = get(c, "/mtls")
    assert r is not None and r.status == 200 and r.body == b"mtls", r
    (conn,) = up.wait_conns(1)
    subject = dict(x[0] for x in conn.tls["peercert"]["subject"])
    assert subject["commonName"] == "hourglass client"
    c.close()


def test_upstream_handshake_stall_is_connect_timeout(hg, upstream, certs):
    async def handler(reader, writer, ctx):   # takes the ClientHello, never answers
        await ctx.read_until_eof()
    up = upstream(handler)
    p = hg.start(up=up, pool={"tls": {"ca": certs.ca}},
                 timeouts={"connect": "300ms", "read": "2s", "total": "5s"})
    c = tconn(p, certs)
    t0 = c.send(request_bytes("GET", "/hs-stall"))
    r = c.read_response(timeout=3 * SLOW)
    assert r is not None and r.status == 504, r
    assert r.body == b"504 Gateway Timeout: connect_timeout after 300 ms\n", r.body
    elapsed = r.t_head - t0
    assert 0.29 <= elapsed <= 0.3 + 0.4 * SLOW, f"504 after {elapsed * 1000:.0f} ms"
    (conn,) = up.wait_conns(1)
    assert bytes(conn.received[:1]) == b"\x16", "no TLS handshake record reached the upstream"
    conn.wait_proxy_closed(1.0 * SLOW)
    (line,) = p.wait_log(1)
    assert line["status"] == "504" and line["reason"] == "connect_timeout", line
    c.close()


def test_upstream_handshake_stall_retried(hg, upstream, tls_upstream, certs):
    """A connect timeout in the handshake is retried on the other server when
    the route retries connect timeouts."""
    async def stall(reader, writer, ctx):
        await ctx.read_until_eof()
    bad = upstream(stall)
    good = tls_upstream(tls_ok_handler(b"second try"))
    p = hg.start(up=bad, pool={"servers": [bad.addr, good.addr], "balance": "round_robin",
                               "tls": {"ca": certs.ca}},
                 timeouts={"connect": "300ms", "read": "2s", "total": "5s"},
                 top={"routes": [{"path": "/", "pool": "web",
                                  "retry": {"attempts": 2, "on": ["connect_timeout"]}}]})
    for i in range(2):   # round-robin: one of the two starts on the stalling server
        c = tconn(p, certs)
        r = get(c, f"/retry{i}")
        assert r is not None and r.status == 200 and r.body == b"second try", (i, r)
        c.close()
    lines = p.wait_log(2)
    assert all(l["upstream"] == good.addr for l in lines), lines
    retried = [l for l in lines if l["attempts"] == "2"]
    assert retried, lines
    for l in retried:
        assert 290 <= int(l["total_ms"]) <= 300 + 400 * SLOW, l
    assert len(bad.conns) == len(retried), "a connect timeout was not counted"
    assert all(bytes(x.received[:1]) == b"\x16" for x in bad.conns)


def test_upstream_keepalive_over_tls(hg, tls_upstream, certs):
    up = tls_upstream(tls_ok_handler(b"reuse"))
    p = hg.start(up=up, pool={"tls": {"ca": certs.ca}})
    for i in range(3):
        c = tconn(p, certs)
        r = get(c, f"/r{i}")
        assert r is not None and r.status == 200 and r.body == b"reuse", r
        c.close()
        p.wait_log(i + 1)
    assert len(up.conns) == 1, f"{len(up.conns)} upstream TLS connections for 3 requests"
    assert [q.target for q in up.conns[0].requests] == ["/r0", "/r1", "/r2"]
    assert hs(p, "upstream", "ok") + hs(p, "upstream", "resumed") == 1


@pytest.mark.parametrize("mode,version", [("idle_close", V12), ("idle_close", V13),
                                          ("no_keepalive", V12), ("no_keepalive", V13)],
                         ids=["idle_close-tls1.2", "idle_close-tls1.3",
                              "no_keepalive-tls1.2", "no_keepalive-tls1.3"])
def test_upstream_session_resumed(hg, tls_upstream, certs, mode, version):
    """Each request opens a new upstream connection (the pooled one was
    closed by the upstream idle timeout, or keep-alive is off: max_idle 0),
    and resumes the session of the one before."""
    up = tls_upstream(tls_ok_handler(b"again"), max_version=version)
    keepalive = {"idle_timeout": "100ms"} if mode == "idle_close" else {"max_idle": 0}
    p = hg.start(up=up, pool={"tls": {"ca": certs.ca}, "keepalive": keepalive})
    for i in range(3):
        c = tconn(p, certs)
        r = get(c, f"/s{i}")
        assert r is not None and r.status == 200, r
        c.close()
        p.wait_log(i + 1)
        up.wait_conns(i + 1)[i].wait_proxy_closed(2.0 * SLOW)
    conns = up.wait_conns(3)
    assert len(conns) == 3
    assert [x.tls["reused"] for x in conns] == [False, True, True], \
        [x.tls for x in conns]
    wait_metric(p, "upstream", "resumed", 2)
    assert hs(p, "upstream", "ok") == 1


def test_plain_upstream_in_tls_pool(hg, upstream, certs):
    async def handler(reader, writer, ctx):
        await ctx.read_some()
        await ctx.send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                       b"Connection: close\r\n\r\n")
        ctx.close()
    up = upstream(handler)
    p = hg.start(up=up, pool={"tls": {"ca": certs.ca}},
                 timeouts={"connect": "2s", "read": "2s"})
    c = tconn(p, certs)
    t0 = c.send(request_bytes("GET", "/plain-up"))
    r = c.read_response(timeout=3 * SLOW)
    assert r is not None and r.status == 502, r
    assert r.t_head - t0 < 1.0 * SLOW
    (line,) = p.wait_log(1)
    assert line["reason"] == "upstream_tls_error", line
    p.wait_stderr(rf"upstream TLS handshake with {re.escape(up.addr)}.*failed:", 2 * SLOW)
    wait_metric(p, "upstream", "failed", 1)
    c.close()


def test_active_health_check_speaks_tls(hg, tls_upstream, certs):
    up = tls_upstream(tls_ok_handler(b"healthy"))
    p = hg.start(up=up, pool={"tls": {"ca": certs.ca},
                              "health": {"active": {"path": "/healthz", "interval": "200ms",
                                                    "timeout": "150ms"}}})
    reqs = up.wait_requests(1, timeout=3 * SLOW)
    assert reqs[0].target == "/healthz", reqs
    c = tconn(p, certs)
    assert get(c, "/x").body == b"healthy"
    c.close()


# --------------------------------------------------------------------------
# configuration errors

def _bad_conf(tmp_path, certs, case):
    """(file text, expected error regex after "FILE:"). Lines:
    1 listen, 2 - address, 3 tls, 4 cert, 5 key, 6 min_version, then pools."""
    port = free_port()
    cert, key = certs.pem("site"), certs.key("site")
    missing = str(tmp_path / "nope.key")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("this is not a certificate\n")
    lines = ["listen:", f"  - address: 127.0.0.1:{port}", "    tls:",
             f"      cert: {cert}", f"      key: {key}", '      min_version: "1.2"',
             "pools: {web: {servers: [127.0.0.1:9]}}"]
    if case == "missing_key_file":
        lines[4] = f"      key: {missing}"
        want = (rf"5:\d+: listen\[0\]\.tls\.key: cannot load (key )?{re.escape(missing)}: "
                r"No such file or directory$")
    elif case == "missing_cert_file":
        lines[3] = f"      cert: {missing}"
        want = (rf"4:\d+: listen\[0\]\.tls\.cert: cannot load (certificate )?"
                rf"{re.escape(missing)}: No such file or directory$")
    elif case == "garbage_cert":
        lines[3] = f"      cert: {garbage}"
        want = rf"4:\d+: listen\[0\]\.tls\.cert: .*{re.escape(str(garbage))}"
    elif case == "key_mismatch":
        lines[4] = f"      key: {certs.key('b')}"
        want = r"[45]:\d+: listen\[0\]\.tls\.(key|cert): .*(match|mismatch)"
    elif case == "min_version_11":
        lines[5] = '      min_version: "1.1"'
        want = r"6:\d+: listen\[0\]\.tls\.min_version: .*1\.1"
    elif case == "cert_without_key":
        del lines[4]
        want = r"[34]:\d+: listen\[0\]\.tls(\.key)?: .*(missing|key)"
    elif case == "key_without_cert":
        del lines[3]
        want = r"[34]:\d+: listen\[0\]\.tls(\.cert)?: .*(missing|cert)"
    elif case == "pool_cert_without_key":
        lines[6] = "pools:"
        lines += ["  web:", "    servers: [127.0.0.1:9]", "    tls:",
                  f"      ca: {certs.ca}", f"      cert: {certs.pem('client')}"]
        want = r"(10|11|12):\d+: pools\.web\.tls(\.key)?: .*(missing|key)"
    elif case == "pool_ca_missing":
        lines[6] = "pools:"
        lines += ["  web:", "    servers: [127.0.0.1:9]", "    tls:", f"      ca: {missing}"]
        want = rf"11:\d+: pools\.web\.tls\.ca: .*{re.escape(missing)}"
    else:
        raise AssertionError(case)
    return "\n".join(lines) + "\n", want


BAD_CASES = ["missing_key_file", "missing_cert_file", "garbage_cert", "key_mismatch",
             "min_version_11", "cert_without_key", "key_without_cert",
             "pool_cert_without_key", "pool_ca_missing"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_config_errors(tmp_path, certs, case):
    text, want = _bad_conf(tmp_path, certs, case)
    cfg = tmp_path / "hg.yaml"
    cfg.write_text(text)
    r = run("-t", cfg)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr, text)
    assert r.stdout == ""
    assert re.search(rf"^{re.escape(str(cfg))}:{want}", r.stderr, re.M), \
        f"stderr:\n{r.stderr}\nwanted: {cfg}:{want}\nfile:\n{text}"
    # the same file does not start
    r2 = run("--config", cfg, "--single-process", "--access-log", "off")
    assert r2.returncode == 2, (r2.returncode, r2.stderr)
    assert r2.stderr == r.stderr


def test_check_config_good_tls(tmp_path, certs, hg):
    d, _, _ = hg.doc(tls={**certs.pair("site"), "certificates": [certs.pair("b")],
                          "min_version": "1.3"},
                     pool={"tls": {"ca": certs.ca, "verify": True,
                                   "server_name": "a.example.test", **certs.pair("client")}},
                     timeouts={"handshake": "2s"})
    cfg = hg.write(d)
    r = run("-t", cfg)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{cfg}: ok\n"


# --------------------------------------------------------------------------
# certificate reloads

def _live_pair(tmp_path, certs, name):
    """Copies certificate `name` to live.pem/live.key (the files the proxy reads)."""
    shutil.copyfile(certs.pem(name), tmp_path / "live.pem")
    shutil.copyfile(certs.key(name), tmp_path / "live.key")
    return {"cert": str(tmp_path / "live.pem"), "key": str(tmp_path / "live.key")}


def _served(p, certs, n=1):
    """The DER certificates served to n new connections."""
    out = []
    for _ in range(n):
        c = tconn(p, certs)
        assert get(c, "/cert").status == 200
        out.append(c.peer_der())
        c.close()
    return out


def test_reload_workers_new_certificate(hg, upstream, certs, tmp_path):
    up = upstream(ok_handler(b"w"))
    live = _live_pair(tmp_path, certs, "site")
    p = hg.start(tls=live, up=up, workers=2)
    hg.wait_workers(p, 2)
    assert _served(p, certs, 4) == [certs.der("site")] * 4
    _live_pair(tmp_path, certs, "site2")
    os.kill(p.pid, signal.SIGHUP)
    p.wait_stderr(r"reload: generation 2 serving", 5 * SLOW)
    hg.wait_workers(p, 2, generation=2)
    assert _served(p, certs, 6) == [certs.der("site2")] * 6


def test_reload_workers_bad_certificate_refused(hg, upstream, certs, tmp_path):
    up = upstream(ok_handler(b"w"))
    live = _live_pair(tmp_path, certs, "site")
    p = hg.start(tls=live, up=up, workers=2)
    pids = hg.wait_workers(p, 2)
    # the workers load the certificate after they start: replace it only
    # once both said they were ready (the master then announces the listeners)
    p.wait_stderr(r"listening on \S+ \(TLS\) with 2 worker", 5 * SLOW)
    (tmp_path / "live.pem").write_text("not a certificate\n")
    os.kill(p.pid, signal.SIGHUP)
    p.wait_stderr(r"reload refused", 5 * SLOW)
    assert str(tmp_path / "live.pem") in p.stderr_text()
    assert not re.search(r"reload: generation 2 serving", p.stderr_text())
    assert _served(p, certs, 4) == [certs.der("site")] * 4
    assert children(p.pid) == pids


@pytest.mark.parametrize("version", [V12, V13], ids=["tls1.2", "tls1.3"])
def test_session_tickets_across_workers_and_reload(hg, upstream, certs, version):
    up = upstream(ok_handler(b"t"))
    p = hg.start(up=up, workers=2)
    hg.wait_workers(p, 2)
    ctx = client_ctx(certs, min_v=version, max_v=version)
    c = tconn(p, certs, ctx)
    assert get(c, "/t0").status == 200
    sess = c.sock.session
    c.close()
    reused = []
    for i in range(6):   # new connections land on either worker
        c = tconn(p, certs, ctx, session=sess)
        reused.append(c.sock.session_reused)
        assert get(c, f"/t{i + 1}").status == 200
        c.close()
    assert all(reused), f"resumed: {reused}"
    os.kill(p.pid, signal.SIGHUP)
    p.wait_stderr(r"reload: generation 2 serving", 5 * SLOW)
    hg.wait_workers(p, 2, generation=2)
    c = tconn(p, certs, ctx, session=sess)
    assert c.sock.session_reused, "a session from before the reload was not resumed"
    assert get(c, "/after").status == 200
    c.close()


def _ticket(p, certs, ctx, target="/t"):
    """A whole exchange on a new connection (TLS 1.3 tickets arrive after the
    handshake); the session to resume later."""
    c = tconn(p, certs, ctx)
    assert get(c, target).status == 200
    sess = c.sock.session
    c.close()
    assert sess is not None and sess.has_ticket, sess
    return sess


def _resumes(p, certs, ctx, sess):
    c = tconn(p, certs, ctx, session=sess)
    reused = c.sock.session_reused
    assert get(c, "/again").status == 200
    c.close()
    return reused


@pytest.mark.parametrize("version", [V12, V13], ids=["tls1.2", "tls1.3"])
def test_ticket_key_rotation(hg, upstream, certs, version):
    # Issue 21, item 5: a key a second, each kept 2 s after its last use.
    # A ticket whose key has been rotated (retired, not yet dropped) still
    # resumes; once its key has rotated out of the ring, the ticket is
    # refused: a full handshake.
    up = upstream(ok_handler(b"k"))
    p = hg.start(up=up, top={"tls": {"ticket_rotation": "1s", "ticket_lifetime": "2s"}},
                 flags=("--log-level", "debug"))
    ctx = client_ctx(certs, min_v=version, max_v=version)
    t0 = time.monotonic()
    sess = _ticket(p, certs, ctx)
    assert sess.ticket_lifetime_hint == 2, sess.ticket_lifetime_hint
    p.wait_stderr(r"TLS session ticket key rotated", 2.0 * SLOW)   # its key is retired
    assert time.monotonic() - t0 < 1.8, "too slow to test within the lifetime"
    assert _resumes(p, certs, ctx, sess), "a ticket of the previous key was refused"
    # past rotation + lifetime after it was issued, its key is gone
    time.sleep(max(0.0, t0 + 3.3 - time.monotonic()))
    assert not _resumes(p, certs, ctx, sess), "a ticket outlived its key"
    # and new tickets go on working
    assert _resumes(p, certs, ctx, _ticket(p, certs, ctx, "/new"))


@pytest.mark.parametrize("version", [V12, V13], ids=["tls1.2", "tls1.3"])
def test_ticket_refused_once_its_key_is_dropped(hg, upstream, certs, version):
    # The key, not only the session's own timeout, ends a ticket: a ticket
    # issued under a 20 s lifetime is refused once a reload has cut the
    # lifetime to 1 s and its key, rotated every 2 s, has been dropped,
    # although the session inside it would still be valid for 16 s more.
    up = upstream(ok_handler(b"d"))
    p = hg.start(up=up, top={"tls": {"ticket_rotation": "2s", "ticket_lifetime": "20s"}},
                 workers=1)
    hg.wait_workers(p, 1)
    ctx = client_ctx(certs, min_v=version, max_v=version)
    sess = _ticket(p, certs, ctx)
    t0 = time.monotonic()
    assert sess.ticket_lifetime_hint == 20, sess.ticket_lifetime_hint
    assert _resumes(p, certs, ctx, sess)
    d = dict(p.doc)
    d["tls"] = {"ticket_rotation": "2s", "ticket_lifetime": "1s"}
    hg.write(d, p.cfg)
    os.kill(p.pid, signal.SIGHUP)
    p.wait_stderr(r"reload: generation 2 serving", 5 * SLOW)
    hg.wait_workers(p, 1, generation=2)
    # its key: retired within 2 s of the ticket, dropped 1 s later
    time.sleep(max(0.0, t0 + 3.5 - time.monotonic()))
    assert time.monotonic() - t0 < 15, "too slow: the session itself would soon expire"
    assert not _resumes(p, certs, ctx, sess), "a ticket outlived its key"
    fresh = _ticket(p, certs, ctx, "/fresh")
    assert fresh.ticket_lifetime_hint == 1, fresh.ticket_lifetime_hint
    assert _resumes(p, certs, ctx, fresh)


def test_single_process_sighup_reloads_certificates(hg, upstream, certs, tmp_path):
    up = upstream(ok_handler(b"s"))
    live = _live_pair(tmp_path, certs, "site")
    p = hg.start(tls=live, up=up)
    assert _served(p, certs) == [certs.der("site")]
    _live_pair(tmp_path, certs, "site2")
    os.kill(p.pid, signal.SIGHUP)
    p.wait_stderr(r"TLS certificates reloaded", 3 * SLOW)
    assert _served(p, certs, 2) == [certs.der("site2")] * 2
    # a broken file: refused, the loaded certificate keeps serving
    (tmp_path / "live.pem").write_text("not a certificate\n")
    os.kill(p.pid, signal.SIGHUP)
    p.wait_stderr(r"TLS certificate reload failed.*keeping the old ones", 3 * SLOW)
    assert str(tmp_path / "live.pem") in p.stderr_text(), "the reason was not logged"
    assert _served(p, certs, 2) == [certs.der("site2")] * 2
    assert p.alive()


# --------------------------------------------------------------------------
# CONNECT on a TLS forward listener

def test_connect_tunnel_on_tls_forward_listener(hg, upstream, certs):
    async def echo(reader, writer, ctx):
        while True:
            d = await reader.read(1 << 16)
            if not d:
                break
            writer.write(d)
            await writer.drain()
        writer.close()
    up = upstream(echo)
    p = hg.start(listen_opts={"mode": "forward"},
                 forward={"allow_destinations": ["127.0.0.0/8"], "connect_ports": [up.port]})
    c = tconn(p, certs)
    target = f"127.0.0.1:{up.port}"
    c.send(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    head, t = c.read_head()
    assert t is not None and head.startswith(b"HTTP/1.1 200"), head
    payload = os.urandom(64 * 1024)
    back = bytearray()
    for i in range(0, len(payload), 4096):
        c.send(payload[i:i + 4096])
        deadline = time.monotonic() + 3 * SLOW
        while len(back) < i + 4096:
            if c.buf:
                back += c._take(len(c.buf))
                continue
            c._fill(deadline)
    assert bytes(back) == payload
    (conn,) = up.wait_conns(1)
    assert bytes(conn.received) == payload
    c.close()
    lines = p.wait_log(1, timeout=3 * SLOW)
    assert lines[0]["method"] == "CONNECT" and lines[0]["target"] == target, lines[0]
    assert lines[0]["status"] == "200", lines[0]


# --------------------------------------------------------------------------
# metrics

def test_handshake_metrics_count(hg, upstream, certs):
    up = upstream(ok_handler(b"m"))
    p = hg.start(up=up)
    for r in ("ok", "resumed", "failed", "timeout"):
        assert hs(p, "client", r) == 0, r
    ctx = client_ctx(certs, min_v=V13, max_v=V13)
    sess = None
    for i in range(2):
        c = tconn(p, certs, ctx)
        assert get(c, f"/full{i}").status == 200
        sess = c.sock.session
        c.close()
    c = tconn(p, certs, ctx, session=sess)
    assert c.sock.session_reused
    assert get(c, "/resumed").status == 200
    c.close()
    g = Client(p.tls_port)
    g.send(b"\x00garbage, not TLS\r\n\r\n")
    g.wait_closed(2 * SLOW)
    g.close()
    p.wait_log(3)
    wait_metric(p, "client", "failed", 1)
    assert hs(p, "client", "ok") == 2
    assert hs(p, "client", "resumed") == 1
    assert hs(p, "client", "failed") == 1
    assert hs(p, "client", "timeout") == 0
    code, text = scrape(p.admin_port, timeout=3 * SLOW)
    assert "# TYPE hourglass_tls_handshakes_total counter" in text


# --------------------------------------------------------------------------
# HTTP/2 pools over TLS (ALPN h2)

def test_h2_pool_over_tls_alpn_h2(hg, upstream, certs):
    """A pool with protocol: h2 and tls speaks HTTP/2 chosen with ALPN h2:
    here to a second hourglass whose TLS listener offers h2, in front of an
    HTTP/1.1 server. Both requests share one upstream connection."""
    up = upstream(ok_handler(b"via h2 over tls"))
    inner = hg.start(up=up)
    outer = hg.start(tls=None, pool={"servers": [f"127.0.0.1:{inner.tls_port}"],
                                      "protocol": "h2", "tls": {"ca": certs.ca}})
    for i in range(2):
        c = outer.client()
        c.send(request_bytes("GET", f"/t{i}"))
        r = c.read_response()
        c.close()
        assert r.status == 200 and r.body == b"via h2 over tls", r
    lines = inner.wait_log(2)
    assert [l["proto"] for l in lines] == ["HTTP/2", "HTTP/2"], lines
    assert lines[0]["client"] == lines[1]["client"], "one upstream connection for both"
    wait_metric(outer, "upstream", "ok", 1)


def test_h2_pool_server_without_alpn_h2_is_a_tls_error(hg, tls_upstream, certs):
    """A TLS server that does not choose h2 cannot serve an HTTP/2 pool: 502
    upstream_tls_error, naming ALPN in the error log."""
    up = tls_upstream(tls_ok_handler())   # offers http/1.1 only
    p = hg.start(tls=None, up=up, pool={"protocol": "h2", "tls": {"ca": certs.ca}})
    c = p.client()
    c.send(request_bytes("GET", "/"))
    r = c.read_response()
    c.close()
    assert r.status == 502, r
    (line,) = p.wait_log(1)
    assert line["reason"] == "upstream_tls_error", line
    assert "ALPN h2" in p.stderr_text() or "no application protocol" in p.stderr_text(), \
        p.stderr_text()[-2000:]


@pytest.mark.parametrize("offer,want", [
    ("TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256"),
    ("TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384",
     "TLS_CHACHA20_POLY1305_SHA256"),
    ("TLS_AES_256_GCM_SHA384", "TLS_AES_256_GCM_SHA384"),
], ids=["openssl-order", "chacha-first", "aes256-only"])
def test_tls13_suite_order(hg, certs, offer, want):
    """The server picks TLS 1.3's suite: AES-128-GCM over the AES-256-GCM an
    OpenSSL client offers first (its key schedule hashes with SHA-256, not
    SHA-384), ChaCha20 for a client that asks for it first, and whatever
    suite a client offers alone."""
    p = hg.start()
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{p.tls_port}", "-tls1_3",
                        "-servername", "localhost", "-CAfile", certs.ca, "-ciphersuites", offer],
                       input=b"", capture_output=True, timeout=10 * SLOW)
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    assert re.search(rf"Cipher is {re.escape(want)}$", out, re.M), out


def test_upstream_tls13_suite_offered_first(hg, tls_upstream, certs):
    """Toward an upstream, AES-128-GCM is offered first: a server that
    follows the client's order picks it (OpenSSL's default order, which
    Python's client and curl send, puts AES-256-GCM first)."""
    up = tls_upstream(tls_ok_handler(b"suite"))
    up.ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    p = hg.start(up=up, pool={"tls": {"ca": certs.ca}})
    c = tconn(p, certs)
    r = get(c, "/up")
    assert r is not None and r.status == 200 and r.body == b"suite", r
    (conn,) = up.wait_conns(1)
    assert conn.tls["version"] == "TLSv1.3" and conn.tls["cipher"] == "TLS_AES_128_GCM_SHA256", conn.tls
    c.close()
