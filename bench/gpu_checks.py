"""The GPU run's correctness half: encoders built from a config with a fixed seed, the service's
token rows on every device and dtype against float32 rows, and the bytes that cross from the
device to the host per batch.

Rows come from the server's own Engine in this process (validation, alignment, batching, the
runner, pooling and the cast on the device, the copy to host): everything a caller's rows go
through except the protobuf bytes, which are a plain copy of the same arrays.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

# The two encoder sizes the issue names: all-MiniLM-L6-v2's shape, and BERT-base's. Random weights
# cost what trained ones cost, and both devices load the same file, so rows must still agree.
SIZES = {
    "minilm": {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536},
    "bert-base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072},
}
TINY = {  # --dry-run: the same steps on CPU in seconds
    "minilm": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128},
    "bert-base": {"hidden_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 192},
}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")
FP32_TOLERANCE = 1e-4  # CUDA float32 rows against CPU float32 rows, TF32 off
HALF_COSINE = 0.999  # float16 / bfloat16 rows against float32 rows, every token
PER_BATCH_BYTES = 256  # device -> host bytes a batch may copy beside its pooled rows (flags, counts)


def copy_tokenizer(source: Path, out: Path) -> Path:
    """The tokenizer files of a model folder, alone (what travels to the GPU machine)."""
    out.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy(source / name, out / name)
    return out


def build_model(name: str, tokenizer: Path, out: Path, tiny: bool) -> Path:
    """A BERT encoder of the named size with seeded random weights, saved with the tokenizer."""
    from transformers import BertConfig, BertModel

    vocab = sum(1 for _ in (tokenizer / "vocab.txt").open(encoding="utf-8"))
    config = BertConfig(vocab_size=vocab, max_position_embeddings=512, **(TINY if tiny else SIZES)[name])
    torch.manual_seed(0)
    folder = out / name
    BertModel(config).eval().save_pretrained(folder, safe_serialization=True)
    copy_tokenizer(tokenizer, folder)
    return folder


@dataclass(frozen=True)
class Variant:
    """One way of serving a model: device, compute dtype, ragged or padded batches."""

    device: str
    dtype: str
    ragged: bool

    @property
    def name(self) -> str:
        return f"{self.device} {self.dtype} {'ragged' if self.ragged else 'padded'}"


def variants(cuda: bool) -> list[Variant]:
    """The reference (CPU float32) first, then what is compared with it."""
    if not cuda:
        return [Variant("cpu", "float32", True), Variant("cpu", "float32", False)]
    return [Variant("cpu", "float32", True)] + [
        Variant("cuda", d, r) for d in ("float32", "float16", "bfloat16") for r in (False, True)
    ]


class InProcess:
    """One model served by the server's own Engine, without the RPC layer."""

    def __init__(self, folder: Path, variant: Variant, budget: int) -> None:
        from tokvec_server.engine import Engine
        from tokvec_server.runners import load_runner
        from tokvec_server.settings import Batching, Limits, ModelSettings
        from tokvec_server.validation import SpacyWords

        settings = ModelSettings(
            path=str(folder),
            name=variant.name,
            device=variant.device,
            dtype=variant.dtype,
            ragged=variant.ragged,
            batching=Batching(max_batch_items=budget),
        )
        self.runner = load_runner(settings)
        self.engine = Engine(settings, Limits(), self.runner, SpacyWords(), self._fatal)
        self.loop = asyncio.new_event_loop()
        self.engine.start()

    @staticmethod
    def _fatal(exc: BaseException) -> None:
        raise SystemExit(f"model thread died: {exc}")

    def rows(
        self, docs: list[dict[str, Any]], pooling: str = "mean", spans: str = "tokens:128:96", dtype: str = "float32"
    ) -> list[np.ndarray]:
        """Each doc's token rows, float32 on the host. Shape: (n_words, width) each."""
        from tokvec_server.types import DocInput, DType, EmbedOptions, Pooling, SpanSpec

        options = EmbedOptions(pooling=Pooling(pooling), spans=SpanSpec.parse(spans), dtype=DType(dtype))
        inputs = [DocInput(id=d["id"], words=d["words"], spaces=d["spaces"]) for d in docs]

        async def go() -> list[np.ndarray]:
            return [(await f).rows for f in await self.engine.embed(inputs, options)]  # type: ignore[misc]

        return [as_float32(r) for r in self.loop.run_until_complete(go())]

    def stop(self) -> None:
        self.engine.stop()
        self.loop.close()
        del self.runner, self.engine
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def as_float32(rows: np.ndarray) -> np.ndarray:
    """Wire rows as float32: bfloat16 arrives as its raw 16 bits (uint16), the high half of a float32."""
    if rows.dtype == np.uint16:
        return (rows.astype(np.uint32) << 16).view(np.float32)
    return rows.astype(np.float32)


