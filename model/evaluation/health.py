"""How healthy a representation space is, from features alone (no labels).

Alignment and uniformity (Wang & Isola 2020), per-dimension std of normalised h, effective
rank (Roy & Vetterli 2007). A collapsed encoder has std -> 0 and rank -> 1;
`model.common.spread.collapse_warning` says so in words (torch-free: the service uses it too).
"""

from __future__ import annotations

import math

import torch

from model.common.spread import collapse_warning

__all__ = ["alignment", "collapse_warning", "effective_rank", "health", "uniformity"]


def alignment(h1: torch.Tensor, h2: torch.Tensor, alpha: float = 2.0) -> float:
    """E ||f(x) - f(x+)||^alpha over positive pairs of unit vectors (lower is better)."""
    return float((h1 - h2).norm(dim=1).pow(alpha).mean())


def uniformity(h: torch.Tensor, t: float = 2.0) -> float:
    """log E exp(-t ||f(x) - f(y)||^2) over distinct pairs of unit vectors (lower is better)."""
    sq = torch.pdist(h.double()).pow(2)
    return float(sq.mul(-t).exp().mean().log())


def effective_rank(h: torch.Tensor) -> float:
    """exp(entropy of the normalised singular values) of the centred features, in [1, d]."""
    s = torch.linalg.svdvals((h - h.mean(0)).double())
    p = s / s.sum().clamp_min(1e-12)
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def health(h: torch.Tensor, h1: torch.Tensor, h2: torch.Tensor) -> dict[str, float]:
    """Health of normalised features h (clean views) and h1, h2 (two augmented views).

    `std_ratio` is the mean per-dimension std times sqrt(d): about 1 for features spread over
    the sphere, near 0 for a collapse.
    """
    d = h.shape[1]
    std = float(h.std(0).mean())
    return {
        "alignment": alignment(h1, h2),
        "uniformity": uniformity(h),
        "feature_std": std,
        "std_ratio": std * math.sqrt(d),
        "effective_rank": effective_rank(h),
        "dim": float(d),
        "samples": float(h.shape[0]),
    }
