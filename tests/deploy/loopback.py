"""Loopback tools for the scale-out tests: what each server received, read from the kernel's own
per-socket counters (ss), and a DNS server of the test's own that resolves one name to several
loopback addresses (grpc's c-ares resolver takes a DNS server in the target: dns://HOST:PORT/name)."""

from __future__ import annotations

import re
import socket
import struct
import subprocess
import threading
from collections import Counter


def host_of(address: str) -> str:
    """``[::ffff:127.0.0.2]:50051`` (a dual-stack socket's IPv4-mapped form) -> ``127.0.0.2``."""
    host = address.rsplit(":", 1)[0].strip("[]")
    return host.removeprefix("::ffff:")


def received_bytes(port: int, hosts: list[str]) -> dict[tuple[str, str], int]:
    """Bytes each server socket on ``host:port`` has received, keyed by (local, peer) address.

    A server's share of the traffic is its sockets' sum: what its clients sent it, HTTP/2 framing
    included. Docs of equal size make it proportional to the calls it served."""
    out = subprocess.run(
        ["ss", "-tinH", "state", "established", f"( sport = :{port} )"], capture_output=True, text=True, check=True
    ).stdout
    counts: dict[tuple[str, str], int] = {}
    key: tuple[str, str] | None = None
    for line in out.splitlines():
        if not line[:1].isspace():  # a socket line: Recv-Q Send-Q Local Peer
            fields = line.split()
            key = (fields[2], fields[3]) if len(fields) >= 4 and host_of(fields[2]) in hosts else None
            if key is not None:
                counts[key] = 0
        elif key is not None and (m := re.search(r"\bbytes_received:(\d+)", line)):
            counts[key] = int(m.group(1))
    return counts


def per_server(
    before: dict[tuple[str, str], int], after: dict[tuple[str, str], int], hosts: list[str]
) -> dict[str, int]:
    """Bytes received by each host between two ``received_bytes`` readings (new sockets count from 0)."""
    total: Counter[str] = Counter(dict.fromkeys(hosts, 0))
    for (local, peer), n in after.items():
        total[host_of(local)] += n - before.get((local, peer), 0)
    return dict(total)


class FakeDNS:
    """A UDP DNS server on 127.0.0.1 answering A queries for one name with fixed addresses;
    every other question gets an empty answer. ``queries`` counts the A questions it answered."""

    def __init__(self, name: str, addresses: list[str]) -> None:
        self.name = name.rstrip(".").lower()
        self.addresses = addresses
        self.queries = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fake-dns", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                query, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            if (reply := self._answer(query)) is not None:
                self.sock.sendto(reply, peer)

    def _answer(self, query: bytes) -> bytes | None:
        if len(query) < 12:
            return None
        ident, flags, qdcount = struct.unpack(">HHH", query[:6])
        if qdcount != 1:
            return None
        labels, i = [], 12
        while i < len(query) and query[i] != 0:
            length = query[i]
            labels.append(query[i + 1 : i + 1 + length].decode("ascii", "replace").lower())
            i += 1 + length
        qtype, qclass = struct.unpack(">HH", query[i + 1 : i + 5])
        question = query[12 : i + 5]
        answers = b""
        if ".".join(labels) == self.name and qtype == 1 and qclass == 1:
            self.queries += 1
            for address in self.addresses:
                # Name: a pointer to the question's name at offset 12; type A, class IN, TTL 1 s.
                answers += struct.pack(">HHHIH", 0xC00C, 1, 1, 1, 4) + socket.inet_aton(address)
        n_answers = len(self.addresses) if answers else 0
        reply_flags = 0x8000 | 0x0400 | (flags & 0x0100) | 0x0080  # response, authoritative, RD copied, RA
        return struct.pack(">HHHHHH", ident, reply_flags, 1, n_answers, 0, 0) + question + answers

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
