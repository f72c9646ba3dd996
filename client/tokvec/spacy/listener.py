"""``tokvec.RemoteListener.v1``: a frozen tok2vec layer whose rows come from a tokvec server,
through an upstream ``tokvec_transformer`` component or fetched by the listener itself."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import cast

import numpy as np
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model
from thinc.types import Floats2d

from tokvec._wire import POOLINGS
from tokvec.spacy.docdata import doc_rows
from tokvec.spacy.errors import ModelMismatchError, PipelineError
from tokvec.spacy.remote import Remote, RemoteSettings, check_model

logger = logging.getLogger("tokvec.spacy")


class RemoteListener(Model[list[Doc], list[Floats2d]]):
    """Hands a downstream component one row per token, as spaCy's Tok2VecListener does.

    During ``nlp.update`` the upstream component sends each batch's rows with ``receive``; when
    predicting, rows come from ``doc._.tokvec``; docs without rows are fetched from the server.
    The server's encoder is frozen: backprop stops here (spacy-transformers' ``grad_factor = 0``).
    """

    name = "tokvec-remote-listener"

    def __init__(self, upstream_name: str, width: int | None, remote: Remote | None, pooling: str = "") -> None:
        # attrs travel with the component's weights (to_disk): the model the rows must come from.
        Model.__init__(
            self,
            name=self.name,
            forward=forward,
            init=init,
            dims={"nO": width},
            attrs={"fingerprint": "", "grad_factor": 0.0},
        )
        self.upstream_name = upstream_name
        # How this listener's rows are pooled; "" = as the rows it is sent (the upstream
        # component's pooling, or its own address's). Listeners pooling otherwise than their
        # upstream component still share its one server call (EmbedOptions.more_poolings).
        self.pooling = pooling
        self.own_remote = remote  # set when the listener's config names an address
        self.upstream_remote: Remote | None = None  # set by the upstream tokvec_transformer
        self.component = ""  # the downstream component this listener is in, for messages
        self._batch_id: int | None = None
        self._outputs: list[Floats2d] | None = None
        self._said_frozen = False

    @property
    def remote(self) -> Remote | None:
        return self.own_remote or self.upstream_remote

    @property
    def wanted_pooling(self) -> str:
        remote = self.remote
        return self.pooling or (remote.settings.pooling if remote is not None else "mean")

    @property
    def who(self) -> str:
        return f"tokvec.RemoteListener.v1 in {self.component or 'a component'!r}"

    @property
    def fix(self) -> str:
        return (
            f"Point address at a server running the model this pipeline was trained on, or retrain "
            f"{self.component or 'the component'!r} with width set to the server's width."
        )

    @classmethod
    def get_batch_id(cls, docs: list[Doc]) -> int:
        return sum(sum(token.orth for token in doc) for doc in docs)

    def receive(self, batch_id: int, outputs: Sequence[np.ndarray]) -> None:
        """Rows for the next training batch, from the upstream component's ``update``."""
        self._batch_id, self._outputs = batch_id, [self.ops.asarray2f(cast(Floats2d, rows)) for rows in outputs]

    def take_received(self, docs: list[Doc]) -> list[Floats2d]:
        if self._outputs is None or self.get_batch_id(docs) != self._batch_id:
            raise ValueError(
                f"{self.who}: received rows for another batch than the one being updated ({self._batch_id} vs {self.get_batch_id(docs)})"
            )
        outputs, self._batch_id, self._outputs = self._outputs, None, None
        return outputs

    def frozen_backprop(self, d_rows: list[Floats2d]) -> list[Doc]:
        """No gradient flows to the server's encoder; docs have none either."""
        if not self._said_frozen:
            logger.info("%s: the remote encoder is frozen; gradients stop at this listener (grad_factor = 0)", self.who)
            self._said_frozen = True
        return []


def forward(
    model: RemoteListener, docs: list[Doc], is_train: bool
) -> tuple[list[Floats2d], Callable[[list[Floats2d]], list[Doc]]]:
    if is_train and model._batch_id is not None:
        rows = model.take_received(docs)
    else:
        rows = rows_for(model, docs)
    width = model.get_dim("nO") if model.has_dim("nO") else None
    for doc_rows_, doc in zip(rows, docs):
        if width is not None and len(doc) and doc_rows_.shape[1] != width:
            raise ModelMismatchError(
                f"{model.who}: rows are {doc_rows_.shape[1]} wide, but the listener's width is {width}. {model.fix}"
            )
    return rows, model.frozen_backprop


