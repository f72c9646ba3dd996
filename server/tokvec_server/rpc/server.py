"""Build and run the gRPC server: the EmbedService, standard health and (opt-in) reflection,
auth and TLS, readiness after warmup, and a graceful drain on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tokvec_server import logs
from tokvec_server.engine import Engine
from tokvec_server.rpc.auth import TokenAuth, read_tokens
from tokvec_server.rpc.handlers import SERVICE, VECTORS_SERVICE, add_embed_service, add_vectors_service
from tokvec_server.rpc.service import EmbedService
from tokvec_server.runners import load_runner
from tokvec_server.settings import Settings
from tokvec_server.sources import resolve as resolve_source
from tokvec_server.threads import freeze_startup_objects, limit_malloc_arenas, serial_tokenizers
from tokvec_server.validation import SpacyWords

log = logging.getLogger("tokvec.server")


def grpc_options(settings: Settings) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", settings.limits.max_message_bytes),
        ("grpc.max_send_message_length", 4 * 1024 * 1024),
        # Clients re-resolve and rebalance when connections age out. No grace limit (gRPC's
        # default): once told to go, a connection takes no new calls, but an open stream is never
        # cut for its age. (With a 30 s grace, every EmbedStream broke after about 5.5 minutes.)
        ("grpc.max_connection_age_ms", int(settings.max_connection_age_s * 1000)),
        # A peer that stops answering pings is dropped, with its queued docs.
        ("grpc.keepalive_time_ms", int(settings.keepalive_s * 1000)),
        ("grpc.keepalive_timeout_ms", int(settings.keepalive_timeout_s * 1000)),
        ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
        ("grpc.http2.max_ping_strikes", 2),  # abusive pingers get GOAWAY too_many_pings
        ("grpc.so_reuseport", 0),  # a second server on the same port must fail, not share it
    ]


def _credentials(settings: Settings) -> grpc.ServerCredentials | None:
    sec = settings.security
    if not sec.tls_cert:
        return None
    pair = [(Path(sec.tls_key).read_bytes(), Path(sec.tls_cert).read_bytes())]
    if sec.tls_client_ca:
        return grpc.ssl_server_credentials(
            pair, root_certificates=Path(sec.tls_client_ca).read_bytes(), require_client_auth=True
        )
    return grpc.ssl_server_credentials(pair)


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null for a moment (native code writes there directly)."""
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


