"""Span features from the server, for spaCy's span-level components (spancat, and any model that
takes ``(docs, spans)``): ``tokvec.RemoteSpanReducer.v1`` asks a tokvec server for each span's
pooled vectors, pooled there from the same forward as token rows would be, so that the listening
process neither receives token rows nor reduces them; ``tokvec.RemoteSpanCategorizer.v1`` puts it
in place of SpanCategorizer.v1's tok2vec + reducer.

In spaCy's own spancat, ``spacy.mean_max_reducer.v1`` concatenates the last, first, mean and max
of each span's token rows, then a Maxout. The server pools pieces rather than token rows: the
defaults ask for the same four poolings over the span's pieces, then the same Maxout.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Maxout, Model, chain
from thinc.types import Floats2d, Ragged

from tokvec.spacy.remote import Remote, RemoteSettings, check_model

SpanInput = tuple[list[Doc], Ragged]


class RemoteSpanVectors(Model[SpanInput, Floats2d]):
    """(docs, spans) -> one row per span: the server's chunk vectors of each pooling, side by side.

    ``spans`` is spaCy's suggester output: a Ragged whose data holds (start, end) token indices,
    ``lengths[i]`` of them for doc i. The server's encoder is frozen: no gradient flows back."""

    name = "tokvec-remote-span-vectors"

    def __init__(self, remote: Remote, poolings: Sequence[str], width: int | None) -> None:
        n_out = width * len(poolings) if width else None
        Model.__init__(
            self,
            name=self.name,
            forward=_forward,
            init=_init,
            dims={"nO": n_out},
            attrs={"fingerprint": "", "width": width or 0},
        )
        self.remote = remote
        self.poolings = tuple(poolings)
        self.who = "tokvec.RemoteSpanReducer.v1"

    def vectors(self, docs: list[Doc], spans: Ragged) -> np.ndarray:
        """Shape: (total spans, width * len(poolings)), docs in order, spans in their order."""
        data = self.ops.to_numpy(spans.dataXd).astype(np.int64).reshape(-1, 2)
        lengths = self.ops.to_numpy(spans.lengths).astype(np.int64)
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        width = int(self.attrs["width"])
        asked = [i for i, n in enumerate(lengths) if n]
        out = np.zeros((len(data), width * len(self.poolings)), dtype=np.float32)
        if not asked:
            return out
        chunks = [data[bounds[i] : bounds[i + 1]].tolist() for i in asked]
        results = self.remote.embed([docs[i] for i in asked], self.who, chunks=chunks, chunk_poolings=self.poolings)
        check_model(
            results,
            fingerprint=str(self.attrs["fingerprint"]),
            width=None,
            who=self.who,
            target=self.remote.target,
            fix="Point address at the server this pipeline was trained with.",
        )
        for i, result in zip(asked, results):
            out[bounds[i] : bounds[i + 1]] = np.concatenate(result.chunk_vectors, axis=1)
        return out


def _forward(
    model: RemoteSpanVectors, X: SpanInput, is_train: bool
) -> tuple[Floats2d, Callable[[Floats2d], SpanInput]]:
    docs, spans = X
    rows = model.ops.asarray2f(model.vectors(docs, spans))
    return rows, lambda d_rows: X  # frozen: nothing upstream of the server's vectors learns


def _init(model: RemoteSpanVectors, X: SpanInput | None = None, Y: object = None) -> None:
    """Width and fingerprint from the server, when the config left them out."""
    info = model.remote.model_info(model.who)
    expected = str(model.attrs["fingerprint"])
    if expected and info.fingerprint != expected:
        from tokvec.spacy.errors import ModelMismatchError

        raise ModelMismatchError(
            f"{model.who}: tokvec server {model.remote.target} serves model {info.fingerprint!r}, not {expected!r}",
            target=model.remote.target,
        )
    model.attrs["fingerprint"] = info.fingerprint
    model.attrs["width"] = info.width
    model.set_dim("nO", info.width * len(model.poolings), force=True)


def remote_span_reducer(
    address: str | list[str],
    hidden_size: int = 128,
    poolings: list[str] = ["last", "first", "mean", "max"],  # noqa: B006 - a config default, never mutated
    spans: str = "tokens:128:96",
    width: int | None = None,
    timeout: float = 60.0,
    model: str = "",
    token_env: str = "",
    tls: bool = False,
    ca_file: str = "",
) -> Model[SpanInput, Floats2d]:
    """(docs, spans) -> (n_spans, hidden_size): the server's span vectors, then a Maxout as in
    spacy.mean_max_reducer.v1. ``width`` (the server's) is learned at initialize if left out."""
    settings = RemoteSettings.build(
        address, spans=spans, timeout=timeout, model=model, token_env=token_env, tls=tls, ca_file=ca_file
    )
    vectors = RemoteSpanVectors(Remote(settings), poolings, width)
    reducer: Model[SpanInput, Floats2d] = chain(vectors, Maxout(nO=hidden_size, normalize=True, dropout=0.0))
    reducer.set_ref("span_vectors", vectors)
    return reducer


def remote_span_categorizer(
    reducer: Model[SpanInput, Floats2d], scorer: Model[Floats2d, Floats2d]
) -> Model[SpanInput, Floats2d]:
    """spacy.SpanCategorizer.v1 with the server's span vectors in place of its tok2vec + reducer."""
    model: Model[SpanInput, Floats2d] = chain(reducer, scorer)
    model.set_ref("reducer", reducer)
    model.set_ref("scorer", scorer)
    return model


registry.layers.register("tokvec.RemoteSpanReducer.v1", func=remote_span_reducer)
registry.architectures.register("tokvec.RemoteSpanCategorizer.v1", func=remote_span_categorizer)
