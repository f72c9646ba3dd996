"""Two local servers: `tokvec embed` spreads a corpus over both, and Ray Data on a local cluster
embeds it through tokvec.ray.Embed (an actor per worker, both addresses), every doc once, with
the rows the CLI wrote."""

from __future__ import annotations

import os

# A one-node cluster on loopback: by default Ray binds the machine's own address, even for a
# local cluster. And no token file written under the home folder.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray
from serving import ENV, ServerProcess, corpus

import tokvec.ray
from tokvec import open_rows

# Ray Data's own defaults trip its deprecation warnings (DataContext), whatever the caller does.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def admitted(server: ServerProcess) -> int:
    """Docs the server has taken into its queue so far (its /metrics)."""
    url = next(m.group(1) for line in server.lines if (m := re.search(r"metrics on (\S+)", line)))
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return int(
        sum(
            float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("tokvec_admitted_docs_total")
        )
    )


@pytest.fixture(scope="module")
def second() -> Iterator[ServerProcess]:
    server = ServerProcess("--metrics-address", "127.0.0.1:0")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cli_rows(
    minilm: Any, second: ServerProcess, tmp_path_factory: pytest.TempPathFactory, ewt_docs: list[dict[str, Any]]
) -> Iterator[tuple[Path, Any, int]]:
    """Every EWT test doc through `tokvec embed --server A --server B`: the input, the rows, and
    the docs the second server took."""
    folder = tmp_path_factory.mktemp("spread")
    docs = corpus(folder / "in.jsonl", ewt_docs)
    before = admitted(second)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tokvec",
            "embed",
            str(folder / "in.jsonl"),
            "--server",
            minilm.address,
            "--server",
            second.address,
            "--output",
            str(folder / "rows"),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env=ENV,
    )
    assert done.returncode == 0, done.stderr
    with open_rows(folder / "rows") as rows:
        assert sorted(rows) == sorted(d["id"] for d in docs)
        yield folder / "in.jsonl", rows, admitted(second) - before


def test_embed_spreads_over_two_servers(cli_rows: tuple[Path, Any, int]) -> None:
    _, rows, on_second = cli_rows
    assert 0 < on_second < len(rows), f"the second server took {on_second} of {len(rows)} docs"


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=200 * 1024 * 1024,
        log_to_driver=False,
        configure_logging=False,
    )
    yield
    ray.shutdown()


def test_ray_data_embeds_every_doc_once_with_the_clis_rows(
    minilm: Any, second: ServerProcess, cli_rows: tuple[Path, Any, int], local_ray: None, tmp_path: Path
) -> None:
    source, rows, _ = cli_rows
    first = source.read_text().splitlines()[:48]
    (tmp_path / "in.jsonl").write_text("\n".join(first) + "\n")
    ds = ray.data.read_json(str(tmp_path / "in.jsonl"))
    embedded = ds.map_batches(
        tokvec.ray.Embed,
        fn_constructor_kwargs={"address": [minilm.address, second.address]},
        concurrency=2,
        num_cpus=0.5,
        batch_size=8,
    )
    embedded.select_columns(["id", "rows"]).write_parquet(str(tmp_path / "parquet"))  # Ray's own writer
    back = ray.data.read_parquet(str(tmp_path / "parquet")).take_all()
    ids = [r["id"] for r in back]
    assert len(ids) == len(set(ids)) == 48 and set(ids) == {
        line.split('"id": "', 1)[1].split('"', 1)[0] for line in first
    }
    for r in back:
        assert r["rows"].shape == rows[r["id"]].shape and r["rows"].dtype == np.float32
        np.testing.assert_allclose(r["rows"], rows[r["id"]], atol=1e-5)


def test_embed_sends_a_lost_servers_docs_to_the_other(
    minilm: Any, tmp_path: Path, ewt_docs: list[dict[str, Any]]
) -> None:
    docs = corpus(tmp_path / "in.jsonl", ewt_docs)
    doomed = ServerProcess()
    out = tmp_path / "rows"
    # --wait 900: were the run to wait for the dead server before it ends, it would time out below.
    cli = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tokvec",
            "embed",
            str(tmp_path / "in.jsonl"),
            "--server",
            minilm.address,
            "--server",
            doomed.address,
            "--output",
            str(out),
            "--wait",
            "900",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        index = tmp_path / "rows.partial" / "index.jsonl"
        deadline = time.monotonic() + 300
        while (
            not (index.exists() and index.read_bytes().count(b"\n") >= 30)
            and cli.poll() is None
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        doomed.proc.kill()
        _, err = cli.communicate(timeout=600)
    finally:
        cli.kill()
        doomed.stop()
    assert cli.returncode == 0, err
    assert f"lost {doomed.address}" in err
    ids = [json.loads(line)["id"] for line in (out / "index.jsonl").read_text().splitlines()]
    assert len(ids) == len(set(ids)) == len(docs)  # every doc once, the lost server's too
    with open_rows(out) as rows:
        assert all(rows[d["id"]].shape == (len(d["words"]), 384) for d in docs)
