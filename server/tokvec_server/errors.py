"""Errors that reach a caller. Each declares its gRPC status; nothing else maps codes.

The tree, with each class's status (a whole call aborts with it, or one doc is answered with it
in-band, and the rest of the call goes on)::

    TokvecError                 INTERNAL            the base; also anything unexpected, with an error id
    ├── InvalidInput            INVALID_ARGUMENT    a field malformed or over a limit (names both)
    │   └── TooLargeForDevice   INVALID_ARGUMENT    one span does not fit in device memory even alone
    ├── Overloaded              RESOURCE_EXHAUSTED  too much queued (or queued too long): retry later
    ├── NotReady                UNAVAILABLE         starting up or draining
    ├── DeadlineExceeded        DEADLINE_EXCEEDED   the caller's deadline passed while the doc waited
    ├── ModelFailure            INTERNAL            no usable rows for this doc (non-finite, a forward failed alone)
    ├── NoVectorsServed         FAILED_PRECONDITION the VectorsService without --vectors
    ├── NotRankable             FAILED_PRECONDITION most_similar on a floret table
    └── NoVector                NOT_FOUND           a word without a row, under OOV_ERROR

UNAUTHENTICATED comes from rpc/auth.py, before any request is read; every other status a caller
sees is one of these. An unexpected exception is INTERNAL with an error id (``log_error_id``):
the traceback stays in the server's log under that id, the caller gets the id to quote.
"""

from __future__ import annotations

import logging
import uuid

import grpc


class TokvecError(Exception):
    """Base class: the message is safe to show the caller (no paths, no tracebacks)."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidInput(TokvecError):
    """A field is malformed or over a limit. Names the field, its size and the limit."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class TooLargeForDevice(InvalidInput):
    """A span ran out of device memory in a batch of its own: it never fits, so sending it again
    cannot help (RESOURCE_EXHAUSTED would tell retry logic, ``tokvec embed``'s among it, that it
    might). The caller must send it cut smaller: shorter spans, or shorter docs."""


class Overloaded(TokvecError):
    """Too much queued work; the caller should back off and retry."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class NotReady(TokvecError):
    """The server is starting up or draining."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(TokvecError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class ModelFailure(TokvecError):
    """The model produced no usable rows for this doc (non-finite output, a forward that fails alone)."""

    code = grpc.StatusCode.INTERNAL


class NoVectorsServed(TokvecError):
    """The server was started without ``--vectors``."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class NotRankable(TokvecError):
    """most_similar on a floret table: it has hashed n-gram rows, no word rows (as in spaCy)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class NoVector(TokvecError):
    """A token or query word has no row and the caller asked for OOV_ERROR."""

    code = grpc.StatusCode.NOT_FOUND


def limit_error(field: str, size: int, limit_name: str, limit: int) -> InvalidInput:
    """``docs[3].words: 20001 > max_tokens_per_doc (16384)``."""
    return InvalidInput(f"{field}: {size} > {limit_name} ({limit})")


def log_error_id(log: logging.Logger, what: str, exc: BaseException) -> str:
    """Log ``what`` with ``exc``'s traceback under a new error id, and return the id: the caller
    is told only the id, which finds the traceback in the log (record field ``error_id``)."""
    error_id = uuid.uuid4().hex[:12]
    log.error("%s (error id %s)", what, error_id, exc_info=exc, extra={"error_id": error_id})
    return error_id
