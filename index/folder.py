"""The folder side of a sync (index.sync): what image files a folder holds, and what a sync
remembers of each (size, mtime, sha256) so that it need not read an unchanged file again.

    INDEX/sync-state.sqlite     files(uri, size, mtime_ns, sha256)
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from model.collections.layout import IMAGE_SUFFIXES

STATE_FILE = "sync-state.sqlite"


class SyncRefusedError(ValueError):
    """The sync would be unsafe (a missing or empty folder, a large share removed): nothing changed."""


class FileStates:
    """(size, mtime_ns, sha256) of every file a sync has seen, by uri: what spares a re-read."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn = sqlite3.connect(self.path, check_same_thread=False)
        with self._conn:
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS files (uri TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, sha256 TEXT)"
            )

    def all(self) -> dict[str, tuple[int, int, str]]:
        return {u: (s, m, h) for u, s, m, h in self._conn.execute("SELECT uri, size, mtime_ns, sha256 FROM files")}

    def record(self, rows: dict[str, tuple[int, int, str]]) -> None:
        with self._conn:
            self._conn.executemany(
                "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)", [(u, *v) for u, v in rows.items()]
            )

    def forget(self, uris: Iterable[str]) -> None:
        with self._conn:
            self._conn.executemany("DELETE FROM files WHERE uri = ?", [(u,) for u in uris])

    def close(self) -> None:
        self._conn.close()


def scan(folder: str | Path) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """{uri: (size, mtime_ns)} of the image files under `folder`, and the parts that could not be read.

    Raises SyncRefusedError when the folder is missing, not a folder or unreadable."""
    root = Path(folder).expanduser()
    if not root.exists():
        raise SyncRefusedError(
            f"{str(root)!r} does not exist (an unmounted disk?): nothing was changed; mount it or pass the right folder"
        )
    if not root.is_dir():
        raise SyncRefusedError(f"{str(root)!r} is not a folder: nothing was changed; sync takes a folder of images")
    if not os.access(root, os.R_OK | os.X_OK):
        raise SyncRefusedError(f"{str(root)!r} cannot be read: nothing was changed; check its permissions")
    files: dict[str, tuple[int, int]] = {}
    errors: list[str] = []
    for here, dirs, names in os.walk(root, onerror=lambda exc: errors.append(f"{exc.filename}: {exc.strerror}")):
        dirs.sort()
        for name in names:
            if Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            path = Path(here) / name
            try:
                st = path.stat()
            except OSError as exc:
                errors.append(f"{path}: {exc.strerror}")
                continue
            files[path.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns)
    return files, errors


def remember_files(
    root: str | Path, folder: str | Path, before: dict[str, tuple[int, int]], sha_of: dict[str, str]
) -> int:
    """After `index build` of `folder` into `root`: record each file's (size, mtime) taken before
    the build (`before`, from `scan`) with the sha256 the build found at its path (`sha_of`), so
    that the first sync need not read the collection again. A file whose size or mtime moved
    during the build is left out (its bytes may not be what was indexed); the first sync reads it."""
    after, _ = scan(folder)
    keep = {u: (*st, sha_of[u]) for u, st in before.items() if u in sha_of and after.get(u) == st}
    states = FileStates(Path(root) / STATE_FILE)
    try:
        states.record(keep)
    finally:
        states.close()
    return len(keep)
