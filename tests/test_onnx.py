"""The ONNX Runtime backend: ``tokvec export-onnx``, ``--backend onnx`` (fp32 and int8), the
provider check, and parity with the torch backend over the real wire on the EWT test docs.

One fp32 export (into a private cache, as ``--backend onnx`` on a plain HF folder makes it) and
one int8 export (through the CLI) are made per session."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from serving import ROOT, ServerProcess

from tokvec import Client
from tokvec_server import export
from tokvec_server.runners import default_model_path, load_runner
from tokvec_server.runners.base import StartupError, fingerprint
from tokvec_server.runners.onnx_runner import CPU, CUDA, OnnxRunner, check_provider, open_session, to_float16
from tokvec_server.settings import ModelSettings

SPANS = "tokens:128:96"
HAS_CUDA = torch.cuda.is_available() and CUDA in onnxruntime.get_available_providers()
NEEDS_CUDA = pytest.mark.skipif(
    not HAS_CUDA, reason="needs a CUDA GPU, CUDA torch and onnxruntime-gpu (this machine is CPU-only)"
)


def embed_all(address: str, docs: list[dict[str, Any]], chunk: int = 32) -> list[np.ndarray]:
    """Rows for every doc, ``chunk`` docs per request: on a loaded 2-core machine one request of
    all 316 docs can outwait the server's max_queue_ms."""
    with Client(address, spans=SPANS, timeout=300) as client:
        return [rows for i in range(0, len(docs), chunk) for rows in client.embed(docs[i : i + chunk])]


@pytest.fixture(scope="session")
def cache_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An XDG_CACHE_HOME holding the fp32 export of the default model, made the way
    ``--backend onnx`` on a plain HF folder makes it."""
    home = tmp_path_factory.mktemp("xdg-cache")
    export.cached_export(default_model_path(), "", home / "tokvec" / "onnx")
    return home


@pytest.fixture(scope="session")
def fp32_dir(cache_home: Path) -> Path:
    (folder,) = (entry for entry in (cache_home / "tokvec" / "onnx").iterdir() if not entry.name.startswith("."))
    return folder


@pytest.fixture(scope="session")
def int8_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("onnx") / "minilm-int8"
    cmd = [sys.executable, "-m", "tokvec", "export-onnx", str(default_model_path()), str(out), "--quantize", "int8"]
    return out, subprocess.run(cmd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="session")
def onnx_server(cache_home: Path) -> Iterator[ServerProcess]:
    """``tokvec serve --backend onnx`` with no --model: the default model, from the cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(cache_home))
        server = ServerProcess("--backend", "onnx")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def int8_server(int8_export: tuple[Path, Any]) -> Iterator[ServerProcess]:
    server = ServerProcess("--model", str(int8_export[0]), "--backend", "onnx")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def onnx_rows(onnx_server: ServerProcess, ewt_docs: list[dict[str, Any]]) -> list[np.ndarray]:
    return embed_all(onnx_server.address, ewt_docs)


def test_export_records_source_fingerprint_opset_and_fusions(fp32_dir: Path) -> None:
    meta = export.read(fp32_dir)
    assert meta.source_fingerprint == meta.fingerprint == fingerprint(default_model_path(), 384)
    assert (meta.opset, meta.ir_version, meta.quantize, meta.n_hidden_states) == (17, 8, "", 7)
    assert (
        meta.fusions["Attention"] == 6
        and meta.fusions["EmbedLayerNormalization"] == 1
        and meta.fusions["SkipLayerNormalization"] == 12
    )
    assert meta.check_max_abs_diff < 1e-4
    assert meta.versions["onnxruntime"] == onnxruntime.__version__
    graph = onnx.load(str(fp32_dir / export.MODEL_FILE), load_external_data=False)
    assert graph.ir_version == 8 and {o.domain or "ai.onnx": o.version for o in graph.opset_import}["ai.onnx"] == 17
    assert [i.name for i in graph.graph.input] == ["input_ids", "attention_mask"]
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", export.META_FILE):
        assert (fp32_dir / name).is_file(), name
    assert set(meta.files) == {p.name for p in fp32_dir.iterdir()} - {export.META_FILE}
    raw = json.loads((fp32_dir / export.META_FILE).read_text())  # plain JSON, for readers without tokvec
    assert {"source_fingerprint", "opset", "ir_version", "fusions", "quantize", "files"} <= set(raw)


