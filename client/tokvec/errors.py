"""Errors the client raises. Each carries the gRPC status code the server gave."""

from __future__ import annotations

import grpc


class TokvecError(Exception):
    """Base class for every tokvec client error."""

    def __init__(self, message: str, code: grpc.StatusCode = grpc.StatusCode.UNKNOWN) -> None:
        super().__init__(message)
        self.code = code


class DocError(TokvecError):
    """One doc failed (bad input, non-finite output...); the other docs of its request did not."""

    def __init__(self, message: str, code: grpc.StatusCode, index: int, doc_id: str) -> None:
        super().__init__(f"doc {index} ({doc_id!r}): {message}" if doc_id else f"doc {index}: {message}", code)
        self.index = index
        self.doc_id = doc_id
        self.reason = message


class ServerError(TokvecError):
    """The whole call failed: server unreachable, overloaded, deadline passed, bad options."""

    def __init__(self, message: str, code: grpc.StatusCode, target: str) -> None:
        super().__init__(f"tokvec server {target}: {code.name}: {message}", code)
        self.target = target
        self.details = message


# What grpc's asyncio client reports when one of its own transport operations fails under a call:
# the call ended with no status from the server (its connection died mid-stream; or the server
# ended a stream while we were still writing, and its status was lost). A tokvec server never
# sends these words. grpc core reports a lost connection as UNAVAILABLE elsewhere, and so do we:
# callers resend, a bounded number of times, rather than give the docs up.
_LOCAL_TRANSPORT_FAILURE = "Internal error from Core"


def from_rpc_error(exc: grpc.RpcError, target: str) -> ServerError:
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    if code == grpc.StatusCode.INTERNAL and details == _LOCAL_TRANSPORT_FAILURE:
        return ServerError(
            f"the call ended with no status from the server; connection lost? (grpc: {details})",
            grpc.StatusCode.UNAVAILABLE,
            target,
        )
    return ServerError(details or "", code, target)


_CODES = {c.value[0]: c for c in grpc.StatusCode}


def status_code(number: int) -> grpc.StatusCode:
    return _CODES.get(number, grpc.StatusCode.UNKNOWN)
