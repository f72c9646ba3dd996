"""HuggingFace encoder -> ONNX graph, with the torch TorchScript exporter.

Inputs ``input_ids`` and ``attention_mask`` (int64, dynamic batch and sequence axes); outputs
``last_hidden_state`` and every hidden state ``hidden_state_{i}`` (0 = embeddings), each
Shape: (batch, sequence, width). A runner asks only for the outputs it needs; the others are
intermediates the graph computes anyway.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

INPUTS = ("input_ids", "attention_mask")
LAST = "last_hidden_state"


def hidden_name(layer: int) -> str:
    return f"hidden_state_{layer}"


class _Encoder(torch.nn.Module):
    """A flat-tuple view of the HF model, as the tracer needs."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        return (out.last_hidden_state, *out.hidden_states)


def load_encoder(model_dir: Path) -> Any:
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    # Eager attention traces to the MatMul/Softmax pattern ORT's fusions recognise (one fused
    # Attention op per layer); the sdpa path traces to a graph they leave unfused.
    return AutoModel.from_pretrained(model_dir, local_files_only=True, attn_implementation="eager").eval()


def example_inputs(vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two rows, the second padded: the trace must keep the padding-mask path (a mask of all ones
    may be short-cut by transformers' masking code and frozen into the graph)."""
    ids = torch.arange(16, dtype=torch.int64).reshape(2, 8) % max(vocab_size - 1, 1) + 1
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    return ids, mask


def trace_to_onnx(model: Any, out: Path, opset: int, ir_version: int) -> int:
    """Write the graph to ``out``; the number of hidden states it exposes."""
    import onnx

    n_layers = int(model.config.num_hidden_layers)
    outputs = [LAST, *(hidden_name(i) for i in range(n_layers + 1))]
    dynamic = {name: {0: "batch", 1: "sequence"} for name in (*INPUTS, *outputs)}
    encoder = _Encoder(model).eval()  # export restores the wrapper's mode onto the model: keep it eval
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        # The TorchScript exporter is deprecated in favour of dynamo=True, but its graphs are the
        # ones ORT's transformer fusions are written for. Its tracer warnings are about data-
        # dependent branches in transformers' mask code whose outcome is fixed for encoders.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # type: ignore[attr-defined]
        warnings.filterwarnings("ignore", message=".*aten::index.*", category=UserWarning)
        torch.onnx.export(
            encoder,
            example_inputs(int(model.config.vocab_size)),
            str(out),
            dynamo=False,
            opset_version=opset,
            input_names=list(INPUTS),
            output_names=outputs,
            dynamic_axes=dynamic,
            do_constant_folding=True,
        )
    graph = onnx.load(str(out))
    if graph.ir_version != ir_version:
        graph.ir_version = ir_version
        onnx.save(graph, str(out))
    return n_layers + 1
