"""An exported encoder (``tokvec export-onnx``) run with ONNX Runtime.

``--model`` is an export folder (it holds tokvec_onnx.json), or a plain HuggingFace folder, which
is exported once into the cache (export.cached_export) and served from there. The provider is
CUDA on a GPU, CPU elsewhere, and is checked after the session opens: onnxruntime-gpu falls back
to CPU without an error when its CUDA libraries do not load, and a GPU server quietly running on
CPU is worse than one that does not start.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tokvec_server.export.metadata import ExportMeta
from tokvec_server.runners.base import ModelInfo, StartupError, WordpieceRunner, one_line, resolve_dtype
from tokvec_server.runners.batch import Batch
from tokvec_server.types import DType

CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"
_NUMPY = {torch.float32: np.float32, torch.float16: np.float16}


def check_provider(asked: str, got: list[str], available: list[str], setting: str) -> None:
    """Raise unless ``asked`` is the provider the session actually runs on first."""
    if got and got[0] == asked:
        return
    import onnxruntime

    if asked not in available:
        why = f"this onnxruntime {onnxruntime.__version__} build has no {asked} (available: {', '.join(available)}); CUDA machines need onnxruntime-gpu (pip install 'tokvec[server-gpu]')"
    else:
        why = f"{asked} did not load and onnxruntime fell back to {', '.join(got)}; check that the CUDA and cuDNN libraries match onnxruntime-gpu {onnxruntime.__version__}"
    raise StartupError(f"{setting}: {why}")


def open_session(model: str | bytes, provider: str, device_id: int, setting: str) -> Any:
    """An InferenceSession that runs on ``provider``, or StartupError."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: ORT's own warnings about node placement are noise at start
    if provider == CPU:
        # ORT's pool threads spin between ops by default, on cores the event loop and the
        # tokenizers need (measured with 8 clients x 1 doc: 3,690 words/s without spinning, 3,320 with).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers: list[Any] = [CPU] if provider == CPU else [(provider, {"device_id": device_id}), CPU]
    try:
        with warnings.catch_warnings():
            # "Specified provider ... is not in available provider names": check_provider says it better.
            warnings.filterwarnings("ignore", message=".*not in available provider names.*", category=UserWarning)
            session = onnxruntime.InferenceSession(model, sess_options=options, providers=providers)
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/RuntimeError kinds
        raise StartupError(f"{setting}: onnxruntime cannot open the model: {one_line(exc)}") from None
    check_provider(provider, session.get_providers(), onnxruntime.get_available_providers(), setting)
    return session


def to_float16(path: Path) -> bytes:
    """The graph with float16 weights and outputs (inputs stay int64), for the CUDA provider."""
    import onnx
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(onnx.load(str(path)))
    model.convert_float_to_float16(keep_io_types=False)
    serialized: bytes = model.model.SerializeToString()
    return serialized


def _device(device: str) -> torch.device:
    # Like runners.base.resolve_device, but CUDA availability in torch is checked after the
    # provider: on a machine without CUDA the provider error says what to install.
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _export_folder(folder: Path, quantize: str, cache_dir: Path | None) -> tuple[Path, ExportMeta]:
    """The export to serve and its metadata: ``folder`` itself, or its cached export."""
    from tokvec_server import export

    if not export.is_export(folder):
        if not (folder / "config.json").is_file():
            raise StartupError(
                f"--model {folder}: neither an onnx export (no {export.META_FILE}) nor a HuggingFace model folder (no config.json)"
            )
        try:
            folder = export.cached_export(folder, quantize, cache_dir)
        except (export.ExportError, OSError) as exc:
            raise StartupError(f"--model {folder}: export to onnx failed: {exc}") from None
    try:
        meta = export.read(folder)
    except ValueError as exc:
        raise StartupError(f"--model {folder}: {exc}") from None
    # No quantize setting serves what the export holds (its fingerprint says which); int8 insists.
    if quantize and quantize != meta.quantize:
        raise StartupError(
            f"quantize {quantize}: {folder} holds a {meta.quantize or 'float32'} export; export with tokvec export-onnx --quantize {quantize}"
        )
    return folder, meta


def _check_quantize_device(quantize: str, device: torch.device) -> None:
    if quantize and device.type != "cpu":
        raise StartupError(
            f"quantize {quantize}: CPU only (ORT has no CUDA kernels for dynamic int8), device is {device}; use --device cpu"
        )


def _check_cuda(setting: str) -> None:
    # The provider is asked about before torch: without onnxruntime-gpu, that is what to name.
    import onnxruntime

    if CUDA not in (available := onnxruntime.get_available_providers()):
        check_provider(CUDA, [], available, setting)
    if not torch.cuda.is_available():
        raise StartupError(f"{setting}: torch sees no CUDA device (I/O binding hands ORT torch's device memory)")


