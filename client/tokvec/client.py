"""The synchronous client: spaCy-style words/spaces or text in, one numpy array per doc out."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tokvec import _wire
from tokvec._base import EmbedRequests, SyncConnection
from tokvec._channel import RETRY_PAUSES, SERVICE, Credentials
from tokvec._results import ServerInfo, TokenizedDoc, server_info, tokenized
from tokvec.errors import ServerError, from_rpc_error
from tokvec.v1 import tokvec_pb2 as pb
from tokvec.v1 import tokvec_pb2_grpc as pb_grpc


class Client(EmbedRequests, SyncConnection[pb_grpc.EmbedServiceStub]):
    """A connection to a tokvec server. The channel opens on first use (never before a fork)
    and is dropped when the client is pickled.

    >>> with Client("127.0.0.1:50051") as client:
    ...     rows = client.embed([{"words": ["Hello", "world"], "spaces": [True, False]}])
    """

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

    def _new_stub(self, channel: grpc.Channel) -> pb_grpc.EmbedServiceStub:
        return pb_grpc.EmbedServiceStub(channel)  # type: ignore[no-untyped-call]

    def wait_ready(self, timeout: float | None) -> None:
        """Return once the server reports SERVING (standard gRPC health): waits through a server
        that is not listening yet (wait-for-ready) or still loading its model. ServerError
        (DEADLINE_EXCEEDED) if it is not ready within ``timeout`` seconds."""
        health = health_pb2_grpc.HealthStub(self._open())
        call = health.Watch(
            health_pb2.HealthCheckRequest(service=SERVICE), timeout=timeout, wait_for_ready=True, metadata=self.metadata
        )
        try:
            for response in call:
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, self.target) from None
        finally:
            call.cancel()
        raise ServerError(
            "the health watch ended before the server was ready", grpc.StatusCode.UNAVAILABLE, self.target
        )

    def embed(
        self,
        docs: Iterable[_wire.DocLike],
        *,
        pooling: str | None = None,
        spans: str | None = None,
        dtype: str | None = None,
    ) -> list[np.ndarray]:
        """One float32 array (n_tokens, width) per doc, in order. Raises DocError for a failed doc."""
        results = self.embed_results(docs, pooling=pooling, spans=spans, dtype=dtype)
        for result in results:
            if result.error is not None:
                raise result.error
        return [r.rows for r in results]

    def embed_results(
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
        """Full results, in order; a failed doc comes back with ``error`` set instead of raising.

        ``more_poolings`` (e.g. ``("max", "first")``): the same rows pooled those ways too, from
        the same forward, in each result's ``pooled``.
        ``chunks``: per doc, its (start, end) ranges (end exclusive) of tokens, or of characters
        with ``chunk_unit="chars"``; with "chunk_vectors" in ``outputs`` each result's
        ``chunk_vectors`` holds one (n_chunks, width) array per ``chunk_poolings`` entry (one for
        ``pooling`` when empty), pooled from the same forward as the rows. A mapping doc may carry
        its own "chunks" instead."""
        request = self._embed_request(
            docs, pooling, spans, dtype, outputs, hidden_layers, more_poolings, chunks, chunk_unit, chunk_poolings
        )
        for pause in (*RETRY_PAUSES, None):
            assembler = _wire.Assembler()
            results: list[_wire.Embedding] = []
            try:
                for response in self.stub.Embed(request, timeout=self.timeout, metadata=self.metadata):
                    if (done := assembler.add(response.result)) is not None:
                        results.append(done)
                return results
            except grpc.RpcError as exc:
                # Embed is a pure function of its request: a call cut by a server going away is
                # sent again whole, and round_robin takes it to another replica.
                if pause is None or exc.code() != grpc.StatusCode.UNAVAILABLE:
                    raise from_rpc_error(exc, self.target) from None
                time.sleep(pause)
        raise AssertionError("unreachable")

    def stream(
        self,
        docs: Iterable[_wire.DocLike],
        *,
        batch_size: int = 16,
        pooling: str | None = None,
        spans: str | None = None,
        dtype: str | None = None,
        outputs: Iterable[str] = ("tokens",),
    ) -> Iterator[_wire.Embedding]:
        """Stream docs through one bidirectional call; results come back in order as they are ready.
        Docs are read lazily, so an endless iterable works; the server bounds what is in flight."""
        opts = self._options(spans, pooling=pooling, dtype=dtype, outputs=tuple(outputs))
        requests = (
            pb.EmbedStreamRequest(options=opts, docs=batch)
            for batch in _wire.batches((_wire.to_doc(d, i) for i, d in enumerate(docs)), batch_size)
        )
        assembler = _wire.Assembler()
        call = self.stub.EmbedStream(requests, timeout=None, metadata=self.metadata)
        try:
            for response in call:
                if (done := assembler.add(response.result)) is not None:
                    yield done
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, self.target) from None
        finally:
            call.cancel()

    def info(self) -> ServerInfo:
        try:
            return server_info(self.stub.Info(pb.InfoRequest(), timeout=self.timeout, metadata=self.metadata))
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, self.target) from None

    def tokenize(self, docs: Iterable[_wire.DocLike], *, spans: str | None = None) -> list[TokenizedDoc]:
        request = self._tokenize_request(docs, spans)
        try:
            return tokenized(self.stub.Tokenize(request, timeout=self.timeout, metadata=self.metadata))
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, self.target) from None
