"""Errors of the vectors service; each declares its gRPC status, like tokvec_server.errors."""

from __future__ import annotations

import grpc

from tokvec_server.errors import TokvecError


class NoVectorsServed(TokvecError):
    """The server was started without ``--vectors``."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class NoVector(TokvecError):
    """A token or query word has no row and the caller asked for OOV_ERROR."""

    code = grpc.StatusCode.NOT_FOUND


class NotRankable(TokvecError):
    """most_similar on a floret table: it has hashed n-gram rows, no word rows (as in spaCy)."""

    code = grpc.StatusCode.FAILED_PRECONDITION
