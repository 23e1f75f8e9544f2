"""A DNS server on 127.0.0.1 (UDP) that the tests drive, for the forward proxy
(test_forward.py) and the pools' names (test_dns_upstreams.py).

It answers A and AAAA queries from a table {name: [ip, ...] | SILENT}:
NOERROR with the addresses of the query's family (possibly none), NXDOMAIN
for a name not in the table, nothing at all for SILENT. SRV queries are
answered from the SRV table {name: [(priority, weight, port, target), ...]}.
Every record carries the name's TTL (5 s unless set). Entries change at
any time from the test thread: the next query sees them. Every address must
be a loopback one, so that no proxy under test is ever sent elsewhere. All
answers fit a UDP datagram, so c-ares never needs TCP here.
"""

import asyncio
import ipaddress
import socket
import struct
import time

SILENT = "silent"   # a table value: the query is never answered

T_A, T_AAAA, T_SRV = 1, 28, 33


class _DNSProto(asyncio.DatagramProtocol):
    def __init__(self, server):
        self.server = server
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        try:
            self.server._handle(self.transport, data, addr)
        except Exception as e:  # a malformed query: recorded, not answered
            self.server.errors.append(repr(e))


def _labels(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            b = label.encode("ascii")
            out += bytes([len(b)]) + b
    return out + b"\0"


class FakeDNS:
    """set(name, [ip, ...] | SILENT, delay=None, ttl=None); set_srv(name,
    [(priority, weight, port, target), ...], ttl=None); drop(name): NXDOMAIN
    from now on. queries: (name, qtype) as received; sent: (name, qtype,
    rcode, n_answers, time) as answered."""

    def __init__(self, aio):
        self.aio = aio
        self.table = {}
        self.srv = {}
        self.delay = {}
        self.ttl = {}
        self.queries = []
        self.sent = []
        self.errors = []

        async def mk():
            return await aio.loop.create_datagram_endpoint(
                lambda: _DNSProto(self), local_addr=("127.0.0.1", 0))
        self.transport, _ = aio.call(mk())
        self.port = self.transport.get_extra_info("sockname")[1]
        self.addr = f"127.0.0.1:{self.port}"

    @staticmethod
    def _key(name):
        return name.lower().rstrip(".")

    def set(self, name, value, delay=None, ttl=None):
        if value != SILENT:
            for ip in value:
                assert ipaddress.ip_address(ip).is_loopback, \
                    f"the fake DNS table may hold loopback addresses only, not {ip}"
        key = self._key(name)
        self.table[key] = value
        if delay is not None:
            self.delay[key] = delay
        if ttl is not None:
            self.ttl[key] = ttl

    def set_srv(self, name, records, ttl=None):
        key = self._key(name)
        self.srv[key] = list(records)
        if ttl is not None:
            self.ttl[key] = ttl

    def drop(self, name):
        key = self._key(name)
        self.table.pop(key, None)
        self.srv.pop(key, None)

    def asked(self, name, qtype=None):
        name = self._key(name)
        return [q for q in list(self.queries)
                if q[0] == name and (qtype is None or q[1] == qtype)]

    def _handle(self, transport, data, addr):
        qid, flags, qd = struct.unpack(">HHH", data[:6])
        if flags & 0x8000 or qd != 1:
            return
        i, labels = 12, []
        while data[i]:
            n = data[i]
            labels.append(data[i + 1:i + 1 + n].decode("ascii", "replace"))
            i += 1 + n
        qend = i + 5
        qtype, qclass = struct.unpack(">HH", data[i + 1:qend])
        name = ".".join(labels).lower()
        self.queries.append((name, qtype))
        value = self.table.get(name)
        if value == SILENT:
            return
        ttl = self.ttl.get(name, 5)
        answers = []   # (type, rdata)
        rcode = 3      # NXDOMAIN
        if name in self.srv:
            rcode = 0
            if qtype == T_SRV and qclass == 1:
                for prio, weight, port, target in self.srv[name]:
                    answers.append((T_SRV, struct.pack(">HHH", prio, weight, port)
                                    + _labels(target)))
        if value is not None:
            rcode = 0
            fam = {T_A: socket.AF_INET, T_AAAA: socket.AF_INET6}.get(qtype)
            for ip in value:
                ipfam = socket.AF_INET6 if ":" in ip else socket.AF_INET
                if qclass == 1 and fam == ipfam:
                    answers.append((qtype, socket.inet_pton(fam, ip)))
        head = struct.pack(">HHHHHH", qid, 0x8000 | (flags & 0x7900) | 0x0400 | 0x0080 | rcode,
                           1, len(answers), 0, 0)
        out = head + data[12:qend]
        for rtype, rdata in answers:
            out += b"\xc0\x0c" + struct.pack(">HHIH", rtype, 1, ttl, len(rdata)) + rdata
        rec = (name, qtype, rcode, len(answers))
        d = self.delay.get(name)
        if d:
            def late():
                transport.sendto(out, addr)
                self.sent.append(rec + (time.monotonic(),))
            self.aio.loop.call_later(d, late)
        else:
            transport.sendto(out, addr)
            self.sent.append(rec + (time.monotonic(),))

    def close(self):
        self.aio.soon(self.transport.close)
