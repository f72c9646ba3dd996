"""Results from the model's thread to the event loop, one per turn of the loop.

A batch completes a hundred docs at once. Were each handed over with its own callback, the loop
would run all hundred wake-ups (each serializing and writing a response) before anything that
arrived meanwhile, such as a health probe. Settled one per turn instead, each next settle goes to
the back of the loop's queue, and other work waits for a doc or two, never for the batch
(docs/reliability.md R6: health p99 while saturated).
"""

from __future__ import annotations

import asyncio
import collections
import threading
import weakref
from collections.abc import Callable
from typing import Any

_OF_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Outbox] = weakref.WeakKeyDictionary()


class Outbox:
    """One per event loop, shared by every engine that answers on it."""

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> Outbox:
        if (outbox := _OF_LOOP.get(loop)) is None:
            outbox = _OF_LOOP[loop] = cls(loop)
        return outbox

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._items: collections.deque[tuple[asyncio.Future[Any], Any]] = collections.deque()
        self._lock = threading.Lock()
        self._scheduled = False

    def resolver(self, future: asyncio.Future[Any]) -> Callable[[Any], None]:
        """A thread-safe deliver for ``future``: an exception instance fails it, anything else is
        its result. A future nobody waits for any more is skipped."""
        return lambda result: self._put(future, result)

    def _put(self, future: asyncio.Future[Any], result: Any) -> None:
        with self._lock:
            self._items.append((future, result))
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self.loop.call_soon_threadsafe(self._settle_one)
        except RuntimeError:  # loop closed: nobody is waiting any more
            pass

    def _settle_one(self) -> None:
        with self._lock:
            future, result = self._items.popleft()
            more = self._scheduled = bool(self._items)
        if more:
            self.loop.call_soon(self._settle_one)
        if future.done():
            return
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)
