"""A HuggingFace encoder (AutoModel + fast tokenizer) from a local folder, run with torch."""

from __future__ import annotations

from pathlib import Path

import torch

from tokvec_server.runners import ragged
from tokvec_server.runners.base import (
    TORCH_DTYPES,
    ModelInfo,
    StartupError,
    WordpieceRunner,
    fingerprint,
    one_line,
    resolve_device,
    resolve_dtype,
)
from tokvec_server.runners.batch import Batch
from tokvec_server.threads import one_thread


def _max_length(tokenizer: object, config: object) -> int:
    # Tokenizers without a limit report a huge sentinel; fall back on the position table.
    declared = getattr(tokenizer, "model_max_length", None) or 0
    positions = getattr(config, "max_position_embeddings", None) or 512
    return int(declared) if 0 < declared <= positions else int(positions)


class TorchRunner(WordpieceRunner):
    def __init__(self, folder: Path, name: str, device: str, dtype: str, try_ragged: bool = True) -> None:
        # The loading thread, and the probe forward it runs, make no OpenMP pool (one_thread says why).
        with one_thread():
            self._load(folder, name, device, dtype, try_ragged)

    def _load(self, folder: Path, name: str, device: str, dtype: str, try_ragged: bool) -> None:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # one line per start, not a progress bar in the logs

        if not (folder / "config.json").is_file():
            raise StartupError(f"--model {folder}: no config.json (not a HuggingFace model folder)")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(folder, use_fast=True, local_files_only=True)
        except Exception as exc:  # transformers raises many kinds; all mean "cannot serve this"
            raise StartupError(f"--model {folder}: tokenizer does not load: {one_line(exc)}") from None
        if not getattr(self.tokenizer, "is_fast", False):
            raise StartupError(f"--model {folder}: needs a fast tokenizer (character offsets drive the alignment)")
        self.device = resolve_device(device)
        wire_dtype = resolve_dtype(dtype, self.device)
        try:
            model = AutoModel.from_pretrained(folder, local_files_only=True)
        except Exception as exc:
            raise StartupError(f"--model {folder}: weights do not load: {one_line(exc)}") from None
        # Weights go to the device once, in the compute dtype; nothing is copied back per batch
        # except the pooled rows.
        self.model = model.to(device=self.device, dtype=TORCH_DTYPES[wire_dtype]).eval()
        config = model.config
        width = int(config.hidden_size)
        if len(self.tokenizer) > int(getattr(config, "vocab_size", len(self.tokenizer))) + 1000:
            raise StartupError(
                f"--model {folder}: tokenizer has {len(self.tokenizer)} pieces, model vocab_size is {config.vocab_size}"
            )
        self.info = ModelInfo(
            name=name,
            fingerprint=fingerprint(folder, width),
            width=width,
            max_length=_max_length(self.tokenizer, config),
            n_layers=int(config.num_hidden_layers),
            backend="torch",
            device=str(self.device),
            dtype=wire_dtype,
        )
        # The attention kernel of ragged batches ("" = padded batches): see ragged.py.
        self.attention = ragged.enable(self.model, self.tokenizer, self.device, try_ragged)
        self.ragged = bool(self.attention)
        self._pad_id = int(self.tokenizer.pad_token_id or 0)

    def enter_thread(self) -> None:
        """The model's thread keeps torch's default threads: all the cores."""

    def forward(self, batch: Batch, layers: tuple[int, ...]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if self.ragged:
            out = ragged.forward(self.model, batch, self.device, bool(layers))
            return out.last_hidden_state[0], [out.hidden_states[i][0] for i in layers]
        ids, mask = (torch.from_numpy(a) for a in batch.padded(self._pad_id))
        if self.device.type == "cuda":
            # Pinned host memory: the upload does not wait for the device to be idle.
            ids, mask = ids.pin_memory(), mask.pin_memory()
        ids, mask = ids.to(self.device, non_blocking=True), mask.to(self.device, non_blocking=True)
        out = self.model(input_ids=ids, attention_mask=mask, output_hidden_states=bool(layers))
        return batch.unpad(out.last_hidden_state, mask), [batch.unpad(out.hidden_states[i], mask) for i in layers]
