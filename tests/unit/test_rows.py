"""The rows folder format: written doc by doc, cut back after a crash, read by id, and readable with
nothing but its specification (FORMAT.md)."""

from __future__ import annotations

import ast
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from tokvec import open_rows
from tokvec.rows import RowWriter, layout
from tokvec.rows.ids import IdSet
from tokvec.rows.npz import write_npz

WIDTH = 8


def docs(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"doc-{i}": rng.standard_normal((i % 5, WIDTH)).astype(np.float32) for i in range(n)}


def write(folder: Path, rows: dict[str, np.ndarray], shard_bytes: int = 1 << 20) -> None:
    writer = RowWriter.create(folder, WIDTH, {"pooling": "mean"}, shard_bytes)
    for doc_id, r in rows.items():
        writer.add(doc_id, r)
    writer.close()


def test_round_trip_over_several_shards(tmp_path: Path) -> None:
    rows = docs(40)
    write(tmp_path / "out", rows, shard_bytes=10 * WIDTH * 4)  # a new shard past 10 rows
    shards = sorted((tmp_path / "out").glob("shard-*.npy"))
    assert len(shards) >= 8
    with open_rows(tmp_path / "out") as got:
        assert list(got) == list(rows) and len(got) == 40 and "doc-3" in got and "nope" not in got
        for doc_id, r in rows.items():
            assert got[doc_id].shape == (len(r), WIDTH) and np.array_equal(got[doc_id], r)
        with pytest.raises(ValueError, match="read-only"):
            got["doc-1"][0, 0] = 1.0
        with pytest.raises(KeyError):
            got["nope"]
    # Each shard is a plain .npy: the rows of its docs, back to back.
    assert sum(len(np.load(s)) for s in shards) == sum(len(r) for r in rows.values())


def test_readable_from_the_specification_alone(tmp_path: Path) -> None:
    """What a reader in another language does: JSON for the meta and index, the .npy header, then
    little-endian float32s. No numpy, no tokvec."""
    rows = docs(12)
    write(tmp_path / "out", rows, shard_bytes=16 * WIDTH * 4)
    folder = tmp_path / "out"
    meta = json.loads((folder / "tokvec-rows.json").read_text())
    assert (meta["format"], meta["version"], meta["dtype"], meta["width"]) == ("tokvec-rows", 1, "<f4", WIDTH)
    for line in (folder / "index.jsonl").read_text().splitlines():
        entry = json.loads(line)
        data = (folder / f"shard-{entry['shard']:05d}.npy").read_bytes()
        assert data[:8] == b"\x93NUMPY\x01\x00"
        header_len = struct.unpack("<H", data[8:10])[0]
        header = ast.literal_eval(data[10 : 10 + header_len].decode("latin1"))
        assert header["descr"] == "<f4" and not header["fortran_order"] and header["shape"][1] == WIDTH
        start = 10 + header_len + entry["row"] * WIDTH * 4
        values = struct.unpack(f"<{entry['n'] * WIDTH}f", data[start : start + entry["n"] * WIDTH * 4])
        assert values == tuple(rows[entry["id"]].ravel().tolist())


def test_a_killed_writer_is_cut_back_to_its_index_and_resumed(tmp_path: Path) -> None:
    rows = docs(20)
    folder = tmp_path / "out"
    writer = RowWriter.create(folder, WIDTH, {"pooling": "mean"}, 1 << 20)
    for doc_id in list(rows)[:10]:
        writer.add(doc_id, rows[doc_id])
    writer.close()
    # What a SIGKILL can leave: rows of a doc with no index line yet, a torn index line.
    shard = folder / layout.shard_name(0)
    with shard.open("ab") as f:
        f.write(b"\x01" * (3 * WIDTH * 4 + 5))
    with (folder / layout.INDEX).open("ab") as f:
        f.write(b'{"id": "doc-10", "sha')
    with open_rows(folder) as partial:  # readable as it is: the index's complete lines
        assert list(partial) == list(rows)[:10] and np.array_equal(partial["doc-9"], rows["doc-9"])
    done = IdSet()
    resumed = RowWriter.resume(folder, {"pooling": "mean"}, 1 << 20, done)
    assert len(done) == 10 and "doc-9" in done and "doc-10" not in done
    assert np.load(shard).shape == (sum(len(rows[d]) for d in list(rows)[:10]), WIDTH)
    for doc_id in list(rows)[10:]:
        resumed.add(doc_id, rows[doc_id])
    resumed.close()
    with open_rows(folder) as got:
        assert list(got) == list(rows) and all(np.array_equal(got[d], r) for d, r in rows.items())