def test_torch_and_onnx_rows_agree_on_all_ewt_docs(
    minilm: ServerProcess, onnx_server: ServerProcess, onnx_rows: list[np.ndarray], ewt_docs: list[dict[str, Any]]
) -> None:
    torch_rows = embed_all(minilm.address, ewt_docs)
    with Client(minilm.address) as a, Client(onnx_server.address) as b:
        torch_info, onnx_info = a.info().models[0], b.info().models[0]
    assert (onnx_info.backend, onnx_info.fingerprint) == ("onnx", torch_info.fingerprint)
    assert len(onnx_rows) == len(torch_rows) == 316
    worst = max(float(np.abs(a - b).max()) for a, b in zip(torch_rows, onnx_rows) if a.size)
    print(f"EWT test, {SPANS}, mean pooling: max |torch - onnx| = {worst:.2e}")
    assert worst <= 1e-4


def test_hidden_layers_come_from_the_export(
    minilm: ServerProcess, onnx_server: ServerProcess, ewt_docs: list[dict[str, Any]]
) -> None:
    docs = ewt_docs[:8]
    got = []
    for server in (minilm, onnx_server):
        with Client(server.address, spans=SPANS) as client:
            got.append(client.embed_results(docs, hidden_layers=(0, 3, -1)))
    for a, b in zip(*got):
        assert len(a.layers) == len(b.layers) == 3
        for x, y in zip(a.layers, b.layers):
            assert x.shape == y.shape and np.abs(x - y).max() <= 1e-4


def test_export_cli_and_int8_rows(
    int8_export: tuple[Path, subprocess.CompletedProcess[str]],
    int8_server: ServerProcess,
    onnx_rows: list[np.ndarray],
    ewt_docs: list[dict[str, Any]],
) -> None:
    out, done = int8_export
    assert done.returncode == 0, done.stderr
    assert "quantize     int8" in done.stdout and "Attention x6" in done.stdout
    meta = export.read(out)
    assert meta.quantize == "int8" and meta.fingerprint == meta.source_fingerprint + "-int8"
    # Every 4th doc (the length mix of the whole split), against the fp32 onnx rows.
    picked = list(range(0, len(ewt_docs), 4))
    with Client(int8_server.address) as client:
        assert client.info().models[0].fingerprint == meta.fingerprint  # listeners can tell int8 rows apart
    int8_rows = embed_all(int8_server.address, [ewt_docs[i] for i in picked])
    ref = np.concatenate([onnx_rows[i] for i in picked])
    got = np.concatenate(int8_rows)
    keep = np.abs(ref).sum(1) > 0  # tokens with no piece are zero rows in both
    cos = (ref[keep] * got[keep]).sum(1) / np.linalg.norm(ref[keep], axis=1) / np.linalg.norm(got[keep], axis=1)
    print(
        f"int8 vs fp32 token rows over {len(picked)} EWT docs ({keep.sum()} tokens): cosine mean {cos.mean():.4f}, p1 {np.percentile(cos, 1):.4f}, min {cos.min():.4f}"
    )
    assert cos.mean() >= 0.98 and cos.min() >= 0.85


