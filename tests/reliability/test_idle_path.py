"""The idle path (engine.embed): a small request that finds the model idle is prepared on the
model's own thread, then runs at once; anything else goes through the prep pool. Either way a
doc gets the same rows, a bad doc fails alone, a doc whose deadline passes while it is prepared
never reaches the model, and an unexpected error fails the call, not the server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import numpy as np
import pytest
from faultkit import fake_server, wait_until
from serving import ServerThread

import tokvec
from tokvec_server.engine import IDLE_PATH_MAX_WORDS, Engine


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    with fake_server() as server:
        yield server


def spy(engine: Engine, monkeypatch: pytest.MonkeyPatch, before: Callable[[], None] = lambda: None) -> list[str]:
    """The names of the threads that prepare each call's docs, from now on."""
    threads: list[str] = []
    prepare = engine._prepare

    def spied(*args: Any) -> Any:
        threads.append(threading.current_thread().name)
        before()
        return prepare(*args)

    monkeypatch.setattr(engine, "_prepare", spied)
    return threads


def idle(engine: Engine) -> None:
    wait_until(lambda: engine.scheduler.queued == (0, 0) and engine.scheduler._idle, 10, "an idle model")


def test_a_small_call_to_an_idle_model_is_prepared_on_its_thread_a_large_one_in_the_pool(
    server: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = server.server.engines[0]
    threads = spy(engine, monkeypatch)
    small = [["a", "small", "doc"], ["and", "another"]]
    large = [["word"] * 100] * 3  # over IDLE_PATH_MAX_WORDS
    assert sum(map(len, large)) > IDLE_PATH_MAX_WORDS
    with tokvec.Client(server.address, timeout=30) as client:
        idle(engine)
        small_idle = client.embed(small)
        idle(engine)
        large_rows = client.embed(large)
    assert threads == ["tokvec-model", threads[1]] and threads[1].startswith("tokvec-tokenize"), threads
    assert [r.shape for r in small_idle] == [(3, 384), (2, 384)] and [r.shape for r in large_rows] == [(100, 384)] * 3


def test_a_doc_gets_the_same_rows_on_either_path(server: ServerThread, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = server.server.engines[0]
    threads = spy(engine, monkeypatch)
    doc = ["the", "same", "doc", "both", "ways"]
    with tokvec.Client(server.address, timeout=30) as client:
        idle(engine)
        (alone,) = client.embed([doc])
        idle(engine)
        among = client.embed([doc, *[["filler"] * 100] * 3])[0]
    assert threads[0] == "tokvec-model" and threads[1].startswith("tokvec-tokenize"), threads
    np.testing.assert_array_equal(alone, among)


def test_a_bad_doc_on_the_idle_path_fails_alone(server: ServerThread) -> None:
    engine = server.server.engines[0]
    with tokvec.Client(server.address, timeout=30) as client:
        idle(engine)
        good, bad = client.embed_results(
            [{"words": ["fine"], "spaces": [True]}, {"words": ["two", "words"], "spaces": [True]}]
        )
    assert good.error is None and good.rows.shape == (1, 384)
    assert (
        bad.error is not None
        and bad.error.code == grpc.StatusCode.INVALID_ARGUMENT
        and "docs[1].spaces" in str(bad.error)
    ), bad.error


def test_a_doc_whose_deadline_passes_while_it_is_prepared_never_reaches_the_model(
    server: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = server.server.engines[0]
    faults = server.runner.faults
    threads = spy(engine, monkeypatch, before=lambda: time.sleep(0.5))
    zebra = server.runner.tokenizer.convert_tokens_to_ids("zebra")

    # The call ends at its deadline and cancels its doc, or the doc's own deadline drops it.
    def dropped_now() -> int:
        return engine.scheduler.dropped["deadline"] + engine.scheduler.dropped["cancelled"]

    dropped = dropped_now()
    calls = len(faults.calls)
    with tokvec.Client(server.address, timeout=0.2) as client:
        idle(engine)
        with pytest.raises(tokvec.ServerError) as caught:
            client.embed([["zebra", "late"]])
    assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    wait_until(lambda: dropped_now() > dropped, 5, "the late doc to be dropped")
    assert threads == ["tokvec-model"]
    assert not any(zebra in row for row in list(faults.calls)[calls:])


def test_an_unexpected_error_on_the_idle_path_fails_the_call_not_the_server(
    server: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = server.server.engines[0]

    def broken() -> None:
        raise RuntimeError("a bug while preparing")

    spy(engine, monkeypatch, before=broken)
    with tokvec.Client(server.address, timeout=30) as client:
        idle(engine)
        with pytest.raises(tokvec.ServerError) as caught:
            client.embed([["boom"]])
        assert caught.value.code == grpc.StatusCode.INTERNAL and "error id" in str(caught.value)
        monkeypatch.undo()
        assert engine.worker.alive()
        assert client.embed([["still", "serving"]])[0].shape == (2, 384)
