"""The torch runner's ragged batches (spans end to end, attention kept inside each span) give the
rows of the padded forward, on the real all-MiniLM-L6-v2: for one span alone (its own shortcut) and
for several of different lengths, EWT docs among them."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
import torch

from tokvec_server.runners import default_model_path, ragged
from tokvec_server.runners.batch import Batch
from tokvec_server.runners.torch_runner import TorchRunner


@pytest.fixture(scope="module")
def runner() -> TorchRunner:
    runner = TorchRunner(default_model_path(), "minilm", "cpu", "float32")
    assert runner.ragged, "MiniLM on CPU runs ragged batches"
    return runner


def padded_rows(runner: TorchRunner, batch: Batch) -> torch.Tensor:
    """The rows of the same spans through the model's own attention, padded. Shape: (n_pieces, width)"""
    ids, mask = (torch.from_numpy(a) for a in batch.padded(0))
    runner.model.set_attn_implementation("sdpa")
    try:
        out = runner.model(input_ids=ids, attention_mask=mask).last_hidden_state
    finally:
        runner.model.set_attn_implementation("tokvec_ragged")
    return batch.unpad(out, mask)


@pytest.mark.parametrize("n_docs", [1, 5])
def test_ragged_rows_are_the_padded_rows(runner: TorchRunner, ewt_docs: list[dict[str, Any]], n_docs: int) -> None:
    texts = [" ".join(d["words"][:60]) for d in ewt_docs[3 : 3 + n_docs]]
    batch = Batch.of([np.asarray(ids, np.int64) for ids in runner.tokenizer(texts)["input_ids"]])
    assert len(set(batch.lengths.tolist())) == n_docs, "spans of different lengths"
    with torch.inference_mode():
        got, _ = runner.forward(batch, ())
        want = padded_rows(runner, batch)
    assert got.shape == want.shape == (len(batch.ids), runner.info.width)
    assert float((got - want).abs().max()) <= 1e-5


@pytest.mark.parametrize("kernel", ["loop", "jagged"])
def test_every_kernel_gives_the_padded_rows(runner: TorchRunner, ewt_docs: list[dict[str, Any]], kernel: str) -> None:
    """The CUDA kernels are chosen by a probe on the GPU; the one that also runs on CPU (jagged:
    nested tensors) is checked here on every commit, against the model's own padded attention."""
    from transformers import AttentionInterface

    texts = [" ".join(d["words"][:60]) for d in ewt_docs[3:8]]
    batch = Batch.of([np.asarray(ids, np.int64) for ids in runner.tokenizer(texts)["input_ids"]])
    AttentionInterface.register(ragged.NAME, dict(ragged.KERNELS["cpu"] + ragged.KERNELS["cuda"])[kernel])
    try:
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch calls nested tensors a prototype
            got = ragged.forward(runner.model, batch, runner.device, False).last_hidden_state[0]
            want = padded_rows(runner, batch)
    finally:
        AttentionInterface.register(ragged.NAME, ragged.loop_attention)
    assert float((got - want).abs().max()) <= 1e-5


def test_ragged_off_by_setting() -> None:
    runner = TorchRunner(default_model_path(), "minilm", "cpu", "float32", try_ragged=False)
    assert (runner.ragged, runner.attention) == (False, "")
