"""Keep every server busy: one stream per address, a window of docs in flight on each, and docs
that failed for a passing reason (a server lost, busy or draining) sent again, to whichever
server has room. Each doc's result is handed over once."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import grpc

from tokvec._results import ServerInfo
from tokvec._wire import Embedding
from tokvec.aio import AsyncClient
from tokvec.cli.docs_in import Item
from tokvec.errors import ServerError

# In-band or whole-stream codes that say "not now": the doc is sent again (after a pause).
PASSING = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED,
}
PAUSES = (0.2, 0.5, 1.0, 2.0, 4.0)  # before each new try; a doc is given up after len(PAUSES) tries


class Fatal(Exception):
    """The run cannot go on; the message says why."""


class Pump:
    """``await run()`` sends every item of ``items`` and calls ``done(item, result)`` for each doc
    embedded, ``failed(item, reason, passing)`` for each given up."""

    def __init__(
        self,
        addresses: list[str],
        items: Iterator[Item],
        client_options: dict[str, Any],
        *,
        batch_size: int,
        wait_s: float,
        started: Callable[[str, ServerInfo], None],
        done: Callable[[Item, Embedding], None],
        failed: Callable[[Item, str, bool], None],
        say: Callable[[str], None],
        outputs: Callable[[ServerInfo], tuple[str, ...]] = lambda _info: ("tokens",),
    ) -> None:
        self.addresses, self.items, self.client_options = addresses, items, client_options
        self.batch_size, self.wait_s = batch_size, wait_s
        self.started, self.done, self.failed, self.say = started, done, failed, say
        self.outputs = outputs  # what to ask a server for, once its Info is known
        self.retry: list[tuple[float, int, Item]] = []  # a heap: (when, order, item)
        self._order = itertools.count()
        self.exhausted = False
        self.in_flight = 0
        self.fingerprint = ""
        self._changed = asyncio.Event()  # an item queued again, a result in: waiting lanes look again
        self._complete = asyncio.Event()  # every doc done or given up

    async def run(self) -> None:
        lanes = [asyncio.create_task(self._lane(a)) for a in self.addresses]
        complete = asyncio.create_task(self._complete.wait())
        try:
            pending = {*lanes, complete}
            # Until every doc is done, a lane fails (Fatal ends the run), or every lane has given
            # up; a lane still waiting for its server when the work is done is cancelled.
            while not complete.done() and any(not lane.done() for lane in lanes):
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task is not complete:
                        task.result()
        finally:
            for task in (*lanes, complete):
                task.cancel()
            await asyncio.gather(*lanes, complete, return_exceptions=True)
        if not self._finished():
            raise Fatal(
                f"no server to send the remaining docs to ({', '.join(self.addresses)}: not ready within --wait {self.wait_s:g}s)"
            )

    def _finished(self) -> bool:
        return self.exhausted and not self.retry and self.in_flight == 0

    async def _lane(self, address: str) -> None:
        """One server: wait until it is ready, stream to it, and after losing it wait again."""
        client = AsyncClient(address, timeout=60.0, **self.client_options)
        try:
            while not self._finished():
                if not await self._ready(client, address):
                    return  # not back within --wait: the other lanes take its docs
                info = await client.info()
                model = info.model
                if self.fingerprint and model.fingerprint != self.fingerprint:
                    raise Fatal(
                        f"{address} serves {model.name} ({model.fingerprint}), the run's other rows come from {self.fingerprint}"
                    )
                self.fingerprint = model.fingerprint
                self.started(address, info)
                window = self._window(info)
                try:
                    await self._stream(client, window, self.outputs(info))
                except ServerError as exc:
                    if exc.code not in PASSING:
                        raise Fatal(str(exc)) from None
                    self.say(f"tokvec embed: lost {address} ({exc.code.name}: {exc.details}); its docs go again")
        finally:
            await client.close()

    def _window(self, info: ServerInfo) -> int:
        """Docs one stream keeps in flight: as many as the server lets a stream have, and no more
        than its queue takes (past that, a lone caller would only be refused and send them again)."""
        limits = [info.limits.get(k, 0) for k in ("max_in_flight_per_stream", "max_queued_docs")]
        return max(self.batch_size, min([n for n in limits if n > 0] or [256]))

    async def _ready(self, client: AsyncClient, address: str) -> bool:
        try:
            await client.wait_ready(min(1.0, self.wait_s))
            return True
        except ServerError:
            pass
        self.say(f"tokvec embed: waiting up to {self.wait_s:g}s for {address} to be ready")
        try:
            await client.wait_ready(self.wait_s)
            return True
        except ServerError as exc:
            self.say(f"tokvec embed: {address} not ready within {self.wait_s:g}s ({exc.code.name})")
            return False

    async def _stream(self, client: AsyncClient, window: int, outputs: tuple[str, ...]) -> None:
        sent: dict[int, Item] = {}
        room = asyncio.Semaphore(window)
        count = 0
        draining = closed = False

        async def batches() -> AsyncIterator[list[dict[str, Any]]]:
            nonlocal count
            while True:
                await room.acquire()
                # A server that answered "not ready" (draining, restarting) gets no new docs: this
                # stream ends once it has answered the rest, and the lane waits for it again.
                item = None if draining else await self._take()
                if item is None:
                    return
                batch = [item]
                # Fill the message with what is at hand now; never wait with docs held back.
                while len(batch) < self.batch_size and not room.locked() and (more := self._take_now()) is not None:
                    await room.acquire()
                    batch.append(more)
                if closed:
                    # gRPC may ask a dead call's request iterator for one more message after
                    # the stream is gone: what it took goes back, or it would be lost.
                    for it in batch:
                        heapq.heappush(self.retry, (time.monotonic(), next(self._order), it))
                    self._changed.set()
                    return
                for it in batch:
                    sent[count] = it
                    count += 1
                self.in_flight += len(batch)
                yield [it.doc for it in batch]

        try:
            async for result in client.stream_batches(batches(), outputs=outputs):
                item = sent.pop(result.index)
                self.in_flight -= 1
                room.release()
                if result.error is not None and result.error.code == grpc.StatusCode.UNAVAILABLE:
                    draining = True
                self._handle(item, result)
                if self.in_flight == 0:
                    self._changed.set()
        finally:
            # The stream broke (or the run ends): what it still held goes again, on any lane.
            closed = True
            self.in_flight -= len(sent)
            for item in sent.values():
                self._again(item, "its server went away", grpc.StatusCode.UNAVAILABLE)

    def _handle(self, item: Item, result: Embedding) -> None:
        if result.error is None:
            if result.fingerprint and result.fingerprint != self.fingerprint:
                raise Fatal(
                    f"doc {item.id!r} came from model {result.fingerprint}, the run's other rows from {self.fingerprint}"
                )
            self.done(item, result)
            return
        reason = result.error.reason
        if reason.startswith("options."):  # the same for every doc: say it once and stop
            raise Fatal(reason)
        if result.error.code in PASSING:
            self._again(item, reason, result.error.code)
        else:
            self.failed(item, reason, False)

    def _again(self, item: Item, reason: str, code: grpc.StatusCode) -> None:
        if item.tries >= len(PAUSES):
            self.failed(item, f"{reason} ({code.name}, {item.tries} tries)", True)
            return
        pause = PAUSES[item.tries]
        item.tries += 1
        heapq.heappush(self.retry, (time.monotonic() + pause, next(self._order), item))
        asyncio.get_running_loop().call_later(pause, self._changed.set)
        self._changed.set()

    def _take_now(self) -> Item | None:
        if self.retry and self.retry[0][0] <= time.monotonic():
            return heapq.heappop(self.retry)[2]
        if not self.exhausted:
            item = next(self.items, None)
            if item is not None:
                return item
            self.exhausted = True
        return None

    async def _take(self) -> Item | None:
        """The next doc to send; None once every doc is done or given up."""
        while (item := self._take_now()) is None:
            if self._finished():
                self._complete.set()
                self._changed.set()  # wake the other lanes: they are done too
                return None
            self._changed.clear()
            await self._changed.wait()
        return item
