"""Label-free scores of how good a space's neighbourhoods are, and the rule that picks an encoder.

Every score here is computed on the collection's own images, with no labels:
- `neighbour_agreement`: how many of an image's k nearest neighbours two spaces share (the
  frozen shipped network is the reference: a space that keeps finding edited copies but has
  forgotten what is in the pictures shares almost none of its neighbours).
- `view_agreement`: how many of an image's k nearest *other* images stay its neighbours when
  the image is edited (cropped, recoloured, re-compressed); the image itself is left out of both
  lists, so finding the copy does not count, only whether its neighbourhood holds.
- `rankme` (Garrido et al. 2023) and `alpha_req` (Agrawal et al. 2022): spectra of the features.

`choose` is the decision: see its docstring and BENCHMARKS.md "Encoder choice" for the
measurements behind it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from model.copies import EmbedFn, copy_retrieval, to_pixels

__all__ = ["EmbedFn", "to_pixels"]
from model.edits import EDITS, apply

# The edits whose copies view agreement searches with (a share of the sample each, in turn).
VIEW_EDITS = ("crop 80 %", "crop 60 %", "brightness+saturation", "JPEG q20", "horizontal flip", "grayscale")


def knn_indices(
    feats: np.ndarray, k: int, queries: np.ndarray | None = None, exclude: np.ndarray | None = None
) -> np.ndarray:
    """(Q, k) indices of the k most cosine-similar rows of `feats` (unit vectors) to each query.

    `queries` default to `feats` themselves; `exclude[q]` is a row of `feats` that query q may not
    return (its own image), or -1 for none. With queries=None each row excludes itself.
    """
    if queries is None:
        queries = feats
        exclude = np.arange(len(feats))
    if exclude is None:
        exclude = np.full(len(queries), -1)
    k = min(k, len(feats) - 1)
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), 1024):
        sims = queries[start : start + 1024] @ feats.T
        rows = np.arange(sims.shape[0])
        own = exclude[start : start + 1024]
        sims[rows[own >= 0], own[own >= 0]] = -np.inf
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1)
        out[start : start + len(rows)] = np.take_along_axis(part, order, axis=1)
    return out


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean share of neighbours two (N, k) index lists have in common, in [0, 1]."""
    if a.shape != b.shape:
        raise ValueError(f"neighbour lists differ in shape: {a.shape} vs {b.shape}")
    k = a.shape[1]
    return float(np.mean([len(np.intersect1d(x, y, assume_unique=True)) / k for x, y in zip(a, b, strict=True)]))


def neighbour_agreement(feats: np.ndarray, reference: np.ndarray, k: int = 10) -> float:
    """Share of each image's k nearest neighbours that the reference space gives it too."""
    return overlap(knn_indices(feats, k), knn_indices(reference, k))


def view_agreement(feats: np.ndarray, edited: np.ndarray, which: np.ndarray, k: int = 10) -> float:
    """Share of an image's k nearest other images that its edited copy still finds.

    `feats` (N, d): the gallery; `edited` (Q, d): edited copies of the gallery rows `which`.
    Both lists leave the image itself out.
    """
    clean = knn_indices(feats, k)[which]
    moved = knn_indices(feats, k, queries=edited, exclude=which)
    return overlap(clean, moved)


def spectrum(feats: np.ndarray) -> np.ndarray:
    """Singular values of the centred features, largest first."""
    centred = feats - feats.mean(0, keepdims=True)
    return np.linalg.svd(centred.astype(np.float64), compute_uv=False)


def rankme(feats: np.ndarray) -> float:
    """exp(entropy) of the normalised singular values (Garrido et al. 2023), in [1, min(N, d)]."""
    s = spectrum(feats)
    p = s / max(float(s.sum()), 1e-12) + 1e-12
    return float(math.exp(-(p * np.log(p)).sum()))


def alpha_req(feats: np.ndarray, top: int = 100) -> float:
    """Decay exponent of the eigenspectrum (Agrawal et al. 2022): eigenvalue_i ~ i^-alpha,
    fitted over the `top` largest. Near 1 is the well-conditioned regime the paper favours."""
    eig = spectrum(feats) ** 2
    eig = eig[: min(top, len(eig))]
    eig = eig[eig > 1e-12]
    if len(eig) < 3:
        return float("inf")
    x = np.log(np.arange(1, len(eig) + 1))
    slope = np.polyfit(x, np.log(eig), 1)[0]
    return float(-slope)


@dataclass
class Candidate:
    """One encoder's label-free scores on a collection."""

    name: str
    copies: float  # copy retrieval, overall (model.copies)
    agreement: float  # neighbour_agreement with the shipped network
    views: float  # view_agreement
    rankme: float = 0.0
    alpha: float = 0.0
    shipped: bool = False  # the reference network as it ships (at some input size)
    extra: dict[str, float] = field(default_factory=dict)


