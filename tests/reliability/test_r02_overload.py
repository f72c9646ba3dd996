"""R2 overload: 3x saturation offered. Rejections are RESOURCE_EXHAUSTED naming the limit; health
stays SERVING; a client that never reads cannot grow server memory past a bound; a flooding client
cannot starve a light one: every light call is answered. The lines a busy machine can break
(goodput >= 90% of saturation, the light client's p99 <= 2x solo, normal latency within 2 s,
rejection p99 <= 5 ms) are asserted in the slow tier, with its 60 s flood.

The model is the fake runner with a fixed forward time (``fake_delay_ms``): like a GPU, the device
is the bottleneck and the CPU is free for the serving path, whose overload behaviour is under test.
Saturation and the light client's solo latency are measured in the same run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from load import HealthProbe, Load, Sampler, Timings, pct, serve, wait_until, write_config
from serving import ServerProcess

import tokvec
from tokvec.v1 import tokvec_pb2 as pb
from tokvec.v1 import tokvec_pb2_grpc as pb_grpc

MAX_QUEUED_DOCS = 96
CONFIG = f"""
[[models]]
backend = "fake"
fake_delay_ms = 80
[models.batching]
max_batch_items = 1024
max_queued_docs = {MAX_QUEUED_DOCS}
"""
LIGHT = ("--mode", "unary", "--streams", "1", "--window", "1", "--batch", "1", "--max-words", "16")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("r02")
    server = serve("--config", write_config(folder / "tokvec.toml", CONFIG))
    yield server
    server.stop()


@dataclass
class Flood:
    """One run of 3x saturation beside a light client, and what it measured."""

    figures: str
    saturation: float
    goodput: float
    codes: dict[str, int]
    rejected: int
    rejection: str  # the message of a refused call
    rejection_p99: float
    health: set[str]
    solo_p99: float
    latency_lines: bool  # the slow tier's run: its ratios are asserted
    under_flood: Timings  # the light client's calls while the flood ran
    after: Timings  # and after it
    flood_end: float


@pytest.fixture(scope="module", params=[8, pytest.param(60, marks=pytest.mark.slow)])
def flood(request: pytest.FixtureRequest, server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Flood:
    seconds: int = request.param
    address, folder = server.address, tmp_path_factory.mktemp(f"flood{seconds}")
    # The light client alone: its normal latency.
    solo = Load(address, folder / "solo.tsv", *LIGHT, "--duration", "4")
    solo.join()
    solo_t = solo.timings()
    assert solo_t.ok.all() and len(solo_t) > 20
    solo_p50, solo_p99 = pct(solo_t.latency, 50), pct(solo_t.latency, 99)

    # Saturation: enough calls in flight to keep every batch full, never past the queue bound.
    sat = Load(
        address,
        folder / "sat.tsv",
        "--mode",
        "unary",
        "--streams",
        "1",
        "--window",
        "4",
        "--batch",
        "16",
        "--duration",
        "5",
    )
    sat.join()
    sat_t = sat.timings()
    assert sat_t.ok.all(), sat_t.codes()
    saturation = sat_t.throughput()

    # 3x saturation offered by one flooding client (one connection, calls of 16 docs), with the
    # light client beside it.
    probe = HealthProbe(address, every=0.02)
    light = Load(address, folder / "light.tsv", *LIGHT, "--duration", str(seconds + 4))
    time.sleep(1.0)
    flood = Load(
        address,
        folder / "flood.tsv",
        "--mode",
        "unary",
        "--streams",
        "1",
        "--batch",
        "16",
        "--rate",
        str(3 * saturation),
        "--duration",
        str(seconds),
        "--timeout",
        "30",
    )
    rejection = rejected_message(address)
    flood.join(seconds + 60)
    flood_end = time.monotonic()
    light.join(seconds + 60)
    probe.stop()
    flood_t, light_t = flood.timings(), light.timings()

    rejected = flood_t.where(flood_t.code == "RESOURCE_EXHAUSTED")
    goodput = flood_t.where(flood_t.ok).throughput(skip=0.1)
    under_flood = light_t.where((light_t.t_sched > flood_t.t_sched.min()) & (light_t.t_sched < flood_end - 0.5))
    figures = (
        f"R2: saturation {saturation:.0f} docs/s; offered {3 * saturation:.0f}; goodput {goodput:.0f} ({goodput / saturation:.0%}); "
        f"rejected {len(rejected)}/{len(flood_t)}, rejection p50 {pct(rejected.service_time, 50) * 1e3:.1f} ms p99 {pct(rejected.service_time, 99) * 1e3:.1f} ms "
        f"(driver lag p99 {pct(flood_t.t_sent - flood_t.t_sched, 99) * 1e3:.1f} ms); "
        f"light solo p50 {solo_p50 * 1e3:.0f} ms p99 {solo_p99 * 1e3:.0f} ms, under flood p50 {pct(under_flood.latency, 50) * 1e3:.0f} ms "
        f"p99 {pct(under_flood.latency, 99) * 1e3:.0f} ms, codes {under_flood.codes()}; health p99 {pct(probe.latencies(), 99) * 1e3:.1f} ms {probe.statuses()}"
    )
    print(figures)
    return Flood(
        figures,
        saturation,
        goodput,
        flood_t.codes(),
        len(rejected),
        rejection,
        pct(rejected.service_time, 99),
        probe.statuses(),
        solo_p99,
        seconds >= 60,
        under_flood,
        light_t.where(light_t.t_sched > flood_end),
        flood_end,
    )


def test_overload_is_refused_by_name_while_health_and_the_light_client_hold(flood: Flood) -> None:
    figures = flood.figures
    assert set(flood.codes) <= {"OK", "RESOURCE_EXHAUSTED"}, flood.codes
    assert flood.rejected > 0.3 * sum(flood.codes.values()), flood.codes  # 3x offered: about 2/3 turned away
    assert f"max_queued_docs ({MAX_QUEUED_DOCS})" in flood.rejection, flood.rejection
    assert flood.health == {"SERVING"}, figures
    assert flood.goodput > 0, figures
    # Not starved: every light call is answered, while the flood runs and after it.
    assert flood.under_flood.ok.all() and len(flood.under_flood) >= 10, figures
    assert flood.after.ok.all(), figures


def test_overload_latency_lines(flood: Flood) -> None:
    """Goodput, the light client's tail and the recovery, as ratios to the same run's solo figures."""
    if not flood.latency_lines:
        pytest.skip("latency lines are asserted in the slow tier (scripts/test.sh -m slow): a busy machine breaks them")
    figures = flood.figures
    assert flood.goodput >= 0.9 * flood.saturation, figures
    assert pct(flood.under_flood.latency, 99) <= 2 * flood.solo_p99, figures
    # Back to normal within 2 s of the flood's end: every later light call at most 2x its solo p99.
    after = flood.after
    slow = after.t_sched[after.latency > 2 * flood.solo_p99]
    recovered = (slow.max() - flood.flood_end) if len(slow) else 0.0
    assert recovered <= 2.0, f"{figures}; slow until {recovered:.2f}s after the flood"


# Known open (issue 5): rejection p50 is 1.3-3.4 ms, p99 3.8-8.7 ms against a line of 5 ms, on 2
# cores shared by the server, two drivers and the health probe (under 5 ms in 5 of the 12 runs seen
# one day, at most once in ~25 on a slower one). The server's own part is small: handler p50 0.09 ms,
# p99 0.2 ms; sending the status p50 0.23, p99 1.6-3.5 ms; the rest is transport and the client.
@pytest.mark.slow
@pytest.mark.xfail(reason="R2 rejection p99 3.8-8.7 ms against 5 ms: on the line on 2 cores", strict=False)
def test_overload_rejection_latency(flood: Flood) -> None:
    assert flood.rejection_p99 <= 0.005, flood.figures


def rejected_message(address: str, timeout: float = 20.0) -> str:
    """Sends calls of 64 docs (past a second client's share of the queue) until one is turned away
    (the whole call, RESOURCE_EXHAUSTED); its message."""
    deadline = time.monotonic() + timeout
    with tokvec.Client(address, timeout=30) as client:
        while time.monotonic() < deadline:
            try:
                client.embed_results([["overload", "probe"]] * 64)
            except tokvec.ServerError as exc:
                assert exc.code == grpc.StatusCode.RESOURCE_EXHAUSTED, exc
                return exc.details
    return ""


def test_a_client_that_never_reads_cannot_grow_server_memory(server: ServerProcess) -> None:
    """A stream that sends and never reads: the server stops reading it after
    max_in_flight_per_stream docs, HTTP/2 flow control stops the sender, memory stays put."""
    doc = pb.Doc(words=["never", "reads"] * 32, spaces=[True] * 64)
    request = pb.EmbedStreamRequest(docs=[doc] * 16)
    written = 0

    async def never_read() -> tuple[int, float, int, float]:
        nonlocal written
        async with grpc.aio.insecure_channel(server.address) as channel:
            call = pb_grpc.EmbedServiceStub(channel).EmbedStream()  # type: ignore[no-untyped-call]
            sampler = Sampler(server.proc.pid, every=0.25)
            started = time.monotonic()

            async def write() -> None:
                nonlocal written
                while True:
                    await call.write(request)
                    written += 16

            writer = asyncio.create_task(write())
            await asyncio.sleep(4.0)
            at_4s, rss_4s = written, sampler.samples[-1][1].rss
            await asyncio.sleep(4.0)
            at_8s, rss_8s = written, sampler.samples[-1][1].rss
            writer.cancel()
            call.cancel()
            sampler.stop()
            baseline = sampler.rss_between(started - 1, started + 0.3)
            return at_4s, rss_4s - baseline, at_8s, rss_8s - baseline

    at_4s, grew_4s, at_8s, grew_8s = asyncio.run(never_read())
    print(
        f"R2: a never-reading stream got {at_4s} docs in by 4 s, {at_8s} by 8 s; server RSS +{grew_4s / 2**20:.1f} MiB, then +{grew_8s / 2**20:.1f} MiB"
    )
    assert at_8s == at_4s, "the server kept reading a stream whose responses nobody reads"
    # The bound: 256 docs in flight plus what HTTP/2 flow-control windows hold.
    assert grew_8s - grew_4s <= 4 * 2**20 and grew_8s <= 64 * 2**20
    wait_until(lambda: health_ok(server.address), 5, "health")


def health_ok(address: str) -> bool:
    from load import health

    return health(address) == "SERVING"
