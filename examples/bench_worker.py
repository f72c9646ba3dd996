"""One side of bench_pipeline.py, in its own process so that its memory is its own: load a
pipeline, annotate the EWT test texts, print one JSON line (words/s, peak RSS, torch loaded?).
Needs only spaCy (and tokvec or spacy-transformers for the pipeline's components)."""

from __future__ import annotations

import argparse
import importlib.abc
import json
import resource
import sys
import time
from typing import Any


class BlockTorch(importlib.abc.MetaPathFinder):
    """Make torch unimportable, as in an install of tokvec[spacy], which has no torch. (thinc
    imports torch whenever it is installed, whether a pipeline needs it or not.)"""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by bench_worker)", name=name)
        return None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("pipeline")
    parser.add_argument("texts", help="a .jsonl file with a 'text' field per line")
    parser.add_argument("--address", default="", help="tokvec server address (overrides the saved one)")
    parser.add_argument("--component", default="tokvec", help="the tokvec_transformer component --address is for")
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds a call to the server may take (with --address)"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--block-torch", action="store_true")
    args = parser.parse_args()
    if args.block_torch:
        sys.meta_path.insert(0, BlockTorch())

    import spacy

    overrides = (
        {"components": {args.component: {"address": args.address, "timeout": args.timeout}}} if args.address else {}
    )
    start = time.perf_counter()
    nlp = spacy.load(args.pipeline, config=overrides)
    load_s = time.perf_counter() - start
    with open(args.texts, encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f if line.strip()]
    list(nlp.pipe(texts[:8], batch_size=args.batch_size))  # warm up: channel, caches, allocator
    words, seconds = 0, 0.0
    for _ in range(args.repeat):
        start = time.perf_counter()
        words += sum(len(doc) for doc in nlp.pipe(texts, batch_size=args.batch_size))
        seconds += time.perf_counter() - start
    print(
        json.dumps(
            {
                "pipeline": args.pipeline,
                "components": nlp.pipe_names,
                "words": words,
                "seconds": round(seconds, 2),
                "words_per_s": round(words / seconds),
                "load_s": round(load_s, 2),
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "torch_loaded": "torch" in sys.modules,
                "python": sys.executable,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
