"""Per-token rows on disk: the folder format `tokvec embed` writes (FORMAT.md), and its reader."""

from tokvec.rows.reader import Rows, open_rows
from tokvec.rows.writer import RowWriter

__all__ = ["RowWriter", "Rows", "open_rows"]
