"""R7 startup: missing or corrupt weights, a tokenizer that does not match the model, a port in use,
a bad setting: ``tokvec serve`` exits non-zero within 10 s with one line that names the path or
setting and the cause, and no traceback.

On two shared cores a bare ``import torch`` can take several seconds of wall time that are other
processes' CPU, so the 10 s is checked twice: on the CPU time the failed start used, and on its wall
time scaled by the slowdown (wall / CPU) of a reference process measured in the same run.
"""

from __future__ import annotations

import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tokvec_server.runners import default_model_path

LIMIT_S = 10.0


def timed(cmd: list[str]) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """Run to the end: (result, wall seconds, CPU seconds of the child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return done, wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


@pytest.fixture(scope="module")
def slowdown() -> float:
    """How much longer than its CPU time a process takes on this machine now (1 when quiet)."""
    _, wall, cpu = timed([sys.executable, "-c", "import torch, transformers"])
    return max(1.0, wall / max(cpu, 0.1))


def serve(*args: str) -> tuple[int, list[str], float, float]:
    done, wall, cpu = timed([sys.executable, "-m", "tokvec", "serve", "--address", "127.0.0.1:0", *args])
    lines = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if line.strip() and not line.startswith("tokvec: listening")
    ]
    return done.returncode, lines, wall, cpu


def model_copy(tmp_path: Path, skip: tuple[str, ...] = ()) -> Path:
    """The embedded model's files, linked into a folder we may break."""
    folder = tmp_path / "model"
    folder.mkdir()
    for f in default_model_path().iterdir():
        if f.is_file() and f.name not in skip:
            (folder / f.name).symlink_to(f)
    return folder


def missing_weights(tmp_path: Path) -> tuple[list[str], list[str]]:
    folder = model_copy(tmp_path, skip=("model.safetensors",))
    return ["--model", str(folder)], [str(folder), "weights do not load"]


def corrupt_weights(tmp_path: Path) -> tuple[list[str], list[str]]:
    folder = model_copy(tmp_path, skip=("model.safetensors",))
    data = (default_model_path() / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 3])  # a download cut short
    return ["--model", str(folder)], [str(folder), "weights do not load"]


def tokenizer_mismatch(tmp_path: Path) -> tuple[list[str], list[str]]:
    # Another model's tokenizer: a vocabulary far bigger than the model's embedding table.
    folder = model_copy(tmp_path, skip=("tokenizer.json", "vocab.txt"))
    vocab = (default_model_path() / "vocab.txt").read_text().splitlines()
    (folder / "vocab.txt").write_text("\n".join(vocab + [f"extra{i}" for i in range(5000)]) + "\n")
    return ["--model", str(folder)], [str(folder), "tokenizer has 35522 pieces", "vocab_size is 30522"]


def bad_config(text: str, *expected: str):  # type: ignore[no-untyped-def]
    def make(tmp_path: Path) -> tuple[list[str], list[str]]:
        config = tmp_path / "tokvec.toml"
        config.write_text(text)
        return ["--backend", "fake", "--config", str(config)], list(expected)

    return make


CASES = {
    "missing weights": missing_weights,
    "corrupt weights": corrupt_weights,
    "tokenizer mismatch": tokenizer_mismatch,
    "missing model folder": lambda tmp: (["--model", str(tmp / "nowhere")], [str(tmp / "nowhere"), "no such folder"]),
    "negative limit": bad_config("[limits]\nmax_tokens_per_doc = -1\n", "max_tokens_per_doc", "-1"),
    "unknown setting": bad_config("[limits]\nmax_tokens = 5\n", "max_tokens", "unknown setting"),
    "tiny batch budget": bad_config(
        "[[models]]\nbackend = 'fake'\n[models.batching]\nmax_batch_items = 10\n", "max_batch_items", "10 < 512"
    ),
    "unknown backend": bad_config("[[models]]\nbackend = 'fake'\n[[models]]\nbackend = 'tpu'\n", "backend", "'tpu'"),
    "config is not TOML": bad_config("limits = [\n", "tokvec.toml"),
    "missing token file": lambda tmp: (
        ["--backend", "fake", "--token-file", str(tmp / "tokens")],
        ["token_file", str(tmp / "tokens")],
    ),
    "tls cert without key": lambda tmp: (["--backend", "fake", "--tls-cert", __file__], ["tls_cert and tls_key"]),
    "token over plaintext off loopback": lambda tmp: (
        ["--backend", "fake", "--address", "0.0.0.0:0", "--token-file", __file__],
        ["token_file", "plaintext", "0.0.0.0:0"],
    ),
    "bad keepalive": bad_config("keepalive_s = 0\n", "keepalive_s", "positive"),
}


def check(case: str, args: list[str], expected: list[str], slowdown: float) -> None:
    code, lines, wall, cpu = serve(*args)
    assert code != 0, lines
    assert cpu < LIMIT_S and wall < LIMIT_S * slowdown, (
        f"{case}: {wall:.1f}s wall, {cpu:.1f}s CPU, slowdown {slowdown:.1f}"
    )
    assert len(lines) == 1, f"{case}: {lines}"
    assert all(e in lines[0] for e in expected), f"{case}: {lines[0]!r} should name {expected}"
    assert "Traceback" not in lines[0] and len(lines[0]) < 400


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_start_exits_fast_with_one_line(tmp_path: Path, case: str, slowdown: float) -> None:
    args, expected = CASES[case](tmp_path)
    check(case, args, expected, slowdown)


def test_a_port_in_use(slowdown: float) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        address = f"127.0.0.1:{holder.getsockname()[1]}"
        check("port in use", ["--backend", "fake", "--address", address], [address, "cannot bind"], slowdown)
