"""Chunk vectors over the real wire with the real model: one vector per caller chunk, pooled from
the same forward as the token rows, equal to the pooling done in numpy from the ``pieces`` output
and its alignment; bad chunks fail their doc alone, naming the doc, the chunk and the bound."""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest

from tokvec import AsyncClient, Client
from tokvec.v1 import tokvec_pb2 as pb
from tokvec.v1 import tokvec_pb2_grpc as pb_grpc

POOLINGS = ("mean", "max", "first", "last", "sum")


def reference(pieces, chunk: tuple[int, int], pooling: str) -> np.ndarray:
    """A chunk's vector in numpy: every piece row aligned to its tokens, token by token."""
    offsets = np.concatenate([[0], np.cumsum(pieces.align_lengths)])
    rows = pieces.hidden[pieces.align_indices[offsets[chunk[0]] : offsets[chunk[1]]]]
    if not len(rows):
        return np.zeros(pieces.hidden.shape[1], np.float32)
    return {
        "mean": lambda: rows.mean(0),
        "max": lambda: rows.max(0),
        "first": lambda: rows[0],
        "last": lambda: rows[-1],
        "sum": lambda: rows.sum(0),
    }[pooling]()


def random_chunks(n_tokens: int, rng: random.Random, k: int = 12) -> list[tuple[int, int]]:
    chunks = [(0, n_tokens)]
    for _ in range(k):
        a = rng.randrange(n_tokens)
        chunks.append((a, rng.randint(a + 1, n_tokens)))
    return chunks


def crosses(chunk: tuple[int, int], span_tokens: np.ndarray) -> bool:
    """The chunk's tokens are not all inside one window."""
    return not any(s <= chunk[0] and chunk[1] <= e for s, e in span_tokens)


@pytest.mark.parametrize("spans", ["tokens:16:8", "tokens:24:24", "pieces:20:12", "doc"])
def test_chunk_vectors_equal_numpy_pooling_of_the_pieces(minilm, ewt_docs, spans):
    rng = random.Random(17)
    docs = [d for d in ewt_docs if 40 <= len(d["words"]) <= 200][:12]
    chunks = [random_chunks(len(d["words"]), rng) for d in docs]
    crossing = 0
    with Client(minilm.address, spans=spans) as client:
        results = client.embed_results(
            docs, outputs=("tokens", "pieces", "chunk_vectors"), chunks=chunks, chunk_poolings=POOLINGS
        )
    worst = 0.0
    for doc_chunks, result in zip(chunks, results):
        assert result.error is None
        assert [v.shape for v in result.chunk_vectors] == [(len(doc_chunks), 384)] * len(POOLINGS)
        for k, chunk in enumerate(doc_chunks):
            crossing += crosses(chunk, result.pieces.span_tokens)
            for j, pooling in enumerate(POOLINGS):
                worst = max(
                    worst, float(np.abs(result.chunk_vectors[j][k] - reference(result.pieces, chunk, pooling)).max())
                )
    assert worst <= 1e-5, f"{spans}: max |server - numpy| = {worst:.2e}"
    if spans != "doc":
        assert crossing >= 20, "the chunks must cross window boundaries for the test to mean anything"


def test_chunk_vectors_alone_equal_those_beside_rows_and_one_token_chunks_equal_rows(minilm, ewt_docs):
    docs = [d for d in ewt_docs if len(d["words"]) >= 30][:6]
    chunks = [[(i, i + 1) for i in range(len(d["words"]))] + [(0, len(d["words"]))] for d in docs]
    with Client(minilm.address, spans="tokens:16:8") as client:
        for pooling in POOLINGS:
            beside = client.embed_results(
                docs, pooling=pooling, outputs=("tokens", "doc_vector", "chunk_vectors"), chunks=chunks
            )
            alone = client.embed_results(docs, pooling=pooling, outputs=("chunk_vectors",), chunks=chunks)
            for b, a, doc in zip(beside, alone, docs):
                n = len(doc["words"])
                assert a.rows.size == 0 and len(a.chunk_vectors) == len(b.chunk_vectors) == 1
                assert np.array_equal(a.chunk_vectors[0], b.chunk_vectors[0])
                # A one-token chunk is that token's row: the same pieces, pooled the same way.
                assert np.abs(b.chunk_vectors[0][:n] - b.rows).max() <= 1e-5


