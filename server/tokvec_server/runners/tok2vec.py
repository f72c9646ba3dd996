"""spaCy's tok2vec as a runner: the ``tok2vec`` component of a spaCy pipeline behind the same
queue, worker, deadlines and out-of-memory handling as the transformers.

Its rows are one per caller token by construction. A doc is one span (a CNN tok2vec cuts
nothing, as in spaCy) whose "pieces" are its tokens, each aligned to itself: the scheduler's
budgets count tokens, pooling leaves a row as it is, and ``options.spans`` and ``options.pooling``
do not apply. The caller's words become spaCy Docs on the pipeline's own vocab (its NORM, PREFIX,
SUFFIX, SHAPE features come from there) when the doc is planned, and the model reads those.
There are no wordpieces to show and no hidden layers to choose from.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tokvec_server.alignment import DocPlan
from tokvec_server.errors import InvalidInput
from tokvec_server.runners.base import ModelInfo, StartupError, one_line
from tokvec_server.runners.batch import Batch
from tokvec_server.settings import ModelSettings
from tokvec_server.types import DType, EmbedOptions, Output, SpanSpec, Tokens

log = logging.getLogger("tokvec.tok2vec")

# Every new word adds a lexeme and a string to the vocab, for good: a long-running server would
# grow without bound. Past this many new strings the vocab is reloaded from the pipeline (the
# model's weights do not depend on it; docs in flight keep the old one alive until they finish).
VOCAB_GROWTH_LIMIT = 500_000


class Tok2VecRunner:
    """The ``tok2vec`` component of an installed pipeline (by name) or a pipeline folder."""

    tokenizer = None  # no wordpieces: the caller's tokens are the model's inputs
    ragged = True  # spaCy runs docs as they are: a batch costs its tokens
    device = torch.device("cpu")  # predict's rows are copied to host (to_numpy) whatever the device

    def __init__(self, settings: ModelSettings) -> None:
        import spacy

        if not settings.path:
            raise StartupError(
                "--model: the tok2vec backend needs an installed spaCy pipeline's name or a pipeline folder"
            )
        self.source = settings.path
        self.gpu = _gpu_id(settings.device)
        if self.gpu is not None:
            spacy.require_gpu(self.gpu)  # type: ignore[attr-defined]  # before loading: the model's arrays are made on the GPU
        try:
            nlp = spacy.load(self.source)
        except (OSError, ValueError, KeyError) as exc:
            raise StartupError(
                f"--model {self.source}: not an installed spaCy pipeline or a pipeline folder ({one_line(exc)})"
            ) from None
        self.pipe_names = list(nlp.component_names)
        component = _tok2vec_component(nlp, self.source)
        self.model: Any = nlp.get_pipe(component).model  # type: ignore[attr-defined]
        self.vocab: Any = nlp.vocab
        self._strings_at_load = len(nlp.vocab.strings)
        width = int(self.model.get_dim("nO"))
        name = settings.name or Path(self.source).name
        device = "cpu" if self.gpu is None else f"cuda:{self.gpu}"
        # A tok2vec has no piece limit (max_length 0: only max_tokens_per_doc bounds a doc) and no
        # hidden layers to choose from; it computes in float32.
        self.info = ModelInfo(
            name,
            fingerprint(self.model, str(nlp.lang), nlp.vocab),
            width,
            0,
            0,
            "tok2vec",
            device,
            DType.FLOAT32,
            pipeline=self.source,
            component=component,
        )
        self.component = component
        # One thread at a time makes Docs: the pipeline's Vocab is not safe to grow from two.
        self._vocab_lock = threading.Lock()

    def enter_thread(self) -> None:
        """Make this thread's GPU the model's (cupy's current device is per thread)."""
        if self.gpu is not None:
            import cupy

            cupy.cuda.Device(self.gpu).use()

    def check_options(self, options: EmbedOptions) -> None:
        name = self.info.name
        if Output.PIECES in options.outputs:
            raise InvalidInput(
                f"options.outputs: model {name!r} is a spaCy tok2vec: it has no pieces (its rows are per token already)"
            )
        if options.hidden_layers:
            raise InvalidInput(
                f"options.hidden_layers: model {name!r} is a spaCy tok2vec: it has no hidden layers to choose from"
            )

    def plan(self, docs: list[Tokens], spans: SpanSpec) -> list[DocPlan]:
        """Each doc as one span of its tokens, each token its own row; ``spans`` does not apply."""
        from spacy.tokens import Doc

        with self._vocab_lock:
            if len(self.vocab.strings) > self._strings_at_load + VOCAB_GROWTH_LIMIT:
                self._reload_vocab()
            made = [Doc(self.vocab, words=t.words, spaces=t.spaces) for t in docs]
        return [identity_plan(doc) for doc in made]

    def forward(self, batch: Batch, layers: tuple[int, ...]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The spans' Docs through the model at once: a row per token, in the batch's flat layout."""
        rows = self.model.predict(list(batch.inputs))
        hidden = np.concatenate([self.model.ops.to_numpy(r) for r in rows]).astype(np.float32, copy=False)
        return torch.from_numpy(hidden), []

    def _reload_vocab(self) -> None:
        import spacy

        log.info(
            "tok2vec: the vocab grew by %d strings; reloading it from %s",
            len(self.vocab.strings) - self._strings_at_load,
            self.source,
        )
        self.vocab = spacy.load(self.source, exclude=self.pipe_names).vocab
        self._strings_at_load = len(self.vocab.strings)


def identity_plan(doc: Any) -> DocPlan:
    """A spaCy Doc as one span whose pieces are its tokens (their ORTH ids, which the scheduler
    counts); token i is its own and only row. An empty doc has no span (no model call)."""
    n = len(doc)
    ids = doc.to_array("ORTH").astype(np.uint64, copy=False).view(np.int64)
    return DocPlan(
        n_tokens=n,
        span_ids=[ids] if n else [],
        span_tokens=np.asarray([[0, n]] if n else [], np.int64).reshape(-1, 2),
        piece_offsets=np.zeros((n, 2), np.int64),
        align_lengths=np.ones(n, np.int64),
        align_indices=np.arange(n, dtype=np.int64),
        truncated=np.zeros(0, np.int64),
        inputs=[doc] if n else [],
    )


def fingerprint(model: Any, lang: str, vocab: Any) -> str:
    """sha256 over the tok2vec's weights and what its features are read from (the language and
    the vocab's lookup tables, e.g. lexeme_norm), and the width."""
    digest = hashlib.sha256()
    digest.update(model.to_bytes())
    digest.update(lang.encode())
    for name in sorted(vocab.lookups.tables):
        digest.update(name.encode())
        table = vocab.lookups.get_table(name)
        digest.update(repr(sorted(table.items())).encode())
    return f"{digest.hexdigest()[:16]}-{model.get_dim('nO')}"


def _tok2vec_component(nlp: Any, source: str) -> str:
    from spacy.pipeline import Tok2Vec

    found = [name for name, pipe in nlp.components if isinstance(pipe, Tok2Vec)]
    if "tok2vec" in found:
        return "tok2vec"
    if len(found) == 1:
        return str(found[0])
    raise StartupError(
        f"--model {source}: expected one tok2vec component, found {found or 'none'} among {nlp.component_names}"
    )


def _gpu_id(device: str) -> int | None:
    """The GPU to run on through spaCy's own GPU support (cupy), or None for the CPU."""
    if device == "cpu":
        return None
    from thinc.util import has_cupy_gpu  # type: ignore[attr-defined]

    if device == "auto":
        return 0 if has_cupy_gpu else None
    if not has_cupy_gpu:
        raise StartupError(
            f"--device {device}: spaCy's GPU support needs cupy and a CUDA device (pip install cupy-cuda12x)"
        )
    return int(device.split(":")[1]) if ":" in device else 0
