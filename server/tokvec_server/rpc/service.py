"""The EmbedService servicer: request-level checks, then per-doc results streamed in order."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from tokvec.v1 import tokvec_pb2 as pb
from tokvec.v1 import tokvec_pb2_grpc as pb_grpc
from tokvec_server import __version__, validation
from tokvec_server.engine import Engine
from tokvec_server.errors import InvalidInput, NotReady, TokvecError
from tokvec_server.metrics import REFUSED
from tokvec_server.rpc import convert
from tokvec_server.rpc.handlers import guard, parsed
from tokvec_server.settings import Limits
from tokvec_server.types import DocInput, EmbedOptions


def _refused(index: int, doc_id: str, exc: TokvecError) -> pb.DocResult:
    """A doc answered with its error in-band, counted by status."""
    REFUSED.labels(exc.code.name).inc()
    return convert.error(index, doc_id, exc)


def _deadline(context: grpc.aio.ServicerContext) -> float:
    """The caller's deadline on the monotonic clock (inf when it set none)."""
    remaining = context.time_remaining()
    return math.inf if remaining is None or remaining > 1e9 else time.monotonic() + remaining


class EmbedService(pb_grpc.EmbedServiceServicer):
    def __init__(self, engines: list[Engine], limits: Limits) -> None:
        self.engines = {e.info.name: e for e in engines}
        self.default = engines[0]
        self.limits = limits
        self.ready = False

    def _engine(self, options: EmbedOptions) -> Engine:
        if not self.ready:
            raise NotReady("the server is not ready (loading or draining)")
        if options.model and options.model not in self.engines:
            # Echo at most 50 characters of what the caller sent (docs/reliability.md R10: no long input echoed).
            raise InvalidInput(
                f"options.model: {options.model[:50]!r} is not served (served: {', '.join(sorted(self.engines))})"
            )
        engine = self.engines[options.model] if options.model else self.default
        return engine

    @guard
    async def Embed(
        self, request: pb.EmbedRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.EmbedResponse]:
        options = convert.options(request.options)
        engine = self._engine(options)
        validation.check_request(len(request.docs), self.limits)
        client = context.peer()
        engine.check_room(len(request.docs), client)  # an overloaded server refuses before reading the docs
        docs = [convert.doc(d) for d in request.docs]
        futures = await engine.embed(docs, options, client, _deadline(context))
        try:
            for i, (doc, future) in enumerate(zip(docs, futures)):
                for msg in await self._result(engine, i, doc, future, options):
                    yield pb.EmbedResponse(result=msg)
        finally:
            for future in futures:  # the caller left: queued docs never reach the model
                future.cancel()

    async def _result(
        self, engine: Engine, index: int, doc: DocInput, future: asyncio.Future[Any], options: EmbedOptions
    ) -> list[pb.DocResult]:
        try:
            out = await future
        except TokvecError as exc:
            return [_refused(index, doc.id, exc)]
        return list(convert.results(index, out, engine.info.fingerprint, options.dtype, len(options.more_poolings)))

    @guard
    async def EmbedStream(
        self, request_iterator: AsyncIterator[pb.EmbedStreamRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.EmbedStreamResponse]:
        # At most max_in_flight_per_stream docs are queued or unsent; past that we stop reading,
        # and HTTP/2 flow control pushes back on the sender.
        room = asyncio.Semaphore(self.limits.max_in_flight_per_stream)
        ordered: asyncio.Queue[
            tuple[int, DocInput, asyncio.Future[Any] | TokvecError, Engine | None, EmbedOptions] | None
        ] = asyncio.Queue()
        client, deadline = context.peer(), _deadline(context)
        reader = asyncio.create_task(self._read_stream(request_iterator, room, ordered, client, deadline))
        try:
            while (item := await ordered.get()) is not None:
                index, doc, future, engine, options = item
                if isinstance(future, TokvecError) or engine is None:
                    msgs = [_refused(index, doc.id, future)] if isinstance(future, TokvecError) else []
                else:
                    msgs = await self._result(engine, index, doc, future, options)
                for msg in msgs:
                    yield pb.EmbedStreamResponse(result=msg)
                room.release()
            await reader  # re-raises a reader failure
        finally:
            reader.cancel()
            while not ordered.empty():
                item = ordered.get_nowait()
                if item is not None and isinstance(item[2], asyncio.Future):
                    item[2].cancel()

    async def _read_stream(
        self,
        requests: AsyncIterator[pb.EmbedStreamRequest],
        room: asyncio.Semaphore,
        ordered: asyncio.Queue[Any],
        client: str,
        deadline: float,
    ) -> None:
        index = 0
        step = self.limits.max_in_flight_per_stream
        try:
            async for message in requests:
                request: pb.EmbedStreamRequest = parsed(
                    message
                )  # a corrupt message ends the stream: its docs are unknowable
                docs = [convert.doc(d) for d in request.docs]
                try:
                    options = convert.options(request.options)
                    engine = self._engine(options)
                    validation.check_request(len(docs), self.limits)
                except TokvecError as exc:
                    # A bad message fails its own docs, in-band; the stream goes on.
                    for doc in docs:
                        await room.acquire()
                        await ordered.put((index, doc, exc, None, EmbedOptions()))
                        index += 1
                    continue
                for start in range(0, len(docs), step):
                    part = docs[start : start + step]
                    for _ in part:
                        await room.acquire()
                    try:
                        # Errors name each doc by its place in the stream, the index its result carries.
                        futures: list[Any] = await engine.embed(part, options, client, deadline, first_index=index)
                    except TokvecError as exc:
                        futures = [exc] * len(part)
                    for doc, future in zip(part, futures):
                        await ordered.put((index, doc, future, engine, options))
                        index += 1
        finally:
            await ordered.put(None)

    @guard
    async def Info(self, request: pb.InfoRequest, context: grpc.aio.ServicerContext) -> pb.InfoResponse:
        return convert.info([(e.info, e.model.batching) for e in self.engines.values()], self.limits, __version__)

    @guard
    async def Tokenize(self, request: pb.TokenizeRequest, context: grpc.aio.ServicerContext) -> pb.TokenizeResponse:
        options = EmbedOptions(
            model=request.model, spans=convert.spans(request.spans if request.HasField("spans") else None)
        )
        engine = self._engine(options)
        validation.check_request(len(request.docs), self.limits)
        docs = [convert.doc(d) for d in request.docs]
        response = pb.TokenizeResponse()
        for i, item in enumerate(await engine.tokenize(docs, options)):
            if isinstance(item, TokvecError):
                REFUSED.labels(item.code.name).inc()
                response.docs.append(
                    pb.TokenizedDoc(id=docs[i].id, error=pb.Error(code=item.code.value[0], message=str(item)))
                )
            else:
                response.docs.append(convert.tokenized(item[0], item[1], engine.runner.tokenizer))
        return response
