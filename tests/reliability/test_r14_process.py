"""R14 process model, the client's half: no gRPC object exists before a fork (the channel opens on
first use, and a pickled client carries none), so fork and spawn worker pools each get their own
connection; grpcio and protobuf are pinned. (spaCy's ``nlp.pipe(n_process=2)`` under fork and
spawn is tested with the spaCy component.)"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Iterator

import pytest

from serving import ROOT, ServerThread
from tokvec.v1 import tokvec_pb2
from tokvec_server.settings import ModelSettings, Settings

# Runs in a fresh interpreter: the test process itself holds a server and its threads, and
# forking it would prove nothing.
FORK_SCRIPT = r"""
import multiprocessing, os, pickle, sys

import grpc
import tokvec

DOCS = [{"words": ["Hello", "world"], "spaces": [True, False]}]


def native_threads():
    return len(os.listdir("/proc/self/task"))


def grpc_objects():
    import gc
    return [o for o in gc.get_objects() if isinstance(o, (grpc.Channel, grpc.aio.Channel))]


def shape(client):
    return client.embed(DOCS)[0].shape


def main(address):
    # Making clients opens nothing: no channel, no gRPC thread (numpy's own thread may be there).
    threads = native_threads()
    client = tokvec.Client(address, timeout=20)
    tokvec.AsyncClient(address)
    assert native_threads() == threads, (threads, native_threads())
    assert not grpc_objects(), grpc_objects()

    # A raw fork: the child opens its own channel.
    pid = os.fork()
    if pid == 0:
        os._exit(0 if shape(client) == (2, 384) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, status

    # Worker pools, fork and spawn, the client handed over by pickling.
    for method in ("fork", "spawn"):
        with multiprocessing.get_context(method).Pool(2) as pool:
            assert pool.map(shape, [client] * 4, chunksize=1) == [(2, 384)] * 4, method

    # Used, then pickled: the copy carries no channel and opens its own.
    assert shape(client) == (2, 384)
    assert grpc_objects()
    copy = pickle.loads(pickle.dumps(client))
    assert copy.__getstate__().get("_channel") is None
    assert shape(copy) == (2, 384)
    print("ok", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
"""


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    server = ServerThread(Settings(models=(ModelSettings(backend="fake"),)))
    yield server
    server.stop()


def test_no_grpc_object_before_a_fork(server: ServerThread, tmp_path: Path) -> None:
    script = tmp_path / "forks.py"  # a file: spawned workers import it to find shape()
    script.write_text(FORK_SCRIPT)
    done = subprocess.run([sys.executable, str(script), server.address], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout + done.stderr


def pins() -> dict[str, str]:
    """Requirement name -> version specifier, over the base dependencies and every extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"]) + [r for extra in project["optional-dependencies"].values() for r in extra]
    found: dict[str, str] = {}
    for requirement in requirements:
        m = re.match(r"^([A-Za-z0-9_.-]+)\s*(.*)$", requirement)
        assert m, requirement
        found[m.group(1).lower()] = m.group(2).strip()
    return found


def test_grpcio_and_protobuf_are_pinned() -> None:
    """Upgrades of either are gated on the soak (docs/reliability.md R1): an exact pin, installed."""
    specs = pins()
    grpc_family = {name: spec for name, spec in specs.items() if name.startswith("grpcio")}
    assert "grpcio" in grpc_family and "protobuf" in specs
    versions = set()
    for name, spec in [*grpc_family.items(), ("protobuf", specs["protobuf"])]:
        assert spec.startswith("==") and "," not in spec, f"{name}{spec} is not pinned"
        assert importlib.metadata.version(name) == spec[2:], f"{name}: installed {importlib.metadata.version(name)}, pinned {spec}"
        if name.startswith("grpcio"):
            versions.add(spec)
    assert len(versions) == 1, f"grpcio packages pinned to different versions: {grpc_family}"


def test_the_stubs_match_the_pinned_protobuf() -> None:
    # Generated code names the protobuf release it was made by; the runtime must be that major.
    source = Path(tokvec_pb2.__file__).read_text()
    m = re.search(r"Protobuf Python Version: (\d+)\.(\d+)\.(\d+)", source)
    assert m, "the generated stubs do not say which protobuf made them"
    assert importlib.metadata.version("protobuf").split(".")[0] == m.group(1)
