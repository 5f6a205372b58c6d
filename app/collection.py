"""Results about the whole collection that cost seconds to compute: computed off the event
loop, one at a time, and kept for the index state they describe."""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from app.offload import run_blocking
from app.service import Live
from index.calibrate import Calibration, calibrate
from index.duplicates import DuplicateReport, find_duplicates


class DuplicateCache:
    """Duplicate groups per (index version, writes so far, threshold); the last `size` kept;
    and the measured default threshold (index.calibrate) per index version and encoder.

    One search runs at a time, so that many requests with different thresholds queue instead
    of each taking the CPU: at 60,000 images a search takes about fifteen seconds here.
    """

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._lock = asyncio.Lock()
        self._results: OrderedDict[tuple[int, str, int, float], DuplicateReport] = OrderedDict()
        self._calibrations: dict[tuple[int, str, str], Calibration] = {}

    async def calibration(self, live: Live) -> Calibration:
        key = (id(live.index), live.index.version, live.encoder.checksum)
        async with self._lock:
            if key not in self._calibrations:
                self._calibrations = {key: await run_blocking(calibrate, live.encoder, live.index, live.store)}
            return self._calibrations[key]

    async def get(self, live: Live, threshold: float) -> tuple[DuplicateReport, bool]:
        """The report and whether it came from the cache."""
        index = live.index
        key = (id(index), index.version, index.generation, round(threshold, 6))
        async with self._lock:
            if key in self._results:
                self._results.move_to_end(key)
                return self._results[key], True
            report = await run_blocking(find_duplicates, index, threshold)
            self._results[key] = report
            while len(self._results) > self.size:
                self._results.popitem(last=False)
            return report, False
