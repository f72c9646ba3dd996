"""Rows over the real wire equal what spacy-transformers 1.4's TransformerListener hands a
downstream component (golden files made by tests/golden/make_golden.py), within 1e-4."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tokvec import Client

GOLDEN = Path(__file__).parent / "golden"
META = json.loads((GOLDEN / "meta.json").read_text())
SPANS = {"strided128x96": "tokens:128:96", "doc": "doc"}


def golden_docs() -> dict[str, dict]:
    with (GOLDEN / "docs.jsonl").open() as f:
        return {d["id"]: d for d in map(json.loads, f)}


@pytest.mark.parametrize("name", sorted(META["files"]))
def test_rows_match_spacy_transformers(minilm, name):
    meta = META["files"][name]
    expected = np.load(GOLDEN / name)
    docs = golden_docs()
    ids = meta["doc_ids"]
    assert len(ids) >= 30 and set(ids) == set(expected.files)
    with Client(minilm.address, spans=SPANS[meta["spans"]], pooling=meta["pooling"]) as client:
        rows = client.embed([docs[i] for i in ids])
    worst = 0.0
    for doc_id, got in zip(ids, rows):
        want = expected[doc_id]
        assert got.shape == (len(docs[doc_id]["words"]), 384), doc_id
        if want.size:
            worst = max(worst, float(np.abs(got - want).max()))
    print(f"{name}: max |ours - spacy-transformers| = {worst:.2e}")
    assert worst <= 1e-4, f"{name}: max |ours - spacy-transformers| = {worst:.2e}"


def test_where_spacy_transformers_crashes_we_give_zero_rows(minilm):
    """The docs spacy-transformers could not do under max (whitespace tokens, truncation, empty):
    every token still gets a row; tokens with no piece get zeros and a flag, under every pooling."""
    docs = golden_docs()
    excluded = sorted({i for f in META["files"].values() for i in f["excluded"]})
    assert excluded, "the golden files record which docs spacy-transformers crashed on"
    mean = np.load(GOLDEN / "doc_mean.npz")
    with Client(minilm.address, spans="doc") as client:
        for pooling in ("mean", "max", "first", "last", "sum"):
            results = client.embed_results([docs[i] for i in excluded], pooling=pooling)
            for doc_id, result in zip(excluded, results):
                assert result.error is None
                assert result.rows.shape == (len(docs[doc_id]["words"]), 384)
                assert np.all(result.rows[result.no_piece] == 0)
                has_piece = np.setdiff1d(np.arange(len(result.rows)), result.no_piece)
                assert np.all(np.abs(result.rows[has_piece]).sum(1) > 0)
                if pooling == "mean" and doc_id in mean.files and mean[doc_id].size:
                    assert np.abs(result.rows - mean[doc_id]).max() <= 1e-4
