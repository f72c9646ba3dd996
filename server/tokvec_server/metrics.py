"""Prometheus metrics: read from each engine's counters at scrape time, plus stage latencies."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from prometheus_client import Counter, Histogram, start_http_server
from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from tokvec_server.engine import Engine

# Observed by the prep pool and the model worker (seconds). Labels: model.
PREP = Histogram("tokvec_prep_seconds", "Validating and tokenizing one call's docs", ["model"])
QUEUE_WAIT = Histogram("tokvec_queue_wait_seconds", "Time a span waited in the queue", ["model"])
FORWARD = Histogram("tokvec_forward_seconds", "Model forward time per batch", ["model"])
BATCH_SPANS = Histogram("tokvec_batch_spans", "Spans per batch", ["model"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
# Counted whether or not /metrics is served (an increment is cheap). Labels: the status code name;
# a call refused as a whole counts once, a doc answered with an error in-band counts once.
REFUSED = Counter("tokvec_refused", "Calls and docs answered with an error status", ["code"])


class EngineCollector(Collector):
    def __init__(self, engines: list[Engine], loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.engines = engines
        self.loop = loop

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        docs = GaugeMetricFamily("tokvec_queue_docs", "Docs waiting", labels=["model"])
        pieces = GaugeMetricFamily("tokvec_queue_pieces", "Pieces waiting", labels=["model"])
        admitted = CounterMetricFamily(
            "tokvec_admitted_docs", "Docs taken into the queue (the warmup's among them)", labels=["model"]
        )
        batches = CounterMetricFamily("tokvec_batches", "Model forwards", labels=["model"])
        padding = GaugeMetricFamily("tokvec_padding_efficiency", "Real pieces / padded pieces so far", labels=["model"])
        dropped = CounterMetricFamily(
            "tokvec_dropped_docs", "Docs that left the queue without a forward", labels=["model", "reason"]
        )
        splits = CounterMetricFamily(
            "tokvec_batch_splits", "Failed batches split and retried", labels=["model", "cause"]
        )
        budget = GaugeMetricFamily("tokvec_batch_budget", "Current padded-piece budget per batch", labels=["model"])
        for engine in self.engines:
            name = engine.info.name
            n_docs, n_pieces = engine.scheduler.queued
            stats = engine.worker.stats
            docs.add_metric([name], n_docs)
            pieces.add_metric([name], n_pieces)
            admitted.add_metric([name], engine.scheduler.admitted)
            batches.add_metric([name], stats["batches"])
            padding.add_metric([name], stats["real_pieces"] / max(stats["padded_pieces"], 1))
            for reason, count in engine.scheduler.dropped.items():
                dropped.add_metric([name, reason], count)
            splits.add_metric([name, "oom"], stats["oom_splits"])
            splits.add_metric([name, "error"], stats["bisections"])
            budget.add_metric([name], engine.scheduler.max_batch_items)
        yield from (docs, pieces, admitted, batches, padding, dropped, splits, budget)
        if self.loop is not None:
            # One task per call in flight (and per stream reader): a count that does not come back
            # to its idle value after clients leave is a leak (docs/reliability.md R1, R13).
            # all_tasks() copes with being called from this (the HTTP server's) thread.
            tasks = GaugeMetricFamily("tokvec_event_loop_tasks", "Unfinished asyncio tasks on the serving loop")
            tasks.add_metric([], len(asyncio.all_tasks(self.loop)))
            yield tasks


def serve_metrics(address: str, engines: list[Engine], loop: asyncio.AbstractEventLoop | None = None) -> int:
    """Serve /metrics over HTTP on HOST:PORT; returns the port (0 picks one)."""
    import tokvec_server.metrics as module

    host, port = address.rsplit(":", 1)
    REGISTRY.register(EngineCollector(engines, loop))
    for engine in engines:
        engine.metrics = engine.worker.metrics = module
    server, _thread = start_http_server(int(port), addr=host.strip("[]"))
    return int(server.server_port)