class OnnxRunner(WordpieceRunner):
    def __init__(
        self, folder: Path, name: str, device: str, dtype: str, quantize: str, cache_dir: Path | None = None
    ) -> None:
        from transformers import AutoConfig, AutoTokenizer

        from tokvec_server.export import MODEL_FILE
        from tokvec_server.runners.torch_runner import _max_length

        self.device = _device(device)
        _check_quantize_device(quantize, self.device)  # before a cached export is made for nothing
        folder, meta = _export_folder(folder, quantize, cache_dir)
        _check_quantize_device(meta.quantize, self.device)
        setting = f"--backend onnx --device {device}"
        provider = CUDA if self.device.type == "cuda" else CPU
        if provider == CUDA:
            _check_cuda(setting)
        wire_dtype = resolve_dtype(dtype, self.device)
        model: str | bytes = str(folder / MODEL_FILE)
        if wire_dtype is DType.FLOAT16:
            model = to_float16(folder / MODEL_FILE)
        # bfloat16: ORT's CUDA kernels for the fused transformer ops are float32/float16 only, so the
        # graph runs in float32 and the hidden states are cast to bfloat16 on the device.
        self._out_dtype = torch.float16 if wire_dtype is DType.FLOAT16 else torch.float32
        self._cast = torch.bfloat16 if wire_dtype is DType.BFLOAT16 else None
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(folder, use_fast=True, local_files_only=True)
            config = AutoConfig.from_pretrained(folder, local_files_only=True)
        except Exception as exc:  # transformers raises many kinds; all mean "cannot serve this"
            raise StartupError(f"--model {folder}: tokenizer or config does not load: {one_line(exc)}") from None
        if not getattr(self.tokenizer, "is_fast", False):
            raise StartupError(f"--model {folder}: needs a fast tokenizer (character offsets drive the alignment)")
        self.session = open_session(model, provider, self.device.index or 0, setting)
        n_layers = int(config.num_hidden_layers)
        outputs = {o.name for o in self.session.get_outputs()}
        wanted = ["last_hidden_state", *(f"hidden_state_{i}" for i in range(n_layers + 1))]
        if missing := [o for o in wanted if o not in outputs]:
            raise StartupError(
                f"--model {folder}: {MODEL_FILE} lacks outputs {', '.join(missing[:3])}{'...' if len(missing) > 3 else ''}; export again with tokvec export-onnx"
            )
        self.info = ModelInfo(
            name=name,
            fingerprint=meta.fingerprint,
            width=int(config.hidden_size),
            max_length=_max_length(self.tokenizer, config),
            n_layers=n_layers,
            backend="onnx",
            device=str(self.device),
            dtype=wire_dtype,
        )
        self.folder = folder
        self.ragged = False  # the exported graph takes a padded rectangle and its mask
        self._pad_id = int(self.tokenizer.pad_token_id or 0)

    def enter_thread(self) -> None:
        # ORT computes on its own pool. The few torch ops around it (unpadding, pooling) run on
        # this thread alone: an OpenMP pool of torch's, spinning after each of them, would take
        # the cores ORT's threads are computing on (a lone 40-word doc: 16 ms over the raw ORT
        # forward with torch's two threads).
        torch.set_num_threads(1)

    def forward(self, batch: Batch, layers: tuple[int, ...]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Last hidden state and the chosen hidden states. Shape: (n_pieces, width) each."""
        names = ["last_hidden_state", *(f"hidden_state_{i}" for i in layers)]
        ids, mask = (torch.from_numpy(a) for a in batch.padded(self._pad_id))
        if self.device.type == "cuda":
            ids, mask = ids.to(self.device), mask.to(self.device)
            outs = self._run_bound(ids, mask, names)
        else:
            # CPU: ORT fills numpy arrays that torch wraps without a copy.
            arrays = self.session.run(names, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
            outs = [torch.from_numpy(a) for a in arrays]
        if self._cast is not None:
            outs = [o.to(self._cast) for o in outs]
        flat = [batch.unpad(o, mask) for o in outs]
        return flat[0], flat[1:]

    def _run_bound(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, names: list[str]) -> list[torch.Tensor]:
        """ORT reads the ids from and writes the hidden states into torch's device memory: nothing
        crosses to the host, and the pooling that follows runs on the same tensors."""
        device_id = self.device.index or 0
        binding = self.session.io_binding()
        inputs = {"input_ids": input_ids.contiguous(), "attention_mask": attention_mask.contiguous()}
        for key, tensor in inputs.items():
            binding.bind_input(key, "cuda", device_id, np.int64, tuple(tensor.shape), tensor.data_ptr())
        shape = (*input_ids.shape, self.info.width)
        outs = [torch.empty(shape, dtype=self._out_dtype, device=self.device) for _ in names]
        for key, tensor in zip(names, outs):
            binding.bind_output(key, "cuda", device_id, _NUMPY[self._out_dtype], shape, tensor.data_ptr())
        # The ids were uploaded asynchronously on torch's stream; ORT computes on its own stream.
        torch.cuda.current_stream(self.device).synchronize()
        self.session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        return outs
