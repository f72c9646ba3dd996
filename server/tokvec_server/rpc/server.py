"""Build and run the gRPC server: the EmbedService, standard health and (opt-in) reflection,
readiness after warmup, and a graceful drain on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tokvec.v1 import tokvec_pb2, tokvec_pb2_grpc
from tokvec_server.engine import Engine
from tokvec_server.rpc.service import EmbedService
from tokvec_server.runners import load_runner
from tokvec_server.settings import Settings
from tokvec_server.validation import SpacyWords

log = logging.getLogger("tokvec.server")

SERVICE_NAME = tokvec_pb2.DESCRIPTOR.services_by_name["EmbedService"].full_name


def grpc_options(settings: Settings) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", settings.limits.max_message_bytes),
        ("grpc.max_send_message_length", 4 * 1024 * 1024),
        # Clients re-resolve and rebalance when connections age out.
        ("grpc.max_connection_age_ms", 300_000),
        ("grpc.max_connection_age_grace_ms", 30_000),
        ("grpc.so_reuseport", 0),  # a second server on the same port must fail, not share it
    ]


class Server:
    """One serving process. ``await start()`` binds and loads; ``await wait()`` runs until a signal."""

    def __init__(self, settings: Settings, say: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.say = say
        self.port = 0
        self._stop = asyncio.Event()
        self._exit_code = 0
        self.health = health.aio.HealthServicer()

    async def start(self) -> None:
        settings = self.settings
        loop = self._loop = asyncio.get_running_loop()
        words = SpacyWords()
        self.engines = []
        for model in settings.models:
            runner = await loop.run_in_executor(None, load_runner, model)
            self.engines.append(Engine(model, settings.limits, runner, words, self._fatal))
        self.service = EmbedService(self.engines, settings.limits)
        self.server = grpc.aio.server(options=grpc_options(settings))
        tokvec_pb2_grpc.add_EmbedServiceServicer_to_server(self.service, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        if settings.reflection:
            from grpc_reflection.v1alpha import reflection

            reflection.enable_server_reflection([SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME], self.server)
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        try:
            self.port = self.server.add_insecure_port(settings.address)
        except RuntimeError as exc:
            raise OSError(f"--address {settings.address}: cannot bind ({exc})") from None
        await self.server.start()
        where = settings.address if settings.address.startswith("unix:") else f"{settings.address.rsplit(':', 1)[0]}:{self.port}"
        self.say(f"tokvec: listening on {where}")
        for engine in self.engines:
            engine.start()
            # Readiness waits for one full-budget batch per model: the first caller pays nothing.
            seconds = await loop.run_in_executor(None, engine.warmup)
            info = engine.info
            self.say(
                f"tokvec: model {info.name} ({info.fingerprint}, width {info.width}, max length {info.max_length}) "
                f"on {info.device} {info.dtype.value}, batch budget {engine.model.batching.max_batch_items} pieces, warmup {seconds:.2f}s"
            )
        self.service.ready = True
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self.say(f"tokvec: ready: {len(self.engines)} model(s), default {self.engines[0].info.name}")

    def _fatal(self, exc: BaseException) -> None:
        """Called from a dead model thread: end the process non-zero so an orchestrator restarts it."""
        self._exit_code = 1
        self._loop.call_soon_threadsafe(self._stop.set)

    def request_stop(self) -> None:
        self._stop.set()

    async def wait(self) -> int:
        await self._stop.wait()
        await self.shutdown()
        return self._exit_code

    async def shutdown(self) -> None:
        """Readiness flips first; admitted work finishes within the grace period."""
        self.service.ready = False
        await self.health.enter_graceful_shutdown()
        await self.server.stop(self.settings.grace_s)
        for engine in self.engines:
            engine.stop()


async def serve(settings: Settings) -> int:
    server = Server(settings)
    await server.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.request_stop)
    code = await server.wait()
    print("tokvec: stopped", file=sys.stderr)
    return code


def run(settings: Settings) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr)
    return asyncio.run(serve(settings))
