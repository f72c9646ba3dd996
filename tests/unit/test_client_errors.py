"""How the client names a failed call: the status the server sent, except grpc's own report of a
transport that failed under the call, which is a lost connection (UNAVAILABLE, resent by callers)."""

from __future__ import annotations

import grpc
from grpc.aio import AioRpcError, Metadata

from tokvec.errors import from_rpc_error


def rpc_error(code: grpc.StatusCode, details: str) -> AioRpcError:
    return AioRpcError(code, Metadata(), Metadata(), details=details)


def test_grpc_core_transport_failure_is_a_lost_connection() -> None:
    # What grpc.aio's call sets when a write or read fails on a connection killed mid-stream
    # (seen in R13's chaos test: one stream of eight, server SIGKILLed under load).
    err = from_rpc_error(rpc_error(grpc.StatusCode.INTERNAL, "Internal error from Core"), "127.0.0.1:1")
    assert err.code == grpc.StatusCode.UNAVAILABLE
    assert "no status from the server" in str(err)


def test_a_server_sent_internal_stays_internal() -> None:
    details = "internal error (error id 3f2a9c0d1e7b)"  # as rpc/handlers.py words it
    err = from_rpc_error(rpc_error(grpc.StatusCode.INTERNAL, details), "127.0.0.1:1")
    assert err.code == grpc.StatusCode.INTERNAL
    assert err.details == details


def test_other_codes_pass_through() -> None:
    err = from_rpc_error(rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "max_queued_docs (20000)"), "h:1")
    assert (err.code, err.details) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "max_queued_docs (20000)")
