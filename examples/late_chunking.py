"""Late chunking on UD English EWT test, shown and measured, nothing more.

Each doc is cut into chunks of 3 sentences (the gold sentence starts). Two vectors per chunk:

- late: the doc embedded once, whole (windows as wide as the model takes, ``pieces:W:S``), then the
  chunk's pieces pooled (mean) into its vector: ``chunk_vectors`` from the same forward;
- alone: the chunk's words embedded as a doc of their own (``doc`` spans): its ``doc_vector`` (the
  mean over all its pieces, [CLS] and [SEP] included: all-MiniLM-L6-v2's sentence embedding
  before normalisation), and, like for like with late, the mean over its word pieces only.

Reported: the cosine of each chunk's late vector to its alone vector, and how much of its document
each vector carries: the mean cosine of a chunk to the other chunks of its doc, beside the mean
cosine to chunks of other docs (the level any two EWT chunks share), late vs alone. No retrieval
quality is measured, and none is claimed.

    python examples/late_chunking.py        # a few minutes on 2 shared CPU cores

Writes examples/results/late_chunking.{json,md}.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import EWT, Server  # noqa: E402

from tokvec import Client  # noqa: E402

SENTS_PER_CHUNK = 3
RESULTS = Path(__file__).resolve().parent / "results"


def chunks_of(doc: dict[str, Any]) -> list[tuple[int, int]]:
    """[start, end) token ranges of 3 gold sentences each (the last may hold fewer)."""
    starts = [i for i, s in enumerate(doc["sent_starts"]) if s or i == 0]
    bounds = starts[::SENTS_PER_CHUNK] + [len(doc["words"])]
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def context_cosines(vectors: list[np.ndarray]) -> tuple[float, float]:
    """Mean cosine of a chunk to the other chunks of its doc, and to the chunks of other docs
    (every pair once, each doc's vectors a (n_chunks, width) array)."""
    normed = [unit(v) for v in vectors]
    doc_of = np.concatenate([np.full(len(v), i) for i, v in enumerate(normed)])
    every = np.concatenate(normed)
    sims = every @ every.T
    upper = np.triu(np.ones_like(sims, dtype=bool), k=1)
    same = (doc_of[:, None] == doc_of[None, :]) & upper
    other = (doc_of[:, None] != doc_of[None, :]) & upper
    return float(sims[same].mean()), float(sims[other].mean())


def main() -> int:
    with (EWT / "ewt-test.jsonl").open() as f:
        docs = [json.loads(line) for line in f]
    docs = [d for d in docs if len(chunks_of(d)) >= 2]  # a chunk needs other chunks in its doc
    load_start = os.getloadavg()
    server = Server()
    try:
        with Client(server.address, timeout=600) as client:
            max_length = client.info().model.max_length
            window = max_length - 2  # [CLS] and [SEP]
            spans = f"pieces:{window}:{window * 3 // 4}"
            started = time.perf_counter()
            late = []
            for start in range(0, len(docs), 16):
                batch = docs[start : start + 16]
                results = client.embed_results(
                    batch, spans=spans, outputs=("chunk_vectors",), chunks=[chunks_of(d) for d in batch]
                )
                late += [r.chunk_vectors[0] for r in results]
            late_s = time.perf_counter() - started
            pieces_alone, sentence_alone = [], []
            started = time.perf_counter()
            for doc in docs:
                parts = [{"words": doc["words"][a:b], "spaces": doc["spaces"][a:b]} for a, b in chunks_of(doc)]
                results = client.embed_results(
                    parts,
                    spans="doc",
                    outputs=("doc_vector", "chunk_vectors"),
                    chunks=[[(0, len(p["words"]))] for p in parts],
                )
                sentence_alone.append(np.stack([r.doc_vector for r in results]))
                pieces_alone.append(np.concatenate([r.chunk_vectors[0] for r in results]))
            alone_s = time.perf_counter() - started
    finally:
        server.stop()
    n_chunks = sum(len(v) for v in late)
    late_vs_sentence = [float(x) for v_l, v_s in zip(late, sentence_alone) for x in (unit(v_l) * unit(v_s)).sum(1)]
    late_vs_pieces = [float(x) for v_l, v_p in zip(late, pieces_alone) for x in (unit(v_l) * unit(v_p)).sum(1)]
    rows = {
        name: context_cosines(vectors)
        for name, vectors in (
            ("late", late),
            ("alone, word pieces", pieces_alone),
            ("alone, sentence embedding", sentence_alone),
        )
    }
    result = {
        "docs": len(docs),
        "chunks": n_chunks,
        "sentences_per_chunk": SENTS_PER_CHUNK,
        "late_spans": spans,
        "cosine_late_to_alone": {
            "sentence embedding": {"mean": statistics.mean(late_vs_sentence), "min": min(late_vs_sentence)},
            "word pieces": {"mean": statistics.mean(late_vs_pieces), "min": min(late_vs_pieces)},
        },
        "mean_cosine": {
            name: {"same_doc": same, "other_docs": other, "difference": same - other}
            for name, (same, other) in rows.items()
        },
        "seconds": {"late (one forward per doc)": late_s, "alone (one forward per chunk)": alone_s},
        "load_avg": {"start": load_start, "end": os.getloadavg()},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "late_chunking.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "late_chunking.md").write_text(report(result))
    print(report(result))
    return 0


def report(res: dict[str, Any]) -> str:
    c = res["cosine_late_to_alone"]
    lines = [
        "# Late chunking on EWT test: chunk vectors from one forward vs each chunk embedded alone",
        "",
        f"`python examples/late_chunking.py`: {res['docs']} EWT test docs with at least two chunks, {res['chunks']} chunks of "
        f"{res['sentences_per_chunk']} gold sentences. Late: each doc embedded once with spans `{res['late_spans']}` (windows as wide "
        "as all-MiniLM-L6-v2 takes), each chunk's pieces mean-pooled (`chunk_vectors`). Alone: each chunk's words sent as a doc of "
        "their own with spans `doc`: the sentence embedding (`doc_vector`: mean over all pieces, specials included) and the mean over "
        "its word pieces only (`chunk_vectors` of the whole chunk, the same pooling as late).",
        "",
        "| | mean | min |",
        "| --- | --- | --- |",
        f"| cosine(late, alone sentence embedding) | {c['sentence embedding']['mean']:.3f} | {c['sentence embedding']['min']:.3f} |",
        f"| cosine(late, alone word pieces) | {c['word pieces']['mean']:.3f} | {c['word pieces']['min']:.3f} |",
        "",
        "Document context: mean cosine of a chunk to the other chunks of its doc, and to the chunks of every other doc "
        "(all pairs once).",
        "",
        "| vectors | same doc | other docs | difference |",
        "| --- | --- | --- | --- |",
    ]
    for name, m in res["mean_cosine"].items():
        lines.append(f"| {name} | {m['same_doc']:.3f} | {m['other_docs']:.3f} | {m['difference']:.3f} |")
    s = res["seconds"]
    la = res["load_avg"]
    lines += [
        "",
        f"Time (shared 2-core machine, load average {la['start'][0]:.1f} at the start, {la['end'][0]:.1f} at the end): "
        + ", ".join(f"{k} {v:.1f}s" for k, v in s.items())
        + ".",
        "",
        "The difference column is the document context a vector carries beyond what any two EWT chunks share. "
        "Whether any of this helps retrieval is not measured here. Caveat: all-MiniLM-L6-v2 was trained on inputs of at most "
        "256 pieces (sentence-transformers' max_seq_length); the late windows here reach 510, as far as its position "
        "embeddings go and the server allows, so the longer docs are embedded past its training length.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
