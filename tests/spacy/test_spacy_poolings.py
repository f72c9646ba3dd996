"""tokvec_transformer with listeners pooling differently, batches past max_docs_per_request, and the
next batch's request in flight while the listeners work."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import spacy
from ewt_examples import ewt_examples
from serving import ServerThread
from spacy.language import Language
from spacy.tokens import Doc
from spacy_support import example_pipeline, upstream

from tokvec import Client
from tokvec.spacy import Remote, RemoteListener
from tokvec_server.settings import Limits, ModelSettings, Settings


def listener_of(nlp: Language, name: str) -> RemoteListener:
    return next(node for node in nlp.get_pipe(name).model.walk() if isinstance(node, RemoteListener))


def count_calls(monkeypatch: Any) -> list[tuple[int, tuple[str, ...]]]:
    """(docs, more_poolings) of every request the spaCy integration sends."""
    calls: list[tuple[int, tuple[str, ...]]] = []
    real = Remote._embed

    def counting(
        self: Remote, docs: Any, start: int, who: str, pieces: bool, pooling: str, more_poolings: Any, *rest: Any
    ) -> Any:
        calls.append((len(docs), tuple(more_poolings)))
        return real(self, docs, start, who, pieces, pooling, more_poolings, *rest)

    monkeypatch.setattr(Remote, "_embed", counting)
    return calls


def test_listeners_pooling_differently_share_one_call_per_batch(minilm: Any, ewt_docs: Any, monkeypatch: Any) -> None:
    nlp = example_pipeline(
        minilm.address,
        **{"components.tagger.model.tok2vec.pooling": "max", "components.parser.model.tok2vec.pooling": "first"},
    )
    examples = ewt_examples(nlp, "train", 30)
    optimizer = nlp.initialize(lambda: examples)
    assert upstream(nlp).more_poolings == ("max", "first")
    calls = count_calls(monkeypatch)
    received: dict[str, list[np.ndarray]] = {}
    for name in ("tagger", "parser"):
        listener = listener_of(nlp, name)
        real_receive = listener.receive
        monkeypatch.setattr(
            listener,
            "receive",
            lambda batch_id, rows, _n=name, _r=real_receive: (received.__setitem__(_n, list(rows)), _r(batch_id, rows)),
        )
    nlp.update(examples[:3], sgd=optimizer)
    assert calls == [(3, ("max", "first"))]
    with Client(minilm.address) as client:
        for name, pooling in (("tagger", "max"), ("parser", "first")):
            want = client.embed([eg.predicted for eg in examples[:3]], pooling=pooling)
            for got, rows in zip(received[name], want):
                np.testing.assert_allclose(got, rows, atol=1e-5)

    calls.clear()
    docs = [Doc(nlp.vocab, words=d["words"], spaces=d["spaces"]) for d in ewt_docs[:20]]
    done = list(nlp.pipe(docs, batch_size=8))
    assert calls == [
        (8, ("max", "first")),
        (8, ("max", "first")),
        (4, ("max", "first")),
    ]  # one call per batch, whatever the poolings
    with Client(minilm.address) as client:
        want = {p: client.embed(docs, pooling=p) for p in ("mean", "max", "first")}
    monkeypatch.setattr(
        Remote, "_embed", lambda *a, **k: pytest.fail("a listener asked the server for rows its docs carry")
    )
    for name, pooling in (("tagger", "max"), ("parser", "first")):
        for got, rows in zip(listener_of(nlp, name).predict(done), want[pooling]):
            np.testing.assert_allclose(np.asarray(got), rows, atol=1e-5)
    for doc, rows in zip(done, want["mean"]):
        np.testing.assert_allclose(
            doc._.tokvec, rows, atol=1e-5
        )  # the component's own pooling, for anything else that reads it


def test_a_listener_without_a_pooling_takes_its_upstreams(minilm: Any) -> None:
    nlp = example_pipeline(minilm.address, **{"components.tokvec.pooling": "sum"})
    assert listener_of(nlp, "tagger").wanted_pooling == "sum" and upstream(nlp).more_poolings == ()


def test_a_bad_listener_pooling_names_the_setting(minilm: Any) -> None:
    with pytest.raises(ValueError, match=r"pooling: 'median' is not one of mean, max, first, last, sum"):
        example_pipeline(minilm.address, **{"components.tagger.model.tok2vec.pooling": "median"})


@pytest.fixture
def small_requests() -> Iterator[ServerThread]:
    """The fake model behind a server that takes 3 docs a request."""
    server = ServerThread(Settings(models=(ModelSettings(backend="fake"),), limits=Limits(max_docs_per_request=3)))
    yield server
    server.stop()


def words_docs(nlp: Language, n: int) -> list[Doc]:
    return [Doc(nlp.vocab, words=[f"w{i}", "and", f"x{i % 7}", "."]) for i in range(n)]


def test_a_batch_past_max_docs_per_request_is_split_not_refused(small_requests: ServerThread, monkeypatch: Any) -> None:
    nlp = spacy.blank("en")
    nlp.add_pipe("tokvec_transformer", config={"address": small_requests.address})
    calls = count_calls(monkeypatch)
    docs = list(nlp.pipe(words_docs(nlp, 20), batch_size=2000))
    assert [n for n, _ in calls] == [3, 3, 3, 3, 3, 3, 2]
    with Client(small_requests.address) as client:
        for doc in docs:
            np.testing.assert_allclose(doc._.tokvec, client.embed([doc])[0], atol=1e-6)
    assert [d[0].text for d in docs] == [f"w{i}" for i in range(20)]


def test_the_next_request_is_in_flight_while_the_listeners_work_and_order_is_kept(
    small_requests: ServerThread, monkeypatch: Any
) -> None:
    nlp = spacy.blank("en")
    nlp.add_pipe("tokvec_transformer", config={"address": small_requests.address})
    started: list[int] = []
    changed = threading.Condition()
    real = Remote._embed

    def recording(self: Remote, docs: Any, *args: Any) -> Any:
        with changed:
            started.append(int(docs[0][0].text[1:]))  # the first doc's number: which batch this is
            changed.notify_all()
        return real(self, docs, *args)

    monkeypatch.setattr(Remote, "_embed", recording)
    seen: list[tuple[int, int]] = []  # (doc, requests started when a later component saw it)

    @Language.component("tokvec_test_downstream")
    def downstream(doc: Doc) -> Doc:
        i = int(doc[0].text[1:])
        wanted = min(i // 3 + 2, 4)  # its own batch's request, and the next one's
        with changed:
            assert changed.wait_for(lambda: len(started) >= wanted, timeout=30)
            seen.append((i, len(started)))
        return doc

    nlp.add_pipe("tokvec_test_downstream")
    docs = list(nlp.pipe(words_docs(nlp, 12), batch_size=3))
    assert [int(d[0].text[1:]) for d in docs] == list(range(12))
    assert started == [0, 3, 6, 9]
    # While batch k was with the later component, request k + 1 was out, and no more (bounded).
    assert seen == [(i, min(i // 3 + 2, 4)) for i in range(12)]
    with Client(small_requests.address) as client:
        for doc in docs:
            np.testing.assert_allclose(doc._.tokvec, client.embed([doc])[0], atol=1e-6)


def test_a_failed_batch_fails_in_its_turn(small_requests: ServerThread, monkeypatch: Any) -> None:
    nlp = spacy.blank("en")
    nlp.add_pipe("tokvec_transformer", config={"address": small_requests.address, "spans": "pieces:8:4"})
    real = Remote._embed

    def failing_second(self: Remote, docs: Any, *args: Any) -> Any:
        if docs[0][0].text == "w3":
            raise RuntimeError("batch 1 failed")
        return real(self, docs, *args)

    monkeypatch.setattr(Remote, "_embed", failing_second)
    out = []
    with pytest.raises(RuntimeError, match="batch 1 failed"):
        for doc in nlp.pipe(words_docs(nlp, 9), batch_size=3):
            out.append(doc[0].text)
    assert out == ["w0", "w1", "w2"]  # the batch before it came through whole, in order
