"""Results about the whole collection that cost seconds to compute: computed off the event
loop, one at a time, and kept for the index state they describe."""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from app.offload import run_blocking
from app.service import Live
from index.calibrate import Calibration, calibrate, pixel_check, stored_thumbnails
from index.duplicates import DuplicateReport, find_duplicates
from index.likeness import StoredThumbnails


class DuplicateCache:
    """Duplicate groups per (index version, writes so far, threshold); the last `size` kept;
    and the measured default threshold (index.calibrate) per index version and encoder.

    One search runs at a time, so that many requests with different thresholds queue instead
    of each taking the CPU: at 60,000 images a search takes about fifteen seconds here.
    """

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._lock = asyncio.Lock()
        self._results: OrderedDict[tuple[int, str, int, float, bool], DuplicateReport] = OrderedDict()
        self._calibrations: dict[tuple[int, str, str], Calibration] = {}
        self._thumbs: tuple[int, StoredThumbnails] | None = None  # for one image store at a time

    async def calibration(self, live: Live) -> Calibration:
        key = (id(live.index), live.index.version, live.encoder.checksum)
        async with self._lock:
            if key not in self._calibrations:
                self._calibrations = {key: await run_blocking(calibrate, live.encoder, live.index, live.store)}
            return self._calibrations[key]

    async def get(
        self, live: Live, threshold: float, calibration: Calibration | None = None
    ) -> tuple[DuplicateReport, bool]:
        """The report and whether it came from the cache. With the measured `calibration` (the
        default threshold), pairs between its candidate level and the threshold are checked by
        their pixels (index.likeness) when the calibration found that test useful."""
        index = live.index
        check = pixel_check(calibration, self._thumbnails(live)) if calibration is not None else None
        key = (id(index), index.version, index.generation, round(threshold, 6), check is not None)
        async with self._lock:
            if key in self._results:
                self._results.move_to_end(key)
                return self._results[key], True
            report = await run_blocking(find_duplicates, index, threshold, check)
            self._results[key] = report
            while len(self._results) > self.size:
                self._results.popitem(last=False)
            return report, False

    def _thumbnails(self, live: Live) -> StoredThumbnails:
        """Thumbnails by image id, kept while the same index is served (ids are never reused)."""
        if self._thumbs is None or self._thumbs[0] != id(live.index):
            self._thumbs = (id(live.index), stored_thumbnails(live.index, live.store))
        return self._thumbs[1]
