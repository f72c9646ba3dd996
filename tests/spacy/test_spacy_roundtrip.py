"""A saved pipeline loads with spacy.load in a fresh process without torch, annotates as it did
when saved, and refuses a server running another model."""

from __future__ import annotations

from typing import Any

import pytest
import spacy
from spacy_support import doc_annotations

from tokvec.spacy import ModelMismatchError

# torch is made unimportable, as in an install of tokvec[spacy] (no torch), and every attempt to
# import it is recorded with the module that tried: thinc probes for torch whenever it is
# installed; nothing else may want it.
FRESH_PROCESS = r"""
import importlib.abc, json, sys

class BlockTorch(importlib.abc.MetaPathFinder):
    tried = []
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            caller = sys._getframe(1)
            while caller and caller.f_globals.get("__name__", "").startswith(("importlib", "_frozen_importlib")):
                caller = caller.f_back
            self.tried.append(caller.f_globals.get("__name__", "?") if caller else "?")
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, BlockTorch())
import spacy

pipeline, other_address, texts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
nlp = spacy.load(pipeline)
docs = list(nlp.pipe(texts))
try:
    spacy.load(pipeline, config={"components": {"tokvec": {"address": other_address}}})
    refused = ""
except Exception as exc:
    refused = f"{type(exc).__name__}: {exc}"
print(json.dumps({
    "annotations": [[(t.tag_, t.head.i, t.dep_) for t in doc] for doc in docs],
    "torch_tried_by": sorted(set(BlockTorch.tried)),
    "heavy_modules": sorted(m for m in ("torch", "transformers", "tokenizers", "tokvec_server") if m in sys.modules),
    "refused": refused,
}))
"""


def test_fresh_process_loads_annotates_and_refuses_another_model(
    trained: Any, texts: list[str], other_model: Any, minilm: Any, run_python: Any
) -> None:
    import json

    here = doc_annotations(list(spacy.load(trained).pipe(texts[:10])))
    out = run_python(FRESH_PROCESS, str(trained), other_model.address, json.dumps(texts[:10]))
    assert [[tuple(t) for t in doc] for doc in out["annotations"]] == here
    assert out["heavy_modules"] == []
    assert all(name.startswith("thinc") for name in out["torch_tried_by"]), out["torch_tried_by"]
    refused = out["refused"]
    assert refused.startswith("ModelMismatchError: tokvec_transformer 'tokvec': tokvec server " + other_model.address)
    assert "fake-" in refused and "[components.tokvec] address" in refused


def test_loading_against_another_model_is_refused_in_process(trained: Any, other_model: Any) -> None:
    with pytest.raises(ModelMismatchError, match="this pipeline was built on"):
        spacy.load(trained, config={"components": {"tokvec": {"address": other_model.address}}})


def test_a_pinned_fingerprint_refuses_at_initialize(other_model: Any, minilm: Any, blank_en: Any) -> None:
    blank_en.add_pipe(
        "tokvec_transformer", config={"address": other_model.address, "fingerprint": "e02ed1a11d4a8c23-384"}
    )
    with pytest.raises(ModelMismatchError, match=f"tokvec server {other_model.address} serves model"):
        blank_en.initialize()


def test_a_listener_trained_on_another_model_is_refused(trained: Any, other_model: Any, blank_en: Any) -> None:
    """A tagger sourced from a pipeline built on all-MiniLM-L6-v2, under a tokvec component
    serving another model: refused when spaCy links them, not after wrong predictions."""
    source = spacy.load(trained)
    fake = blank_en.add_pipe("tokvec_transformer", name="tokvec", config={"address": other_model.address})
    blank_en.initialize()
    assert fake.cfg["fingerprint"].startswith("fake-")
    with pytest.raises(
        ModelMismatchError, match=r"'tagger' was trained on rows of model 'e02ed1a11d4a8c23-384'.*retrain 'tagger'"
    ):
        blank_en.add_pipe("tagger", source=source)
