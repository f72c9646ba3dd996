"""Client-side scale-out on loopback: three real ``tokvec serve --backend fake`` replicas on
127.0.0.1, 127.0.0.2 and 127.0.0.3 (one port), reached by a client given the three addresses or a
dns: name that resolves to them. No load balancer in between: the client's channel balances
(round_robin) and retries UNAVAILABLE. What each replica served is read from the kernel's
per-socket byte counters (docs are all the same size on the wire)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import numpy as np
import pytest
from loopback import FakeDNS, per_server, received_bytes
from serving import ROOT, ServerProcess

from tokvec import Client, ServerError
from tokvec._wire import Embedding

HOSTS = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
WORKERS = 8  # calls in flight: enough to keep three replicas busy on a loaded 2-core box
PER_CALL = 2
TOLERANCE = 0.20  # each replica's share within ±20% of a third

pytestmark = pytest.mark.skipif(shutil.which("ss") is None, reason="ss (iproute2) reads the per-server byte counters")


def make_docs(start: int, n: int) -> list[dict[str, Any]]:
    """Docs of one size on the wire: ids and first words differ only in their digits."""
    return [
        {
            "id": f"d{i:05d}",
            "words": [f"w{i:05d}", "shares", "one", "encoder", "across", "replicas", "."],
            "spaces": [True] * 5 + [False, False],
        }
        for i in range(start, start + n)
    ]


class Replicas:
    def __init__(self) -> None:
        self.servers: dict[str, ServerProcess] = {}
        first = ServerProcess("--backend", "fake")  # 127.0.0.1:0 picks the port the others share
        self.servers[HOSTS[0]] = first
        self.port = int(first.address.rsplit(":", 1)[1])
        with ThreadPoolExecutor(len(HOSTS) - 1) as pool:
            started = {h: pool.submit(self._start, h) for h in HOSTS[1:]}
        for host, future in started.items():
            if future.exception() is None:
                self.servers[host] = future.result()
        if len(self.servers) < len(HOSTS):
            self.stop()
            raise RuntimeError(f"replicas did not start: {[f.exception() for f in started.values()]}")

    def _start(self, host: str) -> ServerProcess:
        return ServerProcess("--backend", "fake", "--address", f"{host}:{self.port}")

    @property
    def addresses(self) -> list[str]:
        return [f"{h}:{self.port}" for h in HOSTS]

    def restart(self, host: str) -> None:
        self.servers[host].stop()
        self.servers[host] = self._start(host)

    def counters(self) -> dict[tuple[str, str], int]:
        return received_bytes(self.port, HOSTS)

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()


@pytest.fixture(scope="module")
def replicas() -> Iterator[Replicas]:
    group = Replicas()
    yield group
    group.stop()


def drive(
    client: Client,
    docs: list[dict[str, Any]],
    on_call: Callable[[int], None] = lambda n: None,
    deadline_s: float = 40.0,
) -> tuple[dict[str, list[Embedding]], int]:
    """Send ``docs`` PER_CALL at a time from WORKERS threads until every one is answered.

    A call that fails UNAVAILABLE after the channel's own retries (its replica died with the
    call in flight) is sent again, as a caller would. Returns every result by doc id, and how many
    calls were sent again."""
    chunks = deque(docs[i : i + PER_CALL] for i in range(0, len(docs), PER_CALL))
    lock = threading.Lock()
    answered: dict[str, list[Embedding]] = {d["id"]: [] for d in docs}
    state = {"outstanding": len(chunks), "calls": 0, "resent": 0}
    deadline = time.monotonic() + deadline_s

    def worker() -> None:
        while time.monotonic() < deadline:
            with lock:
                if state["outstanding"] == 0:
                    return
                chunk = chunks.popleft() if chunks else None
            if chunk is None:  # the rest is in flight in other workers and may come back
                time.sleep(0.005)
                continue
            try:
                results = client.embed_results(chunk)
            except ServerError as exc:
                if exc.code != grpc.StatusCode.UNAVAILABLE:
                    raise
                with lock:
                    chunks.append(chunk)
                    state["resent"] += 1
                continue
            with lock:
                for result in results:
                    answered[result.id].append(result)
                state["outstanding"] -= 1
                state["calls"] += 1
                calls = state["calls"]
            on_call(calls)
        raise TimeoutError(f"{state['outstanding']} calls still unanswered after {deadline_s} s")

    with ThreadPoolExecutor(WORKERS) as pool:
        for future in [pool.submit(worker) for _ in range(WORKERS)]:
            future.result()
    return answered, state["resent"]


def warm_up(client: Client, replicas: Replicas, hosts: list[str] = HOSTS, timeout_s: float = 30.0) -> None:
    """Calls until each of ``hosts`` has served some: round_robin only picks connected replicas."""
    start = replicas.counters()
    deadline = time.monotonic() + timeout_s
    while True:
        drive(client, make_docs(90_000, 2 * WORKERS * PER_CALL))
        served = per_server(start, replicas.counters(), HOSTS)
        if all(served[h] > 0 for h in hosts):
            return
        assert time.monotonic() < deadline, f"replicas never all reached: bytes received {served}"


def assert_balanced(served: dict[str, int]) -> None:
    total = sum(served.values())
    shares = {h: round(n / total, 3) for h, n in served.items()}
    third = 1 / len(served)
    print(f"shares of the bytes received: {shares}")
    assert all(abs(s - third) <= TOLERANCE * third for s in shares.values()), f"shares {shares} (bytes {served})"


def assert_exactly_once(answered: dict[str, list[Embedding]], reference: dict[str, np.ndarray]) -> None:
    counts = {i: len(r) for i, r in answered.items() if len(r) != 1}
    assert counts == {}, f"docs not answered exactly once: {dict(list(counts.items())[:10])}"
    for doc_id, (result,) in answered.items():
        assert result.error is None, result.error
        np.testing.assert_allclose(result.rows, reference[doc_id], atol=3e-5)


def reference_rows(address: str, docs: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    with Client(address) as client:
        return {r.id: r.rows for r in client.embed_results(docs)}


@pytest.mark.timeout(120)
def test_three_addresses_share_the_load_evenly(replicas: Replicas) -> None:
    docs = make_docs(0, 300)
    with Client(replicas.addresses) as client:
        assert client.target == "ipv4:" + ",".join(replicas.addresses)
        warm_up(client, replicas)
        before = replicas.counters()
        answered, resent = drive(client, docs)
        served = per_server(before, replicas.counters(), HOSTS)
    assert resent == 0
    assert_exactly_once(answered, reference_rows(replicas.addresses[0], docs))
    assert_balanced(served)


@pytest.mark.timeout(120)
def test_a_dns_name_for_the_replicas_shares_the_load_evenly(replicas: Replicas) -> None:
    """grpc's c-ares resolver asks the test's own DNS server (dns://HOST:PORT/name) for A records."""
    dns = FakeDNS("tokvec.test", HOSTS)
    try:
        with Client(f"dns://127.0.0.1:{dns.port}/tokvec.test:{replicas.port}") as client:
            warm_up(client, replicas)
            before = replicas.counters()
            answered, resent = drive(client, make_docs(1000, 300))
            served = per_server(before, replicas.counters(), HOSTS)
    finally:
        dns.close()
    assert dns.queries >= 1
    assert resent == 0 and all(len(r) == 1 and r[0].error is None for r in answered.values())
    assert_balanced(served)


@pytest.mark.timeout(120)
def test_a_killed_replica_loses_no_doc_and_a_restarted_one_rejoins(replicas: Replicas) -> None:
    victim = HOSTS[1]
    docs = make_docs(2000, 300)
    reference = reference_rows(replicas.addresses[0], docs)
    killed = threading.Event()

    def kill_at_a_third(calls: int) -> None:
        if calls >= 50 and not killed.is_set():
            killed.set()
            replicas.servers[victim].proc.kill()  # SIGKILL: no drain, calls in flight are cut

    with Client(replicas.addresses) as client:
        warm_up(client, replicas)
        answered, resent = drive(client, docs, on_call=kill_at_a_third)
        assert killed.is_set() and replicas.servers[victim].proc.wait(5) == -9
        # Every doc exactly once, with the rows a lone replica gives. Calls cut mid-stream come
        # back UNAVAILABLE and are sent again: at most one per worker was on the victim.
        assert_exactly_once(answered, reference)
        assert resent <= WORKERS

        # Restarted on its old address, it rejoins the same client's channel (after the channel's
        # reconnect backoff) and gets its third again.
        print(f"calls sent again after the kill: {resent}")
        replicas.restart(victim)
        restarted = time.monotonic()
        warm_up(client, replicas, hosts=[victim], timeout_s=40.0)
        print(f"rejoined {time.monotonic() - restarted:.1f} s after its restart")
        before = replicas.counters()
        answered, resent = drive(client, make_docs(3000, 240))
        served = per_server(before, replicas.counters(), HOSTS)
    assert resent == 0 and all(len(r) == 1 and r[0].error is None for r in answered.values())
    assert_balanced(served)


def test_the_health_probe_script_reads_a_replica(replicas: Replicas) -> None:
    probe = [sys.executable, str(ROOT / "scripts" / "healthcheck.py")]
    done = subprocess.run([*probe, "--address", replicas.addresses[2]], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "tokvec.v1.EmbedService: SERVING" in done.stdout, done.stdout
    done = subprocess.run(
        [*probe, "--address", replicas.addresses[2], "--service", ""], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0 and "(server): SERVING" in done.stdout, done.stdout
    done = subprocess.run(
        [*probe, "--address", replicas.addresses[2], "--service", "no.such.Service"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1 and "NOT_FOUND" in done.stdout, done.stdout
