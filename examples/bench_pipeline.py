"""Pipeline benchmark: words/s of a tagger + parser listening to a tokvec server vs the same
pipeline with the transformer in-process (spacy-transformers), and the peak memory of each process.

Uses the pipelines train_compare.py trained (their speed does not depend on how well they were
trained). Each side runs in its own fresh process (bench_worker.py); the tokvec side also reports
the server's peak memory, which is paid once however many pipelines listen.

    .venv/bin/python examples/bench_pipeline.py [--work /tmp/tokvec-train-compare]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import EWT, OFFLINE, REF_PYTHON, Server

HERE = Path(__file__).resolve().parent


def worker(python: str, pipeline: Path, *extra: str) -> dict[str, object]:
    cmd = [python, str(HERE / "bench_worker.py"), str(pipeline), str(EWT / "ewt-test.jsonl"), *extra]
    # Run outside the repository (see common.run), with the model folder as the only source of weights.
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=dict(os.environ, **OFFLINE), cwd="/tmp")
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--work", type=Path, default=Path("/tmp/tokvec-train-compare"), help="train_compare.py's --work"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--results", type=Path, default=HERE / "results")
    args = parser.parse_args()
    common = ["--batch-size", str(args.batch_size), "--repeat", str(args.repeat)]

    rows: dict[str, dict[str, object]] = {}
    server = Server()
    try:
        pipeline = args.work / "tokvec" / "model-last"
        rows["tokvec listener (torch blocked)"] = worker(
            sys.executable, pipeline, "--address", server.address, "--block-torch", *common
        )
        rows["tokvec listener (torch importable)"] = worker(
            sys.executable, pipeline, "--address", server.address, *common
        )
        server_rss = server.peak_rss_mib()
    finally:
        server.stop()
    rows["spacy-transformers in-process"] = worker(
        str(REF_PYTHON), args.work / "spacy-transformers" / "model-last", *common
    )

    lines = [
        f"# pipeline benchmark ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, batch_size {args.batch_size}, "
        f"EWT test texts x {args.repeat})",
        "",
        "| process | words/s | peak RSS (MiB) | torch loaded |",
        "|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['words_per_s']} | {r['peak_rss_mib']} | {r['torch_loaded']} |")
    lines.append(f"| tokvec server (shared by all listeners) | - | {server_rss:.1f} | True |")
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "bench_pipeline.json").write_text(
        json.dumps({"rows": rows, "server_peak_rss_mib": server_rss}, indent=1) + "\n"
    )
    (args.results / "bench_pipeline.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
