"""The connection a spaCy pipeline keeps to its tokvec server: settings read once, a channel
opened lazily in the process that uses it, and every result checked against the expected model."""

from __future__ import annotations

import os
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokvec._channel import Credentials
from tokvec._results import ModelInfo
from tokvec._wire import DocLike, Embedding
from tokvec.client import Client
from tokvec.errors import ServerError
from tokvec.spacy.errors import ModelMismatchError, PipelineError, server_failure

# Every Remote with an open channel, so that a fork can close them first (below).
_OPEN: weakref.WeakSet[Remote] = weakref.WeakSet()


def _close_before_fork() -> None:
    # A gRPC channel (and the threads behind it) must never cross a fork (docs/reliability.md R14):
    # nlp.pipe(n_process=2) forks after the parent may have annotated docs. Close in the parent;
    # parent and children each reopen their own channel on next use.
    for remote in list(_OPEN):
        remote.close()


os.register_at_fork(before=_close_before_fork)


@dataclass(frozen=True)
class RemoteSettings:
    """Where and how to ask for rows; read once from the component's or listener's config."""

    address: tuple[str, ...]
    pooling: str = "mean"
    spans: str = "tokens:128:96"
    dtype: str = "float32"
    timeout: float = 60.0
    model: str = ""  # "" = the server's default model
    token_env: str = ""  # name of an environment variable holding the auth token (never saved)
    tls: bool = False  # TLS to the server (needed to send a token off loopback)
    ca_file: str = ""  # PEM CA bundle for TLS; "" = the system roots

    @classmethod
    def build(cls, address: str | Sequence[str], **settings: Any) -> RemoteSettings:
        addresses = (address,) if isinstance(address, str) else tuple(address)
        if not addresses or not all(addresses):
            raise ValueError(f"address: expected host:port or a list of them, got {address!r}")
        built = cls(addresses, **settings)
        built.client(None)  # fail now on a bad pooling / spans / dtype / address list
        return built

    def client(self, credentials: Credentials | None) -> Client:
        return Client(
            list(self.address),
            timeout=self.timeout,
            pooling=self.pooling,
            spans=self.spans,
            dtype=self.dtype,
            model=self.model,
            credentials=credentials,
        )


