"""How spread out a set of embeddings is, torch-free (the index build and the service use it
on stored vectors; model.evaluation.health computes the same figures with torch during training).

`std_ratio` is the mean per-dimension std of the unit vectors times sqrt(d): about 1 for
vectors spread over the sphere, near 0 for a collapse. The effective rank (Roy & Vetterli 2007)
is exp(entropy of the normalised singular values) of the centred vectors, in [1, d].
"""

from __future__ import annotations

import math

import numpy as np


def spread_stats(vectors: np.ndarray) -> dict[str, float]:
    """feature_std, std_ratio, effective_rank, dim and samples of unit vectors (n, d)."""
    x = np.asarray(vectors, dtype=np.float64)
    n, d = x.shape
    std = float(x.std(axis=0, ddof=1).mean()) if n > 1 else 0.0
    s = np.linalg.svd(x - x.mean(axis=0), compute_uv=False) if n > 1 else np.zeros(1)
    p = s / max(float(s.sum()), 1e-12)
    p = p[p > 0]
    rank = float(np.exp(-(p * np.log(p)).sum())) if len(p) else 1.0
    return {"feature_std": std, "std_ratio": std * math.sqrt(d), "effective_rank": rank, "dim": float(d),
            "samples": float(n)}  # fmt: skip


def collapse_warning(stats: dict[str, float]) -> str | None:
    """A human-readable warning if the health stats look like a (partial) collapse."""
    if stats["std_ratio"] < 0.1:
        return (
            f"representation collapse: per-dimension std is {stats['feature_std']:.4f} "
            f"({stats['std_ratio']:.3f} of a uniform spread); lower the learning rate or "
            "raise the temperature"
        )
    # n samples span at most n - 1 dimensions: judge the rank against what the sample can show.
    reachable = min(stats["dim"], stats.get("samples", stats["dim"] + 1) - 1)
    if stats["effective_rank"] < max(2.0, 0.01 * reachable) and reachable >= 2:
        return f"dimensional collapse: effective rank {stats['effective_rank']:.1f} of {int(stats['dim'])} dimensions"
    return None
