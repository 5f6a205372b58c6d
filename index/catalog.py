"""The catalog: one SQLite row per indexed image, keyed by the same 64-bit id as the index.

Ids come from SQLite's AUTOINCREMENT, so an id is never reused after a removal; duplicate
bytes (same sha256) map to one row.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uri TEXT NOT NULL,
    sha256 TEXT NOT NULL UNIQUE,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    label TEXT,
    added_at TEXT NOT NULL
);
"""
COLUMNS = "id, uri, sha256, width, height, label, added_at"


@dataclass(frozen=True)
class CatalogRow:
    id: int
    uri: str
    sha256: str
    width: int
    height: int
    label: str | None
    added_at: str


@dataclass(frozen=True)
class NewImage:
    """What the catalog needs to know about an image before it has an id."""

    uri: str
    sha256: str
    width: int
    height: int
    label: str | None = None


class Catalog:
    """Thread-safe access to catalog.sqlite (one connection, serialised by a lock)."""

    def __init__(self, path: str | Path, read_only: bool = False) -> None:
        self.path = Path(path)
        if read_only:
            uri = f"file:{self.path}?mode=ro"
            self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        else:
            self._conn = sqlite3.connect(self.path, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")  # a committed row survives a crash
            self._conn.executescript(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, images: Iterable[NewImage], ids: Iterable[int] | None = None) -> list[tuple[int, bool]]:
        """Insert images; returns (id, created) per image. Known bytes return the existing id.

        `ids` forces the ids (replaying a journal); normally SQLite assigns them.
        """
        now = datetime.now(UTC).isoformat(timespec="seconds")
        out: list[tuple[int, bool]] = []
        forced = iter(ids) if ids is not None else None
        with self._lock, self._conn:
            for img in images:
                want = next(forced) if forced is not None else None
                row = self._conn.execute("SELECT id FROM images WHERE sha256 = ?", (img.sha256,)).fetchone()
                if row is not None:
                    out.append((int(row[0]), False))
                    continue
                cur = self._conn.execute(
                    "INSERT INTO images (id, uri, sha256, width, height, label, added_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (want, img.uri, img.sha256, img.width, img.height, img.label, now),
                )
                out.append((int(cur.lastrowid or 0), True))
        return out

    def remove(self, ids: Iterable[int]) -> int:
        ids = [int(i) for i in ids]
        with self._lock, self._conn:
            cur = self._conn.executemany("DELETE FROM images WHERE id = ?", [(i,) for i in ids])
            return cur.rowcount

    def get(self, ids: Iterable[int]) -> dict[int, CatalogRow]:
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        out: dict[int, CatalogRow] = {}
        with self._lock:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for row in self._conn.execute(f"SELECT {COLUMNS} FROM images WHERE id IN ({marks})", chunk):
                    out[int(row[0])] = CatalogRow(*row)
        return out

    def by_sha256(self, sha256: str) -> CatalogRow | None:
        with self._lock:
            row = self._conn.execute(f"SELECT {COLUMNS} FROM images WHERE sha256 = ?", (sha256,)).fetchone()
        return CatalogRow(*row) if row else None

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM images").fetchone()[0])

    def ids(self) -> list[int]:
        with self._lock:
            return [int(r[0]) for r in self._conn.execute("SELECT id FROM images ORDER BY id")]

    def rows(self) -> Iterator[CatalogRow]:
        with self._lock:
            rows = self._conn.execute(f"SELECT {COLUMNS} FROM images ORDER BY id").fetchall()
        for row in rows:
            yield CatalogRow(*row)

    def backup_to(self, path: str | Path) -> None:
        """A consistent copy (SQLite's online backup), e.g. into a new index version."""
        dest = sqlite3.connect(path)
        try:
            with self._lock:
                self._conn.backup(dest)
        finally:
            dest.close()
