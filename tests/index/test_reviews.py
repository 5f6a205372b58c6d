"""Review decisions by content: states of a group, replacement, validation, the suggested copy."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from index.catalog import CatalogRow
from index.reviews import Reviews, review_of, suggest


def test_a_group_is_reviewed_changed_or_new(tmp_path: Path) -> None:
    reviews = Reviews(tmp_path)
    decided = reviews.record("keep_all", ["a", "b"], closeness=0.98)
    known = reviews.all()
    assert known == [decided]
    assert review_of({"a": 0.99, "b": 0.98}, known).status == "reviewed"
    assert review_of({"a": 0.99, "b": 0.98, "c": 0.985}, known).status == "reviewed"  # as close as the originals
    changed = review_of({"a": 0.99, "b": 0.98, "c": 0.985, "d": 0.95}, known)
    assert changed.status == "changed" and changed.unreviewed == ("d",)
    assert review_of({"x": 0.99, "y": 0.99}, known).status == "new"
    again = reviews.record("keep_one", ["b", "e"], closeness=0.97, keep="e")  # replaces the decision on b
    assert reviews.all() == [again]
    reviews.close()
    assert Reviews(tmp_path).all() == [again]  # kept on disk


@pytest.mark.parametrize(
    ("decision", "members", "keep"),
    [("keep_one", ["a", "b"], None), ("keep_one", ["a", "b"], "z"), ("keep_all", ["a", "b"], "a"),
     ("keep_all", ["a"], None), ("delete_all", ["a", "b"], None)],
)  # fmt: skip
def test_a_malformed_decision_is_refused(tmp_path: Path, decision: str, members: list[str], keep: str | None) -> None:
    with pytest.raises(ValueError):
        Reviews(tmp_path).record(decision, members, 0.9, keep)


def test_the_suggested_copy_is_the_best_by_size_format_compression_and_age() -> None:
    sizes = [(100, 80), (200, 160)]
    formats = [True, False]  # lossless or not
    stored = [5_000, 20_000]
    dates = ["2026-01-01T00:00:00", "2026-06-01T00:00:00"]
    rows, facts = [], {}
    for n, ((w, h), lossless, size, added) in enumerate(itertools.product(sizes, formats, stored, dates)):
        rows.append(CatalogRow(n, f"{n}.img", f"sha{n}", w, h, None, added))
        facts[f"sha{n}"] = (size, lossless)
    for k in range(2, len(rows) + 1, 3):
        group = rows[:k][::-1]
        best = None  # the naive reference: compare every candidate against the best so far
        for row in group:
            size, lossless = facts[row.sha256]
            score = (row.width * row.height, lossless, size / (row.width * row.height), [-ord(c) for c in row.added_at])
            if best is None or score > best[0]:
                best = (score, row.id)
        chosen, reason = suggest(group, facts.get)
        assert best is not None and chosen == best[1] and reason
