"""The tok2vec runs in the one serving pipeline: what the transformers' worker does for a batch
that runs out of memory, or for a doc whose deadline passes once it is taken, it does here too.

The real en_core_web_sm tok2vec behind the real server (in this process, so that a test can wrap
its forward with a fault), compared with the same tok2vec run here.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
from serving import ServerThread
from spacy.tokens import Doc

import tokvec
from tokvec_server.errors import DeadlineExceeded
from tokvec_server.runners.batch import Batch
from tokvec_server.types import DocInput, EmbedOptions


@pytest.fixture
def server(tok2vec_thread: ServerThread) -> ServerThread:
    return tok2vec_thread


@pytest.fixture
def engine(server: ServerThread) -> Iterator[Any]:
    engine = server.server.engines[0]
    budget = engine.scheduler.max_batch_items
    yield engine
    engine.scheduler.max_batch_items = budget


def wrap(server: ServerThread, monkeypatch: pytest.MonkeyPatch, fault: Any) -> list[int]:
    """Every forward first goes through ``fault(batch)``; the returned list logs each one's span count."""
    forward = server.runner.forward
    spans: list[int] = []

    def faulty(batch: Batch, layers: tuple[int, ...]) -> Any:
        spans.append(batch.n_spans)
        fault(batch)
        return forward(batch, layers)

    monkeypatch.setattr(server.runner, "forward", faulty)
    return spans


def in_process(nlp: Any, docs: list[dict[str, Any]]) -> list[np.ndarray]:
    return list(
        nlp.get_pipe("tok2vec").model.predict([Doc(nlp.vocab, words=d["words"], spaces=d["spaces"]) for d in docs])
    )


def test_a_batch_out_of_memory_is_split_and_the_budget_halves(
    server: ServerThread, engine: Any, sm_nlp: Any, ewt_docs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before the one pipeline, a tok2vec batch that ran out of memory was split, but the budget
    stayed where it failed: every later batch ran out of memory again."""
    docs = ewt_docs[:8]

    def oom(batch: Batch) -> None:
        if batch.n_spans > 1:
            raise MemoryError("injected: more than one doc")

    spans = wrap(server, monkeypatch, oom)
    splits = engine.worker.stats["oom_splits"]
    with tokvec.Client(server.address) as client:
        results = client.embed_results(docs)
    for result, rows in zip(results, in_process(sm_nlp, docs)):
        assert result.error is None
        np.testing.assert_allclose(result.rows, rows, atol=1e-5, rtol=0)
    assert spans[0] == 8 and spans.count(1) == 8  # one batch of all, then split down to each doc alone
    assert engine.worker.stats["oom_splits"] - splits == 7
    # Halved at each split, from the 8 docs' tokens (1,417) down to the floor.
    assert sum(len(d["words"]) for d in docs) // 2 > engine.worker.min_batch_items == engine.scheduler.max_batch_items


def test_a_doc_too_large_for_memory_alone_fails_alone(
    server: ServerThread, engine: Any, sm_nlp: Any, ewt_docs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = [d for d in ewt_docs if len(d["words"]) < 100][:4]
    big = {"id": "big", "words": ["word"] * 300, "spaces": [True] * 300}

    def oom(batch: Batch) -> None:
        if len(batch.ids) >= 300:
            raise MemoryError("injected: 300 tokens or more")

    wrap(server, monkeypatch, oom)
    with tokvec.Client(server.address) as client:
        results = client.embed_results([docs[0], big, *docs[1:]])
    assert results[1].error is not None and results[1].error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert results[1].error.reason.startswith(
        "a span of 300 pieces does not fit in device memory, even in a batch of its own"
    )
    assert results[1].error.reason.endswith("or send shorter docs")  # spans do not apply to a tok2vec; shorter docs do
    for result, rows in zip(results[:1] + results[2:], in_process(sm_nlp, docs)):
        np.testing.assert_allclose(result.rows, rows, atol=1e-5, rtol=0)


def test_a_doc_whose_deadline_passes_in_a_split_batch_never_runs(
    server: ServerThread, engine: Any, sm_nlp: Any, ewt_docs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two docs in one batch that fails (not out of memory): it is split; the first doc runs
    alone and takes past the deadline; the second is DEADLINE_EXCEEDED without a forward. Before
    the one pipeline, the tok2vec ran it for a caller that had stopped waiting."""
    docs = ewt_docs[:2]
    deadline = time.monotonic() + 2.0
    ran_alone = threading.Event()

    def slow_then_fail(batch: Batch) -> None:
        if batch.n_spans > 1:
            raise RuntimeError("injected: a failed batch")
        ran_alone.set()
        time.sleep(max(0.0, deadline - time.monotonic()) + 0.1)

    spans = wrap(server, monkeypatch, slow_then_fail)
    dropped = engine.scheduler.dropped["deadline"]

    async def go() -> list[asyncio.Future[Any]]:
        inputs = [DocInput(d["id"], d["words"], d["spaces"]) for d in docs]
        return list(await engine.embed(inputs, EmbedOptions(), "direct", deadline))

    futures = asyncio.run_coroutine_threadsafe(go(), server.loop).result(10)
    first = asyncio.run_coroutine_threadsafe(asyncio.wait_for(futures[0], 10), server.loop).result(15)
    np.testing.assert_allclose(first.rows, in_process(sm_nlp, docs[:1])[0], atol=1e-5, rtol=0)
    assert ran_alone.is_set()
    second = asyncio.run_coroutine_threadsafe(asyncio.wait([futures[1]], timeout=10), server.loop).result(15)
    assert second[0] and isinstance(futures[1].exception(), DeadlineExceeded)
    assert spans == [2, 1]  # the second doc never reached the model
    assert engine.scheduler.dropped["deadline"] - dropped == 1


def test_pooling_and_spans_do_not_change_a_row(server: ServerThread, ewt_docs: list[dict[str, Any]]) -> None:
    """Each token is its own and only piece: every pooling gives the model's row, bit for bit;
    a doc is one span whatever ``spans`` asks (a tok2vec has no piece limit to check it against)."""
    docs = ewt_docs[:3]
    with tokvec.Client(server.address) as client:
        base = client.embed(docs)
        for pooling, spans in (("max", "pieces:600:100"), ("first", "tokens:2:1"), ("last", "doc"), ("sum", "sents")):
            for a, b in zip(base, client.embed(docs, pooling=pooling, spans=spans)):
                np.testing.assert_array_equal(a, b)
