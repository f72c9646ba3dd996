"""R5 SIGTERM with 16 streams x 64 docs in flight: readiness NOT_SERVING within 100 ms; 100% of
admitted docs answered; new work UNAVAILABLE after the drain delay (and still taken before it);
exit 0 within grace + 1 s, even with a client that never reads; a second signal exits within 1 s.

The server is a subprocess (signals are the point) on the fake model made slow with
``fake_delay_ms``, so that the 1,024 docs are still in flight when the signal lands. The signal
waits until the server's own count says it has read all 1,024: a doc still in the socket when the
drain ends is new work, rightly refused, and no test of admitted work. The never-reading client
has a model of its own so that its docs stay out of that count."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from pathlib import Path

import grpc
from load import HealthProbe, Load, metrics_address, scrape, tokvec_serve, wait_until, write_config

import tokvec
from tokvec.v1 import tokvec_pb2 as pb
from tokvec.v1 import tokvec_pb2_grpc as pb_grpc

DRAIN_S, GRACE_S = 1.0, 4.0
CONFIG = f"""
drain_s = {DRAIN_S}
grace_s = {GRACE_S}
metrics_address = "127.0.0.1:0"
[[models]]
name = "main"
backend = "fake"
fake_delay_ms = 100
[models.batching]
max_batch_items = 1024
[[models]]
name = "never"
backend = "fake"
fake_delay_ms = 50
"""
DOC = {"words": ["late", "comer"], "spaces": [True, False]}


def call_code(address: str) -> str:
    try:
        with tokvec.Client(address, timeout=5) as client:
            client.embed([DOC])
    except tokvec.ServerError as exc:
        return str(exc.code.name)
    return "OK"


class NeverReads(threading.Thread):
    """Opens a stream, sends docs, never reads a response."""

    def __init__(self, address: str) -> None:
        super().__init__(daemon=True)
        self.address = address
        self.written = 0
        self.stop = threading.Event()
        self.start()

    def run(self) -> None:
        async def main() -> None:
            async with grpc.aio.insecure_channel(self.address) as channel:
                call = pb_grpc.EmbedServiceStub(channel).EmbedStream()  # type: ignore[no-untyped-call]
                request = pb.EmbedStreamRequest(
                    options=pb.EmbedOptions(model="never"),
                    docs=[pb.Doc(words=["never", "reads"] * 32, spaces=[True] * 64)] * 16,
                )
                try:
                    while not self.stop.is_set():
                        await asyncio.wait_for(call.write(request), 0.5)
                        self.written += 16
                except (TimeoutError, grpc.aio.AioRpcError, asyncio.CancelledError):
                    pass  # flow control stopped us, or the server went away
                while not self.stop.is_set():
                    await asyncio.sleep(0.05)
                call.cancel()

        asyncio.run(main())


def admitted(metrics: str) -> int:
    return int(scrape(metrics).get('tokvec_admitted_docs_total{model="main"}', 0))


def test_sigterm_drains_then_stops(tmp_path: Path) -> None:
    server = tokvec_serve("--config", write_config(tmp_path / "tokvec.toml", CONFIG))
    metrics = metrics_address(server)
    warmup = admitted(metrics)
    never = NeverReads(server.address)
    load = Load(
        server.address,
        tmp_path / "load.tsv",
        "--mode",
        "stream",
        "--streams",
        "16",
        "--count",
        "64",
        "--window",
        "64",
        "--batch",
        "16",
        "--max-words",
        "16",
        "--duration",
        "60",
    )
    try:
        load.wait_for("driver: sent", 30)
        wait_until(lambda: never.written > 0, 10, "the never-reading client to send")
        wait_until(
            lambda: admitted(metrics) - warmup == 16 * 64, 20, "the server to read every stream's docs", every=0.05
        )
        probe = HealthProbe(server.address, every=0.005)
        time.sleep(0.2)
        server.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        during_drain = call_code(server.address)
        wait_until(lambda: time.monotonic() > signalled + DRAIN_S + 0.2, 5, "the drain delay")
        after_drain = call_code(server.address)
        code = server.proc.wait(DRAIN_S + GRACE_S + 10)
        exited = time.monotonic() - signalled
        probe.stop()
        summary = load.join(30)
    finally:
        never.stop.set()
        load.kill()
        server.stop()
    t = load.timings()
    in_flight = int((t.t_done > signalled).sum())
    flipped = probe.first("NOT_SERVING")
    print(
        f"R5: NOT_SERVING {((flipped or 0) - signalled) * 1e3:.0f} ms after SIGTERM; {t.codes()} of {summary['sent']} docs, {in_flight} in flight at the signal, "
        f"the last answered {t.t_done.max() - signalled:.2f}s after it; "
        f"new work during drain {during_drain}, after {after_drain}; exit {code} after {exited:.2f}s "
        f"(drain {DRAIN_S}s + grace {GRACE_S}s); never-reader got {never.written} docs in"
    )
    assert flipped is not None and flipped - signalled <= 0.100
    assert summary["sent"] == 16 * 64 and t.codes() == {"OK": 16 * 64}
    assert in_flight >= 16 * 64 // 2  # the drain had work to finish
    assert t.accounting(summary["sent_per_conn"]) == {"lost": 0, "duplicated": 0, "reordered": 0}
    assert during_drain == "OK" and after_drain == "UNAVAILABLE"
    assert code == 0 and exited <= DRAIN_S + GRACE_S + 1.0


def test_a_second_signal_exits_at_once(tmp_path: Path) -> None:
    config = write_config(tmp_path / "tokvec.toml", CONFIG.replace(f"drain_s = {DRAIN_S}", "drain_s = 30"))
    server = tokvec_serve("--config", config)
    load = Load(
        server.address,
        tmp_path / "load.tsv",
        "--mode",
        "stream",
        "--streams",
        "4",
        "--window",
        "64",
        "--duration",
        "60",
    )
    try:
        time.sleep(0.5)
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert server.proc.poll() is None  # draining (30 s)
        server.proc.send_signal(signal.SIGTERM)
        second = time.monotonic()
        code = server.proc.wait(10)
        exited = time.monotonic() - second
    finally:
        load.kill()
        server.stop()
    print(f"R5: a second SIGTERM exited after {exited:.2f}s (code {code})")
    assert exited <= 1.0 and code != 0
    assert "second signal" in "".join(server.lines)
