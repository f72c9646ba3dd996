"""tokvec.RemoteSpanCategorizer.v1 / RemoteSpanReducer.v1: a spancat whose span features are the
server's chunk vectors (no token rows in the listening process), built from a config, trained a
little on gold EWT subtrees, and its features equal to the client's chunk vectors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import spacy
from ewt_examples import CONLLU, conllu_head
from spacy.tokens import Doc, Span
from spacy.training import Example
from spacy.training.converters import conllu_to_docs
from thinc.api import Config

import tokvec.spacy  # noqa: F401 - registers the layers (an installed tokvec does it by entry point)
from tokvec import Client

LABELS = ("nsubj", "obj", "obl")
CFG = """
[nlp]
lang = "en"
pipeline = ["spancat"]

[components]

[components.spancat]
factory = "spancat"
spans_key = "sc"
threshold = 0.5

[components.spancat.suggester]
@misc = "spacy.ngram_suggester.v1"
sizes = [1, 2, 3]

[components.spancat.model]
@architectures = "tokvec.RemoteSpanCategorizer.v1"

[components.spancat.model.reducer]
@layers = "tokvec.RemoteSpanReducer.v1"
address = "{address}"
hidden_size = 64

[components.spancat.model.scorer]
@layers = "spacy.LinearLogistic.v1"
"""


def subtree_examples(nlp: Any, n_sents: int) -> list[Example]:
    """Gold spans: the subtree of every nsubj, obj or obl word, when it is 1-3 tokens long."""
    out = []
    for gold in conllu_to_docs(conllu_head(CONLLU["train"], n_sents), n_sents=1, no_print=True):  # type: ignore[no-untyped-call]
        spans = [
            Span(gold, t.left_edge.i, t.right_edge.i + 1, label=t.dep_)
            for t in gold
            if t.dep_ in LABELS and t.right_edge.i - t.left_edge.i < 3
        ]
        gold.spans["sc"] = spans
        predicted = Doc(nlp.vocab, words=[t.text for t in gold], spaces=[bool(t.whitespace_) for t in gold])
        out.append(Example(predicted, gold))
    return out


@pytest.mark.timeout(600)  # about 2 minutes on 2 idle cores
def test_spancat_on_server_span_vectors_learns_and_matches_the_client(minilm: Any) -> None:
    config = Config().from_str(CFG.replace("{address}", minilm.address))
    nlp = spacy.util.load_model_from_config(config, auto_fill=True)
    examples = subtree_examples(nlp, 60)
    assert sum(len(e.reference.spans["sc"]) for e in examples) > 60
    optimizer = nlp.initialize(lambda: examples)
    losses = []
    for _ in range(6):
        step: dict[str, float] = {}
        for start in range(0, len(examples), 10):
            nlp.update(examples[start : start + 10], sgd=optimizer, losses=step)
        losses.append(step["spancat"])
    assert losses[-1] < 0.7 * losses[0], losses
    # The features are the server's chunk vectors of the suggested spans, pooled as configured.
    spancat = nlp.get_pipe("spancat")
    vectors = spancat.model.get_ref("reducer").get_ref("span_vectors")
    docs = [e.predicted for e in examples[:4]]
    spans = spancat.suggester(docs)
    got = vectors.vectors(docs, spans)
    lengths = spans.lengths.tolist()
    ranges = spans.dataXd.tolist()
    with Client(minilm.address) as client:
        results = client.embed_results(
            docs,
            outputs=("chunk_vectors",),
            chunk_poolings=("last", "first", "mean", "max"),
            chunks=[ranges[sum(lengths[:i]) : sum(lengths[: i + 1])] for i in range(len(docs))],
        )
    want = np.concatenate([np.concatenate(r.chunk_vectors, axis=1) for r in results])
    assert got.shape == (len(ranges), 4 * 384)
    assert np.abs(got - want).max() <= 1e-5
    # Predicting needs no token rows: spans come back labelled from the learned set.
    predicted = list(nlp.pipe([Doc(nlp.vocab, words=["The", "dog", "ate", "the", "bone", "."])]))[0]
    assert {s.label_ for s in predicted.spans["sc"]} <= set(LABELS)
