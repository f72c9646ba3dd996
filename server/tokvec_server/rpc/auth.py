"""Bearer-token check before any parsing or queueing. Health stays open for probes."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from tokvec_server.metrics import REFUSED

EXEMPT = ("/grpc.health.v1.Health/",)


def read_tokens(path: Path) -> list[bytes]:
    """One token per line; blank lines and # comments skipped. Several tokens allow rotation."""
    tokens = [
        line.strip().encode() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    if not tokens:
        raise ValueError(f"token_file: {path} holds no token")
    return tokens


def _deny(code: grpc.StatusCode, message: str) -> Callable[..., Awaitable[Any]]:
    async def deny(request: Any, context: grpc.aio.ServicerContext) -> Any:
        REFUSED.labels(code.name).inc()
        await context.abort(code, message)

    return deny


class TokenAuth(grpc.aio.ServerInterceptor):
    def __init__(self, tokens: list[bytes]) -> None:
        self._tokens = tokens

    def _allowed(self, metadata: tuple[tuple[str, Any], ...]) -> bool:
        given = next((v for k, v in metadata if k == "authorization"), "")
        given_bytes = given.encode() if isinstance(given, str) else bytes(given)
        if not given_bytes.startswith(b"Bearer "):
            return False
        candidate = given_bytes[len(b"Bearer ") :]
        # Compare with every token, always: the time taken says nothing about which one matched.
        matches = [hmac.compare_digest(candidate, token) for token in self._tokens]
        return any(matches)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        if details.method.startswith(EXEMPT) or self._allowed(tuple(details.invocation_metadata or ())):
            return await continuation(details)
        handler = await continuation(details)
        deny = _deny(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
        # Answer in the handler's own shape, without ever deserializing the request.
        if handler is None:
            return None
        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(deny)
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(deny)
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(deny)
        return grpc.unary_unary_rpc_method_handler(deny)
