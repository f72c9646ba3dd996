"""Which queued spans form the next batch: pure functions of their lengths, their clients and
the budget, by what a forward costs the runner.

- ragged (no padding: the batch costs its pieces): clients take turns, the one served least
  recently first, each with its oldest spans, while the pieces fit the budget. A flooding client
  cannot push a light one out of the next batch.
- padded (the batch costs rows x longest row): a batch starts from an anchor span, the oldest of
  the client served least recently, and grows over its neighbours in length order while rows x
  longest fits the budget and its padding efficiency stays at least a floor: spans too different
  in length go in the next batch, at once.
"""

from __future__ import annotations

import numpy as np


def pack(lengths: np.ndarray, budget: int, first: int = 0, floor: float = 0.0) -> np.ndarray:
    """Positions (into ``lengths``, arrival order) of the next padded batch; ``first`` is always in
    it. It grows over the anchor's neighbours in length order while rows x longest fits ``budget``
    and its padding efficiency (real pieces / rows x longest) stays at least ``floor``."""
    order = np.argsort(lengths, kind="stable")
    sorted_lengths = lengths[order]
    anchor = int(np.flatnonzero(order == first)[0])
    lo = hi = anchor
    real = int(sorted_lengths[anchor])
    n = len(lengths)

    def fits(added: int, longest: int) -> bool:
        rows = hi - lo + 2
        return rows * longest <= budget and real + added >= floor * rows * longest

    while True:
        grow_lo = lo > 0 and fits(int(sorted_lengths[lo - 1]), int(sorted_lengths[hi]))
        grow_hi = hi < n - 1 and fits(int(sorted_lengths[hi + 1]), int(sorted_lengths[hi + 1]))
        # Grow towards the neighbour whose length is closest to the anchor's.
        if grow_lo and (
            not grow_hi
            or sorted_lengths[anchor] - sorted_lengths[lo - 1] <= sorted_lengths[hi + 1] - sorted_lengths[anchor]
        ):
            lo -= 1
            real += int(sorted_lengths[lo])
        elif grow_hi:
            hi += 1
            real += int(sorted_lengths[hi])
        else:
            return np.sort(order[lo : hi + 1])


def share(lengths: np.ndarray, clients: list[str], budget: int, rank: dict[str, int]) -> np.ndarray:
    """Positions (into ``lengths``, arrival order) of the next ragged batch, in the order the
    clients took their turns: by ``rank`` (lowest, or never served, first; then the client with
    the fewest spans waiting, so a light caller beside a flood goes first), each with its oldest
    span, while the pieces fit ``budget``. A client whose next span does not fit is done for this
    batch. The first span always goes. The model hands docs back in this order too, so the client
    served least recently also hears first."""
    queues: dict[str, list[int]] = {}
    for i, client in enumerate(clients):
        queues.setdefault(client, []).append(i)
    turn = sorted(queues, key=lambda c: (rank.get(c, -1), len(queues[c]), queues[c][0]))
    taken = dict.fromkeys(turn, 0)
    chosen: list[int] = []
    total = 0
    while turn:
        still = []
        for client in turn:
            i = queues[client][taken[client]]
            if chosen and total + lengths[i] > budget:
                continue
            chosen.append(i)
            total += int(lengths[i])
            taken[client] += 1
            if taken[client] < len(queues[client]):
                still.append(client)
        turn = still
    return np.asarray(chosen, dtype=np.int64)
