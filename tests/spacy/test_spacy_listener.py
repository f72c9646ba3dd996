"""tokvec.RemoteListener.v1: reads the upstream component's rows, fetches its own otherwise,
is frozen, and refuses a width or model it was not built for."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest
import spacy
from ewt_examples import ewt_examples
from spacy.tokens import Doc
from spacy_support import example_pipeline, tagger, upstream

from tokvec import Client
from tokvec.spacy import ModelMismatchError, PipelineError, Remote, RemoteListener, remote_listener


def test_listener_hands_on_the_upstream_rows(trained: Any, texts: list[str], monkeypatch: Any) -> None:
    nlp = spacy.load(trained)
    docs = list(nlp.pipe(texts[:5]))
    listener = tagger(nlp).model.layers[0]
    assert isinstance(listener, RemoteListener) and upstream(nlp).listening_components == ["tagger", "parser"]

    def no_server(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the listener asked the server for rows the docs already carry")

    monkeypatch.setattr(Remote, "embed", no_server)
    for doc, rows in zip(docs, listener.predict(docs)):
        assert rows is doc._.tokvec


def test_update_makes_one_call_and_feeds_every_listener(minilm: Any, monkeypatch: Any) -> None:
    nlp = example_pipeline(minilm.address)
    examples = ewt_examples(nlp, "train", 40)
    optimizer = nlp.initialize(lambda: examples)
    calls: list[int] = []
    real = Remote.embed

    def counting(self: Remote, docs: Any, who: str, **kwargs: Any) -> Any:
        calls.append(len(docs))
        return real(self, docs, who, **kwargs)

    monkeypatch.setattr(Remote, "embed", counting)
    batch = examples[:3]
    losses = nlp.update(batch, sgd=optimizer)
    assert calls == [3]  # the component's; both listeners used what it sent them
    assert losses["tagger"] > 0 and losses["parser"] > 0
    assert all(listener._outputs is None for listener in upstream(nlp).listeners)


def test_standalone_listener_fetches_rows_itself(minilm: Any, blank_en: Any, ewt_docs: Any) -> None:
    model = remote_listener(address=minilm.address)
    model.initialize()
    assert model.get_dim("nO") == 384 and model.attrs["fingerprint"]
    docs = [Doc(blank_en.vocab, words=d["words"], spaces=d["spaces"]) for d in ewt_docs[:6]]
    with Client(minilm.address) as client:
        expected = client.embed(docs)
    for rows, want in zip(model.predict(docs), expected):
        np.testing.assert_allclose(np.asarray(rows), want, atol=3e-5)


def test_backprop_is_frozen_and_says_so(minilm: Any, blank_en: Any, caplog: Any) -> None:
    model = remote_listener(address=minilm.address)
    model.initialize()
    docs = [blank_en("A frozen encoder."), blank_en("Nothing flows back.")]
    rows, backprop = model.begin_update(docs)
    with caplog.at_level(logging.INFO, logger="tokvec.spacy"):
        assert backprop([model.ops.alloc2f(*r.shape) + 1 for r in rows]) == []
    assert "frozen" in caplog.text and model.attrs["grad_factor"] == 0.0


def test_wrong_width_names_the_setting_to_change(minilm: Any) -> None:
    nlp = example_pipeline(minilm.address, **{"components.tagger.model.tok2vec.width": 256})
    examples = ewt_examples(nlp, "train", 20)
    with pytest.raises(
        ModelMismatchError, match=r"width = 384 in the tokvec.RemoteListener.v1 block of \[components.tagger\]"
    ):
        nlp.initialize(lambda: examples)
    standalone = remote_listener(width=100, address=minilm.address)
    with pytest.raises(ModelMismatchError, match="set width = 384"):
        standalone.initialize()


def test_rows_of_another_model_are_refused(blank_en: Any) -> None:
    model = RemoteListener("*", 384, None)
    model.attrs["fingerprint"] = "trained-on-this"
    doc = blank_en("Two words")
    doc._.tokvec = np.zeros((2, 384), np.float32)
    doc._.tokvec_fingerprint = "something-else"
    with pytest.raises(ModelMismatchError, match="'something-else'.*'trained-on-this'"):
        model.predict([doc])


def test_no_rows_and_no_server_is_an_error_not_zeros(blank_en: Any) -> None:
    model = RemoteListener("*", 384, None)
    model.component = "tagger"
    with pytest.raises(PipelineError, match="Add a tokvec_transformer component before it"):
        model.predict([blank_en("No rows here")])


def test_training_batches_are_checked(minilm: Any) -> None:
    nlp = example_pipeline(minilm.address)
    examples = ewt_examples(nlp, "train", 40)
    nlp.initialize(lambda: examples)
    listener = tagger(nlp).model.layers[0]
    first, second = examples[:2], examples[2:4]
    upstream(nlp).update(first)
    with pytest.raises(ValueError, match="another batch"):
        listener.begin_update([eg.predicted for eg in second])
