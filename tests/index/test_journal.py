"""The write-ahead journal (index.journal): entries round-trip, a torn last record is dropped on
reopen (a crash mid-append), corruption before the end is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from index.catalog import NewImage
from index.journal import AddEntry, Journal, RemoveEntry


def entries() -> list[AddEntry | RemoveEntry]:
    image = NewImage("up/a.png", "a" * 64, 40, 30, "cat")
    return [AddEntry(7, image, np.arange(4, dtype=np.float32)), RemoveEntry((3, 9)), AddEntry(8, image, np.ones(4))]


def test_entries_round_trip_in_order(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    journal.append(entries())
    again = list(Journal(tmp_path / "j.jsonl").replay())
    assert [type(e) for e in again] == [AddEntry, RemoveEntry, AddEntry]
    first = again[0]
    assert isinstance(first, AddEntry) and first.id == 7 and first.image.uri == "up/a.png"
    np.testing.assert_array_equal(first.vector, np.arange(4, dtype=np.float32))
    assert again[1] == RemoveEntry((3, 9))
    tail = list(Journal(tmp_path / "j.jsonl").replay(start=2))
    assert len(tail) == 1 and isinstance(tail[0], AddEntry) and tail[0].id == 8
    assert Journal(tmp_path / "j.jsonl").entries == 3


@pytest.mark.parametrize("keep_bytes_of_last", [1, 25, -1])
def test_a_torn_last_record_is_dropped_on_reopen(tmp_path: Path, keep_bytes_of_last: int) -> None:
    path = tmp_path / "j.jsonl"
    Journal(path).append(entries())
    data = path.read_bytes()
    last_start = data.rstrip(b"\n").rfind(b"\n") + 1
    # Cut the file inside the last record, as a crash in the middle of an append would.
    cut = last_start + keep_bytes_of_last if keep_bytes_of_last > 0 else len(data) - 1
    path.write_bytes(data[:cut])
    reopened = Journal(path)
    assert reopened.entries == 2
    assert path.read_bytes() == data[:last_start]  # the torn tail is truncated away
    reopened.append([RemoveEntry((1,))])  # and appending after it gives well-formed lines
    assert [type(e) for e in Journal(path).replay()] == [AddEntry, RemoveEntry, RemoveEntry]


def test_corruption_before_the_end_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    Journal(path).append(entries())
    lines = path.read_bytes().split(b"\n")
    lines[0] = b'{"op": "add", "id": 1'
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(ValueError, match="corrupt at line 1"):
        Journal(path)
