"""Errors that reach a caller. Each declares its gRPC status; nothing else maps codes."""

from __future__ import annotations

import grpc


class TokvecError(Exception):
    """Base class: the message is safe to show the caller (no paths, no tracebacks)."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidInput(TokvecError):
    """A field is malformed or over a limit. Names the field, its size and the limit."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class Overloaded(TokvecError):
    """Too much queued work; the caller should back off and retry."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class NotReady(TokvecError):
    """The server is starting up or draining."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(TokvecError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class ModelFailure(TokvecError):
    """The model produced no usable rows for this doc (non-finite output, out of memory alone)."""

    code = grpc.StatusCode.INTERNAL


def limit_error(field: str, size: int, limit_name: str, limit: int) -> InvalidInput:
    """``docs[3].words: 20001 > max_tokens_per_doc (16384)``."""
    return InvalidInput(f"{field}: {size} > {limit_name} ({limit})")
