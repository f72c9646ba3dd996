"""Server settings: read once (command line, then an optional TOML config file) into a frozen dataclass."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Per-request limits. Each violation is reported naming the field, its size and the limit."""

    max_docs_per_request: int = 1024
    max_tokens_per_doc: int = 16384
    max_chars_per_doc: int = 200_000
    max_word_chars: int = 2048
    max_id_chars: int = 256
    # Incoming messages; responses are chunked to stay under the 4 MiB gRPC default.
    max_message_bytes: int = 16 * MiB
    max_in_flight_per_stream: int = 256


@dataclass(frozen=True)
class Batching:
    # Budget of padded pieces per forward (batch rows x longest row), as spacy-transformers
    # calls max_batch_items. 4096 = 32 windows of 128 pieces.
    max_batch_items: int = 4096
    # How long the first queued span may wait for batch-mates before the batch goes anyway.
    max_wait_ms: float = 5.0
    # Admission: work beyond this many queued pieces is refused with RESOURCE_EXHAUSTED.
    max_queued_pieces: int = 2_000_000


BACKENDS = ("torch", "onnx", "fake")


@dataclass(frozen=True)
class ModelSettings:
    """One served model: its own runner, queue and batch budget."""

    path: str = ""  # local folder of a HuggingFace encoder; "" = the embedded all-MiniLM-L6-v2
    name: str = ""  # chosen per request and listed by Info; "" = derived from the folder
    backend: str = "torch"  # torch | onnx | fake (the deterministic test runner)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "auto"  # compute dtype: auto (float16 on CUDA, float32 on CPU) | float32 | float16 | bfloat16
    quantize: str = ""  # "" | int8 (ONNX on CPU)
    batching: Batching = Batching()


@dataclass(frozen=True)
class Settings:
    models: tuple[ModelSettings, ...] = (ModelSettings(),)  # the first is the default model
    address: str = "127.0.0.1:50051"
    limits: Limits = Limits()
    reflection: bool = False
    grace_s: float = 10.0  # SIGTERM: how long in-flight work may finish

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise ValueError(f"{where}: unknown setting {key!r} (known: {', '.join(sorted(known))})")
        nested = {"limits": Limits, "batching": Batching}.get(key)
        if key == "models":
            if not isinstance(value, list) or not value:
                raise ValueError(f"{where}.models: a non-empty list of [[models]] tables")
            kwargs[key] = tuple(_build(ModelSettings, v, f"{where}.models[{i}]") for i, v in enumerate(value))
        else:
            kwargs[key] = _build(nested, value, f"{where}.{key}") if nested else value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"{where}: {exc}") from None


def load_settings(config: Path | None = None, *, address: str | None = None, **model: Any) -> Settings:
    """Settings from an optional TOML file, then command-line flags (None means not given).

    Model flags (path, name, backend, device, dtype, quantize) apply to the first model.
    """
    values: dict[str, Any] = {}
    if config is not None:
        try:
            values = tomllib.loads(config.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"--config {config}: {exc}") from None
    if address is not None:
        values["address"] = address
    flags = {k: v for k, v in model.items() if v is not None}
    if flags:
        models = list(values.get("models") or [{}])
        models[0] = {**models[0], **flags}
        values["models"] = models
    settings: Settings = _build(Settings, values, str(config) if config else "settings")
    check(settings)
    return settings


def check(settings: Settings) -> None:
    """Refuse nonsense at start, naming the setting (RELIABILITY.md R7)."""
    groups: list[Any] = [settings.limits, *(m.batching for m in settings.models)]
    for group in groups:
        for f in dataclasses.fields(group):
            value = getattr(group, f.name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{f.name}: {value!r} is not a non-negative number")
    names = [m.name for m in settings.models if m.name]
    if len(names) != len(set(names)):
        raise ValueError(f"models: names must differ, got {names}")
    for m in settings.models:
        if m.batching.max_batch_items < 512:
            raise ValueError(f"max_batch_items: {m.batching.max_batch_items} < 512 (one full-length span)")
        if m.backend not in BACKENDS:
            raise ValueError(f"backend: {m.backend!r} is not one of {', '.join(BACKENDS)}")
        if m.dtype not in ("auto", "float32", "float16", "bfloat16"):
            raise ValueError(f"dtype: {m.dtype!r} is not auto, float32, float16 or bfloat16")
        if not (m.device in ("auto", "cpu", "cuda") or m.device.startswith("cuda:")):
            raise ValueError(f"device: {m.device!r} is not auto, cpu, cuda or cuda:N")
        if m.quantize not in ("", "int8"):
            raise ValueError(f"quantize: {m.quantize!r} is not int8")
