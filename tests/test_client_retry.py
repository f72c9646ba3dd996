"""Client.embed sends an Embed cut short by UNAVAILABLE again, whole (Embed is idempotent)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent import futures

import grpc
import numpy as np
import pytest

from tokvec import AsyncClient, Client, ServerError
from tokvec.v1 import tokvec_pb2 as pb
from tokvec.v1 import tokvec_pb2_grpc as pb_grpc


class Flaky(pb_grpc.EmbedServiceServicer):
    """Answers the first ``failures`` calls with a row, then UNAVAILABLE (a server going away
    mid-call), and every later call in full."""

    def __init__(self, failures: int, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> None:
        self.failures, self.code, self.calls = failures, code, 0

    def Embed(self, request: pb.EmbedRequest, context: grpc.ServicerContext) -> Iterator[pb.EmbedResponse]:
        self.calls += 1
        for i, doc in enumerate(request.docs):
            rows = np.full((len(doc.words), 2), i, dtype="<f4")
            tensor = pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=list(rows.shape), data=rows.tobytes())
            yield pb.EmbedResponse(result=pb.DocResult(index=i, id=doc.id, n_tokens=len(doc.words), tokens=tensor))
            if self.calls <= self.failures:
                context.abort(self.code, "going away")


@pytest.fixture
def flaky(request: pytest.FixtureRequest) -> Iterator[tuple[str, Flaky]]:
    servicer = Flaky(*request.param)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_EmbedServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", servicer
    server.stop(None)


DOCS = [["a", "b"], ["c"], ["d", "e", "f"]]


@pytest.mark.parametrize("flaky", [(2,)], indirect=True)
def test_a_cut_embed_is_sent_again_whole(flaky):
    address, servicer = flaky
    with Client(address) as client:
        rows = client.embed(DOCS)
    assert servicer.calls == 3
    assert [r.shape for r in rows] == [(2, 2), (1, 2), (3, 2)]
    assert [float(r[0, 0]) for r in rows] == [0.0, 1.0, 2.0]


@pytest.mark.parametrize("flaky", [(2,)], indirect=True)
def test_the_async_client_sends_it_again_too(flaky):
    address, servicer = flaky

    async def main() -> list[np.ndarray]:
        async with AsyncClient(address) as client:
            return await client.embed(DOCS)

    assert len(asyncio.run(main())) == 3 and servicer.calls == 3


@pytest.mark.parametrize("flaky", [(99,)], indirect=True)
def test_it_gives_up_and_names_the_server(flaky):
    address, servicer = flaky
    with Client(address) as client, pytest.raises(ServerError) as raised:
        client.embed(DOCS)
    assert raised.value.code == grpc.StatusCode.UNAVAILABLE and address in str(raised.value)
    assert servicer.calls == 5  # the first try and four more


@pytest.mark.parametrize("flaky", [(1, grpc.StatusCode.INVALID_ARGUMENT)], indirect=True)
def test_other_errors_are_not_retried(flaky):
    address, servicer = flaky
    with Client(address) as client, pytest.raises(ServerError):
        client.embed(DOCS)
    assert servicer.calls == 1
