"""EmbedOptions.more_poolings: several poolings of one forward, each equal to asking for it alone."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from tokvec import Client
from tokvec.v1 import tokvec_pb2 as pb
from tokvec.v1 import tokvec_pb2_grpc as pb_grpc

POOLINGS = ["mean", "max", "first", "last", "sum"]


def ewt_words(ewt_docs, n: int) -> list[dict]:
    return [{"id": d["id"], "words": d["words"], "spaces": d["spaces"]} for d in ewt_docs[:n]]


@pytest.mark.parametrize("spans", ["tokens:128:96", "doc"])
def test_each_extra_pooling_equals_the_single_pooling_request(minilm, ewt_docs, spans):
    docs = ewt_words(ewt_docs, 12) + [{"id": "ws", "words": ["Hello", " ", "world"], "spaces": [True, False, False]}]
    with Client(minilm.address, spans=spans) as client:
        both = client.embed_results(docs, pooling="mean", more_poolings=("max", "first", "last", "sum", "mean"))
        alone = {p: client.embed(docs, pooling=p) for p in POOLINGS}
    for result, doc in zip(both, docs):
        assert result.error is None
        assert [a.shape for a in result.pooled] == [(len(doc["words"]), 384)] * 5
        np.testing.assert_allclose(
            result.rows, alone["mean"][result.index], atol=1e-5, rtol=0
        )  # batch-mates move rows by ~1e-6
        for pooling, rows in zip(("max", "first", "last", "sum", "mean"), result.pooled):
            np.testing.assert_allclose(rows, alone[pooling][result.index], atol=1e-5, rtol=0)
    # The poolings really differ: each came from its own reduction, not a copy.
    assert np.abs(both[0].pooled[0] - both[0].rows).max() > 0.1
    assert not np.array_equal(both[0].pooled[1], both[0].pooled[2])


def test_no_extra_pooling_sends_none(minilm, ewt_docs):
    with Client(minilm.address) as client:
        [result] = client.embed_results(ewt_words(ewt_docs, 1))
    assert result.pooled == []


def test_extra_poolings_follow_a_large_doc_across_chunks(minilm, ewt_docs):
    words, spaces = [], []
    for d in ewt_docs:
        words += d["words"]
        spaces += d["spaces"]
    doc = {"id": "long", "words": words[:4000], "spaces": spaces[:4000]}
    request = pb.EmbedRequest(
        docs=[pb.Doc(id="long", words=doc["words"], spaces=doc["spaces"])],
        options=pb.EmbedOptions(more_poolings=[pb.POOLING_MAX, pb.POOLING_FIRST]),
    )
    # gRPC's default 4 MiB receive limit: the extra tensors count toward every chunk's budget.
    with grpc.insecure_channel(minilm.address) as channel:
        responses = list(pb_grpc.EmbedServiceStub(channel).Embed(request, timeout=120))
    assert len(responses) >= 2
    assert all(r.ByteSize() < 4 * 1024 * 1024 for r in responses)
    assert all(len(r.result.pooled) == 2 and r.result.pooled[0].shape == r.result.tokens.shape for r in responses)
    with Client(minilm.address) as client:
        [joined] = client.embed_results([doc], more_poolings=("max", "first"))
        [alone] = client.embed([doc], pooling="first")
    assert joined.pooled[1].shape == (4000, 384)
    np.testing.assert_allclose(joined.pooled[1], alone, atol=1e-5, rtol=0)


def test_bad_more_poolings_name_the_field(minilm):
    with grpc.insecure_channel(minilm.address) as channel:
        stub = pb_grpc.EmbedServiceStub(channel)
        for options, message in (
            (pb.EmbedOptions(more_poolings=[pb.POOLING_MAX, 9]), "options.more_poolings[1]: 9 is not a Pooling value"),
            (pb.EmbedOptions(more_poolings=[pb.POOLING_MAX] * 6), "options.more_poolings: 6 entries > 5"),
        ):
            with pytest.raises(grpc.RpcError) as raised:
                list(stub.Embed(pb.EmbedRequest(options=options, docs=[pb.Doc(words=["a"])]), timeout=30))
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert message in raised.value.details()
    with pytest.raises(ValueError, match=r"more_poolings\[0\]: 'median' is not one of"):
        Client(minilm.address).embed_results([["a"]], more_poolings=("median",))


def test_a_bad_more_poolings_fails_only_its_stream_message(minilm):
    good = pb.EmbedStreamRequest(
        docs=[pb.Doc(words=["a", "b"])], options=pb.EmbedOptions(more_poolings=[pb.POOLING_MAX])
    )
    bad = pb.EmbedStreamRequest(docs=[pb.Doc(words=["c"])], options=pb.EmbedOptions(more_poolings=[7]))
    with grpc.insecure_channel(minilm.address) as channel:
        out = [r.result for r in pb_grpc.EmbedServiceStub(channel).EmbedStream(iter([bad, good]), timeout=30)]
    assert (
        out[0].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        and "options.more_poolings[0]" in out[0].error.message
    )
    assert len(out[1].pooled) == 1 and tuple(out[1].pooled[0].shape) == (2, 384)
