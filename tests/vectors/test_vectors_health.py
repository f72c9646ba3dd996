"""Standard gRPC health answers for every service name the server answers, the VectorsService too."""

from __future__ import annotations

import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from serving import ServerThread

from tokvec_server.settings import ModelSettings, Settings

SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
NAMES = ("", "tokvec.v1.EmbedService", "tokvec.v1.VectorsService")


def statuses(address: str) -> dict[str, int]:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return {name: stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status for name in NAMES}


def test_a_served_table_is_serving_then_drains_with_the_rest(tables):
    server = ServerThread(Settings(models=(ModelSettings(backend="fake"),), vectors=str(tables.default), drain_s=1.0))
    stopping = threading.Thread(target=server.stop)
    try:
        assert statuses(server.address) == dict.fromkeys(NAMES, SERVING)
        with grpc.insecure_channel(server.address) as channel, pytest.raises(grpc.RpcError) as unknown:
            health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="tokvec.v1.Nope"), timeout=5
            )
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        stopping.start()  # SIGTERM's path: readiness flips, the server listens on for drain_s
        deadline = time.monotonic() + 0.9
        while (seen := statuses(server.address)) != dict.fromkeys(NAMES, NOT_SERVING) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert seen == dict.fromkeys(NAMES, NOT_SERVING)
    finally:
        if stopping.ident is None:
            server.stop()
        else:
            stopping.join()


def test_without_a_table_the_vectors_service_is_known_and_not_serving():
    server = ServerThread(Settings(models=(ModelSettings(backend="fake"),)))
    try:
        assert statuses(server.address) == {
            "": SERVING,
            "tokvec.v1.EmbedService": SERVING,
            "tokvec.v1.VectorsService": NOT_SERVING,
        }
    finally:
        server.stop()