def test_char_chunks_equal_token_chunks_and_text_docs_work(minilm, ewt_docs):
    doc = next(d for d in ewt_docs if len(d["words"]) >= 40)
    begin = np.concatenate([[0], np.cumsum([len(w) + s for w, s in zip(doc["words"], doc["spaces"])])])
    token_chunks = [(0, 5), (3, 17), (10, 40), (39, 40)]
    # Character ranges that include the whitespace before or after a token still hold the same tokens.
    char_chunks = [(int(begin[a]), int(begin[b] - doc["spaces"][b - 1])) for a, b in token_chunks]
    char_chunks[1] = (char_chunks[1][0], int(begin[17]))  # ends after the space: still tokens 3..16
    with Client(minilm.address) as client:
        by_token = client.embed_results([doc], outputs=("chunk_vectors",), chunks=[token_chunks])[0]
        by_char = client.embed_results([doc], outputs=("chunk_vectors",), chunks=[char_chunks], chunk_unit="chars")[0]
        # A text doc's chunks count the server's tokens, or the characters of its text.
        whole = len(doc["text"])
        text = client.embed_results(
            [{"text": doc["text"], "chunks": [(0, whole)], "chunk_unit": "chars"}], outputs=("tokens", "chunk_vectors")
        )[0]
        assert text.error is None and text.words is not None
        text_tokens = client.embed_results(
            [{"text": doc["text"], "chunks": [(0, len(text.words))]}], outputs=("chunk_vectors",)
        )[0]
    assert by_char.error is None
    assert np.abs(by_char.chunk_vectors[0] - by_token.chunk_vectors[0]).max() <= 1e-6
    assert np.abs(text.chunk_vectors[0] - text_tokens.chunk_vectors[0]).max() <= 1e-6


def test_a_chunk_with_no_piece_is_zero_and_flagged(minilm):
    doc = {"words": ["Hello", " ", "\n", "world"], "spaces": [False, False, False, False]}
    with Client(minilm.address) as client:
        for pooling in POOLINGS:
            result = client.embed_results(
                [doc], pooling=pooling, outputs=("chunk_vectors",), chunks=[[(0, 2), (1, 3), (2, 4)]]
            )[0]
            assert result.error is None
            assert result.chunk_no_piece.tolist() == [1]
            vectors = result.chunk_vectors[0]
            assert not vectors[1].any() and vectors[0].any() and vectors[2].any()


BAD = [
    ([(0, 3), (5, 2)], "tokens", "docs[0].chunks[1]: end 2 < start 5"),
    ([(4, 4)], "tokens", "docs[0].chunks[0]: empty ([4, 4))"),
    ([(0, 3), (2, 9), (8, 12)], "tokens", "docs[0].chunks[2]: end 12 > 9 tokens in the doc"),
    ([(0, 3), (4, 8)], "chars", "docs[0].chunks[1]: end 8 cuts token 1 (characters [4, 9))"),
    ([(1, 9)], "chars", "docs[0].chunks[0]: start 1 cuts token 0 (characters [0, 3))"),
    ([(0, 200)], "chars", "docs[0].chunks[0]: end 200 > 44 characters in the doc"),
    ([(3, 4)], "chars", "docs[0].chunks[0]: characters [3, 4) hold no token"),
]


@pytest.mark.parametrize("chunks,unit,message", BAD)
def test_an_invalid_chunk_fails_its_doc_alone(minilm, chunks, unit, message):
    words = ["The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog"]
    good = {"words": words, "chunks": [(0, 9)]}
    with Client(minilm.address) as client:
        bad, fine = client.embed_results(
            [{"words": words, "chunks": chunks, "chunk_unit": unit}, good], outputs=("tokens", "chunk_vectors")
        )
    assert bad.error is not None and bad.error.code.name == "INVALID_ARGUMENT"
    assert message in str(bad.error)
    assert fine.error is None and fine.chunk_vectors[0].shape == (1, 384) and fine.rows.shape == (9, 384)


def test_wire_level_chunk_errors(minilm):
    """What the Python client never sends: unequal lists, an unknown unit, chunks without the output."""
    with Client(minilm.address) as client:
        stub: pb_grpc.EmbedServiceStub = client.stub
        docs = [
            pb.Doc(words=["a", "b"], chunk_starts=[0, 1], chunk_ends=[1]),
            pb.Doc(words=["a", "b"], chunk_starts=[0], chunk_ends=[1], chunk_unit=7),
            pb.Doc(words=["a", "b"], chunk_starts=[0], chunk_ends=[2]),
        ]
        opts = pb.EmbedOptions(outputs=[pb.OUTPUT_CHUNK_VECTORS])
        got = [r.result for r in stub.Embed(pb.EmbedRequest(options=opts, docs=docs[:2] + [pb.Doc(words=["a"])]))]
        assert got[0].error.message == "docs[0].chunk_ends: 1 values for 2 chunk_starts"
        assert got[1].error.message == "docs[1].chunk_unit: 7 is not a ChunkUnit value"
        assert not got[2].HasField("error") and tuple(got[2].chunk_vectors[0].shape) == (0, 384)
        got = [r.result for r in stub.Embed(pb.EmbedRequest(options=pb.EmbedOptions(), docs=docs[2:]))]
        assert got[0].error.message == "docs[0].chunk_starts: chunks need OUTPUT_CHUNK_VECTORS in options.outputs"
        with pytest.raises(Exception, match=r"options.chunk_poolings\[1\]: 9 is not a Pooling value"):
            list(
                stub.Embed(
                    pb.EmbedRequest(
                        options=pb.EmbedOptions(outputs=[pb.OUTPUT_CHUNK_VECTORS], chunk_poolings=[1, 9]), docs=docs[2:]
                    )
                )
            )


