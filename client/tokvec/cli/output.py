"""Where ``tokvec embed`` writes: ``PATH.partial`` (a rows folder) while it runs, ``PATH`` once
every doc is in, so an interrupted or failed run never looks like a result."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from tokvec.rows import RowWriter, open_rows
from tokvec.rows.ids import IdSet
from tokvec.rows.npz import write_npz


class Output:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.partial = path.with_name(path.name + ".partial")
        self.npz = path.suffix == ".npz"  # small jobs: one .npz, made from the folder at the end

    def refusal(self, force: bool, resume: bool) -> str | None:
        """Why this run must not start, or None."""
        if self.path.exists() and not force:
            return f"{self.path} exists; pass --force to overwrite it"
        if self.partial.exists() and not (resume or force):
            return f"{self.partial} holds an interrupted run; pass --resume to go on with it, or --force to start over"
        return None

    def open(
        self, width: int, identity: dict[str, Any], extra: dict[str, Any], shard_bytes: int, resume: bool, done: IdSet
    ) -> RowWriter:
        if resume and self.partial.exists():
            return RowWriter.resume(self.partial, identity, shard_bytes, done)
        if self.partial.exists():
            shutil.rmtree(self.partial)  # --force
        return RowWriter.create(self.partial, width, {**identity, **extra}, shard_bytes, done)

    def finish(self) -> None:
        if self.npz:
            with open_rows(self.partial) as rows:
                write_npz(rows, self.path, rows.chunks)
            shutil.rmtree(self.partial)
            return
        if self.path.is_dir():
            shutil.rmtree(self.path)
        elif self.path.exists():
            self.path.unlink()
        os.replace(self.partial, self.path)

    def discard(self) -> None:
        """Remove a partial folder that holds no doc (a run that failed before its first row)."""
        if self.partial.exists():
            shutil.rmtree(self.partial)