def measure(
    name: str,
    embed: EmbedFn,
    images: Sequence[Image.Image],
    size: int,
    reference: np.ndarray | None,
    *,
    shipped: bool,
    views: int = 300,
    copies: int = 300,
    k: int = 10,
    edits: Sequence[str] = tuple(EDITS),
) -> tuple[Candidate, np.ndarray]:
    """One encoder's label-free scores on a sample of a collection, and its features of the sample.

    `images`: the sample (RGB); `size`: the side the encoder embeds at; `reference`: the shipped
    network's features of the same images in the same order (None: this one is the reference).
    """
    if len(images) < 2 * k + 2:
        raise ValueError(f"judging neighbourhoods needs at least {2 * k + 2} images, got {len(images)}")
    feats = np.concatenate([embed(to_pixels(images[s : s + 256], size)) for s in range(0, len(images), 256)])
    which = np.linspace(0, len(images) - 1, min(views, len(images))).round().astype(int)
    which = np.unique(which)
    edited = [apply(VIEW_EDITS[j % len(VIEW_EDITS)], images[i], 7919 * j + 1) for j, i in enumerate(which)]
    moved = embed(to_pixels(edited, size))
    found = copy_retrieval(embed, images[: min(copies, len(images))], size, queries=max(2, copies // 2), edits=edits)
    candidate = Candidate(
        name,
        copies=found["overall"],
        agreement=1.0 if reference is None else neighbour_agreement(feats, reference, k),
        views=view_agreement(feats, moved, which, k),
        rankme=rankme(feats),
        alpha=alpha_req(feats),
        shipped=shipped,
    )
    return candidate, feats


def pixels_to_images(pixels: torch.Tensor) -> list[Image.Image]:
    """uint8 (N, 3, S, S) -> RGB images."""
    return [Image.fromarray(x.permute(1, 2, 0).numpy()) for x in pixels.cpu()]


@dataclass(frozen=True)
class Rule:
    """The thresholds of `choose` (measured: BENCHMARKS.md "Encoder choice")."""

    copy_floor: float = 0.95  # edited copies a chosen encoder must find (or the shipped one's, if lower)
    copy_slack: float = 0.02  # ... within this of the shipped network where it is below the floor
    min_agreement: float = 0.3  # a space sharing fewer neighbours with the shipped net has lost what it knew
    min_gain: float = 0.02  # a trained network must beat the shipped one's score by this much


def score(c: Candidate) -> float:
    """The deciding score: neighbourhoods that hold under edits (view agreement)."""
    return c.views


def choose(candidates: list[Candidate], rule: Rule = Rule()) -> tuple[Candidate, dict[str, str]]:
    """(the chosen candidate, why each one was or was not chosen).

    1. The floor: a candidate finds edited copies at least `copy_floor` of the time (or, where
       the best shipped candidate does not reach it, within `copy_slack` of that one).
    2. The anchor: a trained candidate shares at least `min_agreement` of its neighbours with
       the shipped network (one that ignores what pictures show shares nearly none).
    3. Among those left, the highest `score`; a trained candidate must beat the best shipped one
       by `min_gain`, so training has to show that it helps.
    """
    if not candidates:
        raise ValueError("no candidates to choose from")
    shipped = [c for c in candidates if c.shipped]
    base = max(shipped, key=score) if shipped else None
    floor = rule.copy_floor
    if base is not None and base.copies < floor:
        floor = base.copies - rule.copy_slack
    why: dict[str, str] = {}
    eligible: list[Candidate] = []
    for c in candidates:
        if c.copies < floor:
            why[c.name] = f"finds edited copies {c.copies:.3f} of the time, below the floor {floor:.3f}"
        elif not c.shipped and c.agreement < rule.min_agreement:
            why[c.name] = (
                f"shares {c.agreement:.2f} of its neighbours with the shipped network "
                f"(< {rule.min_agreement}): it has lost what the pictures show"
            )
        else:
            eligible.append(c)
    if not eligible:
        pick = base or max(candidates, key=lambda c: c.copies)
        why[pick.name] = "no candidate passed the checks; keeping " + (
            "the shipped network" if base else "the best copy finder"
        )
        return pick, why

    def adjusted(c: Candidate) -> float:
        return score(c) - (0.0 if c.shipped else rule.min_gain)

    pick = max(eligible, key=adjusted)
    for c in eligible:
        if c is pick:
            why[c.name] = f"chosen: view agreement {score(c):.3f}, the highest" + (
                "" if c.shipped else f" by at least {rule.min_gain} over the shipped network"
            )
        else:
            why[c.name] = f"view agreement {score(c):.3f}" + (
                "" if c.shipped else f" (needs {score(pick) + rule.min_gain:.3f} to win)"
            )
    return pick, why


def as_record(candidates: list[Candidate], pick: Candidate, why: Mapping[str, str]) -> dict[str, object]:
    return {
        "chosen": pick.name,
        "candidates": {
            c.name: {
                "copies": round(c.copies, 4),
                "agreement": round(c.agreement, 4),
                "views": round(c.views, 4),
                "rankme": round(c.rankme, 2),
                "alpha": round(c.alpha, 3),
                "shipped": c.shipped,
                "why": why.get(c.name, ""),
                **{k: round(v, 4) for k, v in c.extra.items()},
            }
            for c in candidates
        },
    }
