"""The one way blocking work leaves the event loop.

Decoding, FAISS searches, catalog writes and fsyncs all block; every route and service method
runs them through `run_blocking`, on the executor named (the decode pool, the batcher's single
encoder thread) or on the loop's default pool.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TypeVar, TypeVarTuple

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


async def run_blocking(fn: Callable[[*Ts], T], *args: *Ts, executor: Executor | None = None) -> T:
    """Run fn(*args) in `executor` (default: the loop's thread pool) and await it."""
    return await asyncio.get_running_loop().run_in_executor(executor, functools.partial(fn, *args))
