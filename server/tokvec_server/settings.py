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
    # 0: no limit of its own. A 3,000-character token (a data URI, a long URL, minified code) is
    # ordinary web text that spaCy tokenizes: by default a word may be as long as the doc allows
    # (max_chars_per_doc). Operators who want a tighter bound set it.
    max_word_chars: int = 0
    max_id_chars: int = 256
    # Chunks of one doc (Doc.chunk_starts): each is one (width,) vector per chunk pooling, so
    # without a bound a small request could ask for gigabytes of output.
    max_chunks_per_doc: int = 65536
    # Incoming messages; responses are chunked to stay under the 4 MiB gRPC default.
    max_message_bytes: int = 16 * MiB
    max_in_flight_per_stream: int = 256


@dataclass(frozen=True)
class Batching:
    # Budget of pieces per forward, as spacy-transformers calls max_batch_items: the batch's
    # pieces for a runner that runs it ragged, rows x longest row for one that pads it.
    # 4096 = 32 windows of 128 pieces.
    max_batch_items: int = 4096
    # How long the first span queued on an idle model may wait for batch-mates. 0: at once. A
    # busy model gathers batch-mates anyway: its next batch is formed when it is free.
    max_wait_ms: float = 0.0
    # How long a busy model's next batch may wait for a closed-loop client of the last batch to
    # send its next doc (never more than 20% of that batch's time). 0: never waits.
    rearrival_ms: float = 15.0
    # A runner that pads (onnx) gets batches whose real pieces are at least this share of their
    # padded pieces; the spans that would lower it go in the next batch. (On EWT with 8 clients:
    # the onnx service at 0.81x its raw forward without this floor, 0.98x with 0.8.)
    min_padding_efficiency: float = 0.8
    # Admission: work beyond these is refused with RESOURCE_EXHAUSTED, naming the limit.
    max_queued_pieces: int = 2_000_000
    max_queued_docs: int = 20_000
    # A doc still queued after this long is answered RESOURCE_EXHAUSTED instead of run late.
    max_queue_ms: float = 60_000.0


BACKENDS = ("auto", "torch", "onnx", "fake", "tok2vec")


@dataclass(frozen=True)
class ModelSettings:
    """One served model: its own runner, queue and batch budget."""

    # A local folder (HuggingFace encoder, ONNX export, spaCy pipeline) or an installed spaCy
    # pipeline's name; "" = the embedded all-MiniLM-L6-v2
    path: str = ""
    name: str = ""  # chosen per request and listed by Info; "" = derived from the folder
    # auto (what the path holds decides: sources.py) | torch | onnx | fake (the deterministic
    # test runner) | tok2vec (a spaCy pipeline's)
    backend: str = "auto"
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "auto"  # compute dtype: auto (float16 on CUDA, float32 on CPU) | float32 | float16 | bfloat16
    quantize: str = ""  # "" | int8 (ONNX on CPU)
    batching: Batching = Batching()
    # backend torch: run batches ragged (spans end to end, no padding) where a probe at start finds
    # an attention kernel for the device that matches the padded rows; false: always padded.
    ragged: bool = True
    # backend fake only: every forward sleeps this long. A slow model for tests that run the
    # server as a subprocess (SIGTERM drain, chaos), where the fault hooks are out of reach.
    fake_delay_ms: float = 0.0


@dataclass(frozen=True)
class Security:
    token_file: str = ""  # bearer tokens, one per line (several at once for rotation)
    tls_cert: str = ""  # PEM certificate chain and key: serve TLS
    tls_key: str = ""
    tls_client_ca: str = ""  # PEM CA bundle: require client certificates signed by it (mutual TLS)
    # A token over plaintext on a non-loopback address is refused unless this is set.
    allow_insecure_token: bool = False


@dataclass(frozen=True)
class Settings:
    models: tuple[ModelSettings, ...] = (ModelSettings(),)  # the first is the default model
    address: str = "127.0.0.1:50051"
    vectors: str = ""  # a static vectors table for the VectorsService: spaCy pipeline folder or name; "" = none
    limits: Limits = Limits()
    security: Security = Security()
    reflection: bool = False
    metrics_address: str = ""  # HOST:PORT for the Prometheus endpoint; "" = off
    log_format: str = "text"  # text | json (one object per line: logs.py)
    # SIGTERM: readiness flips at once; new work is still taken for drain_s (load balancers catch
    # up), then refused UNAVAILABLE; admitted work has grace_s more to finish.
    drain_s: float = 0.0
    grace_s: float = 10.0
    # HTTP/2 keepalive: the server pings every keepalive_s and drops a connection whose peer does
    # not answer within keepalive_timeout_s, cancelling its calls and queued docs (R12).
    keepalive_s: float = 30.0
    keepalive_timeout_s: float = 10.0
    # A connection older than this is told to go (GOAWAY), so that clients re-resolve and spread
    # over new replicas; the calls open on it, a long EmbedStream above all, run on to their end.
    max_connection_age_s: float = 300.0

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def is_local(address: str) -> bool:
    """Loopback and unix sockets: places where plaintext does not leave the machine."""
    if address.startswith(("unix:", "unix-abstract:")):
        return True
    host = address.rsplit(":", 1)[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise ValueError(f"{where}: unknown setting {key!r} (known: {', '.join(sorted(known))})")
        nested = {"limits": Limits, "batching": Batching, "security": Security}.get(key)
        if nested and not isinstance(value, dict):
            raise ValueError(f"{where}.{key}: a [{key}] table, not {value!r}")
        if key == "models":
            if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
                raise ValueError(f"{where}.models: a non-empty list of [[models]] tables")
            kwargs[key] = tuple(_build(ModelSettings, v, f"{where}.models[{i}]") for i, v in enumerate(value))
        else:
            kwargs[key] = _build(nested, value, f"{where}.{key}") if nested else value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"{where}: {exc}") from None


