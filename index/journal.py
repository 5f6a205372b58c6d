"""Write-ahead journal of the writes made on top of a published index version.

Published versions are immutable, so the service's adds and removes are appended here
(one JSON line each, fsynced before the write is acknowledged) and replayed on top of the
version at start-up. A rebuild folds them into a new version and starts a new journal.

    ROOT/journal/<version>.jsonl
    {"op": "add", "id": 7, "uri": ..., "sha256": ..., "width": ..., "height": ..., "label": ..., "vector": b64}
    {"op": "remove", "ids": [7, 9]}
    {"op": "move", "id": 7, "uri": ..., "copies": [...]}   (a file renamed or moved: same bytes, new place)

A torn last line (a crash in the middle of an append) was never acknowledged: it is ignored.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from index.catalog import NewImage

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class AddEntry:
    id: int
    image: NewImage
    vector: np.ndarray


@dataclass(frozen=True)
class RemoveEntry:
    ids: tuple[int, ...]


@dataclass(frozen=True)
class MoveEntry:
    """An image's bytes found at other places: its uri and its byte-identical copies' uris."""

    id: int
    uri: str
    copies: tuple[str, ...] = ()


Entry = AddEntry | RemoveEntry | MoveEntry


def _encode(entry: Entry) -> dict[str, Any]:
    if isinstance(entry, RemoveEntry):
        return {"op": "remove", "ids": list(entry.ids)}
    if isinstance(entry, MoveEntry):
        return {"op": "move", "id": entry.id, "uri": entry.uri, "copies": list(entry.copies)}
    img = entry.image
    vec = base64.b64encode(np.ascontiguousarray(entry.vector, dtype=np.float32).tobytes()).decode()
    return {
        "op": "add",
        "id": entry.id,
        "uri": img.uri,
        "sha256": img.sha256,
        "width": img.width,
        "height": img.height,
        "label": img.label,
        "vector": vec,
    }


def _decode(row: dict[str, Any]) -> Entry:
    if row["op"] == "remove":
        return RemoveEntry(tuple(int(i) for i in row["ids"]))
    if row["op"] == "move":
        return MoveEntry(int(row["id"]), str(row["uri"]), tuple(str(u) for u in row["copies"]))
    vector = np.frombuffer(base64.b64decode(row["vector"]), dtype=np.float32).copy()
    image = NewImage(row["uri"], row["sha256"], int(row["width"]), int(row["height"]), row.get("label"))
    return AddEntry(int(row["id"]), image, vector)


def tail(path: Path, offset: int) -> tuple[list[Entry], int]:
    """The complete entries written to `path` after byte `offset`, and the offset after them
    (a read replica following the writer's journal; a line still being written waits)."""
    if not path.exists():
        return [], offset
    with path.open("rb") as fh:
        fh.seek(offset)
        data = fh.read()
    complete = data[: data.rfind(b"\n") + 1]
    entries = [_decode(json.loads(line)) for line in complete.split(b"\n") if line.strip()]
    return entries, offset + len(complete)


class Journal:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._drop_torn_tail()
        self.entries = sum(1 for _ in self.replay())

    def _drop_torn_tail(self) -> None:
        """Cut a final line without its newline (an append the crash interrupted)."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            LOG.warning("dropping a torn, unacknowledged last entry of %s", self.path)
            with self.path.open("r+b") as fh:
                fh.truncate(keep)
                os.fsync(fh.fileno())

    def append(self, entries: Sequence[Entry]) -> None:
        """Append and fsync: when this returns, the entries survive a crash."""
        if not entries:
            return
        data = "".join(json.dumps(_encode(e)) + "\n" for e in entries).encode()
        with self._lock, self.path.open("ab") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
            self.entries += len(entries)

    def replay(self, start: int = 0) -> Iterator[Entry]:
        """Entries from position `start` on (a torn final line is skipped)."""
        if not self.path.exists():
            return
        with self.path.open("rb") as fh:
            lines = fh.read().split(b"\n")
        for n, line in enumerate(lines):
            if not line.strip() or n < start:
                continue
            try:
                yield _decode(json.loads(line))
            except (ValueError, KeyError) as exc:
                if n >= len(lines) - 2:
                    LOG.warning("ignoring a torn last journal line in %s (%s)", self.path, exc)
                    return
                raise ValueError(f"journal {self.path} is corrupt at line {n + 1}: {exc}") from exc
