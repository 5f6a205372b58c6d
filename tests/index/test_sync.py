"""Syncing an index with a folder of real files: the result is checked against the folder itself
(every file's sha256 and path), the vectors against embedding the files one by one."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from index.build import build_index
from index.folder import STATE_FILE, FileStates, SyncRefusedError
from index.images import ImageStore
from index.store import ImageIndex, load
from index.sync import apply_sync, check_safe, plan_sync
from model.embedding.images import decode_image
from model.embedding.runtime import EncoderRuntime, load_runtime
from tests.conftest import pattern_png


def folder_contents(folder: Path) -> dict[str, list[str]]:
    """sha256 -> the sorted paths holding those bytes: what the index should hold after a sync."""
    out: dict[str, list[str]] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            out.setdefault(hashlib.sha256(path.read_bytes()).hexdigest(), []).append(
                path.relative_to(folder).as_posix()
            )
    return out


def index_contents(index: ImageIndex) -> dict[str, list[str]]:
    rows = list(index.catalog.rows())
    copies = index.catalog.copies_of(r.sha256 for r in rows)
    return {r.sha256: sorted([r.uri, *copies.get(r.sha256, [])]) for r in rows}


def sync(root: Path, folder: Path, encoder: EncoderRuntime, force: bool = False, max_removed: float = 0.1) -> dict:
    index = load(root, encoder_checksum=encoder.checksum, writable=True)
    states = FileStates(root / STATE_FILE)
    try:
        plan = plan_sync(index, folder, states, allow_empty=force)
        check_safe(plan, index.count, max_removed, force)
        return apply_sync(index, plan, folder, encoder, states, ImageStore(root / "images"), chunk=4).summary
    finally:
        states.close()
        index.close()


@pytest.fixture()
def setup(tiny_encoder: Path, image_folder: Path, tmp_path: Path) -> tuple[Path, Path, EncoderRuntime]:
    folder = tmp_path / "photos"
    shutil.copytree(image_folder, folder)
    root = tmp_path / "idx"
    encoder = load_runtime(tiny_encoder)
    build_index(encoder, folder, root, progress=False)
    return root, folder, encoder


def test_sync_follows_added_deleted_changed_renamed_and_copied_files(
    setup: tuple[Path, Path, EncoderRuntime],
) -> None:
    root, folder, encoder = setup
    first = sync(root, folder, encoder)  # in step after the build: nothing to do, no file read again
    assert first == first | {"added": 0, "removed": 0, "moved": 0, "hashed": 0}
    before = {r.uri: r.id for r in load(root).catalog.rows()}
    for i in range(3):
        (folder / "train" / "checker" / f"new-{i}.png").write_bytes(pattern_png(500 + i))
    (folder / "train" / "checker" / "000.jpg").unlink()
    (folder / "test" / "stripes_h" / "001.png").unlink()
    (folder / "train" / "stripes_v" / "002.webp").write_bytes(pattern_png(600))  # edited in place
    (folder / "moved").mkdir()
    (folder / "train" / "stripes_h" / "003.jpg").rename(folder / "moved" / "renamed.jpg")
    shutil.copy(folder / "train" / "stripes_h" / "004.png", folder / "moved" / "copy.png")

    summary = sync(root, folder, encoder)

    assert summary == summary | {"added": 4, "removed": 3, "changed": 1, "moved": 2}
    index = load(root, writable=True)  # reopened: the journal replays what the sync wrote
    assert index_contents(index) == folder_contents(folder)
    rows = {r.uri: r for r in index.catalog.rows()}
    assert rows["moved/renamed.jpg"].id == before["train/stripes_h/003.jpg"]  # a rename keeps its id
    assert rows["train/stripes_v/002.webp"].id not in before.values()  # new bytes, new entry
    assert rows["train/checker/new-0.png"].label == "checker"
    unchanged = set(before) - {"train/checker/000.jpg", "test/stripes_h/001.png", "train/stripes_v/002.webp",
                               "train/stripes_h/003.jpg"}  # fmt: skip
    assert all(rows[u].id == before[u] for u in unchanged)
    for uri in ("train/checker/new-1.png", "train/stripes_v/002.webp"):  # vectors = the files embedded one by one
        expected = encoder.embed_pixels(decode_image((folder / uri).read_bytes(), encoder.image_size).pixels[None])
        np.testing.assert_allclose(index.vectors(np.array([rows[uri].id]))[0], expected[0], atol=1e-5)
    assert ImageStore(root / "images").get(rows["train/checker/new-2.png"].sha256) is not None
    index.close()
    again = sync(root, folder, encoder)  # in step: nothing changes and no file is read again
    assert again == again | {"added": 0, "removed": 0, "moved": 0, "hashed": 0}


@pytest.mark.parametrize("what", ["missing", "empty", "half deleted"])
def test_an_unsafe_sync_changes_nothing_without_force(setup: tuple[Path, Path, EncoderRuntime], what: str) -> None:
    root, folder, encoder = setup
    before = index_contents(load(root))
    if what == "missing":
        shutil.rmtree(folder)
    elif what == "empty":
        shutil.rmtree(folder)
        folder.mkdir()
    else:
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        for path in files[::2]:
            path.unlink()
    with pytest.raises(SyncRefusedError, match="nothing was changed"):
        sync(root, folder, encoder)
    assert index_contents(load(root, writable=True)) == before
    if what == "half deleted":
        sync(root, folder, encoder, force=True)
        assert index_contents(load(root, writable=True)) == folder_contents(folder)
    if what == "empty":
        sync(root, folder, encoder, force=True)
        assert load(root, writable=True).count == 0


def test_a_small_deletion_goes_ahead(setup: tuple[Path, Path, EncoderRuntime]) -> None:
    root, folder, encoder = setup
    n = load(root).count
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    for path in files[: int(0.1 * n)]:
        path.unlink()
    assert sync(root, folder, encoder)["removed"] == int(0.1 * n)
    assert index_contents(load(root, writable=True)) == folder_contents(folder)