def test_many_chunks_split_across_messages_like_rows(minilm, ewt_docs):
    doc = max(ewt_docs, key=lambda d: len(d["words"]))
    n = len(doc["words"])
    chunks = [(a, min(n, a + w)) for w in (1, 2, 3, 5, 8) for a in range(n)]
    poolings = ("mean", "max", "sum")
    assert len(chunks) * 384 * 4 * len(poolings) > 3 * 1024 * 1024, "large enough to need several messages"
    with Client(minilm.address) as client:
        request = pb.EmbedRequest(
            options=pb.EmbedOptions(
                outputs=[pb.OUTPUT_TOKENS, pb.OUTPUT_CHUNK_VECTORS],
                chunk_poolings=[pb.POOLING_MEAN, pb.POOLING_MAX, pb.POOLING_SUM],
            ),
            docs=[
                pb.Doc(
                    words=doc["words"],
                    spaces=doc["spaces"],
                    chunk_starts=[a for a, _ in chunks],
                    chunk_ends=[b for _, b in chunks],
                )
            ],
        )
        messages = [r.result for r in client.stub.Embed(request)]
        assert len(messages) >= 2 and all(m.more for m in messages[:-1]) and not messages[-1].more
        starts = [m.chunk_start for m in messages]
        sizes = [m.chunk_vectors[0].shape[0] for m in messages]
        assert starts == list(np.cumsum([0, *sizes[:-1]])) and sum(sizes) == len(chunks)
        whole = client.embed_results(
            [doc], outputs=("tokens", "chunk_vectors"), chunks=[chunks], chunk_poolings=poolings
        )[0]
        few = client.embed_results([doc], outputs=("chunk_vectors",), chunks=[chunks[-40:]], chunk_poolings=poolings)[0]
    for k in range(len(poolings)):
        assert whole.chunk_vectors[k].shape == (len(chunks), 384)
        assert np.array_equal(whole.chunk_vectors[k][-40:], few.chunk_vectors[k])


def test_async_client_twin(minilm, ewt_docs):
    docs = ewt_docs[:4]
    chunks = [[(0, len(d["words"])), (0, 1)] for d in docs]

    async def run() -> list:
        async with AsyncClient(minilm.address) as client:
            return await client.embed_results(
                docs, outputs=("doc_vector", "chunk_vectors"), chunks=chunks, chunk_poolings=("mean", "max")
            )

    results = asyncio.run(run())
    with Client(minilm.address) as client:
        expected = client.embed_results(
            docs, outputs=("doc_vector", "chunk_vectors"), chunks=chunks, chunk_poolings=("mean", "max")
        )
    for got, want in zip(results, expected):
        assert len(got.chunk_vectors) == 2
        for g, w in zip(got.chunk_vectors, want.chunk_vectors):
            assert np.array_equal(g, w)


def test_client_checks_chunks_before_sending(minilm):
    with Client(minilm.address) as client:
        with pytest.raises(ValueError, match=r"chunks: 1 entries for 2 docs"):
            client.embed_results(["a b", "c"], outputs=("chunk_vectors",), chunks=[[(0, 1)]])
        with pytest.raises(ValueError, match=r"doc 0: chunks\[0\] is not a \(start, end\) pair"):
            client.embed_results(["a b"], outputs=("chunk_vectors",), chunks=[[(0, -1)]])
        with pytest.raises(ValueError, match=r"chunk_unit 'words' is not one of"):
            client.embed_results(["a b"], outputs=("chunk_vectors",), chunks=[[(0, 1)]], chunk_unit="words")
        with pytest.raises(ValueError, match=r"chunk_poolings\[0\]: 'median'"):
            client.embed_results(["a b"], outputs=("chunk_vectors",), chunks=[[(0, 1)]], chunk_poolings=("median",))
