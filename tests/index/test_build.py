"""`latent-search index build` (index.build): round trip, duplicates and unreadable files, crashes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from index.build import build_index
from index.store import load
from index.versions import clean_staging, read_manifest, staging_dir
from model.embedding.embed import load_encoder
from model.embedding.runtime import embed_bytes


def test_build_save_load_round_trip(built: Path, tiny_encoder: Path, image_folder: Path) -> None:
    manifest = read_manifest(built)
    assert manifest["count"] == 54 and manifest["index_type"] == "Flat" and manifest["dim"] == 32
    assert manifest["recall_at_10"] == 1.0
    encoder = load_encoder(tiny_encoder)
    index = load(built, encoder_checksum=encoder.checksum)
    queries = embed_bytes(encoder, [p.read_bytes() for p in sorted(image_folder.rglob("*.png"))[:4]])
    first = index.search(queries, 5)
    again = load(built).search(queries, 5)
    for a, b in zip(first[1], again[1], strict=True):
        assert np.array_equal(a, b)
    # An image searched for finds itself first with cosine ~1.
    assert all(s[0] > 0.999 for s in first[0])
    rows = index.rows([int(i) for i in first[1][0]])
    assert all(r.uri.startswith(("train/", "test/")) and r.width == 32 for r in rows.values())


def test_duplicates_and_unreadable_files_in_build(tiny_encoder: Path, image_folder: Path, tmp_path: Path) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(image_folder, data)
    first = next(iter(sorted(data.rglob("*.png"))))
    (data / "copy.png").write_bytes(first.read_bytes())
    (data / "bad.jpg").write_bytes(b"nope")
    report = build_index(load_encoder(tiny_encoder), data, tmp_path / "idx", progress=False)
    assert report is not None
    assert report.manifest["count"] == 54
    assert report.manifest["duplicates"] == 1 and report.manifest["skipped_unreadable"] == 1


def test_crash_during_build_leaves_previous_version(
    built: Path, tiny_encoder: Path, image_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = read_manifest(built)["version"]
    import faiss

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt("simulated crash while writing the index")

    monkeypatch.setattr(faiss, "write_index", crash)
    with pytest.raises(KeyboardInterrupt):
        build_index(load_encoder(tiny_encoder), image_folder, built, progress=False)
    # A harder crash: a process killed mid-build leaves a staging folder behind.
    leftover = staging_dir(built)
    (leftover / "index.faiss").write_bytes(b"half")
    assert load(built).version == before
    assert clean_staging(built) == 1 and not leftover.exists()
