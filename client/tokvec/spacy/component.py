"""``tokvec_transformer``: the pipeline component that asks a tokvec server for each batch's rows,
stores them on the docs and feeds them to the listeners of later components."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any

import srsly
from spacy import util
from spacy.language import Language
from spacy.pipeline import Pipe
from spacy.tokens import Doc
from spacy.training import Example
from thinc.api import Model

from tokvec._wire import Embedding
from tokvec.spacy.docdata import install_extensions, set_doc_data
from tokvec.spacy.errors import ModelMismatchError
from tokvec.spacy.listener import RemoteListener
from tokvec.spacy.remote import Remote, RemoteSettings, check_model

IN_FLIGHT = 1  # requests sent ahead of the batch the listeners are working on

DEFAULT_CONFIG = {
    "address": "127.0.0.1:50051",
    "pooling": "mean",
    "spans": "tokens:128:96",
    "dtype": "float32",
    "timeout": 60.0,
    "model": "",
    "token_env": "",
    "tls": False,
    "ca_file": "",
    "fingerprint": "",
    "pieces": False,
}


@Language.factory("tokvec_transformer", assigns=["doc._.tokvec"], default_config=DEFAULT_CONFIG)
def make_tokvec_transformer(
    nlp: Language,
    name: str,
    address: str | list[str],
    pooling: str,
    spans: str,
    dtype: str,
    timeout: float,
    model: str,
    token_env: str,
    tls: bool,
    ca_file: str,
    fingerprint: str,
    pieces: bool,
) -> TokvecTransformer:
    """Rows from a tokvec server for every doc, shared with the listeners of later components.
    ``fingerprint`` pins the server's model ("" = whatever serves at initialize, then saved);
    ``pieces`` also keeps piece-level hidden states and alignment in ``doc._.tokvec_pieces``."""
    settings = RemoteSettings.build(
        address,
        pooling=pooling,
        spans=spans,
        dtype=dtype,
        timeout=timeout,
        model=model,
        token_env=token_env,
        tls=tls,
        ca_file=ca_file,
    )
    return TokvecTransformer(nlp.vocab, settings, name=name, fingerprint=fingerprint, pieces=pieces)


class TokvecTransformer(Pipe):
    """Like spacy-transformers' ``transformer`` component, with the encoder in another process.
    Saves the server's address and model fingerprint, never weights."""

    def __init__(
        self, vocab: Any, settings: RemoteSettings, *, name: str = "tokvec", fingerprint: str = "", pieces: bool = False
    ) -> None:
        self.vocab = vocab
        self.name = name
        self.remote = Remote(settings)
        self.cfg: dict[str, Any] = {"fingerprint": fingerprint, "width": None, "pieces": pieces}
        # A standalone fetcher over the same connection: what replaces a listener if it is cut loose.
        self.model = RemoteListener("", None, self.remote)
        self.model.component = name
        self.listener_map: dict[str, list[RemoteListener]] = {}
        install_extensions()

    @property
    def who(self) -> str:
        return f"tokvec_transformer {self.name!r}"

    @property
    def fix(self) -> str:
        return (
            f"Point [components.{self.name}] address at a server running the pipeline's model "
            "(`tokvec info --server ADDRESS` shows its fingerprint), or retrain the pipeline on this one."
        )

    # -- listeners: the protocol spaCy's Language._link_components drives (spacy.ty.ListenedToComponent)

    @property
    def listeners(self) -> list[RemoteListener]:
        return [m for c in self.listening_components for m in self.listener_map[c]]

    @property
    def listening_components(self) -> list[str]:
        return list(self.listener_map)

    def add_listener(self, listener: RemoteListener, component_name: str) -> None:
        listener.component = component_name
        listener.upstream_remote = self.remote
        self.listener_map.setdefault(component_name, [])
        if listener not in self.listener_map[component_name]:
            self.listener_map[component_name].append(listener)
        self._sync(listener)

    def remove_listener(self, listener: RemoteListener, component_name: str) -> bool:
        if listener in self.listener_map.get(component_name, []):
            self.listener_map[component_name].remove(listener)
            if not self.listener_map[component_name]:
                del self.listener_map[component_name]
            return True
        return False

    def find_listeners(self, component: Any) -> None:
        if isinstance(getattr(component, "model", None), Model):
            for node in component.model.walk():
                if isinstance(node, RemoteListener) and node.upstream_name in ("*", self.name):
                    self.add_listener(node, component.name)

    def _sync(self, listener: RemoteListener) -> None:
        """Hand the listener this component's width and fingerprint, or refuse a mismatch."""
        width, fingerprint = self.cfg["width"], self.cfg["fingerprint"]
        if width is not None:
            if listener.has_dim("nO") and listener.get_dim("nO") != width:
                raise ModelMismatchError(
                    f"{listener.who}: width = {listener.get_dim('nO')}, but {self.who}'s model is {width} wide: "
                    f"set width = {width} in the tokvec.RemoteListener.v1 block of [components.{listener.component}] (or leave it out)"
                )
            if not listener.has_dim("nO"):
                listener.set_dim("nO", width)
        if fingerprint:
            theirs = str(listener.attrs["fingerprint"])
            if theirs and theirs != fingerprint:
                raise ModelMismatchError(
                    f"{listener.who} was trained on rows of model {theirs!r}, but {self.who} gets rows of {fingerprint!r}: "
                    f"retrain {listener.component!r}, or use a tokvec_transformer pointing at a server running {theirs!r}"
                )
            listener.attrs["fingerprint"] = fingerprint

    @property
    def more_poolings(self) -> tuple[str, ...]:
        """The poolings listeners want besides this component's own, in listener order."""
        own = self.remote.settings.pooling
        return tuple(dict.fromkeys(p for listener in self.listeners if (p := listener.wanted_pooling) != own))

    # -- running

    def predict(self, docs: Iterable[Doc]) -> list[Embedding]:
        """One server call for the whole batch, every listener's pooling from the same forward
        (more than one call only past the server's max_docs_per_request); results in doc order."""
        docs = list(docs)
        results = self.remote.embed(docs, self.who, pieces=self.cfg["pieces"], more_poolings=self.more_poolings)
        check_model(
            results,
            fingerprint=self.cfg["fingerprint"],
            width=self.cfg["width"],
            who=self.who,
            target=self.remote.target,
            fix=self.fix,
        )
        if results and not self.cfg["fingerprint"]:
            self._learn(results[0].fingerprint, results[0].rows.shape[1])
        return results

    def set_annotations(self, docs: Iterable[Doc], results: list[Embedding]) -> None:
        pooling, more = self.remote.settings.pooling, self.more_poolings
        for doc, result in zip(docs, results):
            set_doc_data(doc, result, pooling=pooling, more_poolings=more, pieces=self.cfg["pieces"])

    def __call__(self, doc: Doc) -> Doc:
        self.set_annotations([doc], self.predict([doc]))
        return doc

    def pipe(self, stream: Iterable[Doc], *, batch_size: int = 128) -> Iterator[Doc]:
        """Batches in order, with the next batch's request in flight while the components after
        this one (the listeners) work on the current batch: the server and this process overlap.
        At most IN_FLIGHT requests wait beyond the batch being handed on."""
        stream = iter(stream)
        pending: deque[tuple[list[Doc], Future[list[Embedding]]]] = deque()
        # One thread: requests go out one at a time, in batch order (the server batches across
        # callers anyway); the thread ends with the generator, so none outlives nlp.pipe.
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"tokvec-{self.name}")
        try:
            while True:
                docs = list(islice(stream, batch_size))
                if docs:
                    pending.append((docs, executor.submit(self.predict, docs)))
                    if len(pending) <= IN_FLIGHT:
                        continue
                if not pending:
                    return
                ready, future = pending.popleft()
                self.set_annotations(ready, future.result())
                yield from ready
        finally:
            for _, future in pending:
                future.cancel()
            executor.shutdown(wait=False, cancel_futures=True)

    def update(
        self, examples: Iterable[Example], *, drop: float = 0.0, sgd: Any = None, losses: dict[str, float] | None = None
    ) -> dict[str, float]:
        """Send this batch's rows to every listener. Nothing here learns: the encoder is frozen."""
        docs = [eg.predicted for eg in examples]
        results = self.predict(docs)
        rows = {self.remote.settings.pooling: [r.rows for r in results]}
        rows.update((p, [r.pooled[k] for r in results]) for k, p in enumerate(self.more_poolings))
        batch_id = RemoteListener.get_batch_id(docs)
        for listener in self.listeners:
            listener.receive(batch_id, rows[listener.wanted_pooling])
        return {} if losses is None else losses

    def initialize(self, get_examples: Callable[[], Iterable[Example]], *, nlp: Language | None = None) -> None:
        """Ask the server for its model; remember its fingerprint and width, tell the listeners."""
        self.check_server()
        if nlp is not None:
            names = nlp.pipe_names
            for name in names[names.index(self.name) + 1 :] if self.name in names else ():
                self.find_listeners(nlp.get_pipe(name))

    def check_server(self) -> None:
        info = self.remote.model_info(self.who)
        pinned = self.cfg["fingerprint"]
        if pinned and info.fingerprint != pinned:
            raise ModelMismatchError(
                f"{self.who}: tokvec server {self.remote.target} serves model {info.name!r} with fingerprint "
                f"{info.fingerprint!r}, but this pipeline was built on {pinned!r}. {self.fix}",
                target=self.remote.target,
            )
        self._learn(info.fingerprint, info.width)

    def _learn(self, fingerprint: str, width: int) -> None:
        self.cfg["fingerprint"], self.cfg["width"] = fingerprint, width
        for listener in self.listeners:
            self._sync(listener)

    # -- saving: address and options live in config.cfg; cfg keeps the model's identity

    def to_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> None:
        util.to_disk(path, {"cfg": lambda p: srsly.write_json(p, self.cfg)}, exclude)

    def from_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> TokvecTransformer:
        """Load, then reconnect and refuse a server whose model differs from the saved one."""
        util.from_disk(path, {"cfg": lambda p: self.cfg.update(srsly.read_json(p))}, exclude)
        self.check_server()
        return self

    def to_bytes(self, *, exclude: Iterable[str] = ()) -> bytes:
        return util.to_bytes({"cfg": lambda: srsly.json_dumps(self.cfg)}, exclude)

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = ()) -> TokvecTransformer:
        util.from_bytes(bytes_data, {"cfg": lambda b: self.cfg.update(srsly.json_loads(b))}, exclude)
        return self
