"""The label-free judge: its scores against brute-force references, and an encoder that finds
edited copies as well as any but has forgotten what the pictures show, which it must reject."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from model.evaluation import judge
from model.evaluation.copies import EmbedFn, to_pixels


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def brute_knn(feats: np.ndarray, k: int) -> list[set[int]]:
    out = []
    for i in range(len(feats)):
        sims = [(float(feats[i] @ feats[j]), j) for j in range(len(feats)) if j != i]
        out.append({j for _, j in sorted(sims, reverse=True)[:k]})
    return out


def test_neighbour_agreement_against_brute_force() -> None:
    rng = np.random.default_rng(0)
    a = unit(rng.normal(size=(40, 8)))
    b = unit(a + 0.4 * rng.normal(size=a.shape))
    na, nb = brute_knn(a, 5), brute_knn(b, 5)
    expected = np.mean([len(x & y) / 5 for x, y in zip(na, nb, strict=True)])
    assert judge.neighbour_agreement(a, b, k=5) == pytest.approx(expected)
    assert judge.neighbour_agreement(a, a, k=5) == 1.0


def test_view_agreement_leaves_the_image_itself_out() -> None:
    rng = np.random.default_rng(1)
    feats = unit(rng.normal(size=(30, 6)))
    which = np.array([0, 4, 9])
    # The edited copy is the image itself: its own row is excluded, so its neighbours are unchanged.
    assert judge.view_agreement(feats, feats[which], which, k=4) == 1.0
    # An edited copy that lands on another image shares that image's neighbourhood, not its own.
    moved = feats[[1, 5, 10]]
    clean = brute_knn(feats, 4)
    expected = []
    for src, dst in zip(which, (1, 5, 10), strict=True):
        sims = sorted(((float(feats[dst] @ feats[j]), j) for j in range(30) if j != src), reverse=True)[:4]
        expected.append(len(clean[src] & {j for _, j in sims}) / 4)
    assert judge.view_agreement(feats, moved, which, k=4) == pytest.approx(np.mean(expected))


def test_spectra() -> None:
    rng = np.random.default_rng(2)
    isotropic = rng.normal(size=(500, 16))
    collapsed = np.outer(rng.normal(size=500), rng.normal(size=16)) + 1e-3 * rng.normal(size=(500, 16))
    assert judge.rankme(isotropic) > 14 and judge.rankme(collapsed) < 2
    power = rng.normal(size=(2000, 64)) * np.arange(1, 65) ** -0.5  # eigenvalues ~ i^-1
    assert judge.alpha_req(power, top=64) == pytest.approx(1.0, abs=0.15)


def make_collection(n_classes: int = 4, per_class: int = 30, size: int = 48) -> list[Image.Image]:
    """Images whose content is their class: a class pattern plus each image's own variation."""
    rng = np.random.default_rng(3)
    images = []
    for _ in range(n_classes):
        base = rng.uniform(0, 255, size=(6, 6, 3))
        for _ in range(per_class):
            own = base + rng.normal(0, 40, size=(6, 6, 3))
            small = Image.fromarray(np.clip(own, 0, 255).astype(np.uint8))
            images.append(small.resize((size, size), Image.Resampling.BICUBIC))
    return images


def content_embed(pixels: torch.Tensor) -> np.ndarray:
    """A content-aware encoder for these images: their colours, pooled to 6 x 6, centred."""
    x = torch.nn.functional.adaptive_avg_pool2d(pixels.float(), 6).flatten(1)
    x = x - 128.0
    return unit(x.numpy())


def memoriser(originals: list[Image.Image], size: int) -> EmbedFn:
    """Finds edited copies at least as well as `content_embed` (it snaps a picture to the nearest
    original in that space) but answers with a random code per original: it knows which picture
    it is shown, and nothing of what it shows."""
    gallery = content_embed(to_pixels(originals, size))
    codes = unit(np.random.default_rng(4).normal(size=(len(originals), 32)))

    def embed(pixels: torch.Tensor) -> np.ndarray:
        sims = content_embed(pixels) @ gallery.T
        weights = np.exp((sims - sims.max(1, keepdims=True)) / 0.01)  # a sharp, confident snap
        return unit(weights @ codes)

    return embed


def test_the_judge_rejects_an_encoder_that_finds_copies_but_ignores_content() -> None:
    images, size = make_collection(), 32
    kw = {"views": 60, "copies": 60, "edits": ("JPEG q20", "10 % border", "downscale to 64 px")}
    shipped, ref = judge.measure("shipped", content_embed, images, size, None, shipped=True, **kw)
    cheat, _ = judge.measure("memoriser", memoriser(images, size), images, size, ref, shipped=False, **kw)
    # It finds every edited copy, and both scores that reward invariance alone prefer it ...
    assert cheat.copies == 1.0
    assert cheat.views > shipped.views + 0.1
    # ... but it shares only chance-level neighbourhoods with the shipped network,
    assert cheat.agreement < 0.2 < 0.5 < shipped.agreement
    pick, why = judge.choose([shipped, cheat], judge.Rule(copy_floor=0.0))
    assert pick.name == "shipped"
    assert "lost what the pictures show" in why["memoriser"]


def candidate(
    name: str, copies: float, agreement: float, views: float, rank: float = 500.0, shipped: bool = False
) -> judge.Candidate:
    return judge.Candidate(name, copies, agreement, views, rankme=rank, shipped=shipped)


def test_choose_keeps_the_shipped_network_unless_a_trained_one_passes_every_check() -> None:
    base = candidate("shipped", 0.97, 1.0, 0.60, shipped=True)
    good = candidate("adapted", 0.99, 0.4, 0.65, rank=480)
    assert judge.choose([base, good])[0].name == "adapted"
    failing = {
        "below the floor": candidate("adapted", 0.90, 0.4, 0.9),
        "lost what the pictures show": candidate("adapted", 0.99, 0.1, 0.9),
        "narrowed": candidate("adapted", 0.99, 0.4, 0.9, rank=300),
        "added nothing": candidate("adapted", 0.99, 0.4, 0.58),
    }
    for says, bad in failing.items():
        pick, why = judge.choose([base, bad])
        assert pick.name == "shipped" and says in why["adapted"], why
    # Of several that pass, the one with the richest spectrum.
    other = candidate("adapted-b", 0.99, 0.5, 0.70, rank=470)
    assert judge.choose([base, good, other])[0].name == "adapted"
    assert judge.choose([base, candidate("adapted-c", 0.99, 0.3, 0.62, rank=495), good])[0].name == "adapted-c"


def test_the_floor_follows_a_shipped_network_that_is_below_it() -> None:
    low = candidate("shipped", 0.80, 1.0, 0.5, shipped=True)
    assert judge.choose([low, candidate("adapted", 0.79, 0.6, 0.6)])[0].name == "adapted"
    assert judge.choose([low, candidate("adapted", 0.70, 0.6, 0.9)])[0].name == "shipped"


def test_choose_needs_one_shipped_reference() -> None:
    with pytest.raises(ValueError, match="exactly one shipped"):
        judge.choose([])
    with pytest.raises(ValueError, match="exactly one shipped"):
        judge.choose([candidate("a", 1, 1, 1), candidate("b", 1, 1, 1)])
