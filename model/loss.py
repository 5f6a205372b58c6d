"""Contrastive losses: NT-Xent (SimCLR) and supervised contrastive (SupCon).

Both take projections z of 2N views arranged as [view1 of images 0..N-1, view2 of images
0..N-1], so the positive of row i is row (i + N) mod 2N.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _similarities(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """Cosine similarities / tau in float32 with the self-similarity removed (-inf)."""
    z = F.normalize(z.float(), dim=1)
    logits = z @ z.T / temperature
    # -inf on the diagonal: exp(-inf) = 0, so an image is never its own negative.
    return logits.fill_diagonal_(float("-inf"))


class NTXentLoss(nn.Module):
    """Normalised temperature-scaled cross entropy (Chen et al. 2020, eq. 1).

    For each of the 2N views, a softmax over the other 2N - 1 views (1 positive, 2N - 2
    negatives) of cosine similarity / tau; the loss is the mean negative log-probability of
    the positive. Computed with log-sum-exp, so it stays finite for small tau (0.05 and
    below) where exp(1 / tau) would overflow float32.

    Args:
        temperature: tau > 0.
    Shapes:
        z1, z2: (N, D) projections of the two views. Returns a scalar.
    """

    def __init__(self, temperature: float = 0.5) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        if z1.shape != z2.shape or z1.ndim != 2:
            raise ValueError(f"expected two (N, D) tensors of one shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
        n = z1.shape[0]
        if n < 2:
            raise ValueError("NT-Xent needs at least 2 images per batch")
        logits = _similarities(torch.cat([z1, z2]), self.temperature)
        targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z1.device)
        return F.cross_entropy(logits, targets)


class SupConLoss(nn.Module):
    """Supervised contrastive loss, L^sup_out of Khosla et al. 2020 (eq. 2).

    Positives of a view are all other views whose image has the same label (its own second
    view included); the loss averages -log softmax over each anchor's positives. Images
    with label -1 (unknown) only have their own second view as a positive, which makes the
    loss reduce to NT-Xent on unlabelled batches.

    Shapes:
        z1, z2: (N, D); labels: (N,) int64. Returns a scalar.
    """

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def forward(self, z1: torch.Tensor, z2: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        n = z1.shape[0]
        if z1.shape != z2.shape or labels.shape != (n,):
            raise ValueError("z1, z2 must be (N, D) and labels (N,)")
        logits = _similarities(torch.cat([z1, z2]), self.temperature)
        log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        ids = torch.arange(n, device=z1.device)
        # Unknown labels get a unique negative id so they match only their own other view.
        keys = torch.where(labels >= 0, labels, -1 - ids).repeat(2)
        positives = keys.view(-1, 1) == keys.view(1, -1)
        positives.fill_diagonal_(False)
        pos_log_prob = torch.where(positives, log_prob, torch.zeros_like(log_prob)).sum(dim=1)
        return -(pos_log_prob / positives.sum(dim=1)).mean()
