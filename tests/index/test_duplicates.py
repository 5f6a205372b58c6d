"""Near-duplicate groups against a brute-force reference (all pairs, then a breadth-first walk)."""

from __future__ import annotations

import io
import json
import shutil
from collections import deque
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from index import duplicates as dup
from index.build import build_index
from index.catalog import NewImage
from index.duplicates import TooManyPairsError, find_duplicates, write_groups
from index.store import load
from model.embedding.embed import load_encoder
from tests.conftest import clustered_vectors
from tests.index.conftest import make_index


def naive_groups(vectors: np.ndarray, ids: list[int], threshold: float) -> set[frozenset[int]]:
    sims = vectors.astype(np.float64) @ vectors.astype(np.float64).T
    return walked_groups(sims >= threshold, ids)


def walked_groups(linked: np.ndarray, ids: list[int]) -> set[frozenset[int]]:
    """The connected components (of two or more) of the graph `linked` (n x n bool), breadth first."""
    seen: set[int] = set()
    groups = set()
    for start in range(len(ids)):
        if start in seen:
            continue
        component, todo = {start}, deque([start])
        while todo:
            for other in np.flatnonzero(linked[todo.popleft()]):
                if int(other) not in component:
                    component.add(int(other))
                    todo.append(int(other))
        seen |= component
        if len(component) > 1:
            groups.add(frozenset(ids[p] for p in component))
    return groups


def planted(n: int = 600, dim: int = 24, seed: int = 0) -> np.ndarray:
    """Clustered vectors, plus near copies: pairs, a chain of three and a group of five."""
    rng = np.random.default_rng(seed)
    base = clustered_vectors(n, dim, clusters=8, seed=seed, spread=0.6)
    copies = []
    for source, count in ((3, 1), (40, 1), (77, 2), (200, 4)):
        for _ in range(count):
            v = base[source] + 0.03 * rng.normal(size=dim)
            copies.append(v / np.linalg.norm(v))
    return np.concatenate([base, np.array(copies, np.float32)]).astype(np.float32)


@pytest.mark.parametrize("factory", ["Flat", "IVF16,Flat", "HNSW16"])
@pytest.mark.parametrize("threshold", [0.98, 0.9])
def test_groups_equal_the_brute_force_components(tmp_path: Path, factory: str, threshold: float) -> None:
    vectors = planted()
    index = make_index(tmp_path, vectors, factory)
    if factory.startswith("IVF"):
        index.backend.set_param(16)  # every list: the range search is exact, as the reference
    report = find_duplicates(index, threshold)
    ids = index.catalog.ids()
    got = {frozenset(m.id for m in g.members) for g in report.groups}
    assert got == naive_groups(vectors, ids, threshold)
    assert report.images == len(vectors)
    sizes = [g.size for g in report.groups]
    assert sizes == sorted(sizes, reverse=True)
    for group in report.groups:  # each member's score is its best link inside the group
        members = [ids.index(m.id) for m in group.members]
        sims = vectors[members] @ vectors[members].T
        np.fill_diagonal(sims, -2)
        assert np.allclose([m.score for m in group.members], sims.max(axis=1), atol=1e-5)


def test_planted_copies_are_found(tmp_path: Path) -> None:
    vectors = planted()
    index = make_index(tmp_path, vectors)
    groups = [{m.id for m in g.members} for g in find_duplicates(index, 0.98).groups]
    for source, copy_ids in ((3, [601]), (40, [602]), (77, [603, 604]), (200, [605, 606, 607, 608])):
        assert any({source + 1, *copy_ids} <= g for g in groups), (source, groups)


def test_a_threshold_that_joins_everything_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index = make_index(tmp_path, planted())
    monkeypatch.setattr(dup, "MAX_PAIRS", 1000)
    with pytest.raises(TooManyPairsError, match="raise the threshold"):
        find_duplicates(index, -1.0)


def jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def test_edited_copies_and_byte_copies_of_images(tiny_encoder: Path, image_folder: Path, tmp_path: Path) -> None:
    """A collection with re-encoded, resized and slightly cropped copies of three of its images,
    and a byte-identical copy of a fourth: the edited copies group with their originals (at
    the lowest cosine the encoder gives such a pair) exactly as brute force groups them, and
    the byte copy is one image with its other uri."""
    data = tmp_path / "data"
    shutil.copytree(image_folder / "train", data)
    originals = sorted(data.rglob("*.png"))[:4]
    for n, path in enumerate(originals[:3]):
        img = Image.open(path)
        w, h = img.size
        edited = [
            jpeg(img, 60),
            jpeg(img.resize((w * 3 // 4, h * 3 // 4)), 90),
            jpeg(img.crop((1, 1, w - 1, h - 1)), 95),
        ]
        for e, blob in enumerate(edited):
            (path.parent / f"copy-{n}-{e}.jpg").write_bytes(blob)
    shutil.copy(originals[3], originals[3].parent / "same-bytes.png")
    root = tmp_path / "idx"
    build_index(load_encoder(tiny_encoder), data, root, progress=False)
    index = load(root)
    rows = {r.uri: r.id for r in index.catalog.rows()}
    ids = index.catalog.ids()
    vectors = index.vectors(np.array(ids))
    by_id = {i: vectors[p] for p, i in enumerate(ids)}
    uri = lambda p: str(p.relative_to(data))  # noqa: E731
    pairs = [
        (rows[uri(o)], rows[f"{uri(o.parent)}/copy-{n}-{e}.jpg"]) for n, o in enumerate(originals[:3]) for e in range(3)
    ]
    threshold = min(float(by_id[a] @ by_id[b]) for a, b in pairs) - 1e-4

    report = find_duplicates(index, threshold)
    near = [g for g in report.groups if not g.exact_only]
    assert {frozenset(m.id for m in g.members) for g in near} == naive_groups(vectors, ids, threshold)
    for a, b in pairs:
        assert any({a, b} <= {m.id for m in g.members} for g in near)
    byte_copy = uri(originals[3].parent / "same-bytes.png")
    holder = [m for g in report.groups for m in g.members if byte_copy in m.copies]
    assert [m.id for m in holder] == [rows[uri(originals[3])]]

    for suffix in (".json", ".csv"):
        out = tmp_path / f"groups{suffix}"
        write_groups(report, index.rows(ids), out)
        text = out.read_text()
        assert byte_copy in text and uri(originals[0]) in text
    written = json.loads((tmp_path / "groups.json").read_text())
    assert len(written["groups"]) == len(report.groups)
    index.close()


def test_a_byte_copy_added_through_the_journal_survives_a_reload(built: Path) -> None:
    """POST /images of known bytes under a new uri records a copy, journalled like any write."""
    index = load(built, writable=True)
    row = next(index.catalog.rows())
    vector = index.vectors(np.array([row.id]))
    ((got, created),) = index.add(vector, [NewImage("elsewhere/same.png", row.sha256, row.width, row.height)])
    assert (got, created) == (row.id, False)
    index.close()
    reopened = load(built, writable=True)
    assert reopened.catalog.copies_of([row.sha256]) == {row.sha256: ["elsewhere/same.png"]}
    reopened.close()


def test_images_written_during_the_search_do_not_confuse_it(tmp_path: Path) -> None:
    """The search holds the lock a batch at a time: an image added after the snapshot is left
    out (its id is not in the snapshot); pairs among the snapshot's images are all found, but
    for those with an image removed meanwhile (the service drops it when it joins the rows)."""
    vectors = planted()
    index = make_index(tmp_path, vectors)
    ids = np.array(index.catalog.ids())
    snapshot = ids[:-1]  # the last copy of source 200 "arrived after" the snapshot
    gone = int(ids[3])  # image 4 (source 3) "left during" the search
    index.remove([gone])
    a, b, _ = dup._edges(index, vectors[:-1], snapshot, 0.98)
    found = {frozenset((int(snapshot[x]), int(snapshot[y]))) for x, y in zip(a, b, strict=True)}
    sims = vectors[:-1].astype(np.float64) @ vectors[:-1].astype(np.float64).T

    def within(t: float) -> set[frozenset[int]]:
        xs, ys = np.nonzero(np.triu(sims >= t, 1))
        return {frozenset((int(snapshot[x]), int(snapshot[y]))) for x, y in zip(xs, ys, strict=True)}

    # float32 search against a float64 reference: a pair within 1e-5 of the threshold may go either way
    assert found <= within(0.98 - 1e-5) and all(int(ids[-1]) not in p for p in found)
    assert {p for p in within(0.98 + 1e-5) if gone not in p} <= found


def _pairs(group: frozenset[int]) -> list[tuple[int, int]]:
    members = sorted(group)
    return [(x, y) for i, x in enumerate(members) for y in members[i + 1 :]]


@pytest.mark.parametrize("seed", range(6))
def test_component_labels_equal_a_breadth_first_walk(seed: int) -> None:
    """Random sparse graphs (chains, stars, isolated nodes, repeated and self edges) against BFS."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    m = int(rng.integers(0, 2 * n))
    a, b = rng.integers(0, n, m), rng.integers(0, n, m)
    if seed % 2:  # a long chain in a shuffled order: the case that needs many rounds
        order = rng.permutation(n)
        a, b = np.concatenate([a, order[:-1]]), np.concatenate([b, order[1:]])
    neighbours: list[list[int]] = [[] for _ in range(n)]
    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        neighbours[x].append(y)
        neighbours[y].append(x)
    expected, seen = set(), set()
    for start in range(n):
        if start in seen:
            continue
        component, todo = {start}, deque([start])
        while todo:
            for other in neighbours[todo.popleft()]:
                if other not in component:
                    component.add(other)
                    todo.append(other)
        seen |= component
        expected.add(frozenset(component))
    labels = dup.component_labels(n, a, b)
    got = {frozenset(np.flatnonzero(labels == c).tolist()) for c in np.unique(labels)}
    assert got == expected
    assert sorted(np.unique(labels).tolist()) == list(range(len(expected)))


def test_pairs_below_the_threshold_join_only_when_the_pixel_check_passes(tmp_path: Path) -> None:
    """Reference: components of the graph whose edges are pairs >= threshold, plus pairs from
    the candidate level up that the check accepts, walked pair by pair."""
    vectors = planted()
    index = make_index(tmp_path, vectors)
    ids = index.catalog.ids()
    rng = np.random.default_rng(5)
    accepted = {frozenset(map(int, p)) for p in rng.choice(ids, (400, 2))}

    def alike(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.array([frozenset((int(i), int(j))) in accepted for i, j in zip(a, b, strict=True)])

    threshold, candidate = 0.98, 0.6
    report = find_duplicates(index, threshold, dup.PixelCheck(candidate, alike))
    sims = vectors.astype(np.float64) @ vectors.astype(np.float64).T
    linked = (sims >= threshold) | (
        (sims >= candidate) & np.array([[frozenset((i, j)) in accepted for j in ids] for i in ids])
    )
    np.fill_diagonal(linked, False)
    expected = walked_groups(linked, ids)
    got = {frozenset(m.id for m in g.members) for g in report.groups}
    assert got == expected
    assert got != naive_groups(vectors, ids, threshold)  # the check added pairs