class Remote:
    """A fork- and pickle-safe handle on one server (or a balanced list of servers)."""

    def __init__(self, settings: RemoteSettings) -> None:
        self.settings = settings
        self.target = settings.client(None).target
        self._client: Client | None = None
        self._pid = 0
        self._max_docs = 0  # the server's max_docs_per_request, once asked

    def client(self, who: str) -> Client:
        if self._client is None or self._pid != os.getpid():
            # A client inherited through a fork is dropped, never used (nor closed: not ours).
            try:
                self._client = self.settings.client(self._credentials(who))
            except ValueError as exc:  # e.g. a token over plaintext off loopback
                raise PipelineError(f"{who}: {exc}", target=self.target) from None
            self._pid = os.getpid()
            _OPEN.add(self)
        return self._client

    def _credentials(self, who: str) -> Credentials:
        """Read when the channel opens, in the process that opens it: the token is never saved."""
        settings, token = self.settings, None
        if settings.token_env:
            token = os.environ.get(settings.token_env, "")
            if not token:
                raise PipelineError(
                    f"{who}: token_env = {settings.token_env!r}, but that environment variable is not set in this process",
                    target=self.target,
                )
        try:
            ca = Path(settings.ca_file).read_bytes() if settings.ca_file else None
        except OSError as exc:
            raise PipelineError(f"{who}: ca_file = {settings.ca_file!r}: {exc.strerror}", target=self.target) from None
        return Credentials(token=token, tls=settings.tls, root_certificates=ca)

    def close(self) -> None:
        if self._client is not None and self._pid == os.getpid():
            self._client.close()
        self._client = None
        _OPEN.discard(self)

    def model_info(self, who: str) -> ModelInfo:
        """The served model these settings select (the default one unless ``model`` is set)."""
        try:
            info = self.client(who).info()
        except ServerError as exc:
            raise server_failure(who, exc, self.settings.timeout) from None
        self._max_docs = info.limits.get("max_docs_per_request", 0)
        wanted = self.settings.model
        chosen = next((m for m in info.models if m.name == wanted), None) if wanted else info.model
        if chosen is None:
            names = ", ".join(m.name for m in info.models)
            raise ModelMismatchError(
                f"{who}: tokvec server {self.target} has no model {wanted!r} (it serves {names}): change model",
                target=self.target,
            )
        return chosen

    def max_docs(self, who: str) -> int:
        """Docs the server takes in one request (asked once per process)."""
        if not self._max_docs or self._pid != os.getpid():
            self.model_info(who)
        return self._max_docs

    def embed(
        self,
        docs: Sequence[DocLike],
        who: str,
        *,
        pieces: bool = False,
        pooling: str = "",
        more_poolings: Sequence[str] = (),
        chunks: Sequence[Sequence[Sequence[int]]] | None = None,
        chunk_poolings: Sequence[str] = (),
    ) -> list[Embedding]:
        """Rows for all ``docs``, pooled by ``pooling`` ("" = the settings') and each of
        ``more_poolings`` (Embedding.pooled) from the same forward; results in doc order. One
        call, or one per max_docs_per_request docs for a larger batch. Any failure raises
        PipelineError. With ``chunks`` (token ranges per doc) the results hold chunk vectors
        only, no rows."""
        if not docs:
            return []
        limit = (self.max_docs(who) if len(docs) > 1 else 1) or len(docs)
        results: list[Embedding] = []
        for start in range(0, len(docs), limit):
            part_chunks = chunks[start : start + limit] if chunks is not None else None
            results += self._embed(
                docs[start : start + limit], start, who, pieces, pooling, more_poolings, part_chunks, chunk_poolings
            )
        for i, e in enumerate(results):
            e.index = i
        return results

    def _embed(
        self,
        docs: Sequence[DocLike],
        start: int,
        who: str,
        pieces: bool,
        pooling: str,
        more_poolings: Sequence[str],
        chunks: Sequence[Sequence[Sequence[int]]] | None,
        chunk_poolings: Sequence[str],
    ) -> list[Embedding]:
        outputs = ("chunk_vectors",) if chunks is not None else ("tokens", "pieces") if pieces else ("tokens",)
        try:
            results = sorted(
                self.client(who).embed_results(
                    docs,
                    outputs=outputs,
                    pooling=pooling or None,
                    more_poolings=more_poolings,
                    chunks=chunks,
                    chunk_poolings=chunk_poolings,
                ),
                key=lambda e: e.index,
            )
        except ServerError as exc:
            raise server_failure(who, exc, self.settings.timeout) from None
        if [e.index for e in results] != list(range(len(docs))):
            raise PipelineError(
                f"{who}: tokvec server {self.target} answered {len(results)} results for {len(docs)} docs",
                target=self.target,
            )
        for e in results:
            if e.error is not None:
                where = f" (batch doc {start + e.index})" if start else ""
                raise PipelineError(
                    f"{who}: tokvec server {self.target} refused {e.error}{where}", e.error.code, self.target
                )
            if len(e.pooled) != len(more_poolings):
                raise PipelineError(
                    f"{who}: tokvec server {self.target} sent {len(e.pooled)} extra poolings for {len(more_poolings)} asked: "
                    "it predates EmbedOptions.more_poolings; upgrade it, or pool every listener alike",
                    target=self.target,
                )
        return results

    def __getstate__(self) -> dict[str, Any]:
        # Pickled for spawn workers: the copy opens its own channel on first use.
        state = self.__dict__.copy()
        state["_client"], state["_pid"] = None, 0
        return state


def check_model(
    results: Sequence[Embedding], *, fingerprint: str, width: int | None, who: str, target: str, fix: str
) -> None:
    """Refuse rows from another model than expected; ``fix`` says what to change."""
    for e in results:
        if fingerprint and e.fingerprint != fingerprint:
            raise ModelMismatchError(
                f"{who}: tokvec server {target} serves model fingerprint {e.fingerprint!r}, but this "
                f"pipeline was built on {fingerprint!r}. {fix}",
                target=target,
            )
        if width is not None and e.rows.shape[0] and e.rows.shape[1] != width:
            raise ModelMismatchError(
                f"{who}: tokvec server {target} sends rows {e.rows.shape[1]} wide, but this pipeline "
                f"expects {width}. {fix}",
                target=target,
            )
