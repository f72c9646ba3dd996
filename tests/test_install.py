"""`pip install tokvec` into an environment that already holds the oldest grpcio and protobuf the
library supports keeps them (nothing upgraded, nothing refused), and the client works with them:
its rows from the real server equal those of this environment's client."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from serving import ROOT, ServerProcess

from tokvec import Client

OLDEST = {
    "grpcio": "1.71.0",
    "grpcio-health-checking": "1.71.0",
    "protobuf": "5.29.0",
}  # the lower bounds in pyproject.toml
CLIENT = """
import json, sys
import numpy as np
import tokvec
with tokvec.Client(sys.argv[1]) as client:
    rows = client.embed(json.loads(sys.argv[2]))
np.save(sys.argv[3], np.concatenate(rows))
"""


def pip(python: Path, *args: str) -> str:
    done = subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", *args], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def test_the_client_installs_beside_older_grpcio_and_protobuf(
    tmp_path: Path, minilm: ServerProcess, ewt_docs: list[dict[str, Any]]
) -> None:
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True, timeout=120)
    python = tmp_path / "venv" / "bin" / "python"
    pins = [f"{name}=={version}" for name, version in OLDEST.items()] + [
        f"numpy=={importlib.metadata.version('numpy')}"
    ]
    pip(python, "install", "-q", *pins)
    pip(python, "install", "-q", str(ROOT))
    installed = {p["name"].lower(): p["version"] for p in json.loads(pip(python, "list", "--format", "json"))}
    assert {name: installed[name] for name in OLDEST} == OLDEST, (
        "installing tokvec changed grpcio, its health checking, or protobuf"
    )
    site = subprocess.run(
        [str(python), "-c", "import tokvec, pathlib; print(pathlib.Path(tokvec.__file__).parent)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert (Path(site.stdout.strip()) / "py.typed").is_file(), "the installed client ships no py.typed"

    docs = [{"words": d["words"], "spaces": d["spaces"]} for d in ewt_docs[:3]]
    out = tmp_path / "rows.npy"
    done = subprocess.run(
        [str(python), "-W", "error", "-c", CLIENT, minilm.address, json.dumps(docs), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with Client(minilm.address) as client:
        want = np.concatenate(client.embed(docs))
    np.testing.assert_array_equal(np.load(out), want)
