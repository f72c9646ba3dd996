"""The example clients in examples/clients/, built from proto/ alone, against the real server:
their rows equal the Python client's, words sent without spaces included, in every wire dtype.

The toolchains come from the system's package manager (scripts/setup_clients.sh, run by .ci/run);
where one is missing the test says so and skips, and under CI it fails instead."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from serving import ROOT

from tokvec import Client

NODE_DIR = ROOT / "examples" / "clients" / "node"
GO_DIR = ROOT / "examples" / "clients" / "go"
BUF = ROOT / ".venv" / "bin" / "buf"
GOCODE = Path("/usr/share/gocode")  # Debian's Go packages: grpc-go and protobuf, offline
# One unit in the last place of each wire dtype: batch-mates move float32 rows by ~1e-6, which can
# flip a rounding; a decoding mistake is off by far more.
TOLERANCE = {
    "float32": {"rtol": 0, "atol": 1e-5},
    "float16": {"rtol": 2**-10, "atol": 2**-24},
    "bfloat16": {"rtol": 2**-7, "atol": 0},
}


def missing(what: str) -> None:
    reason = f"{what} not installed (bash scripts/setup_clients.sh)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def node() -> str:
    path = shutil.which("node")
    if path is None or not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        missing("node and the Node example's npm packages")
    return str(path)


@pytest.fixture(scope="module")
def go_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cmd/tokvec-embed built from stubs that proto/buf.gen.go.yaml generates, in GOPATH mode
    against Debian's grpc-go: no module proxy, no network."""
    go = shutil.which("go")
    if (
        go is None
        or not shutil.which("protoc-gen-go-grpc")
        or not (GOCODE / "src" / "google.golang.org" / "grpc").is_dir()
        or not BUF.exists()
    ):
        missing("go, protoc-gen-go(-grpc), Debian's grpc-go or buf")
    tmp = tmp_path_factory.mktemp("go")
    subprocess.run(
        [str(BUF), "generate", "--template", "proto/buf.gen.go.yaml", "-o", str(tmp / "tree")],
        cwd=ROOT,
        check=True,
        timeout=120,
    )
    module = tmp / "gopath" / "src" / "tokvec.dev" / "gen" / "go"  # the protos' go_package names this module
    shutil.copytree(GO_DIR, module, ignore=shutil.ignore_patterns("tokvec"))
    shutil.copytree(tmp / "tree" / "examples" / "clients" / "go" / "tokvec", module / "tokvec")
    env = dict(os.environ, GO111MODULE="off", GOPATH=f"{tmp / 'gopath'}:{GOCODE}", GOFLAGS="")
    binary = tmp / "tokvec-embed"
    subprocess.run(
        [go, "build", "-o", str(binary), "tokvec.dev/gen/go/cmd/tokvec-embed"],
        cwd=tmp,
        env=env,
        check=True,
        timeout=600,
    )
    return binary


