#!/usr/bin/env python3
"""Container health probe: ask a tokvec server's standard grpc.health.v1 service whether it is SERVING.

Exit 0 when SERVING, 1 otherwise (NOT_SERVING while loading or draining, unreachable, timed out):
the codes Docker's HEALTHCHECK and a Kubernetes exec probe expect. One line on stdout says why.
There is no grpc_health_probe binary in the image; this is its Python equivalent.

    python scripts/healthcheck.py                                   # 127.0.0.1:50051
    python scripts/healthcheck.py --address unix:/run/tokvec/tokvec.sock
"""

from __future__ import annotations

import argparse
import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVICE = "tokvec.v1.EmbedService"


def check(address: str, service: str, timeout: float) -> tuple[bool, str]:
    """(serving, one line saying what the server answered or why there was no answer)."""
    try:
        with grpc.insecure_channel(address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    except grpc.RpcError as exc:
        code = exc.code().name if hasattr(exc, "code") else "UNKNOWN"
        details = exc.details() if hasattr(exc, "details") else str(exc)
        return False, f"{address}: {code}: {details}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING, f"{address} {service or '(server)'}: {status}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    # The image's HEALTHCHECK takes no arguments: a container serving elsewhere sets the variable.
    parser.add_argument(
        "--address",
        default=os.environ.get("TOKVEC_HEALTH_ADDRESS", "127.0.0.1:50051"),
        help="HOST:PORT or unix:PATH (default $TOKVEC_HEALTH_ADDRESS or 127.0.0.1:50051)",
    )
    parser.add_argument(
        "--service", default=SERVICE, help=f"health service name; '' is the whole server (default {SERVICE})"
    )
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    args = parser.parse_args(argv)
    serving, line = check(args.address, args.service, args.timeout)
    print(f"tokvec health {line}")
    return 0 if serving else 1


if __name__ == "__main__":
    sys.exit(main())
