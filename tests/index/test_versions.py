"""Index versions on disk (index.versions): publishing switches CURRENT, the manifest round-trips."""

from __future__ import annotations

from pathlib import Path

import pytest

from index.versions import (
    POINTER,
    IndexNotFoundError,
    Manifest,
    current_version,
    publish,
    read_manifest,
    staging_dir,
    version_name,
)


def stage(root: Path, count: int) -> Path:
    staged = staging_dir(root)
    manifest = Manifest(
        version=version_name(staged), encoder={"sha256": "e" * 64}, dim=4, count=count, index_type="Flat"
    )
    (staged / "manifest.json").write_text(manifest.to_json())
    return staged


def test_publish_switches_current_only_to_a_complete_version(tmp_path: Path) -> None:
    with pytest.raises(IndexNotFoundError, match="index build"):
        current_version(tmp_path)
    first = publish(tmp_path, stage(tmp_path, 1))
    assert current_version(tmp_path).name == first and read_manifest(tmp_path)["count"] == 1
    half = stage(tmp_path, 2)  # staged but never published: invisible
    assert current_version(tmp_path).name == first and half.name.startswith(".tmp-")
    second = publish(tmp_path, half)
    assert (tmp_path / POINTER).read_text().strip() == second != first
    assert read_manifest(tmp_path)["count"] == 2
    assert not list(tmp_path.glob(f".{POINTER}*"))  # no temporary pointer files left behind


def test_manifest_round_trips_and_leaves_out_what_is_unset(tmp_path: Path) -> None:
    m = Manifest(version="v", encoder={"sha256": "e" * 64}, dim=4, count=3, index_type="Flat", data="photos/")
    raw = m.to_dict()
    assert "rebuilt_by_job" not in raw and raw["data"] == "photos/" and raw["format"] == "latent-search-index/1"
    assert Manifest.from_dict({**raw, "from_a_newer_version": 1}) == m
    assert m.encoder_sha256 == "e" * 64
