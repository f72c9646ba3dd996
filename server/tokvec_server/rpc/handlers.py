"""The gRPC edge that every service shares: method handlers whose deserializers never raise, and
one guard that turns what a method raises into the call's status.

A corrupt message or invalid UTF-8 becomes a ``Malformed`` value (grpc would say INTERNAL), whose
error, INVALID_ARGUMENT, the guard raises before the method runs (a stream's messages: ``parsed``,
as the method reads them). A TokvecError aborts the call with its own status (errors.py);
anything else is INTERNAL with an error id to quote. Both are counted in ``tokvec_refused``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import grpc

from tokvec.v1 import tokvec_pb2 as pb
from tokvec.v1 import vectors_pb2 as vpb
from tokvec_server.errors import InvalidInput, TokvecError, log_error_id
from tokvec_server.metrics import REFUSED

log = logging.getLogger("tokvec.rpc")
T = TypeVar("T")
SERVICE = pb.DESCRIPTOR.services_by_name["EmbedService"].full_name
VECTORS_SERVICE = vpb.DESCRIPTOR.services_by_name["VectorsService"].full_name


class Malformed:
    def __init__(self, kind: str) -> None:
        self.error = InvalidInput(f"request: not a valid {kind} message (corrupt protobuf or invalid UTF-8)")


def _lenient(message: Any) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return message.FromString(data)
        except Exception:  # DecodeError, and anything else the parser raises on hostile bytes
            return Malformed(message.DESCRIPTOR.name)

    return parse


def parsed(request: T | Malformed) -> T:
    """The request, or its parse error raised (INVALID_ARGUMENT)."""
    if isinstance(request, Malformed):
        raise request.error
    return request


async def _abort(context: grpc.aio.ServicerContext, exc: Exception) -> None:
    if isinstance(exc, TokvecError):
        REFUSED.labels(exc.code.name).inc()
        await context.abort(exc.code, str(exc))
    # The traceback stays in the server log; the caller gets an id to quote.
    REFUSED.labels(grpc.StatusCode.INTERNAL.name).inc()
    error_id = log_error_id(log, "unexpected error", exc)
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error (error id {error_id})")


def guard(method: Callable[..., Any]) -> Callable[..., Any]:
    """Every servicer method, with a unary or streaming (an async generator) response, goes
    through this. A unary request reaches the method parsed."""
    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def streaming(self: Any, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                async for item in method(self, parsed(request), context):
                    yield item
            except (asyncio.CancelledError, grpc.aio.AbortError):
                raise
            except Exception as exc:
                await _abort(context, exc)

        return streaming

    @functools.wraps(method)
    async def unary(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(self, parsed(request), context)
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as exc:
            await _abort(context, exc)
        raise AssertionError("unreachable: abort raises")

    return unary


def _add(
    server: grpc.aio.Server, service: str, methods: dict[str, tuple[Callable[..., Any], Callable[..., Any], Any, Any]]
) -> None:
    """``methods``: name -> (grpc's handler kind, the servicer's method, request and response types)."""
    handlers = {
        name: kind(method, _lenient(request), response.SerializeToString)
        for name, (kind, method, request, response) in methods.items()
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))


def add_embed_service(servicer: Any, server: grpc.aio.Server) -> None:
    _add(
        server,
        SERVICE,
        {
            "Embed": (grpc.unary_stream_rpc_method_handler, servicer.Embed, pb.EmbedRequest, pb.EmbedResponse),
            "EmbedStream": (
                grpc.stream_stream_rpc_method_handler,
                servicer.EmbedStream,
                pb.EmbedStreamRequest,
                pb.EmbedStreamResponse,
            ),
            "Info": (grpc.unary_unary_rpc_method_handler, servicer.Info, pb.InfoRequest, pb.InfoResponse),
            "Tokenize": (
                grpc.unary_unary_rpc_method_handler,
                servicer.Tokenize,
                pb.TokenizeRequest,
                pb.TokenizeResponse,
            ),
        },
    )


def add_vectors_service(servicer: Any, server: grpc.aio.Server) -> None:
    _add(
        server,
        VECTORS_SERVICE,
        {
            "VectorsInfo": (
                grpc.unary_unary_rpc_method_handler,
                servicer.VectorsInfo,
                vpb.VectorsInfoRequest,
                vpb.VectorsInfoResponse,
            ),
            "Lookup": (grpc.unary_stream_rpc_method_handler, servicer.Lookup, vpb.LookupRequest, vpb.LookupResponse),
            "Similarity": (
                grpc.unary_unary_rpc_method_handler,
                servicer.Similarity,
                vpb.SimilarityRequest,
                vpb.SimilarityResponse,
            ),
            "MostSimilar": (
                grpc.unary_unary_rpc_method_handler,
                servicer.MostSimilar,
                vpb.MostSimilarRequest,
                vpb.MostSimilarResponse,
            ),
        },
    )