def test_resume_refuses_other_options_and_a_second_write_of_an_id(tmp_path: Path) -> None:
    write(tmp_path / "out", docs(3))
    with pytest.raises(ValueError, match=r"--resume: .* was made with pooling 'mean'; this run has 'max'"):
        RowWriter.resume(tmp_path / "out", {"pooling": "max"}, 1 << 20)
    writer = RowWriter.resume(tmp_path / "out", {"pooling": "mean"}, 1 << 20)
    with pytest.raises(ValueError, match="'doc-1' is written already"):
        writer.add("doc-1", np.zeros((1, WIDTH), np.float32))
    with pytest.raises(ValueError, match=r"rows \(2, 3\), expected \(n, 8\)"):
        writer.add("doc-9", np.zeros((2, 3), np.float32))
    writer.close()


def test_npz_from_a_folder(tmp_path: Path) -> None:
    rows = docs(9)
    write(tmp_path / "out", rows)
    with open_rows(tmp_path / "out") as folder:
        write_npz(folder, tmp_path / "out.npz")
    saved = np.load(tmp_path / "out.npz")
    assert sorted(saved.files) == sorted(rows) and all(np.array_equal(saved[d], r) for d, r in rows.items())
    with open_rows(tmp_path / "out.npz") as got:
        assert sorted(got) == sorted(rows) and not got["doc-4"].flags.writeable


def test_open_rows_names_what_it_cannot_read(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        open_rows(tmp_path / "missing")
    (tmp_path / "text").write_text("hello")
    with pytest.raises(ValueError, match="neither a tokvec rows folder nor an .npz"):
        open_rows(tmp_path / "text")
    (tmp_path / "folder").mkdir()
    with pytest.raises(ValueError, match="not a tokvec rows folder"):
        open_rows(tmp_path / "folder")


def test_id_set_past_its_merges() -> None:
    ids = IdSet()
    ids.MERGE_AT = 100
    assert all(ids.add(f"id-{i}") for i in range(1000))
    assert len(ids) == 1000 and not ids.add("id-500") and not ids.add("id-999")
    assert all(f"id-{i}" in ids for i in range(1000)) and "id-1000" not in ids
    assert ids.add("\ud800 lone surrogate") and "\ud800 lone surrogate" in ids


def test_chunk_vectors_follow_their_rows_in_folder_and_npz(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    folder = tmp_path / "rows"
    writer = RowWriter.create(folder, WIDTH, {}, 1 << 20)
    rows = {
        name: rng.standard_normal((n, WIDTH)).astype(np.float32) for name, n in (("a", 4), ("b", 0), ("c", 3), ("d", 2))
    }
    chunks = {
        "a": rng.standard_normal((2, WIDTH)).astype(np.float32),
        "b": np.zeros((0, WIDTH), np.float32),
        "c": rng.standard_normal((5, WIDTH)).astype(np.float32),
    }
    for name, array in rows.items():
        writer.add(name, array, chunks.get(name))
    writer.close()
    lines = [json.loads(line) for line in (folder / layout.INDEX).read_text().splitlines()]
    assert [(e["row"], e["n"], e.get("chunks")) for e in lines] == [(0, 4, 2), (6, 0, 0), (6, 3, 5), (14, 2, None)]
    with open_rows(folder) as got:
        for name, array in rows.items():
            np.testing.assert_array_equal(got[name], array)
            want = chunks.get(name)
            assert (got.chunks(name) is None) if want is None else np.array_equal(got.chunks(name), want)
        write_npz(got, tmp_path / "out.npz", got.chunks)
    assert sorted(np.load(tmp_path / "out.npz").files) == ["a", "a/chunks", "b", "b/chunks", "c", "c/chunks", "d"]
    with open_rows(tmp_path / "out.npz") as got:
        assert (
            sorted(got) == ["a", "b", "c", "d"]
            and np.array_equal(got.chunks("c"), chunks["c"])
            and got.chunks("d") is None
        )
    # A killed writer is cut back to its index, chunk rows included.
    with (folder / layout.INDEX).open("ab") as f:
        f.write(b'{"id": "e", "sh')
    RowWriter.resume(folder, {}, 1 << 20).close()
    with open_rows(folder) as got:
        assert np.array_equal(got.chunks("c"), chunks["c"]) and len(got) == 4
