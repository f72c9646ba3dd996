"""The command-line contract: tokvec serve / embed / info."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
from serving import DATA

TOKVEC = [sys.executable, "-m", "tokvec"]


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TOKVEC, *args], capture_output=True, text=True, timeout=timeout)


def test_embed_writes_one_float32_array_per_id(minilm, tmp_path):
    out = tmp_path / "ewt.npz"
    done = run(
        "embed",
        str(DATA / "ewt-test.jsonl"),
        "--server",
        minilm.address,
        "--output",
        str(out),
        "--spans",
        "tokens:128:96",
    )
    assert done.returncode == 0, done.stderr
    arrays = np.load(out)
    with (DATA / "ewt-test.jsonl").open() as f:
        docs = [json.loads(line) for line in f]
    assert sorted(arrays.files) == sorted(d["id"] for d in docs)
    assert all(arrays[d["id"]].shape == (len(d["words"]), 384) and arrays[d["id"]].dtype == np.float32 for d in docs)
    assert "316 docs, 25,094 tokens" in done.stderr and "tokens/s" in done.stderr


def test_embed_reports_bad_lines_and_never_overwrites(minilm, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(
        "\n".join(
            [
                json.dumps({"id": "ok", "text": "Hello world."}),
                "{not json",
                json.dumps({"id": "ok", "words": ["dup"]}),
                json.dumps({"id": "mismatch", "words": ["a", "b"], "spaces": [True]}),
                json.dumps({"id": "too-long", "words": ["w"] * 20001}),
                json.dumps(
                    {
                        "id": "sents",
                        "words": ["A", ".", "B", "."],
                        "spaces": [True, True, True, False],
                        "sent_starts": [True, False, True, False],
                    }
                ),
            ]
        )
        + "\n"
    )
    out = tmp_path / "out.npz"
    out.write_bytes(b"precious")
    refused = run("embed", str(source), "--server", minilm.address, "--output", str(out))
    assert refused.returncode == 2 and "--force" in refused.stderr and out.read_bytes() == b"precious"
    done = run("embed", str(source), "--server", minilm.address, "--output", str(out), "--force", "--spans", "sents")
    assert done.returncode == 1
    for line in (2, 3, 4):
        assert f"in.jsonl:{line}:" in done.stderr
    assert "in.jsonl:5: docs[" in done.stderr and "> max_tokens_per_doc (16384)" in done.stderr
    arrays = np.load(out)
    assert sorted(arrays.files) == ["ok", "sents"] and arrays["ok"].shape == (3, 384)


def test_embed_jsonl_words_without_spaces_get_one_after_each(minilm, tmp_path):
    """A JSONL doc without "spaces" means what the client's plain word list means (spaCy's default)."""
    from tokvec import Client

    words = ["New", "York", "is", "big", "."]
    source = tmp_path / "in.jsonl"
    source.write_text(
        json.dumps({"id": "bare", "words": words})
        + "\n"
        + json.dumps({"id": "tight", "words": words, "spaces": [False] * 5})
        + "\n"
    )
    out = tmp_path / "out.npz"
    done = run("embed", str(source), "--server", minilm.address, "--output", str(out))
    assert done.returncode == 0, done.stderr
    with Client(minilm.address) as client:
        [plain] = client.embed([words])
    arrays = np.load(out)
    np.testing.assert_allclose(arrays["bare"], plain, atol=1e-5, rtol=0)  # batch-mates move rows by ~1e-6
    assert np.abs(arrays["tight"] - plain).max() > 0.1


def test_info(minilm):
    done = run("info", "--server", minilm.address)
    assert done.returncode == 0, done.stderr
    for field in (
        "all-MiniLM-L6-v2",
        "fingerprint",
        "width        384",
        "max length   512",
        "torch on cpu, float32",
        "max_docs_per_request=1024",
    ):
        assert field in done.stdout


def test_info_names_an_unreachable_server():
    done = run("info", "--server", "127.0.0.1:1", "--timeout", "2")
    assert done.returncode == 1 and "127.0.0.1:1" in done.stderr and "UNAVAILABLE" in done.stderr


def test_serve_fails_fast_with_one_line(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    for args, expected in [
        (["--model", str(tmp_path / "missing")], "no such folder"),
        (["--model", str(tmp_path)], "tokenizer does not load"),
        (["--device", "tpu"], "device: 'tpu'"),
    ]:
        started = time.monotonic()
        done = run("serve", "--address", "127.0.0.1:0", *args, timeout=60)
        assert done.returncode != 0 and time.monotonic() - started < 30
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and expected in lines[0], done.stderr
        assert "Traceback" not in done.stderr


def test_serve_refuses_a_port_in_use(minilm):
    done = run("serve", "--address", minilm.address, "--backend", "fake", timeout=60)
    assert done.returncode != 0 and minilm.address in done.stderr and "Traceback" not in done.stderr
