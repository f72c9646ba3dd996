"""A small spancat on UD English EWT two ways, over the same tokvec server:

- ``token rows``: spaCy's own SpanCategorizer.v1: tokvec.RemoteListener.v1 (token rows from the
  server, mean-pooled pieces) as its tok2vec, spacy.mean_max_reducer.v1 (last, first, mean and max of
  each span's token rows, then a Maxout) in the listening process;
- ``span vectors``: tokvec.RemoteSpanCategorizer.v1 with tokvec.RemoteSpanReducer.v1: the server
  pools each suggested span's pieces (last, first, mean, max) from the same forward and sends one
  row per span; the same Maxout and scorer run in the listening process.

Spans (documented choice): gold dependency subtrees. For every word whose relation is nsubj, obj or
obl, the span from its subtree's left edge to its right edge, labelled with the relation, kept when
it is 1 to 3 tokens long so that the ngram suggester (sizes 1-3) can propose it. Train: the first
``--train`` sentences of EWT train; dev: the first ``--dev`` sentences of EWT test. One doc per
sentence. Both pipelines see the same docs, batches, seeds and steps.

Measured per pipeline and seed: spans P/R/F on dev, and the listening process's CPU seconds
(``getrusage``, every thread: gRPC's included) for training and for predicting dev, beside the
server process's CPU seconds over the same phases.

    python examples/spancat_chunks.py       # about 30 minutes on 2 busy shared CPU cores

Writes examples/results/spancat_chunks.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import spacy
from spacy.tokens import Doc, Span
from spacy.training import Example
from spacy.training.converters import conllu_to_docs
from spacy.util import fix_random_seed, minibatch
from thinc.api import Config

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import EWT, Server  # noqa: E402

import tokvec.spacy  # noqa: E402,F401 - registers the layers (an installed tokvec does it by entry point)

LABELS = ("nsubj", "obj", "obl")
RESULTS = Path(__file__).resolve().parent / "results"
HEAD = """
[nlp]
lang = "en"
pipeline = ["spancat"]

[components]

[components.spancat]
factory = "spancat"
spans_key = "sc"
threshold = 0.5

[components.spancat.suggester]
@misc = "spacy.ngram_suggester.v1"
sizes = [1, 2, 3]
"""
SCORER = """
[components.spancat.model.scorer]
@layers = "spacy.LinearLogistic.v1"
"""
MODELS = {
    "token rows": """
[components.spancat.model]
@architectures = "spacy.SpanCategorizer.v1"

[components.spancat.model.tok2vec]
@architectures = "tokvec.RemoteListener.v1"
address = "{address}"
pooling = "mean"

[components.spancat.model.reducer]
@layers = "spacy.mean_max_reducer.v1"
hidden_size = 128
""",
    "span vectors": """
[components.spancat.model]
@architectures = "tokvec.RemoteSpanCategorizer.v1"

