"""The public surface and the generated stubs are pinned."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

import tokvec

ROOT = Path(__file__).resolve().parents[1]


def test_public_names_are_pinned():
    assert tokvec.__all__ == [
        "AsyncClient",
        "Client",
        "Credentials",
        "DocError",
        "Embedding",
        "ModelInfo",
        "Pieces",
        "Rows",
        "ServerError",
        "ServerInfo",
        "TokenizedDoc",
        "TokvecError",
        "VectorsClient",
        "__version__",
        "open_rows",
    ]
    for name in tokvec.__all__:
        assert hasattr(tokvec, name)


def test_committed_stubs_match_the_proto(tmp_path):
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), str(tmp_path)], check=True, capture_output=True
    )
    for name in (
        "tokvec_pb2.py",
        "tokvec_pb2.pyi",
        "tokvec_pb2_grpc.py",
        "vectors_pb2.py",
        "vectors_pb2.pyi",
        "vectors_pb2_grpc.py",
    ):
        assert filecmp.cmp(
            tmp_path / "tokvec" / "v1" / name, ROOT / "client" / "tokvec" / "v1" / name, shallow=False
        ), f"regenerate: python scripts/gen_protos.py ({name} differs)"


def test_the_client_needs_no_torch():
    code = "import sys, tokvec, tokvec.cli; assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
