"""Where a served doc's host time goes, stage by stage, with the server's own code on one thread:
validate + tokenize + align, pool + cast + copy to host (from rows already on the device), and
serialize to protobuf. Each stage's words/s is the ceiling it alone puts on one core; the null
forward server (the fake model on the same device) measures them together, end to end."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from corpus import SPANS

GROUP = 64  # docs pooled and copied together, about what one batch completes


def host_stages(folder: Path, docs: list[dict[str, Any]], device: str, width: int) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from tokvec_server.alignment import Specials, plan_docs
    from tokvec_server.batching.collect import to_host
    from tokvec_server.batching.jobs import DocOutput
    from tokvec_server.pooling import pool
    from tokvec_server.rpc import convert
    from tokvec_server.settings import Limits
    from tokvec_server.types import DocInput, DType, Pooling, SpanSpec
    from tokvec_server.validation import SpacyWords, check_doc

    tokenizer = AutoTokenizer.from_pretrained(folder, use_fast=True)
    specials, limits, words = Specials.of(tokenizer), Limits(), SpacyWords()
    n_words = sum(len(d["words"]) for d in docs)
    dev = torch.device(device)
    seconds: dict[str, float] = {}

    started = time.perf_counter()
    tokens = [
        check_doc(DocInput(id=d["id"], words=d["words"], spaces=d["spaces"]), i, limits, words, False)
        for i, d in enumerate(docs)
    ]
    plans = plan_docs(tokens, SpanSpec.parse(SPANS), tokenizer, 512, specials)
    seconds["validate_tokenize_align"] = time.perf_counter() - started

    pooled: list[np.ndarray] = []
    seconds["pool_cast_copy"] = 0.0
    for a in range(0, len(plans), GROUP):
        group = plans[a : a + GROUP]
        sizes = [p.n_pieces for p in group]
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        rows = torch.randn(
            (sum(sizes), width), device=dev, dtype=torch.float16 if dev.type == "cuda" else torch.float32
        )
        if dev.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        lengths = np.concatenate([p.align_lengths for p in group])
        indices = np.concatenate([p.align_indices + o for p, o in zip(group, offsets)])
        host = to_host(pool(rows, lengths, indices, Pooling.MEAN), DType.FLOAT16)
        seconds["pool_cast_copy"] += time.perf_counter() - started
        pooled += np.split(host, np.cumsum([p.n_tokens for p in group])[:-1])

    started = time.perf_counter()
    size = 0
    for i, (t, plan, rows_) in enumerate(zip(tokens, plans, pooled)):
        out = DocOutput(doc=t, plan=plan, rows=rows_, layers=[], pieces=None, doc_vector=None)
        size += sum(len(m.SerializeToString()) for m in convert.results(i, out, "fingerprint", DType.FLOAT16))
    seconds["serialize"] = time.perf_counter() - started

    return {
        "words": n_words,
        "docs": len(docs),
        "device": device,
        "width": width,
        "response_bytes": size,
        "stages": {k: {"seconds": s, "words_per_s": n_words / s} for k, s in seconds.items()},
        "all_stages_words_per_s": n_words / sum(seconds.values()),
    }
