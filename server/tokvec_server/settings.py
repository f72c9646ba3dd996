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


@dataclass(frozen=True)
class Settings:
    model: str = ""  # local folder of a HuggingFace encoder; "" = the embedded all-MiniLM-L6-v2
    model_name: str = ""  # name shown by Info and chosen per request; "" = the folder's name
    address: str = "127.0.0.1:50051"
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "auto"  # compute dtype: auto (float16 on CUDA, float32 on CPU) | float32 | float16 | bfloat16
    backend: str = "torch"  # torch | fake (the deterministic test runner)
    limits: Limits = Limits()
    batching: Batching = Batching()
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
        kwargs[key] = _build(nested, value, f"{where}.{key}") if nested else value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"{where}: {exc}") from None


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Settings from an optional TOML file, then command-line overrides (None means not given)."""
    values: dict[str, Any] = {}
    if config is not None:
        try:
            values = tomllib.loads(config.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"--config {config}: {exc}") from None
    values.update({k: v for k, v in overrides.items() if v is not None})
    settings: Settings = _build(Settings, values, str(config) if config else "settings")
    check(settings)
    return settings


def check(settings: Settings) -> None:
    """Refuse nonsense at start, naming the setting (RELIABILITY.md R7)."""
    for group in (settings.limits, settings.batching):
        for f in dataclasses.fields(group):
            value = getattr(group, f.name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{f.name}: {value!r} is not a non-negative number")
    if settings.batching.max_batch_items < 512:
        raise ValueError(f"max_batch_items: {settings.batching.max_batch_items} < 512 (one full-length span)")
    if settings.backend not in ("torch", "fake"):
        raise ValueError(f"backend: {settings.backend!r} is not torch or fake")
    if settings.dtype not in ("auto", "float32", "float16", "bfloat16"):
        raise ValueError(f"dtype: {settings.dtype!r} is not auto, float32, float16 or bfloat16")
    if not (settings.device in ("auto", "cpu", "cuda") or settings.device.startswith("cuda:")):
        raise ValueError(f"device: {settings.device!r} is not auto, cpu, cuda or cuda:N")
