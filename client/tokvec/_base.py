"""What every client shares: where and how it connects (target, credentials, metadata, timeout),
a channel and stub opened on first use and dropped when the client is pickled, closing, and, for
the two embed clients, the defaults and the messages they send."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, Generic, Self, TypeVar

from tokvec import _wire
from tokvec._channel import Credentials, open_channel, target
from tokvec.v1 import tokvec_pb2 as pb

S = TypeVar("S")


class Connection(Generic[S]):
    """A client's configuration and its lazy channel. The channel opens on first use: never
    before a fork, and for an asyncio client inside the running event loop."""

    aio: ClassVar[bool] = False

    def __init__(
        self,
        address: str | Sequence[str],
        *,
        timeout: float | None,
        metadata: Sequence[tuple[str, str]] = (),
        credentials: Credentials | None = None,
    ) -> None:
        self.target = target(address)
        self.timeout = timeout
        self.credentials = credentials or Credentials()
        self.credentials.check(self.target)
        self.metadata = tuple(metadata) + self.credentials.metadata()
        self._channel: Any = None
        self._stub: S | None = None

    def _new_stub(self, channel: Any) -> S:
        raise NotImplementedError

    @property
    def stub(self) -> S:
        if self._stub is None:
            self._stub = self._new_stub(self._open())
        return self._stub

    def _open(self) -> Any:
        if self._channel is None:
            self._channel = open_channel(self.target, self.credentials, aio=self.aio)
        return self._channel

    def _forget(self) -> Any:
        """The open channel (None if none), forgotten with its stub: the caller closes it."""
        channel, self._channel, self._stub = self._channel, None, None
        return channel

    def __getstate__(self) -> dict[str, Any]:
        # A channel must never cross a fork or a pickle: the copy reopens its own on first use.
        state = self.__dict__.copy()
        state["_channel"] = state["_stub"] = None
        return state


class SyncConnection(Connection[S]):
    def close(self) -> None:
        if (channel := self._forget()) is not None:
            channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncConnection(Connection[S]):
    aio = True

    async def close(self) -> None:
        if (channel := self._forget()) is not None:
            await channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class EmbedRequests:
    """The embed clients' defaults (pooling, spans, dtype, model), and the messages built from
    them and a call's overrides."""

    defaults: dict[str, str]

    def _set_defaults(self, pooling: str, spans: str, dtype: str, model: str) -> None:
        self.defaults = {"pooling": pooling, "spans_spec": spans, "dtype": dtype, "model": model}
        _wire.options(
            pooling=pooling, spans_spec=spans, dtype=dtype, model=model
        )  # fail now on a bad default, not on the first call

    def _options(self, spans: str | None = None, **overrides: Any) -> pb.EmbedOptions:
        chosen: dict[str, Any] = dict(self.defaults)
        if spans is not None:
            chosen["spans_spec"] = spans
        chosen.update({k: v for k, v in overrides.items() if v is not None})
        return _wire.options(**chosen)

    def _embed_request(
        self,
        docs: Iterable[_wire.DocLike],
        pooling: str | None,
        spans: str | None,
        dtype: str | None,
        outputs: Iterable[str],
        hidden_layers: Iterable[int],
        more_poolings: Iterable[str] = (),
        chunks: Iterable[_wire.Chunks | None] | None = None,
        chunk_unit: str | None = None,
        chunk_poolings: Iterable[str] = (),
    ) -> pb.EmbedRequest:
        return pb.EmbedRequest(
            options=self._options(
                spans,
                pooling=pooling,
                dtype=dtype,
                outputs=tuple(outputs),
                hidden_layers=tuple(hidden_layers),
                more_poolings=tuple(more_poolings),
                chunk_poolings=tuple(chunk_poolings),
            ),
            docs=_wire.docs_with_chunks(docs, chunks, chunk_unit),
        )

    def _tokenize_request(self, docs: Iterable[_wire.DocLike], spans: str | None) -> pb.TokenizeRequest:
        return pb.TokenizeRequest(
            model=self.defaults["model"],
            spans=_wire.spans(spans or self.defaults["spans_spec"]),
            docs=[_wire.to_doc(d, i) for i, d in enumerate(docs)],
        )