def rows_for(model: RemoteListener, docs: list[Doc]) -> list[Floats2d]:
    """Rows stored on the docs; the others from one server call. Never zeros in their place."""
    expected = str(model.attrs["fingerprint"])
    out: list[np.ndarray | None] = []
    missing: list[int] = []
    pooling = model.wanted_pooling
    for i, doc in enumerate(docs):
        rows, fingerprint = doc_rows(doc, pooling)
        if rows is None or len(rows) != len(doc):
            missing.append(i)
        elif expected and fingerprint != expected:
            raise ModelMismatchError(
                f"{model.who}: doc {i} carries rows of model {fingerprint!r}, but this listener was trained on {expected!r}. {model.fix}"
            )
        out.append(rows)
    if missing:
        remote = model.remote
        if remote is None:
            raise PipelineError(
                f"{model.who}: doc {missing[0]} has no rows in doc._.tokvec and this listener has no server to ask. "
                'Add a tokvec_transformer component before it (upstream = "*"), or set address in the listener\'s config.'
            )
        results = remote.embed([docs[i] for i in missing], model.who, pooling=pooling)
        width = model.get_dim("nO") if model.has_dim("nO") else None
        check_model(results, fingerprint=expected, width=width, who=model.who, target=remote.target, fix=model.fix)
        if not expected:
            model.attrs["fingerprint"] = results[0].fingerprint
        for i, result in zip(missing, results):
            out[i] = result.rows
    return [model.ops.asarray2f(cast(Floats2d, rows)) for rows in out]


def init(model: RemoteListener, X: list[Doc] | None = None, Y: object = None) -> None:
    """Learn width and fingerprint from the server when nothing upstream has set them."""
    remote = model.remote
    if remote is None or (model.has_dim("nO") and model.attrs["fingerprint"]):
        return
    info = remote.model_info(model.who)
    expected = str(model.attrs["fingerprint"])
    if expected and info.fingerprint != expected:
        raise ModelMismatchError(
            f"{model.who}: tokvec server {remote.target} serves model {info.fingerprint!r}, not {expected!r}. {model.fix}",
            target=remote.target,
        )
    if model.has_dim("nO") and model.get_dim("nO") != info.width:
        raise ModelMismatchError(
            f"{model.who}: width = {model.get_dim('nO')}, but the server's model {info.name!r} is {info.width} wide: "
            f"set width = {info.width} in the listener's config (or leave it out)",
            target=remote.target,
        )
    if not model.has_dim("nO"):
        model.set_dim("nO", info.width)
    model.attrs["fingerprint"] = info.fingerprint


def remote_listener(
    width: int | None = None,
    upstream: str = "*",
    address: str | list[str] = "",
    pooling: str = "",
    spans: str = "tokens:128:96",
    dtype: str = "float32",
    timeout: float = 60.0,
    model: str = "",
    token_env: str = "",
    tls: bool = False,
    ca_file: str = "",
) -> Model[list[Doc], list[Floats2d]]:
    """A tok2vec layer listening to a tokvec server. With no ``address`` it listens to the upstream
    ``tokvec_transformer`` named ``upstream`` ("*" = any); with one it can fetch rows itself.
    ``width`` may be left out: it is learned from the server at initialize. ``pooling``
    (mean, max, first, last, sum) is this listener's own, as a TransformerListener's; "" takes
    the upstream component's (mean with an own ``address``)."""
    if pooling and pooling not in POOLINGS:
        raise ValueError(f'pooling: {pooling!r} is not one of {", ".join(POOLINGS)} (or "": the upstream component\'s)')
    remote = None
    if address:
        settings = RemoteSettings.build(
            address,
            pooling=pooling or "mean",
            spans=spans,
            dtype=dtype,
            timeout=timeout,
            model=model,
            token_env=token_env,
            tls=tls,
            ca_file=ca_file,
        )
        remote = Remote(settings)
    return RemoteListener(upstream, width, remote, pooling)


registry.architectures.register("tokvec.RemoteListener.v1", func=remote_listener)
