"""The asyncio twin of Client: same arguments, same results, awaitable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tokvec import _wire
from tokvec._base import AsyncConnection, EmbedRequests
from tokvec._channel import RETRY_PAUSES, SERVICE, Credentials
from tokvec._results import ServerInfo, TokenizedDoc, server_info, tokenized
from tokvec.errors import ServerError, from_rpc_error
from tokvec.v1 import tokvec_pb2 as pb
from tokvec.v1 import tokvec_pb2_grpc as pb_grpc


class AsyncClient(EmbedRequests, AsyncConnection[pb_grpc.EmbedServiceStub]):
    """``async with AsyncClient(address) as client: rows = await client.embed(docs)``.

    The channel opens on first use, inside the running event loop, and is dropped when the
    client is pickled."""

    def __init__(
        self,
        address: str | Sequence[str] = "127.0.0.1:50051",
        *,
        timeout: float | None = 120.0,
        pooling: str = "mean",
        spans: str = "tokens:128:96",
        dtype: str = "float32",
        model: str = "",
        metadata: Sequence[tuple[str, str]] = (),
        credentials: Credentials | None = None,
    ) -> None:
        super().__init__(address, timeout=timeout, metadata=metadata, credentials=credentials)
        self._set_defaults(pooling, spans, dtype, model)

    def _new_stub(self, channel: grpc.aio.Channel) -> pb_grpc.EmbedServiceStub:
        return pb_grpc.EmbedServiceStub(channel)  # type: ignore[no-untyped-call]

    async def embed(
        self,
        docs: Iterable[_wire.DocLike],
        *,
        pooling: str | None = None,
        spans: str | None = None,
        dtype: str | None = None,
    ) -> list[np.ndarray]:
        results = await self.embed_results(docs, pooling=pooling, spans=spans, dtype=dtype)
        for result in results:
            if result.error is not None:
                raise result.error
        return [r.rows for r in results]

    async def embed_results(
        self,
        docs: Iterable[_wire.DocLike],
        *,
        pooling: str | None = None,
        spans: str | None = None,
        dtype: str | None = None,
        outputs: Iterable[str] = ("tokens",),
        hidden_layers: Iterable[int] = (),
        more_poolings: Iterable[str] = (),
        chunks: Iterable[_wire.Chunks | None] | None = None,
        chunk_unit: str | None = None,
        chunk_poolings: Iterable[str] = (),
    ) -> list[_wire.Embedding]:
        """See Client.embed_results."""
        request = self._embed_request(
            docs, pooling, spans, dtype, outputs, hidden_layers, more_poolings, chunks, chunk_unit, chunk_poolings
        )
        for pause in (*RETRY_PAUSES, None):
            assembler = _wire.Assembler()
            results: list[_wire.Embedding] = []
            try:
                async for response in self.stub.Embed(request, timeout=self.timeout, metadata=self.metadata):
                    if (done := assembler.add(response.result)) is not None:
                        results.append(done)
                return results
            except grpc.RpcError as exc:
                # Embed is idempotent: resend it whole when the server went away (see Client).
                if pause is None or exc.code() != grpc.StatusCode.UNAVAILABLE:
                    raise from_rpc_error(exc, self.target) from None
                await asyncio.sleep(pause)
        raise AssertionError("unreachable")

    async def stream(
        self,
        docs: AsyncIterable[_wire.DocLike] | Iterable[_wire.DocLike],
        *,
        batch_size: int = 16,
        pooling: str | None = None,
        spans: str | None = None,
        dtype: str | None = None,
        outputs: Iterable[str] = ("tokens",),
    ) -> AsyncIterator[_wire.Embedding]:
        async for result in self.stream_batches(
            _batched(docs, batch_size), pooling=pooling, spans=spans, dtype=dtype, outputs=outputs
        ):
            yield result

    async def stream_batches(
        self,
        batches: AsyncIterable[Sequence[_wire.DocLike]],
        *,
        pooling: str | None = None,
        spans: str | None = None,
        dtype: str | None = None,
        outputs: Iterable[str] = ("tokens",),
    ) -> AsyncIterator[_wire.Embedding]:
        """``stream`` with the caller forming the messages: each batch goes out as soon as it is
        yielded, so a caller that holds back docs (a window of its own) never strands a part-filled
        batch. ``index`` runs on across batches; results come back in order."""
        opts = self._options(spans, pooling=pooling, dtype=dtype, outputs=tuple(outputs))

        async def requests() -> AsyncIterator[pb.EmbedStreamRequest]:
            index = 0
            async for batch in batches:
                yield pb.EmbedStreamRequest(
                    options=opts, docs=[_wire.to_doc(d, index + i) for i, d in enumerate(batch)]
                )
                index += len(batch)

        assembler = _wire.Assembler()
        call = self.stub.EmbedStream(requests(), metadata=self.metadata)
        try:
            async for response in call:
                if (done := assembler.add(response.result)) is not None:
                    yield done
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, self.target) from None
        finally:
            call.cancel()

    async def wait_ready(self, timeout: float | None) -> None:
        """Return once the server reports SERVING (standard gRPC health): waits through a server
        that is not listening yet (wait-for-ready) or still loading its model. ServerError
        (DEADLINE_EXCEEDED) if it is not ready within ``timeout`` seconds."""
        health = health_pb2_grpc.HealthStub(self._open())
        call = health.Watch(
            health_pb2.HealthCheckRequest(service=SERVICE), timeout=timeout, wait_for_ready=True, metadata=self.metadata
        )
        try:
            async for response in call:
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, self.target) from None
        finally:
            call.cancel()
        raise ServerError(
            "the health watch ended before the server was ready", grpc.StatusCode.UNAVAILABLE, self.target
        )

    async def info(self) -> ServerInfo:
        try:
            return server_info(await self.stub.Info(pb.InfoRequest(), timeout=self.timeout, metadata=self.metadata))
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, self.target) from None

    async def tokenize(self, docs: Iterable[_wire.DocLike], *, spans: str | None = None) -> list[TokenizedDoc]:
        request = self._tokenize_request(docs, spans)
        try:
            return tokenized(await self.stub.Tokenize(request, timeout=self.timeout, metadata=self.metadata))
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, self.target) from None


async def _batched(
    docs: AsyncIterable[_wire.DocLike] | Iterable[_wire.DocLike], size: int
) -> AsyncIterator[list[_wire.DocLike]]:
    batch: list[_wire.DocLike] = []
    async for doc in _aiter(docs):
        batch.append(doc)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


async def _aiter(docs: AsyncIterable[_wire.DocLike] | Iterable[_wire.DocLike]) -> AsyncIterator[_wire.DocLike]:
    if hasattr(docs, "__aiter__"):
        async for doc in docs:
            yield doc
    else:
        for doc in docs:
            yield doc
