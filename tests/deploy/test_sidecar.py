"""The sidecar layout on one machine: ``tokvec serve`` on a unix socket, the example spaCy pipeline
(deploy/examples/pipeline.py, the one the compose file and the native-sidecar overlay run) in a
separate process embedding through that socket, and the container health probe reading it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from serving import ROOT, ServerProcess

from tokvec import Client

TEXTS = ["The server embeds once; every pipeline that shares it listens.", "Sidecars talk over a socket, don't they?"]
PROBE = [sys.executable, str(ROOT / "scripts" / "healthcheck.py")]


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # Short and under /tmp: a unix socket path must fit in 108 bytes.
    folder = Path(tempfile.mkdtemp(prefix="tokvec-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.timeout(120)
def test_a_pipeline_process_embeds_through_the_unix_socket(socket_dir: Path, tmp_path: Path) -> None:
    spacy = pytest.importorskip("spacy")
    address = f"unix:{socket_dir / 'tokvec.sock'}"
    server = ServerProcess("--backend", "fake", "--address", address)
    try:
        assert server.address == address
        probe = subprocess.run([*PROBE, "--address", address], capture_output=True, text=True, timeout=30)
        assert probe.returncode == 0 and "SERVING" in probe.stdout, probe.stdout

        out = tmp_path / "rows.npz"
        args = [
            sys.executable,
            str(ROOT / "deploy" / "examples" / "pipeline.py"),
            "--address",
            address,
            "--out",
            str(out),
        ]
        for text in TEXTS:
            args += ["--text", text]
        done = subprocess.run(args, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        lines = [json.loads(line) for line in done.stdout.splitlines()]

        # The pipeline's rows are the server's rows for spaCy's tokens: one per token, same values.
        nlp = spacy.blank("en")
        docs = [nlp(text) for text in TEXTS]
        with Client(address) as client:
            expected = client.embed(docs)
        saved = np.load(out)
        for i, (doc, line) in enumerate(zip(docs, lines, strict=True)):
            assert line["tokens"] == len(doc) and line["width"] == 384 and line["fingerprint"].startswith("fake-")
            assert list(saved[f"words_{i}"]) == [t.text for t in doc]
            np.testing.assert_allclose(saved[f"rows_{i}"], expected[i], atol=3e-5)
    finally:
        assert server.stop() == 0

    # Stopped: the probe says so, quickly, with a non-zero exit (what Docker and the kubelet read).
    probe = subprocess.run([*PROBE, "--address", address, "--timeout", "2"], capture_output=True, text=True, timeout=30)
    assert probe.returncode == 1 and "UNAVAILABLE" in probe.stdout, probe.stdout
