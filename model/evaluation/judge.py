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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from model.embedding.edits import EDITS, apply
from model.evaluation.copies import EmbedFn, copy_retrieval, to_pixels
from model.evaluation.health import effective_rank

BATCH = 32  # images embedded at a time
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
    """RankMe (Garrido et al. 2023): the effective rank of the features (model.evaluation.health), in [1, min(N, d)]."""
    return effective_rank(torch.from_numpy(feats))


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
    copies: float  # copy retrieval, overall (model.evaluation.copies)
    agreement: float  # neighbour_agreement with the shipped network
    views: float  # view_agreement
    rankme: float = 0.0
    alpha: float = 0.0
    shipped: bool = False  # the reference network as it ships (at some input size)


def measure(
    name: str,
    embed: EmbedFn,
    images: Sequence[Image.Image],
    size: int,
    reference: np.ndarray | None,
    *,
    shipped: bool,
    views: int = 300,
    copies: int = 120,
    k: int = 10,
    edits: Sequence[str] = tuple(EDITS),
) -> tuple[Candidate, np.ndarray]:
    """One encoder's label-free scores on a sample of a collection, and its features of the sample.

    `images`: the sample (RGB); `size`: the side the encoder embeds at; `reference`: the shipped
    network's features of the same images in the same order (None: this one is the reference).
    """
    if len(images) < 2 * k + 2:
        raise ValueError(f"judging neighbourhoods needs at least {2 * k + 2} images, got {len(images)}")
    embed = in_batches(embed)
    feats = np.concatenate([embed(to_pixels(images[s : s + BATCH], size)) for s in range(0, len(images), BATCH)])
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


def in_batches(embed: EmbedFn, batch: int = BATCH) -> EmbedFn:
    """`embed` called on at most `batch` images at a time: a runtime's working memory grows with
    the largest batch it has seen (ONNX Runtime keeps its arena), so a few hundred 224-px images
    at once cost gigabytes."""

    def embed_in_batches(pixels: torch.Tensor) -> np.ndarray:
        return np.concatenate([embed(pixels[i : i + batch]) for i in range(0, max(1, len(pixels)), batch)])

    return embed_in_batches


def pixels_to_images(pixels: torch.Tensor) -> list[Image.Image]:
    """uint8 (N, 3, S, S) -> RGB images."""
    return [Image.fromarray(x.permute(1, 2, 0).numpy()) for x in pixels.cpu()]


@dataclass(frozen=True)
class Rule:
    """The thresholds of `choose` (measured: BENCHMARKS.md "Encoder choice")."""

    copy_floor: float = 0.95  # edited copies a chosen encoder must find (or the shipped one's, if lower)
    copy_slack: float = 0.02  # ... within this of the shipped network where it is below the floor
    min_agreement: float = 0.25  # share of the shipped network's neighbours a trained space must keep
    min_rank: float = 0.85  # its RankMe, as a share of the shipped network's (dimensional collapse below)
    min_view_gain: float = 0.0  # its view agreement over the shipped network's: training must add invariance


def score(c: Candidate) -> float:
    """What ranks the trained candidates that pass every check: the spread of their spectrum
    (RankMe, Garrido et al. 2023's label-free proxy of downstream quality)."""
    return c.rankme


def _checks(c: Candidate, base: Candidate, floor: float, rule: Rule) -> str | None:
    """Why a trained candidate is out, or None when it passes every check."""
    if c.copies < floor:
        return f"finds edited copies {c.copies:.3f} of the time, below the floor {floor:.3f}"
    if c.agreement < rule.min_agreement:
        return (
            f"shares {c.agreement:.2f} of its neighbours with the shipped network (< {rule.min_agreement}): "
            "it has lost what the pictures show"
        )
    if c.rankme < rule.min_rank * base.rankme:
        return f"RankMe {c.rankme:.0f} against the shipped network's {base.rankme:.0f}: its space has narrowed"
    if c.views < base.views + rule.min_view_gain:
        return f"view agreement {c.views:.3f}, not above the shipped network's {base.views:.3f}: training added nothing"
    return None


def choose(candidates: list[Candidate], rule: Rule = Rule()) -> tuple[Candidate, dict[str, str]]:
    """(the chosen candidate, why each one was or was not chosen).

    The shipped network (the one candidate with `shipped` set) is the default. A trained
    candidate replaces it only when it passes every check against it:
    1. the floor: it finds edited copies at least `copy_floor` of the time (where the shipped
       network is below that itself, within `copy_slack` of it);
    2. the anchor: it shares at least `min_agreement` of each image's neighbours with the shipped
       network (a space that finds copies but has forgotten what pictures show shares next to none);
    3. no collapse: its RankMe is at least `min_rank` of the shipped network's;
    4. a gain: its neighbourhoods hold under edits better than the shipped network's.
    Of several that pass, the one with the highest RankMe is chosen.
    """
    shipped = [c for c in candidates if c.shipped]
    if len(shipped) != 1:
        raise ValueError(f"choose needs exactly one shipped candidate to judge against, got {len(shipped)}")
    base = shipped[0]
    floor = rule.copy_floor if base.copies >= rule.copy_floor else base.copies - rule.copy_slack
    why: dict[str, str] = {}
    passed: list[Candidate] = []
    for c in candidates:
        if c is base:
            continue
        failed = _checks(c, base, floor, rule)
        if failed:
            why[c.name] = failed
        else:
            passed.append(c)
    if not passed:
        why[base.name] = "chosen: the shipped network, as no trained network passed every check"
        return base, why
    pick = max(passed, key=score)
    for c in passed:
        why[c.name] = f"passed every check; RankMe {c.rankme:.0f}"
    why[pick.name] = (
        f"chosen: keeps {pick.agreement:.2f} of the shipped network's neighbours, RankMe {pick.rankme:.0f} "
        f"(shipped {base.rankme:.0f}), copies {pick.copies:.3f}, and its neighbourhoods hold under edits "
        f"{pick.views:.3f} against {base.views:.3f}"
    )
    why[base.name] = f"the shipped network: view agreement {base.views:.3f}, RankMe {base.rankme:.0f}"
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
            }
            for c in candidates
        },
    }
