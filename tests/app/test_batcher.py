"""Micro-batching: results go back to the right caller, concurrent requests share a batch,
batch size is bounded, failures reach every waiting caller."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
import pytest

from app.batcher import MicroBatcher


def stacked(embed: Callable[[np.ndarray], np.ndarray]) -> Callable[[list[np.ndarray]], list[np.ndarray]]:
    """A batch function over a list of images, from one over their stack."""
    return lambda items: list(embed(np.stack(items)))


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_results_map_back_and_concurrent_requests_share_batches() -> None:
    sizes: list[int] = []

    def embed(pixels: np.ndarray) -> np.ndarray:
        sizes.append(len(pixels))
        return pixels.reshape(len(pixels), -1)[:, :1].astype(np.float32)  # each image's first value

    async def main() -> list[np.ndarray]:
        batcher = MicroBatcher(stacked(embed), max_size=8, max_wait_s=0.05, expected=lambda: 1)
        batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit(np.full((2, 2, 3), i, np.uint8)) for i in range(20)))
        finally:
            await batcher.stop()

    out = run(main())
    assert [int(v[0]) for v in out] == list(range(20))  # type: ignore[union-attr]
    assert max(sizes) <= 8 and len(sizes) < 20 and sum(sizes) == 20


def test_a_lone_request_is_not_held_for_company() -> None:
    sizes: list[int] = []

    async def main() -> None:
        # A 10-second wait would time the test out if a lone request waited for company.
        batcher = MicroBatcher(stacked(lambda p: sizes.append(len(p)) or p[:, 0, 0, :1].astype(np.float32)), 8, 10.0)
        batcher.start()
        try:
            await asyncio.wait_for(batcher.submit(np.zeros((2, 2, 3), np.uint8)), timeout=5)
        finally:
            await batcher.stop()

    run(main())
    assert sizes == [1]


def test_failures_reach_every_caller() -> None:
    def broken(pixels: np.ndarray) -> np.ndarray:
        raise RuntimeError("encoder exploded")

    async def main() -> list[object]:
        batcher = MicroBatcher(stacked(broken), 4, 0.01, expected=lambda: 1)
        batcher.start()
        try:
            return await asyncio.gather(
                *(batcher.submit(np.zeros((1, 1, 3), np.uint8)) for _ in range(3)), return_exceptions=True
            )
        finally:
            await batcher.stop()

    results = run(main())
    assert all(isinstance(r, RuntimeError) for r in results)  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        MicroBatcher(stacked(broken), 0, 0.01)