@pytest.fixture(scope="module")
def docs(ewt_docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Words without spaces, words with them, text, a doc long enough to come in chunks, a bad doc."""
    words = [w for d in ewt_docs[20:120] for w in d["words"]][:5000]
    return (
        [{"id": d["id"], "words": d["words"]} for d in ewt_docs[:5]]
        + [{"id": d["id"], "words": d["words"], "spaces": d["spaces"]} for d in ewt_docs[5:9]]
        + [
            {"id": "text", "text": "I can't go to New York. Nobody told me!"},
            {"id": "long", "words": words},
            {"id": "bad", "words": ["a", "b"], "spaces": [True]},
        ]
    )


def python_rows(address: str, docs: list[dict[str, Any]], dtype: str, stream: bool) -> list[Any]:
    """The Python client's results, words-only docs sent as plain word lists."""
    as_sent = [d["text"] if "text" in d else d if "spaces" in d else list(d["words"]) for d in docs]
    with Client(address, dtype=dtype) as client:
        return list(client.stream(as_sent)) if stream else client.embed_results(as_sent)


def run_client(cmd: list[str], tmp_path: Path, docs: list[dict[str, Any]], cwd: Path) -> list[dict[str, Any]]:
    source = tmp_path / "docs.jsonl"
    source.write_text("".join(json.dumps(d) + "\n" for d in docs))
    done = subprocess.run([*cmd, str(source)], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def assert_same_rows(got: list[dict[str, Any]], want: list[Any], docs: list[dict[str, Any]], dtype: str) -> float:
    """Every doc: same index, id, shape and rows (within one unit in the last place); the bad doc
    fails alone with the same message. Returns the largest difference."""
    assert [g["index"] for g in got] == list(range(len(docs)))
    worst = 0.0
    for doc, g, w in zip(docs, got, want):
        assert g["id"] == doc["id"]
        if doc["id"] == "bad":
            assert (
                g["error"] == {"code": 3, "message": f"docs[{g['index']}].spaces: 1 values for 2 words"}
                and w.error.reason == g["error"]["message"]
            )
            continue
        rows = np.frombuffer(base64.b64decode(g["rows"]), "<f4").reshape(g["shape"])
        assert rows.shape == w.rows.shape and rows.shape[1] == 384, doc["id"]
        np.testing.assert_allclose(rows, w.rows, **TOLERANCE[dtype], err_msg=doc["id"])
        worst = max(worst, float(np.abs(rows - w.rows).max()))
    return worst


def test_node_decodes_the_wire_as_the_proto_says(node: str) -> None:
    done = subprocess.run([node, "--test", "test/"], cwd=NODE_DIR, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "# pass 7" in done.stdout and "# fail 0" in done.stdout


@pytest.mark.parametrize(
    ("dtype", "stream"), [("float32", False), ("float32", True), ("float16", False), ("bfloat16", True)]
)
def test_node_client_rows_equal_the_python_clients(
    node: str, minilm: Any, docs: list[dict[str, Any]], tmp_path: Path, dtype: str, stream: bool
) -> None:
    cmd = [node, "embed.js", "--server", minilm.address, "--dtype", dtype, "--json", *(["--stream"] if stream else [])]
    got = run_client(cmd, tmp_path, docs, NODE_DIR)
    worst = assert_same_rows(got, python_rows(minilm.address, docs, dtype, stream), docs, dtype)
    assert got[docs.index(next(d for d in docs if d["id"] == "text"))]["words"][:4] == ["I", "ca", "n't", "go"]
    print(
        f"node {dtype} {'EmbedStream' if stream else 'Embed'}: {len(docs)} docs, largest difference to the Python client {worst:.2e}"
    )


@pytest.mark.parametrize(("dtype", "stream"), [("float32", False), ("bfloat16", True)])
def test_go_client_rows_equal_the_python_clients(
    go_client: Path, minilm: Any, docs: list[dict[str, Any]], tmp_path: Path, dtype: str, stream: bool
) -> None:
    cmd = [str(go_client), "-server", minilm.address, "-dtype", dtype, "-json", *(["-stream"] if stream else [])]
    got = run_client(cmd, tmp_path, docs, tmp_path)
    worst = assert_same_rows(got, python_rows(minilm.address, docs, dtype, stream), docs, dtype)
    print(
        f"go {dtype} {'EmbedStream' if stream else 'Embed'}: {len(docs)} docs, largest difference to the Python client {worst:.2e}"
    )


def test_typescript_stubs_generate_and_type_check(node: str, tmp_path: Path) -> None:
    """proto/buf.gen.ts.yaml writes grpc-js stubs (ts-proto) that tsc --strict accepts."""
    if not BUF.exists():
        missing("buf")
    subprocess.run(
        [str(BUF), "generate", "--template", "proto/buf.gen.ts.yaml", "-o", str(tmp_path)],
        cwd=ROOT,
        check=True,
        timeout=120,
    )
    out = tmp_path / "examples" / "clients" / "node"
    source = (out / "gen" / "tokvec" / "v1" / "tokvec.ts").read_text()
    assert "export class EmbedServiceClient" in source or "export const EmbedServiceClient" in source
    shutil.copy(NODE_DIR / "tsconfig.json", out / "tsconfig.json")
    (out / "node_modules").symlink_to(NODE_DIR / "node_modules")
    done = subprocess.run(
        [node, str(NODE_DIR / "node_modules" / "typescript" / "bin" / "tsc"), "-p", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_java_and_csharp_get_their_packages(tmp_path: Path) -> None:
    """protoc's own generators, no flags: one Java class per message in dev.tokvec.v1, and the
    C# namespace Tokvec.V1."""
    protoc = shutil.which("protoc")
    if protoc is None:
        missing("protoc")
    protos = ["tokvec/v1/tokvec.proto", "tokvec/v1/vectors.proto"]
    subprocess.run(
        [protoc, f"-I{ROOT / 'proto'}", f"--java_out={tmp_path}", f"--csharp_out={tmp_path}", *protos],
        check=True,
        timeout=60,
    )
    java = tmp_path / "dev" / "tokvec" / "v1"
    for name in ("Doc", "DocResult", "Tensor", "EmbedServiceOuterClass", "TokvecProto", "VectorsProto"):
        assert (java / f"{name}.java").exists() == (name != "EmbedServiceOuterClass"), name
    assert "package dev.tokvec.v1;" in (java / "DocResult.java").read_text()
    for name in ("Tokvec.cs", "Vectors.cs"):
        assert "namespace Tokvec.V1 {" in (tmp_path / name).read_text()
