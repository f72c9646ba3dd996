"""The contract as a caller in another language reads it: proto/ documents what the server does,
names its generated packages, and buf lint keeps every element commented."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tokvec.v1 import tokvec_pb2, vectors_pb2
from tokvec_server.settings import Limits, MiB

ROOT = Path(__file__).resolve().parents[1]
PROTO = ROOT / "proto" / "tokvec" / "v1" / "tokvec.proto"
BUF = ROOT / ".venv" / "bin" / "buf"


def test_documented_limit_defaults_are_the_servers():
    """Each `(default N)` in the Limits message's comments is the server's default."""
    block = PROTO.read_text().split("message Limits {", 1)[1].split("\n}", 1)[0]
    documented = {}
    for comment, name in re.findall(r"((?:\s*//[^\n]*\n)+)\s*uint32 (\w+) = \d+;", block):
        if m := re.search(r"\(default (\d+)( MiB)?\)", " ".join(comment.split())):
            documented[name] = int(m.group(1)) * (MiB if m.group(2) else 1)
    assert set(documented) >= {
        "max_docs_per_request",
        "max_tokens_per_doc",
        "max_chars_per_doc",
        "max_message_bytes",
        "max_in_flight_per_stream",
    }
    assert documented == {name: getattr(Limits(), name) for name in documented}


def test_language_options_name_one_package_in_every_file():
    """protoc-gen-go needs no M flags, Java gets one class per message, C# a namespace."""
    for module in (tokvec_pb2, vectors_pb2):
        options = module.DESCRIPTOR.GetOptions()
        assert options.go_package == "tokvec.dev/gen/go/tokvec/v1;tokvecv1"
        assert (options.java_package, options.java_multiple_files, options.csharp_namespace) == (
            "dev.tokvec.v1",
            True,
            "Tokvec.V1",
        )


def test_buf_lint_requires_a_comment_on_every_field(tmp_path):
    if not BUF.exists():
        reason = "buf not installed (pip install -e '.[deploy]')"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    shutil.copytree(ROOT / "proto", tmp_path / "proto")
    assert subprocess.run([str(BUF), "lint"], cwd=tmp_path, capture_output=True, text=True).returncode == 0
    copy = tmp_path / "proto" / "tokvec" / "v1" / "tokvec.proto"
    text = copy.read_text()
    comment = "  // Characters (Unicode code points) of one doc's text, spaces included (default 200000).\n"
    assert comment in text
    copy.write_text(text.replace(comment, ""))
    done = subprocess.run([str(BUF), "lint"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode != 0 and 'Field "max_chars_per_doc" should have a non-empty comment' in done.stdout
