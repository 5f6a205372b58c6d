"""Folder and tar sources, labels and splits, odd image modes, unreadable files."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from model.collections.data import count_records, iter_records, load_collection
from tests.conftest import CLASSES, encode, make_collection


def test_folder_and_tar_give_the_same_records(image_folder: Path, image_tar: Path) -> None:
    folder = {(r.uri, r.label, r.split, r.data) for r in iter_records(image_folder)}
    archive = {(r.uri, r.label, r.split, r.data) for r in iter_records(image_tar)}
    assert folder == archive
    assert len(folder) == count_records(image_folder) == count_records(image_tar) == 3 * 18
    assert {label for _, label, _, _ in folder} == set(CLASSES)
    assert {split for _, _, split, _ in folder} == {"train", "test"}


def test_collection_cache_labels_and_split(image_tar: Path) -> None:
    coll = load_collection(image_tar, 24)
    assert coll.images.shape == (54, 3, 24, 24) and str(coll.images.dtype) == "torch.uint8"
    assert coll.classes == sorted(CLASSES)
    train, test = coll.train_test()
    assert len(train) == 36 and len(test) == 18
    assert all(coll.splits[i] == "test" for i in test.tolist())


def test_unlabelled_flat_folder_gets_a_random_holdout(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for i in range(10):
        (tmp_path / f"{i}.png").write_bytes(encode(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)))
    coll = load_collection(tmp_path, 16)
    assert not coll.has_labels and len(coll) == 10
    train, test = coll.train_test(test_fraction=0.2)
    assert len(test) == 2 and set(train.tolist()).isdisjoint(test.tolist())


def test_unreadable_files_are_skipped_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_collection(tmp_path, per_class_train=2, per_class_test=0)
    (tmp_path / "train" / "checker" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (tmp_path / "train" / "checker" / "empty.png").write_bytes(b"")
    full = encode(np.zeros((32, 32, 3), dtype=np.uint8), "PNG")
    (tmp_path / "train" / "checker" / "truncated.png").write_bytes(full[: len(full) // 2])
    coll = load_collection(tmp_path, 16)
    assert len(coll) == 6 and coll.skipped == 3
    assert "skipped 3 unreadable" in caplog.text


def test_missing_path_and_non_archive_file_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list(iter_records(tmp_path / "nope"))
    f = tmp_path / "notes.txt"
    f.write_text("hi")
    with pytest.raises(ValueError, match=r"not a \.tar"):
        list(iter_records(f))


def test_tar_with_odd_members(tmp_path: Path) -> None:
    path = tmp_path / "odd.tar"
    with tarfile.open(path, "w") as tar:
        for name, data in (("./a/x.png", encode(np.zeros((9, 9, 3), np.uint8))), ("readme.txt", b"hi")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    records = list(iter_records(path))
    assert [(r.uri, r.label, r.split) for r in records] == [("a/x.png", "a", None)]


@pytest.mark.parametrize("as_archive", [False, True])
def test_a_split_inside_one_wrapper_folder_is_recognised(tmp_path: Path, as_archive: bool) -> None:
    """`tar czf photos.tar.gz photos/` puts every member under photos/: the split must survive it."""
    inner = make_collection(tmp_path / "photos", per_class_train=2, per_class_test=1)
    source: Path = tmp_path
    if as_archive:
        source = tmp_path / "photos.tar.gz"
        with tarfile.open(source, "w:gz") as tar:
            tar.add(inner, arcname="photos")
    records = list(iter_records(source))
    assert records and all(r.uri.startswith("photos/") for r in records)
    assert {r.split for r in records} == {"train", "test"}
    assert all(r.label == r.uri.split("/")[2] for r in records)
    assert sum(r.split == "test" for r in records) == len(records) // 3
