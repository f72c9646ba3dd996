"""R14 process model, the client's half: no gRPC object exists before a fork (the channel opens on
first use, and a pickled client carries none), so fork and spawn worker pools each get their own
connection; grpcio and protobuf are pinned where the project runs and ranges where it installs. (spaCy's ``nlp.pipe(n_process=2)`` under fork and
spawn is tested with the spaCy component.)"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
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


def requirements() -> dict[str, str]:
    """Requirement name -> version specifier, over the base dependencies and every extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found: dict[str, str] = {}
    for requirement in list(project["dependencies"]) + [
        r for extra in project["optional-dependencies"].values() for r in extra
    ]:
        m = re.match(r"^([A-Za-z0-9_.-]+)\s*([^;]*)", requirement)
        assert m, requirement
        found[m.group(1).lower()] = m.group(2).strip()
    return found


def constraints() -> dict[str, str]:
    """constraints.txt: name -> pinned version."""
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    return dict(line.split("==") for line in (line.split("#")[0].strip() for line in lines) if line)


def test_grpcio_and_protobuf_are_pinned_where_they_run_and_ranges_where_they_install() -> None:
    """The image, the scripts and CI run the releases the soak ran on (constraints.txt: exact,
    installed here, one grpcio release for the whole family); the library asks for ranges that
    admit them, so that it installs beside other software (tests/test_install.py)."""
    pinned, wanted = constraints(), requirements()
    family = {name for name in wanted if name.startswith("grpcio") and name != "grpcio-tools"} | {"protobuf"}
    assert family <= set(pinned), f"not pinned in constraints.txt: {family - set(pinned)}"
    assert len({v for n, v in pinned.items() if n.startswith("grpcio")}) == 1, pinned
    for name in family:
        assert importlib.metadata.version(name) == pinned[name], (
            f"{name}: installed {importlib.metadata.version(name)}, pinned {pinned[name]}"
        )
        assert not wanted[name].startswith("=="), f"{name}{wanted[name]}: the library pins it; a range belongs there"
        assert SpecifierSet(wanted[name]).contains(pinned[name]), (
            f"{name}{wanted[name]} does not admit the pinned {pinned[name]}"
        )


def test_the_lower_bounds_are_what_the_stubs_need() -> None:
    """Generated code asks for at least the releases that made it: those are the lower bounds."""
    from tokvec.v1 import tokvec_pb2_grpc

    gencode = re.search(r"Protobuf Python Version: (\d+\.\d+)", Path(tokvec_pb2.__file__).read_text())
    assert gencode, "the generated stubs do not say which protobuf made them"
    wanted = requirements()
    assert f">={gencode.group(1)}" in wanted["protobuf"].split(","), (gencode.group(1), wanted["protobuf"])
    grpc_made = ".".join(tokvec_pb2_grpc.GRPC_GENERATED_VERSION.split(".")[:2])
    assert wanted["grpcio"] == f">={grpc_made}", (grpc_made, wanted["grpcio"])
