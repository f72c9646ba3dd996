"""`tokvec embed` with "chunks" on a JSONL line: ID/chunks beside ID in the .npz (and the rows
folder), under the run's --pooling, equal to the client's chunk vectors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from tokvec import Client, open_rows

TOKVEC = [sys.executable, "-m", "tokvec"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TOKVEC, *args], capture_output=True, text=True, timeout=300)


def test_embed_writes_chunk_vectors_under_the_runs_pooling(minilm, ewt_docs, tmp_path):
    docs = [d for d in ewt_docs if len(d["words"]) >= 20][:5]
    lines = [dict(d, chunks=[[0, 3], [3, 9], [0, len(d["words"])]]) if k % 2 == 0 else d for k, d in enumerate(docs)]
    lines.append({"id": "bad-chunk", "words": ["a", "b"], "chunks": [[0, 3]]})
    lines.append({"id": "bad-line", "words": ["a", "b"], "chunks": [[0]]})
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(d) + "\n" for d in lines))
    for output in ("out.npz", "rows"):
        out = tmp_path / output
        done = run(
            "embed",
            str(source),
            "--server",
            minilm.address,
            "--output",
            str(out),
            "--pooling",
            "max",
            "--spans",
            "tokens:16:8",
        )
        assert done.returncode == 1, done.stderr
        assert 'in.jsonl:7: "chunks"[0] is not a [start, end] pair' in done.stderr
        assert "in.jsonl:6: docs[" in done.stderr and "chunks[0]: end 3 > 2 tokens in the doc" in done.stderr
        with Client(minilm.address, pooling="max", spans="tokens:16:8") as client:
            expected = client.embed_results(lines[:5], outputs=("tokens", "chunk_vectors"))
        if output.endswith(".npz"):
            arrays = np.load(out)
            assert sorted(arrays.files) == sorted(
                [d["id"] for d in docs] + [f"{docs[k]['id']}/chunks" for k in (0, 2, 4)]
            )
            assert arrays[f"{docs[0]['id']}/chunks"].dtype == np.float32
        with open_rows(out) as rows:
            assert sorted(rows) == sorted(d["id"] for d in docs)
            for k, (doc, want) in enumerate(zip(docs, expected)):
                np.testing.assert_allclose(rows[doc["id"]], want.rows, atol=1e-5, rtol=0)
                if k % 2:
                    assert rows.chunks(doc["id"]) is None
                else:
                    got = rows.chunks(doc["id"])
                    assert got.shape == (3, 384)
                    np.testing.assert_allclose(got, want.chunk_vectors[0], atol=1e-5, rtol=0)
