"""Served spaCy tok2vec rows against the same tok2vec run in this process, over the real wire."""

from __future__ import annotations

import concurrent.futures
import random

import grpc
import numpy as np
import pytest
from spacy.tokens import Doc

import tokvec
from tokvec.errors import ServerError


def in_process(nlp, docs):
    return nlp.get_pipe("tok2vec").model.predict([Doc(nlp.vocab, words=d["words"], spaces=d["spaces"]) for d in docs])


def test_served_rows_equal_the_in_process_tok2vec_on_all_ewt_docs(tok2vec_server, sm_nlp, ewt_docs):
    with tokvec.Client(tok2vec_server.address) as client:
        results = client.embed_results(ewt_docs, outputs=("tokens", "doc_vector"))
        info = client.info().model
    expected = in_process(sm_nlp, ewt_docs)
    assert len(results) == len(ewt_docs) == 316
    for result, rows in zip(results, expected):
        assert result.error is None and result.rows.shape == rows.shape == (len(result.rows), 96)
        np.testing.assert_allclose(result.rows, rows, atol=1e-5, rtol=0)
        np.testing.assert_allclose(result.doc_vector, rows.mean(0), atol=1e-5, rtol=0)
        assert len(result.no_piece) == 0 and len(result.truncated) == 0 and result.fingerprint == info.fingerprint
    assert (info.backend, info.width, info.n_layers, info.dtype) == ("tok2vec", 96, 0, "float32")
    assert info.fingerprint.endswith("-96")


def test_rows_do_not_depend_on_batch_mates(tok2vec_server, sm_nlp, ewt_docs):
    """Eight callers at once, each in its own order: every doc gets the rows it gets alone."""
    expected = {d["id"]: rows for d, rows in zip(ewt_docs, in_process(sm_nlp, ewt_docs))}

    def call(seed: int) -> list[tokvec.Embedding]:
        docs = random.Random(seed).sample(ewt_docs, 60)
        with tokvec.Client(tok2vec_server.address) as client:
            return client.embed_results(docs)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for results in pool.map(call, range(8)):
            for result in results:
                np.testing.assert_allclose(result.rows, expected[result.id], atol=1e-5, rtol=0)


def test_text_docs_empty_docs_and_wire_dtypes(tok2vec_server, sm_nlp):
    with tokvec.Client(tok2vec_server.address) as client:
        text, empty = client.embed_results(["Hello world, it's tokvec.", {"words": []}])
        hello = {"words": ["Hello", "world"], "spaces": [True, False]}
        half = client.embed([hello], dtype="float16")[0]
        brain = client.embed([hello], dtype="bfloat16")[0]
    assert text.words == ["Hello", "world", ",", "it", "'s", "tokvec", "."]
    rows = in_process(sm_nlp, [{"words": text.words, "spaces": text.spaces}])[0]
    np.testing.assert_allclose(text.rows, rows, atol=1e-5, rtol=0)
    assert empty.error is None and empty.rows.shape == (0, 96)
    full = in_process(sm_nlp, [hello])[0]
    np.testing.assert_allclose(half, full, atol=2e-3 * np.abs(full).max(), rtol=0)
    np.testing.assert_allclose(brain, full, atol=1e-2 * np.abs(full).max(), rtol=0)


def test_pooling_and_spans_do_not_apply_pieces_and_layers_are_refused(tok2vec_server, ewt_docs):
    docs = ewt_docs[:5]
    with tokvec.Client(tok2vec_server.address) as client:
        base = client.embed(docs)
        for pooling, spans in (("max", "doc"), ("first", "tokens:8:4"), ("sum", "sents")):
            for a, b in zip(base, client.embed(docs, pooling=pooling, spans=spans)):
                np.testing.assert_array_equal(a, b)  # a tok2vec row is already per token
        for kwargs, field in (
            ({"outputs": ("pieces",)}, "options.outputs"),
            ({"hidden_layers": (-1,)}, "options.hidden_layers"),
        ):
            with pytest.raises(ServerError) as caught:
                client.embed_results(docs, **kwargs)
            assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT and field in caught.value.details
            assert "tok2vec" in caught.value.details
        with pytest.raises(ServerError) as caught:
            client.tokenize(docs)
        assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT and "no wordpieces" in caught.value.details
        bad = client.embed_results([{"words": ["w"] * 20_000}, docs[0]])
    assert bad[0].error is not None and "max_tokens_per_doc" in str(bad[0].error)
    np.testing.assert_array_equal(bad[1].rows, base[0])