def compare(got: list[np.ndarray], want: list[np.ndarray]) -> dict[str, float]:
    """Max |diff| and the per-token cosine (tokens with a row in both) over all docs."""
    a, b = np.concatenate(got), np.concatenate(want)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    live = norms > 0
    cosine = (a * b).sum(1)[live] / norms[live]
    return {
        "max_abs_diff": float(np.abs(a - b).max()),
        "cosine_min": float(cosine.min()),
        "cosine_mean": float(cosine.mean()),
        "tokens": int(len(a)),
        "zero_rows_agree": bool(((np.linalg.norm(a, axis=1) == 0) == (np.linalg.norm(b, axis=1) == 0)).all()),
    }


def parity(folder: Path, docs: list[dict[str, Any]], cuda: bool, budget: int, say: Any) -> dict[str, Any]:
    """Every variant's rows against the reference's: float32 within FP32_TOLERANCE, half precision
    at HALF_COSINE per token. Also which attention kernel each variant's runner chose."""
    torch.backends.cuda.matmul.allow_tf32 = False  # the float32 comparison is of float32 arithmetic
    torch.backends.cudnn.allow_tf32 = False
    out: dict[str, Any] = {}
    reference: list[np.ndarray] = []
    fp32: dict[bool, list[np.ndarray]] = {}
    for v in variants(cuda):
        served = InProcess(folder, v, budget)
        try:
            rows = served.rows(docs)
            attention = getattr(served.runner, "attention", "")
        finally:
            served.stop()
        if not reference:
            reference = rows
            out[v.name] = {"reference": True, "attention": attention}
            continue
        if v.dtype == "float32":
            fp32[v.ragged] = rows
            result = compare(rows, reference)
            result["ok"] = result["max_abs_diff"] <= FP32_TOLERANCE and result["zero_rows_agree"]
            result["against"] = "cpu float32"
        else:
            result = compare(rows, fp32.get(v.ragged, reference))
            result["ok"] = result["cosine_min"] >= HALF_COSINE and result["zero_rows_agree"]
            result["against"] = f"{v.device} float32 {'ragged' if v.ragged else 'padded'}"
        result["attention"] = attention
        out[v.name] = result
        say(
            f"parity {folder.name} {v.name} ({attention or 'padded'}) vs {result['against']}: max |diff| {result['max_abs_diff']:.2e}, "
            f"min cosine {result['cosine_min']:.6f} -> {'ok' if result['ok'] else 'FAILED'}"
        )
    return out


def device_to_host(folder: Path, docs: list[dict[str, Any]], variant: Variant, budget: int) -> dict[str, Any]:
    """Bytes copied from the device to the host while ``docs`` are embedded (CUDA's own record of
    its copies, through the profiler), against the bytes of the pooled rows the callers get.

    Pooling and the cast to the wire dtype happen on the device, so what crosses is the token rows
    in the wire dtype and a few bytes per batch (one finite flag, the count behind a boolean mask).
    Piece rows never cross."""
    from torch.profiler import ProfilerActivity, profile

    served = InProcess(folder, variant, budget)
    try:
        served.rows(docs[:4], dtype="float16")  # warm: the first batch's allocations are not the steady state
        before = dict(served.engine.worker.stats)
        cuda = variant.device == "cuda"
        with profile(activities=[ProfilerActivity.CUDA] if cuda else [ProfilerActivity.CPU]) as prof:
            rows = served.rows(docs, dtype="float16")
            if cuda:
                torch.cuda.synchronize()
        stats = {k: v - before[k] for k, v in served.engine.worker.stats.items()}
        width = served.runner.info.width
    finally:
        served.stop()
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(trace))
        events = json.loads(trace.read_text()).get("traceEvents", [])
    copies = [e for e in events if e.get("cat") == "gpu_memcpy" and "DtoH" in e.get("name", "")]
    dtoh = sum(int(e.get("args", {}).get("bytes", 0)) for e in copies)
    tokens = sum(len(r) for r in rows)
    pooled = tokens * width * 2  # float16 on the wire
    pieces = int(stats["real_pieces"])
    allowance = PER_BATCH_BYTES * max(int(stats["batches"]), 1)
    return {
        "variant": variant.name,
        "device_to_host_bytes": dtoh,
        "copies": len(copies),
        "pooled_row_bytes": pooled,
        "piece_row_bytes": pieces * width * 2,
        "tokens": tokens,
        "pieces": pieces,
        "batches": int(stats["batches"]),
        "bytes_per_batch": dtoh / max(int(stats["batches"]), 1),
        "extra_bytes": dtoh - pooled,
        "allowed_extra_bytes": allowance,
        "ok": (pooled <= dtoh <= pooled + allowance) if cuda else None,
        "note": "" if cuda else "CPU: nothing crosses a device boundary (dry run)",
    }
