"""``tokvec embed``'s progress: a tqdm bar on a terminal, nothing when stderr is a file or a pipe."""

from __future__ import annotations

import time
from typing import TextIO

from tqdm import tqdm


class Progress:
    """The bar counts input bytes (known ahead for a file: a real ETA, also for a lazy reader);
    docs, tokens and tokens/s stand beside it. Messages go above a live bar, never through it."""

    def __init__(self, total_bytes: int | None, err: TextIO) -> None:
        self.err = err
        self.docs = self.tokens = self.bytes = 0
        self.started = time.perf_counter()
        self._shown = 0.0
        self.bar = tqdm(
            total=total_bytes,
            unit="B",
            unit_scale=True,
            file=err,
            disable=not err.isatty(),
            dynamic_ncols=True,
            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}] {postfix}",
            mininterval=0.2,
        )

    def say(self, message: str) -> None:
        if self.bar.disable:
            print(message, file=self.err, flush=True)
        else:
            self.bar.write(message, file=self.err)

    def update(self, docs: int, tokens: int, done_bytes: int) -> None:
        """``done_bytes``: input bytes handled so far, skipped lines included."""
        self.docs += docs
        self.tokens += tokens
        self.bar.update(done_bytes - self.bar.n)
        now = time.perf_counter()
        if not self.bar.disable and now - self._shown > 0.2:
            self._shown = now
            rate = self.tokens / max(now - self.started, 1e-9)
            self.bar.set_postfix_str(f"{self.docs:,} docs, {self.tokens:,} tokens, {rate:,.0f} tokens/s", refresh=False)

    def close(self) -> float:
        """Seconds since the start."""
        self.bar.close()
        return time.perf_counter() - self.started
