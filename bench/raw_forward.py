"""The raw in-process forward of a service backend: torch AutoModel on the same model, or an ONNX
Runtime session on its export, the same tokens:128:96 spans, batches under the same padded-piece
budget, and nothing else (no alignment, no pooling, no copy to a caller). Prints one JSON object.

    .venv/bin/python bench/raw_forward.py [--quick] [--model DIR] [--backend torch|onnx]
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse
import json
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from corpus import BUDGET, SPANS, Packing, default_model, load_docs, n_words, pack, span_texts


def padded(spans: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and attention mask. Shape: (rows, longest) each."""
    longest = max(len(s) for s in spans)
    ids = np.full((len(spans), longest), pad_id, dtype=np.int64)
    mask = np.zeros((len(spans), longest), dtype=np.int64)
    for row, span in enumerate(spans):
        ids[row, : len(span)] = span
        mask[row, : len(span)] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


Forward = Callable[[torch.Tensor, torch.Tensor], Any]


def torch_forward(folder: str) -> Forward:
    from transformers import AutoModel

    model = AutoModel.from_pretrained(folder).eval()
    return lambda ids, mask: model(input_ids=ids, attention_mask=mask)


def onnx_forward(folder: str) -> Forward:
    """The export's graph on the CPU provider, opened as the onnx runner opens it."""
    from tokvec_server.export import MODEL_FILE
    from tokvec_server.runners.onnx_runner import CPU, open_session

    session = open_session(str(Path(folder) / MODEL_FILE), CPU, 0, "bench")
    return lambda ids, mask: session.run(
        ["last_hidden_state"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
    )


def run_batches(forward: Forward, spans: list[list[int]], packing: Packing, pad_id: int) -> tuple[float, float]:
    """Wall seconds and CPU seconds (all threads) to run every batch of ``packing`` through the model."""
    started, cpu = time.perf_counter(), time.process_time()
    for batch in packing.batches:
        forward(*padded([spans[i] for i in batch], pad_id))
    return time.perf_counter() - started, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--model", default="", help="model folder (onnx: an export folder)")
    parser.add_argument("--backend", choices=("torch", "onnx"), default="torch")
    args = parser.parse_args()
    from transformers import AutoTokenizer

    folder = args.model or default_model()
    tokenizer = AutoTokenizer.from_pretrained(folder, use_fast=True)
    forward = onnx_forward(folder) if args.backend == "onnx" else torch_forward(folder)
    max_length = min(int(tokenizer.model_max_length), 512)
    pad_id = int(tokenizer.pad_token_id or 0)
    docs = load_docs(quick=args.quick)

    started = time.perf_counter()
    texts = [t for d in docs for t in span_texts(d)]
    # Cut at the model's limit as spacy-transformers (and the service) do; EWT windows never reach it.
    spans = [ids[:max_length] for ids in tokenizer(texts, add_special_tokens=True, verbose=False)["input_ids"]]
    tokenize_s = time.perf_counter() - started
    lengths = [len(s) for s in spans]
    words = n_words(docs)

    out: dict[str, Any] = {
        "model": folder,
        "backend": args.backend,
        "spans": SPANS,
        "budget": BUDGET,
        "docs": len(docs),
        "words": words,
        "spans_count": len(spans),
        "pieces": sum(lengths),
        "tokenize_s": tokenize_s,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    with torch.inference_mode():
        warm = pack([min(128, max_length)] * (BUDGET // 128))
        run_batches(forward, [[pad_id] * 128] * len(warm.batches[0]), warm, pad_id)
        for name, sort in (("sorted", True), ("arrival", False)):
            packing = pack(lengths, BUDGET, sort=sort)
            seconds, cpu_s = run_batches(forward, spans, packing, pad_id)
            out[name] = {
                "seconds": seconds,
                "cpu_s": cpu_s,
                "words_per_s": words / seconds,
                "pieces_per_s": packing.real / seconds,
                "padded_pieces": packing.padded,
                "padding_efficiency": packing.efficiency,
                "batches": len(packing.batches),
            }

    out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kB
    print(json.dumps(out))


if __name__ == "__main__":
    main()