[components.spancat.model.reducer]
@layers = "tokvec.RemoteSpanReducer.v1"
address = "{address}"
hidden_size = 128
poolings = ["last", "first", "mean", "max"]
""",
}


def sentences(path: Path, n: int) -> list[Doc]:
    import gzip

    raw = path.read_bytes()
    text = (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode("utf-8")
    blocks = [b for b in text.split("\n\n") if b.strip()][:n]
    return list(conllu_to_docs("\n\n".join(blocks) + "\n\n", n_sents=1, no_print=True))  # type: ignore[no-untyped-call]


def examples(nlp: Any, golds: list[Doc]) -> list[Example]:
    out = []
    for gold in golds:
        gold.spans["sc"] = [
            Span(gold, t.left_edge.i, t.right_edge.i + 1, label=t.dep_)
            for t in gold
            if t.dep_ in LABELS and t.right_edge.i - t.left_edge.i < 3
        ]
        words = [t.text for t in gold]
        out.append(Example(Doc(nlp.vocab, words=words, spaces=[bool(t.whitespace_) for t in gold]), gold))
    return out


def cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cpu_of(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def run_one(
    name: str,
    address: str,
    server: psutil.Process,
    train_golds: list[Doc],
    dev_golds: list[Doc],
    seed: int,
    epochs: int,
) -> dict[str, Any]:
    fix_random_seed(seed)
    config = Config().from_str(HEAD + MODELS[name].replace("{address}", address) + SCORER)
    nlp = spacy.util.load_model_from_config(config, auto_fill=True)
    train, dev = examples(nlp, train_golds), examples(nlp, dev_golds)
    optimizer = nlp.initialize(lambda: train)
    rng = random.Random(seed)
    me, there, wall = cpu_self(), cpu_of(server), time.perf_counter()
    for _ in range(epochs):
        order = train[:]
        rng.shuffle(order)
        for batch in minibatch(order, 16):
            nlp.update(batch, sgd=optimizer, losses={})
    train_cpu, train_server, train_wall = cpu_self() - me, cpu_of(server) - there, time.perf_counter() - wall
    me, there, wall = cpu_self(), cpu_of(server), time.perf_counter()
    scores = nlp.evaluate(dev, batch_size=64)
    dev_cpu, dev_server, dev_wall = cpu_self() - me, cpu_of(server) - there, time.perf_counter() - wall
    return {
        "pipeline": name,
        "seed": seed,
        "p": scores["spans_sc_p"],
        "r": scores["spans_sc_r"],
        "f": scores["spans_sc_f"],
        "train": {"listener_cpu_s": train_cpu, "server_cpu_s": train_server, "wall_s": train_wall},
        "predict": {"listener_cpu_s": dev_cpu, "server_cpu_s": dev_server, "wall_s": dev_wall},
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", type=int, default=300, help="EWT train sentences")
    p.add_argument("--dev", type=int, default=200, help="EWT test sentences")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = p.parse_args()
    train_golds = sentences(EWT / "en_ewt-ud-train.conllu.gz", args.train)
    dev_golds = sentences(EWT / "en_ewt-ud-test.conllu", args.dev)
    load_start = os.getloadavg()
    server = Server()
    runs = []
    try:
        proc = psutil.Process(server.proc.pid)
        for seed in args.seeds:
            # Alternate which pipeline goes first, so that a drift in the machine's load hits both.
            names = list(MODELS) if seed % 2 == 0 else list(reversed(MODELS))
            for name in names:
                runs.append(run_one(name, server.address, proc, train_golds, dev_golds, seed, args.epochs))
                print(json.dumps(runs[-1]), flush=True)
    finally:
        server.stop()
    n_spans = {
        k: sum(len([t for t in g if t.dep_ in LABELS and t.right_edge.i - t.left_edge.i < 3]) for g in golds)
        for k, golds in (("train", train_golds), ("dev", dev_golds))
    }
    result = {
        "train_sentences": args.train,
        "dev_sentences": args.dev,
        "gold_spans": n_spans,
        "epochs": args.epochs,
        "seeds": args.seeds,
        "labels": LABELS,
        "runs": runs,
        "load_avg": {"start": load_start, "end": os.getloadavg()},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "spancat_chunks.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "spancat_chunks.md").write_text(report(result))
    print(report(result))
    return 0


def report(res: dict[str, Any]) -> str:
    la = res["load_avg"]
    lines = [
        "# spancat on server span vectors vs spaCy's own pooled-token span embedding, over the same server",
        "",
        f"`python examples/spancat_chunks.py`: {res['train_sentences']} EWT train sentences ({res['gold_spans']['train']} gold spans), "
        f"{res['dev_sentences']} EWT test sentences ({res['gold_spans']['dev']}) for dev; spans are gold dependency subtrees of "
        f"{', '.join(res['labels'])} words, 1-3 tokens long; ngram suggester 1-3; {res['epochs']} epochs, batches of 16, "
        f"seeds {res['seeds']}. all-MiniLM-L6-v2 frozen on a local `tokvec serve` (CPU). Shared 2-core machine, load average "
        f"{la['start'][0]:.1f} at the start, {la['end'][0]:.1f} at the end: CPU seconds are comparable within a seed, wall time is not.",
        "",
        "| pipeline | seed | P | R | F | train: listener CPU s | train: server CPU s | predict dev: listener CPU s | predict dev: server CPU s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in sorted(res["runs"], key=lambda r: (r["seed"], r["pipeline"])):
        t, d = r["train"], r["predict"]
        lines.append(
            f"| {r['pipeline']} | {r['seed']} | {r['p']:.3f} | {r['r']:.3f} | {r['f']:.3f} | {t['listener_cpu_s']:.1f} | "
            f"{t['server_cpu_s']:.1f} | {d['listener_cpu_s']:.1f} | {d['server_cpu_s']:.1f} |"
        )
    lines += [
        "",
        "| pipeline | mean F | F range over seeds | listener CPU s, train + predict (mean) |",
        "| --- | --- | --- | --- |",
    ]
    for name in ("token rows", "span vectors"):
        mine = [r for r in res["runs"] if r["pipeline"] == name]
        fs = [r["f"] for r in mine]
        cpu = statistics.mean(r["train"]["listener_cpu_s"] + r["predict"]["listener_cpu_s"] for r in mine)
        lines.append(f"| {name} | {statistics.mean(fs):.3f} | {min(fs):.3f}-{max(fs):.3f} | {cpu:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
