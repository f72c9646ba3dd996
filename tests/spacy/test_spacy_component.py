"""The tokvec_transformer component: entry points, one call per batch in doc order, rows equal to
spacy-transformers', piece data on request, what a saved pipeline keeps."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import srsly
from serving import ROOT

import tokvec.spacy
from tokvec import Client

GOLDEN = ROOT / "tests" / "golden"


def test_public_surface_is_pinned() -> None:
    assert sorted(tokvec.spacy.__all__) == [
        "ModelMismatchError",
        "PipelineError",
        "Remote",
        "RemoteListener",
        "RemoteSettings",
        "RemoteSpanVectors",
        "TokvecTransformer",
        "make_tokvec_transformer",
        "remote_listener",
        "remote_span_categorizer",
        "remote_span_reducer",
    ]


def test_spacy_finds_both_through_entry_points(run_python: Any) -> None:
    out = run_python(
        "import json, sys, spacy\n"
        "from spacy.util import registry\n"
        "nlp = spacy.blank('en')\n"
        "nlp.add_pipe('tokvec_transformer', config={'address': '127.0.0.1:1'})\n"
        "registry.architectures.get('tokvec.RemoteListener.v1')\n"
        "print(json.dumps({'pipes': nlp.pipe_names, 'imported': 'tokvec.spacy' in sys.modules}))\n"
    )
    assert out == {"pipes": ["tokvec_transformer"], "imported": True}  # imported by spaCy, not by the script


def test_one_call_per_batch_in_doc_order(minilm: Any, blank_en: Any, ewt_docs: Any, monkeypatch: Any) -> None:
    calls: list[int] = []
    real = Client.embed_results

    def counting(self: Client, docs: Any, **kwargs: Any) -> Any:
        docs = list(docs)
        calls.append(len(docs))
        return real(self, docs, **kwargs)

    monkeypatch.setattr(Client, "embed_results", counting)
    blank_en.add_pipe("tokvec_transformer", name="tokvec", config={"address": minilm.address})
    docs = [blank_en.make_doc(d["text"]) for d in ewt_docs if len(d["words"]) < 60][:20]
    out = list(blank_en.pipe(docs, batch_size=8))
    assert calls == [8, 8, 4]
    assert [d.text for d in out] == [d.text for d in docs]
    with Client(minilm.address) as client:
        direct = client.embed(docs)
    for doc, rows in zip(out, direct):
        assert doc._.tokvec.shape == (len(doc), 384) and doc._.tokvec.dtype == np.float32
        np.testing.assert_allclose(doc._.tokvec, rows, atol=3e-5)  # batched differently: float noise only
    assert all(doc._.tokvec_pieces is None for doc in out)


def test_rows_equal_spacy_transformers_listener(minilm: Any, blank_en: Any) -> None:
    """Through the component, the rows equal the golden rows a spacy-transformers
    TransformerListener (strided 128/96, reduce_mean) hands a downstream component."""
    meta = json.loads((GOLDEN / "meta.json").read_text())
    wanted = set(meta["files"]["strided128x96_mean.npz"]["doc_ids"])
    records = [r for r in srsly.read_jsonl(GOLDEN / "docs.jsonl") if r["id"] in wanted and r["words"]]
    from spacy.tokens import Doc

    blank_en.add_pipe("tokvec_transformer", config={"address": minilm.address})
    docs = list(blank_en.pipe(Doc(blank_en.vocab, words=r["words"], spaces=r["spaces"]) for r in records))
    with np.load(GOLDEN / "strided128x96_mean.npz") as golden:
        for record, doc in zip(records, docs):
            np.testing.assert_allclose(doc._.tokvec, golden[record["id"]], atol=1e-4, err_msg=record["id"])


def test_piece_data_on_request(minilm: Any, blank_en: Any, ewt_docs: Any) -> None:
    blank_en.add_pipe("tokvec_transformer", config={"address": minilm.address, "pieces": True})
    longest = max(ewt_docs, key=lambda d: len(d["words"]))
    doc = blank_en(longest["text"])
    pieces = doc._.tokvec_pieces
    assert sorted(pieces) == sorted(["hidden", "ids", "span_lengths", "span_tokens", "align_lengths", "align_indices"])
    assert len(pieces["span_lengths"]) > 1  # a long doc: several 128-token windows
    assert pieces["hidden"].shape == (int(pieces["span_lengths"].sum()), 384) == (len(pieces["ids"]), 384)
    assert len(pieces["align_lengths"]) == len(doc) and int(pieces["align_lengths"].sum()) == len(
        pieces["align_indices"]
    )


def test_saved_pipeline_keeps_address_and_fingerprint_not_weights(trained: Any, minilm: Any) -> None:
    config = (trained / "config.cfg").read_text()
    assert f'address = "{minilm.address}"' in config
    with Client(minilm.address) as client:
        fingerprint = client.info().model.fingerprint
    assert srsly.read_json(trained / "tokvec" / "cfg") == {"fingerprint": fingerprint, "width": 384, "pieces": False}
    assert [p.name for p in (trained / "tokvec").iterdir()] == ["cfg"]
