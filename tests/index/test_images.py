"""The content-addressed image store (index.images)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from index.images import ImageStore


def test_bytes_are_stored_once_under_their_hash(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    sha = store.put(b"some image bytes")
    assert sha == hashlib.sha256(b"some image bytes").hexdigest()
    assert store.get(sha) == b"some image bytes"
    path = store.path_for(sha)
    assert path == tmp_path / "images" / sha[:2] / sha and oct(path.stat().st_mode & 0o777) == "0o644"
    mtime = path.stat().st_mtime_ns
    assert store.put(b"some image bytes") == sha and path.stat().st_mtime_ns == mtime  # not rewritten
    store.delete(sha)
    assert store.get(sha) is None
    store.delete(sha)  # deleting twice is fine


@pytest.mark.parametrize("name", ["../../etc/passwd", "A" * 64, "abc", "a" * 63 + "/"])
def test_names_that_are_not_a_sha256_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="sha256"):
        ImageStore(tmp_path).get(name)