def load_settings(
    config: Path | None = None,
    *,
    server: dict[str, Any] | None = None,
    security: dict[str, Any] | None = None,
    model: dict[str, Any] | None = None,
) -> Settings:
    """Settings from an optional TOML file, then command-line flags (None means not given).

    ``server`` flags are top-level settings; ``model`` flags (path, name, backend, device, dtype,
    quantize) apply to the first model.
    """
    values: dict[str, Any] = {}
    if config is not None:
        try:
            values = tomllib.loads(config.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"--config {config}: {exc}") from None

    def given(flags: dict[str, Any] | None) -> dict[str, Any]:
        return {k: v for k, v in (flags or {}).items() if v is not None}

    values.update(given(server))
    if sec := given(security):
        values["security"] = {**values.get("security", {}), **sec}
    if flags := given(model):
        models = list(values.get("models") or [{}])
        models[0] = {**models[0], **flags}
        values["models"] = models
    settings: Settings = _build(Settings, values, str(config) if config else "settings")
    check(settings)
    return settings


def check(settings: Settings) -> None:
    """Refuse nonsense at start, naming the setting (docs/reliability.md R7)."""
    groups: list[Any] = [settings.limits, *(m.batching for m in settings.models)]
    for group in groups:
        for f in dataclasses.fields(group):
            value = getattr(group, f.name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{f.name}: {value!r} is not a non-negative number")
    sec = settings.security
    for name in ("token_file", "tls_cert", "tls_key", "tls_client_ca"):
        path = getattr(sec, name)
        if path and not Path(path).is_file():
            raise ValueError(f"{name}: {path} is not a readable file")
    if bool(sec.tls_cert) != bool(sec.tls_key):
        raise ValueError("tls_cert and tls_key: set both or neither")
    if sec.tls_client_ca and not sec.tls_cert:
        raise ValueError("tls_client_ca: mutual TLS needs tls_cert and tls_key too")
    if sec.token_file and not sec.tls_cert and not sec.allow_insecure_token and not is_local(settings.address):
        raise ValueError(
            f"token_file: bearer tokens over plaintext on {settings.address} (not loopback); serve TLS or set allow_insecure_token"
        )
    for name in ("drain_s", "grace_s", "keepalive_s", "keepalive_timeout_s", "max_connection_age_s"):
        value = getattr(settings, name)
        positive = name.startswith(("keepalive", "max_connection"))
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0 or (value == 0 and positive):
            raise ValueError(f"{name}: {value!r} is not a {'positive' if positive else 'non-negative'} number")
    if settings.log_format not in ("text", "json"):
        raise ValueError(f"log_format: {settings.log_format!r} is not text or json")
    names = [m.name for m in settings.models if m.name]
    if len(names) != len(set(names)):
        raise ValueError(f"models: names must differ, got {names}")
    for m in settings.models:
        if m.batching.max_batch_items < 512:
            raise ValueError(f"max_batch_items: {m.batching.max_batch_items} < 512 (one full-length span)")
        if m.batching.min_padding_efficiency > 1:
            raise ValueError(
                f"min_padding_efficiency: {m.batching.min_padding_efficiency} > 1 (a share of the padded pieces)"
            )
        if m.backend not in BACKENDS:
            raise ValueError(f"backend: {m.backend!r} is not one of {', '.join(BACKENDS)}")
        if m.dtype not in ("auto", "float32", "float16", "bfloat16"):
            raise ValueError(f"dtype: {m.dtype!r} is not auto, float32, float16 or bfloat16")
        if not (m.device in ("auto", "cpu", "cuda") or m.device.startswith("cuda:")):
            raise ValueError(f"device: {m.device!r} is not auto, cpu, cuda or cuda:N")
        if not isinstance(m.ragged, bool):
            raise ValueError(f"ragged: {m.ragged!r} is not true or false")
        if m.quantize not in ("", "int8"):
            raise ValueError(f"quantize: {m.quantize!r} is not int8")
        if m.fake_delay_ms and (
            m.backend != "fake" or not isinstance(m.fake_delay_ms, (int, float)) or m.fake_delay_ms < 0
        ):
            raise ValueError(f"fake_delay_ms: {m.fake_delay_ms!r} needs backend fake and a non-negative number")
        if m.backend == "tok2vec" and (m.dtype not in ("auto", "float32") or m.quantize):
            raise ValueError(
                f"backend: tok2vec computes in float32 (dtype {m.dtype!r}, quantize {m.quantize!r} do not apply)"
            )
