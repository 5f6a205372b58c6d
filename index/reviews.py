"""Duplicate review that remembers: a person's decision on a group, kept across syncs and rebuilds.

A decision is "keep all" (the images are not duplicates to clean up, or all are wanted) or
"keep one" (this copy, the others may go). It is stored by content (sha256 of each member) in
`reviews.sqlite` in the index directory, beside the published versions rather than in one, so
a sync (a renamed file keeps its bytes), a rebuild (a new version) or a re-added file does not
lose it. When the groups are found again:
  - a group whose images were all in a decision is `reviewed`;
  - a group that gained images is still `reviewed` if each new one is at least as close to the
    group (its best cosine to a member) as the least close original member was when the
    decision was taken; otherwise it is `changed` and shown for review again;
  - any other group is `new`.
For every group a best copy is suggested: the largest (pixels), then the least compressed
(stored bytes a pixel), then the oldest, with the reason.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from index.catalog import CatalogRow

REVIEWS_FILE = "reviews.sqlite"
DECISIONS = ("keep_all", "keep_one")


@dataclass(frozen=True)
class Review:
    id: int
    decision: str  # keep_all | keep_one
    keep: str | None  # sha256 of the copy to keep (keep_one)
    members: tuple[str, ...]  # sha256 of the group's images when decided
    closeness: float  # the least close member's best cosine within the group then
    decided_at: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "decision": self.decision,
            "keep_sha256": self.keep,
            "members_sha256": list(self.members),
            "closeness": self.closeness,
            "decided_at": self.decided_at,
        }


@dataclass(frozen=True)
class GroupReview:
    status: str  # new | reviewed | changed
    review: Review | None
    unreviewed: tuple[str, ...]  # sha256 of members the decision does not cover


class Reviews:
    def __init__(self, root: str | Path) -> None:
        self.path = Path(root) / REVIEWS_FILE
        self._lock = threading.Lock()
        self._opened: sqlite3.Connection | None = None  # on first use: the index folder may not exist yet

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._opened is None:
            conn = sqlite3.connect(self.path, check_same_thread=False)
            with conn:
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS reviews (id INTEGER PRIMARY KEY AUTOINCREMENT, decision TEXT NOT "
                    "NULL, keep TEXT, members TEXT NOT NULL, closeness REAL NOT NULL, decided_at TEXT NOT NULL)"
                )
            self._opened = conn
        return self._opened

    def record(self, decision: str, members: Iterable[str], closeness: float, keep: str | None = None) -> Review:
        """Store a decision on a group; it replaces earlier decisions on any of these images."""
        shas = tuple(sorted(set(members)))
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {', '.join(DECISIONS)}, not {decision!r}")
        if len(shas) < 2:
            raise ValueError("a decision is about a group: give at least two images")
        if (decision == "keep_one") != (keep is not None) or (keep is not None and keep not in shas):
            raise ValueError("keep_one names the image to keep, one of the group; keep_all names none")
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self._lock, self._conn:
            for old in self._all_locked():
                if set(old.members) & set(shas):
                    self._conn.execute("DELETE FROM reviews WHERE id = ?", (old.id,))
            cur = self._conn.execute(
                "INSERT INTO reviews (decision, keep, members, closeness, decided_at) VALUES (?, ?, ?, ?, ?)",
                (decision, keep, json.dumps(shas), float(closeness), now),
            )
            return Review(int(cur.lastrowid or 0), decision, keep, shas, float(closeness), now)

    def delete(self, review_id: int) -> bool:
        with self._lock, self._conn:
            return self._conn.execute("DELETE FROM reviews WHERE id = ?", (int(review_id),)).rowcount > 0

    def all(self) -> list[Review]:
        with self._lock:
            return self._all_locked()

    def _all_locked(self) -> list[Review]:
        rows = self._conn.execute("SELECT id, decision, keep, members, closeness, decided_at FROM reviews ORDER BY id")
        return [Review(i, d, k, tuple(json.loads(m)), c, t) for i, d, k, m, c, t in rows]

    def close(self) -> None:
        if self._opened is not None:
            self._opened.close()
            self._opened = None


def review_of(members: dict[str, float], reviews: list[Review]) -> GroupReview:
    """The state of a group whose members are {sha256: best cosine within the group}."""
    shas = set(members)
    for review in reviews:
        known = shas & set(review.members)
        if not known:
            continue
        new = sorted(s for s in shas - known if members[s] < review.closeness)
        return GroupReview("changed" if new else "reviewed", review, tuple(new))
    return GroupReview("new", None, ())


def suggest(rows: list[CatalogRow], facts: Callable[[str], tuple[int, bool] | None]) -> tuple[int, str]:
    """(id, reason) of the copy to keep: the largest; then the least compressed (a lossless file
    before a lossy one, then the most stored bytes a pixel); then the oldest. `facts` gives an
    image's (stored bytes, lossless) by sha256."""

    def key(row: CatalogRow) -> tuple[int, int, float, str]:
        size, lossless = facts(row.sha256) or (0, False)
        return (-row.width * row.height, -int(lossless), -size / max(1, row.width * row.height), row.added_at)

    ranked = sorted(rows, key=key)
    best = ranked[0]
    if len(ranked) == 1:
        return best.id, "the only image"
    first, second = key(best), key(ranked[1])
    if first[0] < second[0]:
        return best.id, f"the largest ({best.width} x {best.height} px)"
    if first[1] < second[1]:
        return best.id, f"the least compressed: lossless, and as large as any ({best.width} x {best.height} px)"
    if first[2] < second[2]:
        return best.id, f"the least compressed ({-first[2]:.2f} bytes a pixel) of the largest"
    return best.id, f"the oldest of the equally large and compressed (added {best.added_at})"
