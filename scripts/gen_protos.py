"""Regenerate the committed protobuf and gRPC stubs from proto/.

Generating from the proto/ root makes protoc's imports come out as ``tokvec.v1...``, which is
where the stubs live inside the client package (client/tokvec/v1/), so nothing is rewritten.
tests/test_package.py fails when the committed stubs differ from what this script writes.

The generator is pinned, and older than the grpcio and protobuf the project runs on: generated code
asks for at least the releases that made it, so its version is the client's lower bound
(pyproject.toml). It needs a protobuf older than the project's, so it lives in a venv of its own,
.venv-protos, made on first use; the script runs itself there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "proto"
OUT = ROOT / "client"
GENERATOR = "grpcio-tools==1.71.0"  # protobuf gencode 5.29: the lower bounds in pyproject.toml
TOOLS = ROOT / ".venv-protos"


def tools_python() -> Path:
    """The generator venv's interpreter, made (or remade for another GENERATOR) when needed."""
    python, stamp = TOOLS / "bin" / "python", TOOLS / "generator.txt"
    if not (python.exists() and stamp.exists() and stamp.read_text() == GENERATOR):
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(TOOLS)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", GENERATOR], check=True)
        stamp.write_text(GENERATOR)
    return python


def generate(out: Path = OUT) -> list[Path]:
    """Write the stubs for every .proto under proto/ into ``out``; return the files written."""
    from grpc_tools import protoc

    protos = sorted(PROTO_ROOT.rglob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *(str(p.relative_to(PROTO_ROOT)) for p in protos),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    written = []
    for proto in protos:
        stem = proto.relative_to(PROTO_ROOT).with_suffix("")
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
            written.append(out / f"{stem}{suffix}")
    return written


if __name__ == "__main__":
    python = tools_python()
    if Path(sys.prefix).resolve() != TOOLS.resolve():
        os.execv(python, [str(python), __file__, *sys.argv[1:]])
    for path in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT):
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
