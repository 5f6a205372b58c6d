"""Crash-safe files (model.common.atomic): a failure while writing leaves the old file whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.common.atomic import atomic_file, write_atomic


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "file.bin"
    write_atomic(target, b"old")
    with pytest.raises(RuntimeError), atomic_file(target) as fh:
        fh.write(b"half of the new")
        raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"old"
    assert [p.name for p in target.parent.iterdir()] == ["file.bin"]


def test_the_new_file_replaces_the_old_and_is_world_readable(tmp_path: Path) -> None:
    target = tmp_path / "file.txt"
    write_atomic(target, "old")
    write_atomic(target, "new", durable_rename=True)
    assert target.read_text() == "new" and oct(target.stat().st_mode & 0o777) == "0o644"