class Server:
    """One serving process. ``await start()`` binds and loads; ``await wait()`` runs until a signal."""

    def __init__(self, settings: Settings, say: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.say = say
        self.port = 0
        self._stop = asyncio.Event()
        self._exit_code = 0
        self._fatal_error = False
        self.health = health.aio.HealthServicer()

    async def start(self) -> None:
        # What each --model holds picks its backend (sources.py); a model that cannot be served
        # fails here, before anything binds or loads.
        settings = self.settings = self.settings.replace(models=tuple(resolve_source(m) for m in self.settings.models))
        loop = self._loop = asyncio.get_running_loop()
        sec = settings.security
        interceptors = [TokenAuth(read_tokens(Path(sec.token_file)))] if sec.token_file else []
        self.server = grpc.aio.server(options=grpc_options(settings), interceptors=interceptors)
        # Bind before loading the model: a port in use fails in milliseconds, not after the load.
        self.port = self._bind(settings)
        words = SpacyWords()
        self.engines: list[Engine] = []
        for model in settings.models:
            runner = await loop.run_in_executor(None, load_runner, model)
            self.engines.append(Engine(model, settings.limits, runner, words, self._fatal))
        self.service = EmbedService(self.engines, settings.limits)
        add_embed_service(self.service, self.server)
        # The vectors service is always there; without --vectors it says how to serve a table.
        from tokvec_server.rpc.vectors import VectorsService

        self.vectors = await loop.run_in_executor(None, VectorsService.load, settings.vectors, settings.limits, words)
        add_vectors_service(self.vectors, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        if settings.reflection:
            from grpc_reflection.v1alpha import reflection

            reflection.enable_server_reflection(
                [SERVICE, VECTORS_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME], self.server
            )
        await self._set_health(serving=False)
        await self._start_listening(settings)
        for engine in self.engines:
            engine.start()
            # Readiness waits for one full-budget batch per model: the first caller pays nothing.
            seconds = await loop.run_in_executor(None, engine.warmup)
            info = engine.info
            self.say(
                f"tokvec: model {info.name} ({info.fingerprint}, width {info.width}, max length {info.max_length}) "
                f"on {info.device} {info.dtype.value}, batch budget {engine.model.batching.max_batch_items} pieces, warmup {seconds:.2f}s"
            )
        if settings.metrics_address:
            from tokvec_server.metrics import serve_metrics

            metrics_port = serve_metrics(settings.metrics_address, self.engines, loop)
            # Printed with the real port, so that --metrics-address HOST:0 can be found.
            self.say(f"tokvec: metrics on http://{settings.metrics_address.rsplit(':', 1)[0]}:{metrics_port}/metrics")
        if (table := self.vectors.table) is not None:
            self.say(
                f"tokvec: vectors {table.name} ({table.fingerprint}, {table.mode} mode, {table.n_rows} rows x {table.width}, {table.n_keys} keys) on {self.vectors.device}"
            )
        freeze_startup_objects()
        self.service.ready = self.vectors.ready = True
        await self._set_health(serving=True)
        self.say(f"tokvec: ready: {len(self.engines)} model(s), default {self.engines[0].info.name}")

    async def _set_health(self, serving: bool) -> None:
        """Every service name the server answers has a health status ("" is the whole server).
        The VectorsService answers without a table too (FAILED_PRECONDITION, saying how to serve
        one): its name is known, and NOT_SERVING until a table is there to serve."""
        vectors = serving and self.vectors.table is not None
        for name, up in (("", serving), (SERVICE, serving), (VECTORS_SERVICE, vectors)):
            await self.health.set(
                name, health_pb2.HealthCheckResponse.SERVING if up else health_pb2.HealthCheckResponse.NOT_SERVING
            )

    def _bind(self, settings: Settings) -> int:
        address = settings.address
        credentials = _credentials(settings)
        # A unix socket is created owner-only (0600): other local users cannot connect to it.
        old_umask = os.umask(0o177) if address.startswith("unix:") else None
        try:
            # gRPC core logs its own line for a failed bind; ours (below) names the address and the
            # cause, and a failed start prints one line (docs/reliability.md R7).
            with _stderr_silenced():
                port = (
                    self.server.add_secure_port(address, credentials)
                    if credentials
                    else self.server.add_insecure_port(address)
                )
        except RuntimeError as exc:
            raise OSError(f"--address {address}: cannot bind ({exc})") from None
        finally:
            if old_umask is not None:
                os.umask(old_umask)
        return int(port)

    async def _start_listening(self, settings: Settings) -> None:
        old_umask = os.umask(0o177) if settings.address.startswith("unix:") else None
        try:
            await self.server.start()
        finally:
            if old_umask is not None:
                os.umask(old_umask)
        where = (
            settings.address
            if settings.address.startswith("unix:")
            else f"{settings.address.rsplit(':', 1)[0]}:{self.port}"
        )
        self.say(f"tokvec: listening on {where}")

    def _fatal(self, exc: BaseException) -> None:
        """Called from a dead model thread: end the process non-zero so an orchestrator restarts it."""
        self._exit_code = 1
        self._fatal_error = True
        self._loop.call_soon_threadsafe(self._stop.set)

    def request_stop(self) -> None:
        if self._stop.is_set():
            # A second signal: stop now, whatever is in flight.
            self.say("tokvec: second signal, exiting now")
            os._exit(self._exit_code or 1)
        self._stop.set()

    async def wait(self) -> int:
        await self._stop.wait()
        await self.shutdown()
        return self._exit_code

    async def shutdown(self) -> None:
        """Readiness flips first; new work is refused after drain_s; admitted work finishes within grace_s."""
        await self._set_health(serving=False)
        if not self._fatal_error and self.settings.drain_s:
            await asyncio.sleep(self.settings.drain_s)
        self.service.ready = self.vectors.ready = False
        await self.server.stop(0 if self._fatal_error else self.settings.grace_s)
        for engine in self.engines:
            if self._fatal_error:
                # A model thread is dead, and its partner may wait on it forever: joining would
                # cost the join timeout. The process ends now; daemon threads go with it (R6).
                engine.scheduler.close()
            else:
                engine.stop()
        self.vectors.stop()


async def serve(settings: Settings) -> int:
    # The startup and shutdown lines: plain for a terminal, log records when logs are JSON.
    say = print if settings.log_format == "text" else logging.getLogger("tokvec").info
    server = Server(settings, say)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.request_stop)
    await server.start()
    code = await server.wait()
    say("tokvec: stopped")
    return code


def run(settings: Settings) -> int:
    logs.configure(settings.log_format)
    limit_malloc_arenas()  # before gRPC, the tokenizers and torch start their threads
    serial_tokenizers()
    return asyncio.run(serve(settings))
