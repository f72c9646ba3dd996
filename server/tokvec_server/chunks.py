"""Row ranges for response messages: a doc's rows travel in as few messages as keep each one's
tensors under ``CHUNK_BYTES``, well under gRPC's 4 MiB default (docs/reliability.md R10)."""

from __future__ import annotations

import math

CHUNK_BYTES = 3 * 1024 * 1024


def n_chunks(n_bytes: int) -> int:
    """Messages for ``n_bytes`` of tensors: one at least."""
    return max(1, math.ceil(n_bytes / CHUNK_BYTES))


def cuts(n: int, parts: int) -> list[int]:
    """``parts + 1`` bounds cutting ``n`` rows into near-equal ranges, 0 first and ``n`` last.
    Integer arithmetic: np.linspace costs about 10 us a call, and it ran twice per doc on the
    event loop (a sixth of the loop's Python time in a profile of the saturated onnx server)."""
    return [n * k // parts for k in range(parts + 1)]