def test_cuda_on_a_cpu_onnxruntime_is_refused_not_a_silent_fallback(fp32_dir: Path) -> None:
    if HAS_CUDA:
        pytest.skip("the CUDA provider is available here: nothing falls back")
    # ORT itself, asked for CUDA first, opens a CPU session without an error: the check catches it.
    with pytest.raises(StartupError) as caught:
        open_session(str(fp32_dir / export.MODEL_FILE), CUDA, 0, "--backend onnx --device cuda")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("--backend onnx --device cuda: ") and "onnxruntime-gpu" in message
    # And through the command, one line and exit code 2.
    done = subprocess.run(
        [sys.executable, "-m", "tokvec", "serve", "--model", str(fp32_dir), "--backend", "onnx", "--device", "cuda"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "CUDAExecutionProvider" in done.stderr, done.stderr


def test_provider_check_names_a_fallback() -> None:
    with pytest.raises(StartupError, match="did not load and onnxruntime fell back to CPUExecutionProvider"):
        check_provider(CUDA, [CPU], [CUDA, CPU], "--device cuda")
    check_provider(CPU, [CPU], [CPU], "--device cpu")


def test_start_errors_name_the_setting(fp32_dir: Path, int8_export: tuple[Path, Any], tmp_path: Path) -> None:
    with pytest.raises(StartupError, match=r"^--dtype float16: half precision needs a CUDA device"):
        OnnxRunner(fp32_dir, "m", "cpu", "float16", "")
    with pytest.raises(StartupError, match=r"^quantize int8: .* holds a float32 export"):
        OnnxRunner(fp32_dir, "m", "cpu", "float32", "int8")
    with pytest.raises(StartupError, match=r"^quantize int8: only the onnx backend"):
        load_runner(ModelSettings(backend="torch", quantize="int8"))
    # A file changed after export: the recorded fingerprint would no longer be true of it.
    stale = tmp_path / "stale"
    stale.mkdir()
    for path in int8_export[0].iterdir():
        (stale / path.name).symlink_to(path)
    (stale / "tokenizer_config.json").unlink()
    (stale / "tokenizer_config.json").write_text("{}")
    with pytest.raises(StartupError, match=r"tokenizer_config.json: changed since export"):
        OnnxRunner(stale, "m", "cpu", "float32", "")


def test_export_refuses_a_folder_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(export.ExportError, match="exists and is not an empty folder or an earlier export"):
        export.export_onnx(default_model_path(), tmp_path)


def test_server_extras_differ_only_in_the_onnxruntime_build() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    cpu = [d for d in extras["server"] if not d.startswith("onnxruntime")]
    gpu = [d for d in extras["server-gpu"] if not d.startswith("onnxruntime")]
    assert cpu == gpu
    assert any(d.startswith("onnxruntime>=") for d in extras["server"]) and any(
        d.startswith("onnxruntime-gpu>=") for d in extras["server-gpu"]
    )


def test_float16_graph_keeps_the_rows(fp32_dir: Path, ewt_docs: list[dict[str, Any]]) -> None:
    """The conversion the CUDA float16 path applies, checked here on ORT's CPU provider (which
    runs the half graph, casting where it lacks kernels); the runner itself serves float16 on CUDA only."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(fp32_dir, local_files_only=True)
    batch = tokenizer([" ".join(d["words"][:60]) for d in ewt_docs[:8]], padding=True, return_tensors="np")
    feed = {k: batch[k].astype(np.int64) for k in ("input_ids", "attention_mask")}
    full = open_session(str(fp32_dir / export.MODEL_FILE), CPU, 0, "test").run(["last_hidden_state"], feed)[0]
    half = open_session(to_float16(fp32_dir / export.MODEL_FILE), CPU, 0, "test").run(["last_hidden_state"], feed)[0]
    assert half.dtype == np.float16
    real = feed["attention_mask"].astype(bool)
    a, b = full[real].astype(np.float64), half[real].astype(np.float64)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() >= 0.999


@NEEDS_CUDA
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_rows_on_cuda(fp32_dir: Path, dtype: str, ewt_docs: list[dict[str, Any]]) -> None:
    full = OnnxRunner(fp32_dir, "m", "cuda", "float32", "")
    half = OnnxRunner(fp32_dir, "m", "cuda", dtype, "")
    texts = [" ".join(d["words"][:100]) for d in ewt_docs[:32]]
    batch = full.tokenizer(texts, padding=True, return_tensors="pt")
    ids, mask = batch["input_ids"].cuda(), batch["attention_mask"].cuda()
    with torch.inference_mode():
        a, _ = full.forward(ids, mask, ())
        b, _ = half.forward(ids, mask, ())
    assert b.dtype == {"float16": torch.float16, "bfloat16": torch.bfloat16}[dtype] and b.device.type == "cuda"
    real = mask.bool()
    cos = torch.nn.functional.cosine_similarity(a[real].float(), b[real].float(), dim=-1)
    assert float(cos.mean()) >= 0.999


@NEEDS_CUDA
def test_cuda_runner_binds_torch_device_memory(fp32_dir: Path) -> None:
    runner = OnnxRunner(fp32_dir, "m", "cuda", "float32", "")
    assert runner.session.get_providers()[0] == CUDA
    ids = torch.tensor([[101, 7592, 2088, 102]], device="cuda")
    hidden, (first,) = runner.forward(ids, torch.ones_like(ids), (0,))
    assert hidden.device.type == first.device.type == "cuda" and hidden.shape == (1, 4, 384)
