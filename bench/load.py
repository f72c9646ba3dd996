"""Async load on a running server: N independent clients (one channel each) pull docs from a shared
queue in file order and send them, ``docs_per_request`` at a time, each waiting for its answer
before sending again. Every reply is checked: one row per word, the model's width."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from corpus import SPANS

from tokvec import AsyncClient


@dataclass(frozen=True)
class LoadResult:
    clients: int
    docs_per_request: int
    docs: int
    words: int
    seconds: float
    latencies_ms: list[float]  # one per request, in completion order

    @property
    def words_per_s(self) -> float:
        return self.words / self.seconds

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile of the request latencies, q in [0, 100]."""
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def _check(chunk: list[dict[str, Any]], rows: list[Any], width: int) -> None:
    for doc, r in zip(chunk, rows, strict=True):
        if r.shape != (len(doc["words"]), width):
            raise RuntimeError(f"doc {doc['id']}: rows {r.shape}, expected {(len(doc['words']), width)}")


async def drive(
    address: str,
    docs: list[dict[str, Any]],
    clients: int,
    docs_per_request: int = 1,
    gate: Callable[[], None] | None = None,
    spans: str = SPANS,
) -> LoadResult:
    """Send every doc once through ``clients`` concurrent clients; wall time from first send to last
    reply. ``gate``: called (in a thread) once every client is connected; sending starts when it
    returns (several load processes start together)."""
    chunks: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue()
    for start in range(0, len(docs), docs_per_request):
        chunks.put_nowait(docs[start : start + docs_per_request])
    pool = [AsyncClient(address, spans=spans, pooling="mean", timeout=600) for _ in range(clients)]
    # Connect (and learn the width) before the clock starts.
    width = (await pool[0].info()).model.width
    await asyncio.gather(*(c.info() for c in pool[1:]))
    latencies: list[float] = []
    if gate is not None:
        await asyncio.to_thread(gate)

    async def worker(client: AsyncClient) -> None:
        while not chunks.empty():
            chunk = chunks.get_nowait()
            sent = time.perf_counter()
            rows = await client.embed(chunk)
            latencies.append((time.perf_counter() - sent) * 1000)
            _check(chunk, rows, width)

    started = time.perf_counter()
    try:
        await asyncio.gather(*(worker(c) for c in pool))
    finally:
        seconds = time.perf_counter() - started
        await asyncio.gather(*(c.close() for c in pool))
    return LoadResult(clients, docs_per_request, len(docs), sum(len(d["words"]) for d in docs), seconds, latencies)


def rows_of(address: str, docs: list[dict[str, Any]], per_request: int = 32) -> list[Any]:
    """Every doc's token rows from the server at ``address``, in order."""

    async def go() -> list[Any]:
        out: list[Any] = []
        async with AsyncClient(address, spans=SPANS, pooling="mean", timeout=600) as client:
            for start in range(0, len(docs), per_request):
                out += await client.embed(docs[start : start + per_request])
        return out

    return asyncio.run(go())


async def span_lengths(address: str, docs: list[dict[str, Any]], per_request: int = 64) -> list[list[int]]:
    """The server's own pieces per span for each doc (Tokenize RPC), special pieces included."""
    out: list[list[int]] = []
    async with AsyncClient(address, spans=SPANS, timeout=600) as client:
        for start in range(0, len(docs), per_request):
            for t in await client.tokenize(docs[start : start + per_request], spans=SPANS):
                out.append([len(s.ids) for s in t.spans])
    return out
