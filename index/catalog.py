"""The catalog: one SQLite row per indexed image, keyed by the same 64-bit id as the index.

Ids come from SQLite's AUTOINCREMENT, so an id is never reused after a removal; duplicate
bytes (same sha256) map to one row, and the other places those bytes were found are kept in
`copies` (reported by the duplicates finder as exact copies). `CatalogFilter` selects rows by
label and uri prefix, for filtered search and browsing.
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
CREATE INDEX IF NOT EXISTS images_label ON images (label);
CREATE TABLE IF NOT EXISTS copies (
    sha256 TEXT NOT NULL,
    uri TEXT NOT NULL,
    UNIQUE (sha256, uri)
);
"""
COLUMNS = "id, uri, sha256, width, height, label, added_at"
# Limits on what the service accepts as metadata (a folder name is at most 255 bytes; paths
# rarely pass a few hundred characters).
LABEL_MAX_CHARS = 256
URI_MAX_CHARS = 4096


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


@dataclass(frozen=True)
class CatalogFilter:
    """Rows whose label is one of `labels` (any label when empty) and whose uri starts with
    `uri_prefix` (any uri when None)."""

    labels: tuple[str, ...] = ()
    uri_prefix: str | None = None

    @property
    def empty(self) -> bool:
        return not self.labels and not self.uri_prefix

    def where(self) -> tuple[str, list[object]]:
        """An SQL condition (always valid after WHERE) and its parameters."""
        clauses, params = ["1"], list[object]()
        if self.labels:
            clauses.append(f"label IN ({','.join('?' * len(self.labels))})")
            params.extend(self.labels)
        if self.uri_prefix:
            # substr, not LIKE: no wildcard characters to escape in the prefix.
            clauses.append("substr(uri, 1, ?) = ?")
            params.extend([len(self.uri_prefix), self.uri_prefix])
        return " AND ".join(clauses), params


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
                row = self._conn.execute("SELECT id, uri FROM images WHERE sha256 = ?", (img.sha256,)).fetchone()
                if row is not None:
                    if row[1] != img.uri:  # the same bytes found somewhere else: an exact copy
                        self._conn.execute("INSERT OR IGNORE INTO copies VALUES (?, ?)", (img.sha256, img.uri))
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
            self._conn.executemany(
                "DELETE FROM copies WHERE sha256 IN (SELECT sha256 FROM images WHERE id = ?)", [(i,) for i in ids]
            )
            cur = self._conn.executemany("DELETE FROM images WHERE id = ?", [(i,) for i in ids])
            return cur.rowcount

    def move(self, image_id: int, uri: str, copies: Iterable[str] = ()) -> bool:
        """Give a row a new uri and set its byte-identical copies' uris; False if the id is unknown."""
        with self._lock, self._conn:
            row = self._conn.execute("SELECT sha256 FROM images WHERE id = ?", (int(image_id),)).fetchone()
            if row is None:
                return False
            self._conn.execute("UPDATE images SET uri = ? WHERE id = ?", (uri, int(image_id)))
            self._conn.execute("DELETE FROM copies WHERE sha256 = ?", (row[0],))
            others = [(row[0], u) for u in dict.fromkeys(copies) if u != uri]
            self._conn.executemany("INSERT OR IGNORE INTO copies VALUES (?, ?)", others)
            return True

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

    def add_copies(self, copies: Iterable[tuple[str, str]]) -> None:
        """Record (sha256, uri) places where already-catalogued bytes were also found."""
        with self._lock, self._conn:
            self._conn.executemany("INSERT OR IGNORE INTO copies VALUES (?, ?)", list(copies))

    def copies_of(self, sha256s: Iterable[str]) -> dict[str, list[str]]:
        """The other uris of each sha256 that has any (an index built before copies were kept has none)."""
        shas = list(dict.fromkeys(sha256s))
        out: dict[str, list[str]] = {}
        with self._lock:
            if not self._has_table("copies"):
                return out
            for start in range(0, len(shas), 500):
                chunk = shas[start : start + 500]
                marks = ",".join("?" * len(chunk))
                query = f"SELECT sha256, uri FROM copies WHERE sha256 IN ({marks}) ORDER BY uri"
                for sha, uri in self._conn.execute(query, chunk):
                    out.setdefault(sha, []).append(uri)
        return out

    def matching_ids(self, where: CatalogFilter) -> list[int]:
        """Ids of the rows `where` selects, ascending."""
        condition, params = where.where()
        query = f"SELECT id FROM images WHERE {condition} ORDER BY id"
        with self._lock:
            return [int(r[0]) for r in self._conn.execute(query, params)]

    def page(self, where: CatalogFilter, after: int, limit: int) -> list[CatalogRow]:
        """Up to `limit` rows with id > `after` that `where` selects, by id (keyset paging)."""
        condition, params = where.where()
        query = f"SELECT {COLUMNS} FROM images WHERE id > ? AND {condition} ORDER BY id LIMIT ?"
        with self._lock:
            return [CatalogRow(*r) for r in self._conn.execute(query, [after, *params, limit])]

    def labels(self) -> list[tuple[str | None, int]]:
        """Each label (None: unlabelled) with its image count, commonest first."""
        query = "SELECT label, COUNT(*) AS n FROM images GROUP BY label ORDER BY n DESC, label"
        with self._lock:
            return [(r[0], int(r[1])) for r in self._conn.execute(query)]

    def _has_table(self, name: str) -> bool:
        found = self._conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
        return found.fetchone() is not None

    def backup_to(self, path: str | Path) -> None:
        """A consistent copy (SQLite's online backup), e.g. into a new index version."""
        dest = sqlite3.connect(path)
        try:
            with self._lock:
                self._conn.backup(dest)
        finally:
            dest.close()
