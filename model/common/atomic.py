"""Crash-safe files: write beside the target, fsync, rename over it, fsync the folder.

Every file that must be either wholly old or wholly new after a crash goes through here:
checkpoints and encoder.pt (model.training.checkpoint), stored image bytes (index.images), an index
version's folder and its CURRENT pointer (index.versions).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename or a new entry in `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    """fsync every file directly in `path`, then the folder itself."""
    for file in path.iterdir():
        if file.is_file():
            with file.open("rb") as fh:
                os.fsync(fh.fileno())
    fsync_dir(path)


@contextmanager
def atomic_file(path: str | os.PathLike[str], *, durable_rename: bool = False) -> Iterator[BinaryIO]:
    """Write `path` through a temporary file in the same folder: fsync, then rename over it.

    A crash at any point leaves either the old file or the new one, never half of one. The file
    is 0644 (not mkstemp's 0600): a service running as another user must be able to read it.
    With `durable_rename` the folder is fsynced too, so the new name itself survives a crash.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).replace(target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable_rename:
        fsync_dir(target.parent)


def write_atomic(path: str | os.PathLike[str], data: bytes | str, *, durable_rename: bool = False) -> None:
    """The whole of `data` at `path`, or the old file: never a mix."""
    with atomic_file(path, durable_rename=durable_rename) as fh:
        fh.write(data.encode() if isinstance(data, str) else data)
