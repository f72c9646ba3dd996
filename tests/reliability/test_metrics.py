"""The Prometheus endpoint, against the real MiniLM in its own process: every family the issue
names moves when its event happens (queue depth, admitted docs, batches and their sizes, padding,
the stage latencies, refusals by status, drops by reason, the batch budget)."""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from faultkit import fake_server
from load import EWT, metrics_address, scrape, serve, wait_until, write_config

import tokvec

CONFIG = """
metrics_address = "127.0.0.1:0"
[[models]]
[models.batching]
max_batch_items = 512
max_queued_docs = 64
"""


def ewt_docs(n: int, max_words: int = 64) -> list[dict[str, object]]:
    with EWT.open() as f:
        docs = [json.loads(line) for line in itertools.islice(f, n)]
    return [{"words": d["words"][:max_words], "spaces": d["spaces"][:max_words]} for d in docs]


def one(values: dict[str, float], name: str, **labels: str) -> float:
    """The sample ``name`` with exactly these labels (0 when absent: a counter not yet touched)."""
    for key, value in values.items():
        if m := re.fullmatch(rf"{name}(?:\{{(.*)\}})?", key):
            found = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1) or ""))
            if found == labels:
                return value
    return 0.0


def test_every_family_moves_with_its_event(tmp_path: Path) -> None:
    server = serve("--config", write_config(tmp_path / "tokvec.toml", CONFIG))
    try:
        metrics = metrics_address(server)
        before = scrape(metrics)
        with tokvec.Client(server.address, timeout=60) as client:
            model = client.info().model.name
            rows = client.embed(ewt_docs(20))
            with (
                tokvec.Client(server.address, model="no-such-model") as stranger,
                pytest.raises(tokvec.ServerError) as unknown,
            ):
                stranger.embed(ewt_docs(1))
            # 48 long docs at 512 pieces a batch take many batches: after the first result the
            # rest are still queued. A call that would pass max_queued_docs now is refused before
            # tokenizing; leaving the stream cancels the docs it still has queued.
            stream = client.stream(ewt_docs(48, max_words=200), batch_size=48)
            next(stream)
            with pytest.raises(tokvec.ServerError) as overloaded:
                client.embed(ewt_docs(65))
            stream.close()
        wait_until(lambda: one(scrape(metrics), "tokvec_queue_docs", model=model) == 0, 30, "the queue to empty")
        after = scrape(metrics)
    finally:
        server.stop()

    def moved(name: str, **labels: str) -> float:
        return one(after, name, **labels) - one(before, name, **labels)

    m = {"model": model}
    print(
        f"metrics: admitted {moved('tokvec_admitted_docs_total', **m):.0f}, batches {moved('tokvec_batches_total', **m):.0f}, "
        f"cancelled {moved('tokvec_dropped_docs_total', **m, reason='cancelled'):.0f}, padding {one(after, 'tokvec_padding_efficiency', **m):.3f}"
    )
    assert (
        len(rows) == 20
        and unknown.value.code.name == "INVALID_ARGUMENT"
        and overloaded.value.code.name == "RESOURCE_EXHAUSTED"
    )
    assert moved("tokvec_admitted_docs_total", **m) == 20 + 48  # the refused calls took no place
    assert moved("tokvec_batches_total", **m) >= 2
    assert moved("tokvec_batch_spans_count", **m) == moved("tokvec_batches_total", **m)
    assert moved("tokvec_forward_seconds_count", **m) == moved("tokvec_batches_total", **m)
    assert moved("tokvec_queue_wait_seconds_count", **m) >= 21
    assert moved("tokvec_prep_seconds_count", **m) == 2  # the 20-doc call and the stream's message; refusals come first
    assert 0 < one(after, "tokvec_padding_efficiency", **m) <= 1
    assert moved("tokvec_refused_total", code="INVALID_ARGUMENT") == 1
    assert moved("tokvec_refused_total", code="RESOURCE_EXHAUSTED") == 1
    assert moved("tokvec_dropped_docs_total", **m, reason="overloaded") == 65
    assert moved("tokvec_dropped_docs_total", **m, reason="cancelled") >= 1
    assert one(after, "tokvec_queue_pieces", **m) == 0
    assert one(after, "tokvec_batch_budget", **m) == 512
    assert any(k.startswith("tokvec_batch_splits_total{") and 'cause="oom"' in k for k in after)
    assert "tokvec_event_loop_tasks" in after


@dataclass
class Observed:
    """Stands in for one of the metrics module's histograms: every value it was given."""

    values: list[float] = field(default_factory=list)

    def labels(self, *_names: str) -> Observed:
        return self

    def observe(self, value: float) -> None:
        self.values.append(value)


@dataclass
class Recorder:
    """Stands in for the metrics module, as the model's worker sees it."""

    FORWARD: Observed = field(default_factory=Observed)
    BATCH_SPANS: Observed = field(default_factory=Observed)
    QUEUE_WAIT: Observed = field(default_factory=Observed)


def test_queue_wait_ends_when_the_forward_starts() -> None:
    """A doc alone on an idle model waits for nothing: its queue wait is not its 300 ms forward."""
    with fake_server() as server:
        recorder = Recorder()
        server.server.engines[0].worker.metrics = recorder
        server.runner.faults.delay_s = 0.3
        with tokvec.Client(server.address) as client:
            (rows,) = client.embed([["alone", "on", "an", "idle", "model"]])
    assert rows.shape[0] == 5
    assert len(recorder.FORWARD.values) == 1 and recorder.FORWARD.values[0] >= 0.3, recorder
    assert len(recorder.QUEUE_WAIT.values) == 1 and 0 <= recorder.QUEUE_WAIT.values[0] < 0.1, recorder
