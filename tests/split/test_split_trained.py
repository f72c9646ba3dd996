"""`tokvec split` on a real fine-tuned spacy-transformers pipeline (tests/pipelines: MiniLM
fine-tuned with a tagger pooling reduce_mean and a parser pooling reduce_max): with its encoder
served, the split pipeline's listeners get the rows spacy-transformers gave them in-process, and
its annotations are the original's; without torch; one call per batch; the untuned encoder is
refused, and annotates otherwise."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import spacy
import srsly
from serving import ServerProcess
from spacy.tokens import Doc
from splitting import annotate_without_torch, run_split

from tokvec import Client
from tokvec.spacy import ModelMismatchError, Remote, RemoteListener, TokvecTransformer


@pytest.fixture(scope="module")
def split_trained(
    trained_pipeline: Path, trained_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("split") / "trained"
    done = run_split(trained_pipeline, out, trained_server.address)
    assert done.returncode == 0, done.stderr
    return out


def ref_docs(nlp: Any, reference: Any) -> list[Doc]:
    return [Doc(nlp.vocab, words=d["words"], spaces=d["spaces"]) for d in reference.docs]


def annotations(doc: Doc) -> dict[str, list[Any]]:
    return {
        "tags": [t.tag_ for t in doc],
        "heads": [t.head.i for t in doc],
        "deps": [t.dep_ for t in doc],
        "sent_starts": [bool(t.is_sent_start) for t in doc],
    }


def test_the_split_pipeline_is_the_original_with_a_served_encoder(
    split_trained: Path, trained_reference: Any, monkeypatch: Any
) -> None:
    config = spacy.util.load_config(split_trained / "config.cfg")
    assert config["components"]["transformer"]["factory"] == "tokvec_transformer"
    assert config["components"]["transformer"]["spans"] == "tokens:128:96"
    assert [config["components"][c]["model"]["tok2vec"]["pooling"] for c in ("tagger", "parser")] == ["mean", "max"]
    assert not (split_trained / "transformer" / "model").exists()  # no encoder weights in the split pipeline

    nlp = spacy.load(split_trained)
    assert isinstance(nlp.get_pipe("transformer"), TokvecTransformer)
    assert nlp.get_pipe("transformer").more_poolings == ("max",)
    calls: list[int] = []
    real = Remote._embed
    monkeypatch.setattr(Remote, "_embed", lambda self, docs, *a: (calls.append(len(docs)), real(self, docs, *a))[1])
    docs = list(nlp.pipe(ref_docs(nlp, trained_reference), batch_size=8))
    assert calls == [8, 8, 8]  # one call per batch: both poolings from one forward
    for doc, ref in zip(docs, trained_reference.docs, strict=True):
        assert annotations(doc) == trained_reference.annotations[ref["id"]]
    # Each listener hands its component the rows spacy-transformers' listener gave it, pooling included.
    for component in ("tagger", "parser"):
        listener = next(node for node in nlp.get_pipe(component).model.walk() if isinstance(node, RemoteListener))
        for rows, ref in zip(listener.predict(docs), trained_reference.docs):
            np.testing.assert_allclose(
                np.asarray(rows), trained_reference.rows[component][ref["id"]], atol=1e-4, rtol=0
            )


def test_the_split_pipeline_annotates_without_torch(
    split_trained: Path, trained_reference: Any, tmp_path: Path
) -> None:
    got = annotate_without_torch(split_trained, trained_reference.docs, tmp_path)
    assert got["blocked"] and got["heavy"] == []
    for tokens, ref in zip(got["annotations"], trained_reference.docs, strict=True):
        want = trained_reference.annotations[ref["id"]]
        assert (
            [t[0] for t in tokens] == want["tags"]
            and [t[4] for t in tokens] == want["heads"]
            and [t[5] for t in tokens] == want["deps"]
        )


def repin(split: Path, out: Path, fingerprint: str) -> None:
    """A copy of ``split`` that believes its rows come from ``fingerprint``: the stored model
    identity (component cfg, config, each listener's saved attrs) overwritten, checks bypassed."""
    shutil.copytree(split, out)
    cfg = json.loads((out / "transformer" / "cfg").read_text())
    (out / "transformer" / "cfg").write_text(json.dumps(dict(cfg, fingerprint=fingerprint)))
    config = spacy.util.load_config(out / "config.cfg", interpolate=False)
    config["components"]["transformer"]["fingerprint"] = fingerprint
    config.to_disk(out / "config.cfg")
    for component in ("tagger", "parser"):
        msg = srsly.msgpack_loads((out / component / "model").read_bytes())
        for attrs in msg["attrs"]:
            if "fingerprint" in attrs:
                attrs["fingerprint"] = srsly.msgpack_dumps(fingerprint)  # attrs are stored serialized
        (out / component / "model").write_bytes(srsly.msgpack_dumps(msg))


def test_the_untuned_encoder_is_refused_and_would_annotate_otherwise(
    split_trained: Path, trained_pipeline: Path, untuned_server: ServerProcess, trained_reference: Any, tmp_path: Path
) -> None:
    with pytest.raises(ModelMismatchError, match="fingerprint"):
        spacy.load(split_trained, config={"components.transformer.address": untuned_server.address})
    # Nor does tokvec split take the untuned encoder's server for the trained pipeline's.
    done = run_split(trained_pipeline, tmp_path / "on-untuned", untuned_server.address)
    assert done.returncode == 1 and "serves the encoder of" in done.stderr and "serve this pipeline" in done.stderr
    assert not (tmp_path / "on-untuned").exists()
    # The control, checks bypassed: the same trained tagger and parser on the untuned encoder's rows.
    with Client(untuned_server.address) as client:
        untuned = client.info().model.fingerprint
    repin(split_trained, tmp_path / "repinned", untuned)
    nlp = spacy.load(tmp_path / "repinned", config={"components.transformer.address": untuned_server.address})
    docs = list(nlp.pipe(ref_docs(nlp, trained_reference)))
    differ = sum(annotations(d) != trained_reference.annotations[r["id"]] for d, r in zip(docs, trained_reference.docs))
    assert differ >= len(docs) // 2
