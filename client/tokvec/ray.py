"""Ray Data: embed a dataset's docs against one or many tokvec servers (``pip install tokvec[ray]``).

    import ray, tokvec.ray
    ds = ray.data.read_json("docs.jsonl")                 # columns id, words, spaces (or text)
    ds = ds.map_batches(tokvec.ray.Embed, fn_constructor_kwargs={"address": ["10.0.0.7:50051", "10.0.0.8:50051"]},
                        concurrency=8, num_cpus=0.5, batch_size=64)
    ds.write_parquet("rows/")                             # + a "rows" column: one (n_tokens, width) float32 array a doc

``Embed`` is a callable class, so Ray runs it in actors: each holds one client (one channel) for
as long as it lives, and every batch it gets is one Embed call, balanced over the addresses
(round robin; a ``dns:///NAME:PORT`` address balances over what the name resolves to, such as the
headless Service in deploy/). The actors mostly wait on the servers: a fraction of a CPU each
(``num_cpus=0.5``) leaves Ray's readers and writers room to run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tokvec._channel import Credentials
from tokvec.client import Client

DocColumns = ("words", "spaces", "text", "sent_starts", "lang")


class Embed:
    """A Ray Data batch transform: adds a ``column`` of per-token rows to each batch (numpy or
    pandas format), one float32 (n_tokens, width) array per doc, n_tokens = len(words).

    A doc the server refuses (too long, bad spaces...) raises DocError naming its id: Ray reports
    the failed batch. The actor waits up to ``wait`` seconds for a server that is starting.
    """

    def __init__(
        self,
        address: str | Sequence[str],
        *,
        pooling: str = "mean",
        spans: str = "tokens:128:96",
        dtype: str = "float32",
        model: str = "",
        column: str = "rows",
        wait: float = 120.0,
        timeout: float = 600.0,
        credentials: Credentials | None = None,
    ) -> None:
        self.column = column
        self.client = Client(
            address, timeout=timeout, pooling=pooling, spans=spans, dtype=dtype, model=model, credentials=credentials
        )
        self.client.wait_ready(wait)
        info = self.client.info()
        chosen = next((m for m in info.models if m.name == model), info.model) if model else info.model
        self.width = chosen.width

    def __call__(self, batch: Any) -> Any:
        columns = {c: batch[c].to_numpy() for c in batch.columns} if hasattr(batch, "columns") else batch
        docs = _docs(columns)
        rows = np.empty(len(docs), dtype=object)  # filled one by one: equal shapes must not stack
        for i, array in enumerate(self.client.embed(docs)):
            rows[i] = array if len(array) else np.zeros((0, self.width), np.float32)
        if hasattr(batch, "columns"):
            out = batch.copy()
            out[self.column] = list(rows)
            return out
        return {**columns, self.column: rows}


def _docs(columns: dict[str, Any]) -> list[dict[str, Any]]:
    """Each row of a batch as the client's doc mapping (numpy arrays of str/bool become lists)."""
    n = len(next(iter(columns.values()))) if columns else 0
    present = [c for c in (*DocColumns, "id") if c in columns]
    if "words" not in present and "text" not in present:
        raise ValueError(
            f"tokvec.ray.Embed: a batch needs a 'words' or a 'text' column (got {', '.join(sorted(columns))})"
        )
    docs = []
    for i in range(n):
        doc: dict[str, Any] = {}
        for c in present:
            value = columns[c][i]
            if value is None or (c == "text" and not isinstance(value, str)):
                continue
            if c in ("words", "spaces", "sent_starts"):
                value = [bool(v) for v in value] if c != "words" else [str(v) for v in value]
            doc[c] = str(value) if c == "id" else value
        docs.append(doc)
    return docs
