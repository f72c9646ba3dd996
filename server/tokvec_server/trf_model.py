"""Read the encoder of a spacy-transformers 1.x ``transformer`` component without spacy-transformers.

Format (spacy-transformers 1.x; ``PIPELINE/COMPONENT/model``, written by ``Model.to_bytes`` of
thinc 8 and ``HFShim.to_bytes``), msgpack all the way down:

    {"nodes":  [{"index", "name", "dims", "refs"}, ...],  # the thinc model tree, walk order:
                                                          # node 0 "transformer", then "hf-pytorch"
     "attrs":  [{attr: msgpack bytes}, ...],              # e.g. "name": the folder it was made from
     "params": [{...}, ...],                              # none for these two nodes
     "shims":  [[shim bytes, ...], ...]}                  # one list per node; the HF model is the
                                                          # one shim of the "hf-pytorch" node:
    shim = {"config":     the HF model config, as PretrainedConfig.to_dict() (model_type, widths),
            "state":      torch.save(model.state_dict()) bytes (a zip; keys as the bare HF model's,
                          e.g. "embeddings.word_embeddings.weight", no "bert." prefix),
            "tokenizer":  {"kwargs": {"use_fast": bool}, FILENAME: bytes, ...}: the files of
                          tokenizer.save_pretrained (tokenizer.json, vocab.txt, ...),
            "_init_tokenizer_config", "_init_transformer_config": set only for a model that was
                          never initialized (then config and state are empty: nothing to serve)}

``hf_folder`` writes these as a HuggingFace folder (config.json, model.safetensors, the tokenizer
files) that the torch runner and tokvec export-onnx read like any other.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import srsly

# Config keys that say where or with what a model was saved, not what it computes: left out of the
# fingerprint, so one pipeline has one fingerprint wherever it was trained.
_PROVENANCE_KEYS = ("_name_or_path", "transformers_version")
_SHIM_NODE = "hf-pytorch"


class TrfModelError(ValueError):
    """The model file cannot be read as a spacy-transformers 1.x transformer; names file and cause."""


@dataclass(frozen=True)
class TrfEncoder:
    """The HuggingFace encoder inside a transformer component's model file."""

    config: dict[str, Any]
    state: bytes  # torch.save of the state dict
    tokenizer_files: dict[str, bytes]
    use_fast: bool

    @property
    def width(self) -> int:
        return int(self.config.get("hidden_size") or self.config.get("d_model") or 0)

    def fingerprint(self) -> str:
        """sha256 over the weights, the tokenizer files and the config (without provenance), then
        the width: what the served rows depend on, as runners.base.fingerprint for a folder."""
        digest = hashlib.sha256()
        config = {k: v for k, v in self.config.items() if k not in _PROVENANCE_KEYS}
        digest.update(json.dumps(config, sort_keys=True).encode())
        digest.update(self.state)
        for name in sorted(self.tokenizer_files):
            digest.update(name.encode())
            digest.update(self.tokenizer_files[name])
        return f"{digest.hexdigest()[:16]}-{self.width}"


def model_file(pipeline: Path, component: str) -> Path:
    return pipeline / component / "model"


def read_encoder(pipeline: Path, component: str) -> TrfEncoder:
    """The encoder of ``component`` in ``pipeline``. Raises TrfModelError naming the file."""
    path = model_file(pipeline, component)
    where = f"{path} (component {component!r})"
    try:
        msg = srsly.msgpack_loads(path.read_bytes())
    except OSError as exc:
        raise TrfModelError(f"{where}: cannot read it ({exc.strerror or exc})") from None
    except Exception as exc:  # msgpack raises several kinds for a damaged file
        raise TrfModelError(f"{where}: not a thinc model file ({type(exc).__name__})") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("nodes"), list) or not isinstance(msg.get("shims"), list):
        raise TrfModelError(f"{where}: not a thinc model file (no nodes and shims)")
    shims = [
        s for node, s in zip(msg["nodes"], msg["shims"]) if isinstance(node, dict) and node.get("name") == _SHIM_NODE
    ]
    if len(shims) != 1 or len(shims[0]) != 1:
        names = [n.get("name") for n in msg["nodes"] if isinstance(n, dict)]
        raise TrfModelError(
            f"{where}: no single {_SHIM_NODE!r} node with one shim (nodes: {names}); not a spacy-transformers 1.x transformer"
        )
    try:
        shim = srsly.msgpack_loads(shims[0][0])
    except Exception as exc:
        raise TrfModelError(f"{where}: the {_SHIM_NODE} shim is not readable ({type(exc).__name__})") from None
    config, state, tokenizer = shim.get("config"), shim.get("state"), shim.get("tokenizer")
    if not config or not state:
        raise TrfModelError(f"{where}: holds no weights (the transformer was never initialized)")
    if not isinstance(config, dict) or not isinstance(state, bytes) or not isinstance(tokenizer, dict):
        raise TrfModelError(f"{where}: the {_SHIM_NODE} shim lacks config, state or tokenizer")
    kwargs = tokenizer.get("kwargs") or {}
    files = {str(k): v for k, v in tokenizer.items() if k != "kwargs" and isinstance(v, bytes)}
    if not files:
        raise TrfModelError(f"{where}: no tokenizer files")
    return TrfEncoder(config, state, files, bool(kwargs.get("use_fast", True)))


def hf_folder(encoder: TrfEncoder, out: Path, where: str) -> Path:
    """Write ``encoder`` as a HuggingFace folder in ``out`` (which exists); ``where`` names the
    component in errors."""
    import io

    import torch
    from safetensors.torch import save_file

    try:
        state = torch.load(io.BytesIO(encoder.state), map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged zip or pickle: many kinds
        raise TrfModelError(
            f"{where}: the weights do not load ({type(exc).__name__}: {' '.join(str(exc).split())[:160]})"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise TrfModelError(f"{where}: the weights are not a state dict of tensors")
    # safetensors refuses tensors that share memory (tied embeddings): each is written on its own.
    save_file({k: v.detach().contiguous().clone() for k, v in state.items()}, str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps(encoder.config, indent=1, sort_keys=True))
    for name, data in encoder.tokenizer_files.items():
        if "/" in name or name.startswith("."):
            raise TrfModelError(f"{where}: tokenizer file name {name!r} is not a plain file name")
        (out / name).write_bytes(data)
    return out
