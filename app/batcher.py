"""Micro-batching of concurrent queries: requests that arrive within a few milliseconds of
each other share one pass of the encoder (and one batched index search).

Each caller awaits `submit(item)`; a single worker task gathers up to `max_size` pending items
and runs `run_batch` on them in one dedicated thread, so the event loop never blocks on the
encoder and the encoder never runs twice at once. It waits (at most `max_wait_s`) for company
only while `expected()` says more requests are on their way (e.g. still decoding): a lone
request is never delayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

LOG = logging.getLogger(__name__)


T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Pending(Generic[T, R]):
    item: T
    future: asyncio.Future[R]


class MicroBatcher(Generic[T, R]):
    def __init__(
        self,
        run_batch: Callable[[list[T]], Sequence[R]],
        max_size: int = 32,
        max_wait_s: float = 0.003,
        on_batch: Callable[[int, float], None] | None = None,
        expected: Callable[[], int] | None = None,
    ) -> None:
        if max_size < 1 or max_wait_s < 0:
            raise ValueError("max_size must be >= 1 and max_wait_s >= 0")
        self.run_batch, self.max_size, self.max_wait_s, self.on_batch = run_batch, max_size, max_wait_s, on_batch
        self._queue: asyncio.Queue[_Pending[T, R]] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed")
        self._task: asyncio.Task[None] | None = None
        self.expected = expected or (lambda: 0)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, item: T) -> R:
        """The item's result, computed in a shared batch."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(item, future))
        return await future

    async def _gather(self) -> list[_Pending[T, R]]:
        batch = [await self._queue.get()]
        deadline = time.perf_counter() + self.max_wait_s
        while len(batch) < self.max_size:
            # Take whatever is already queued without waiting, then wait out the deadline.
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            if self.expected() <= 0:
                break  # nobody else is on the way: do not wait
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            live = [p for p in batch if not p.future.cancelled()]
            if not live:
                continue
            started = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._executor, self.run_batch, [p.item for p in live])
            except Exception as exc:  # hand the failure to every waiting request
                LOG.exception("embedding a batch of %d failed", len(live))
                for p in live:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            if self.on_batch is not None:
                self.on_batch(len(live), time.perf_counter() - started)
            for p, result in zip(live, results, strict=True):
                if not p.future.done():
                    p.future.set_result(result)
