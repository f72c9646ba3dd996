"""`tokvec embed` at corpus scale, over the real wire with the real model: it waits for a server
that is starting, a SIGKILLed run resumes without losing or repeating a doc, and open_rows reads
every format it writes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from serving import ENV, ServerProcess, corpus

from tokvec import Client, open_rows

TOKVEC = [sys.executable, "-m", "tokvec"]
LONG_TOKEN = "data:image/png;base64," + "iVBORw0KGgo" * 271  # 3,003 characters, one token


def embed(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TOKVEC, "embed", *args], capture_output=True, text=True, timeout=timeout, env=ENV)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check_rows(rows: Any, docs: list[dict[str, Any]], reference: dict[str, np.ndarray]) -> None:
    """Every doc once, one row per word, the rows a plain Client gets."""
    assert sorted(rows) == sorted(d["id"] for d in docs)
    for d in docs:
        got = rows[d["id"]]
        assert got.shape == (len(d["words"]), 384) and got.dtype == np.float32
        np.testing.assert_allclose(got, reference[d["id"].split("#")[0]], atol=1e-5)


@pytest.fixture(scope="module")
def some_docs(ewt_docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return ewt_docs[:150]


@pytest.fixture(scope="module")
def reference(minilm: Any, some_docs: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    with Client(minilm.address, timeout=600) as client:
        rows = client.embed(some_docs)
    return {d["id"]: r for d, r in zip(some_docs, rows)}


def test_waits_for_a_server_that_is_starting(tmp_path: Path, ewt_docs: list[dict[str, Any]]) -> None:
    docs = corpus(tmp_path / "in.jsonl", ewt_docs[:24])
    address = f"127.0.0.1:{free_port()}"
    out = tmp_path / "rows.npz"
    cli = subprocess.Popen(
        [*TOKVEC, "embed", str(tmp_path / "in.jsonl"), "--server", address, "--output", str(out), "--wait", "240"],
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    server = None
    try:
        assert cli.stderr is not None
        first = cli.stderr.readline()
        assert f"waiting up to 240s for {address} to be ready" in first
        assert not out.exists() and not Path(f"{out}.partial").exists()  # nothing that looks like a result
        server = ServerProcess("--address", address)  # after ServerProcess's own --address: this one wins
        assert cli.wait(timeout=300) == 0, cli.stderr.read()
        summary = cli.stderr.read()
    finally:
        cli.kill()
        cli.wait()
        cli.stderr.close()
        if server is not None:
            server.stop()
    assert "24 docs" in summary and str(out) in summary
    with open_rows(out) as rows:
        assert sorted(rows) == sorted(d["id"] for d in docs)
        assert all(rows[d["id"]].shape == (len(d["words"]), 384) for d in docs)


def test_gives_up_after_wait_and_leaves_nothing(tmp_path: Path, ewt_docs: list[dict[str, Any]]) -> None:
    corpus(tmp_path / "in.jsonl", ewt_docs[:3])
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    done = embed(str(tmp_path / "in.jsonl"), "--server", address, "--output", str(tmp_path / "rows"), "--wait", "3")
    assert done.returncode == 1 and time.monotonic() - started < 60
    assert f"{address} not ready within 3s" in done.stderr and "no server to send the remaining docs to" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def test_resume_after_sigkill(
    minilm: Any, reference: dict[str, np.ndarray], tmp_path: Path, some_docs: list[dict[str, Any]]
) -> None:
    docs = corpus(tmp_path / "in.jsonl", some_docs)
    out = tmp_path / "rows"
    partial = Path(f"{out}.partial")
    cli = subprocess.Popen(
        [*TOKVEC, "embed", str(tmp_path / "in.jsonl"), "--server", minilm.address, "--output", str(out)],
        stderr=subprocess.DEVNULL,
        env=ENV,
    )
    index = partial / "index.jsonl"
    deadline = time.monotonic() + 300
    while (
        not (index.exists() and index.read_bytes().count(b"\n") >= 40)
        and cli.poll() is None
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    cli.send_signal(signal.SIGKILL)
    cli.wait()
    assert cli.returncode == -signal.SIGKILL and not out.exists()
    with open_rows(partial) as before:  # what the killed run wrote is readable as it is
        first = sorted(before)
        assert 40 <= len(first) < len(docs)
        check_rows(before, [d for d in docs if d["id"] in set(first)], reference)
    refused = embed(str(tmp_path / "in.jsonl"), "--server", minilm.address, "--output", str(out))
    assert refused.returncode == 2 and "pass --resume" in refused.stderr
    done = embed(str(tmp_path / "in.jsonl"), "--server", minilm.address, "--output", str(out), "--resume")
    assert done.returncode == 0, done.stderr
    resumed = len(docs) - len(first)
    assert f"tokvec embed: {resumed:,} docs" in done.stderr and f"({len(first):,} done before)" in done.stderr
    assert not partial.exists()
    ids = [json.loads(line)["id"] for line in (out / "index.jsonl").read_text().splitlines()]
    assert len(ids) == len(set(ids)) == len(docs)  # none missing, none twice
    with open_rows(out) as rows:
        check_rows(rows, docs, reference)


def test_open_rows_reads_every_format(
    minilm: Any, reference: dict[str, np.ndarray], tmp_path: Path, ewt_docs: list[dict[str, Any]]
) -> None:
    docs = corpus(tmp_path / "in.jsonl", ewt_docs[:40])
    long = {"id": "long-token", "words": ["See", LONG_TOKEN, "."], "spaces": [True, False, False]}
    with (tmp_path / "in.jsonl").open("a") as f:
        f.write(json.dumps(long) + "\n")
    outputs = {"folder": tmp_path / "rows", "npz": tmp_path / "rows.npz"}
    for path in outputs.values():
        done = embed(
            str(tmp_path / "in.jsonl"),
            "--server",
            f"{minilm.address},{minilm.address}",
            "--output",
            str(path),
            "--shard-mb",
            "0.5",
        )
        assert done.returncode == 0, done.stderr
        assert "41 docs" in done.stderr
    assert len(list(outputs["folder"].glob("shard-*.npy"))) >= 3  # 0.5 MiB shards: the docs span several
    with open_rows(outputs["folder"]) as folder, open_rows(outputs["npz"]) as npz:
        for rows in (folder, npz):
            check_rows({k: rows[k] for k in rows if k != "long-token"}, docs, reference)
            assert rows["long-token"].shape == (3, 384) and np.abs(rows["long-token"]).sum(axis=1).min() > 0
            with pytest.raises(ValueError, match="read-only"):
                rows[docs[0]["id"]][0, 0] = 0.0
        np.testing.assert_allclose(folder["long-token"], npz["long-token"], atol=1e-5)


def test_progress_bar_on_a_terminal_and_none_on_a_pipe(
    minilm: Any, tmp_path: Path, ewt_docs: list[dict[str, Any]]
) -> None:
    import fcntl
    import pty
    import struct
    import termios

    corpus(tmp_path / "in.jsonl", ewt_docs[:30])
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # a terminal 160 columns wide
    cli = subprocess.Popen(
        [*TOKVEC, "embed", str(tmp_path / "in.jsonl"), "--server", minilm.address, "--output", str(tmp_path / "rows")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=follower,
        env=ENV,
    )
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal's other end closed: the CLI is gone
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    assert cli.wait(timeout=60) == 0
    screen = seen.decode(errors="replace")
    assert "100%|" in screen and "30 docs, " in screen and " tokens/s" in screen  # tqdm's bar: rate, ETA, docs, tokens
    assert "tokvec embed: 30 docs" in screen.splitlines()[-1]  # the summary line stays
    piped = embed(str(tmp_path / "in.jsonl"), "--server", minilm.address, "--output", str(tmp_path / "again"))
    assert piped.returncode == 0 and piped.stderr.splitlines() == [piped.stderr.strip()]  # the summary line alone
    assert "%|" not in piped.stderr
