"""Load a spaCy pipeline's tok2vec and run it: the caller's words become spaCy Docs on the
pipeline's own vocab (its NORM, PREFIX, SUFFIX, SHAPE features come from there), and the model
gives one row per token."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from tokvec_server.runners.base import ModelInfo, StartupError, one_line
from tokvec_server.settings import ModelSettings
from tokvec_server.types import DType, Tokens

log = logging.getLogger("tokvec.tok2vec")

# Every new word adds a lexeme and a string to the vocab, for good: a long-running server would
# grow without bound. Past this many new strings the vocab is reloaded from the pipeline (the
# model's weights do not depend on it; docs in flight keep the old one alive until they finish).
VOCAB_GROWTH_LIMIT = 500_000


class Tok2VecRunner:
    """The ``tok2vec`` component of an installed pipeline (by name) or a pipeline folder."""

    def __init__(self, settings: ModelSettings) -> None:
        import spacy

        if not settings.path:
            raise StartupError("--model: the tok2vec backend needs an installed spaCy pipeline's name or a pipeline folder")
        self.source = settings.path
        self.gpu = _gpu_id(settings.device)
        if self.gpu is not None:
            spacy.require_gpu(self.gpu)  # type: ignore[attr-defined]  # before loading: the model's arrays are made on the GPU
        try:
            nlp = spacy.load(self.source)
        except (OSError, ValueError, KeyError) as exc:
            raise StartupError(f"--model {self.source}: not an installed spaCy pipeline or a pipeline folder ({one_line(exc)})") from None
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
        self.info = ModelInfo(name, fingerprint(self.model, str(nlp.lang), nlp.vocab), width, 0, 0, "tok2vec", device, DType.FLOAT32)
        self.component = component

    def enter_thread(self) -> None:
        """Make this thread's GPU the model's (cupy's current device is per thread)."""
        if self.gpu is not None:
            import cupy  # type: ignore[import-not-found]

            cupy.cuda.Device(self.gpu).use()

    def docs(self, batch: list[Tokens]) -> list[Any]:
        """spaCy Docs for validated tokens. Call from one thread only: a Vocab is not safe to grow from two."""
        from spacy.tokens import Doc

        if len(self.vocab.strings) > self._strings_at_load + VOCAB_GROWTH_LIMIT:
            self._reload_vocab()
        return [Doc(self.vocab, words=t.words, spaces=t.spaces) for t in batch]

    def predict(self, docs: list[Any]) -> list[np.ndarray]:
        """One float32 array per doc. Shape: (n_tokens, width)."""
        rows = self.model.predict(docs)
        return [np.ascontiguousarray(self.model.ops.to_numpy(r), dtype=np.float32) for r in rows]

    def _reload_vocab(self) -> None:
        import spacy

        log.info("tok2vec: the vocab grew by %d strings; reloading it from %s", len(self.vocab.strings) - self._strings_at_load, self.source)
        self.vocab = spacy.load(self.source, exclude=self.pipe_names).vocab
        self._strings_at_load = len(self.vocab.strings)


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
    raise StartupError(f"--model {source}: expected one tok2vec component, found {found or 'none'} among {nlp.component_names}")


def _gpu_id(device: str) -> int | None:
    """The GPU to run on through spaCy's own GPU support (cupy), or None for the CPU."""
    if device == "cpu":
        return None
    from thinc.util import has_cupy_gpu  # type: ignore[attr-defined]

    if device == "auto":
        return 0 if has_cupy_gpu else None
    if not has_cupy_gpu:
        raise StartupError(f"--device {device}: spaCy's GPU support needs cupy and a CUDA device (pip install cupy-cuda12x)")
    return int(device.split(":")[1]) if ":" in device else 0
