"""Contrastive losses: NT-Xent (SimCLR) and supervised contrastive (SupCon).

Both take projections z of 2N views arranged as [view1 of images 0..N-1, view2 of images
0..N-1], so the positive of row i is row (i + N) mod 2N. Under data parallelism (model.training.distributed)
each process's views are contrasted against the gathered views of every process, so the negatives
are the other 2*N*W - 2 views of the global batch, as in SimCLR's large-batch training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.common.processes import current
from model.training.distributed import all_gather_plain, all_gather_with_grad


def _local_vs_global(
    z1: torch.Tensor, z2: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """Logits of this process's 2n views against the 2M views of the global batch.

    Returns (logits (2n, 2M) float32 with each view's own column at -inf, self_cols (2n,),
    offset, M): the global batch is [view1 of all M images, view2 of all M images] in rank
    order, and this process's images are rows offset..offset+n-1 of each half. In one process
    M = n and offset = 0, which is the whole-batch formula of the papers.
    """
    a = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    n = z1.shape[0]
    g1, g2 = all_gather_with_grad(a[:n]), all_gather_with_grad(a[n:])
    m = g1.shape[0]
    offset = current().rank * n if m != n else 0
    logits = a @ torch.cat([g1, g2]).T / temperature
    own = torch.arange(n, device=z1.device) + offset
    self_cols = torch.cat([own, own + m])
    # -inf on each view's own column: exp(-inf) = 0, so an image is never its own negative.
    logits = logits.index_put((torch.arange(2 * n, device=z1.device), self_cols), logits.new_tensor(float("-inf")))
    return logits, self_cols, offset, m


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
        logits, _, offset, m = _local_vs_global(z1, z2, self.temperature)
        own = torch.arange(n, device=z1.device) + offset
        targets = torch.cat([own + m, own])  # the other view of the same image
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
        logits, self_cols, offset, _ = _local_vs_global(z1, z2, self.temperature)
        log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        # Unknown labels get a unique negative id (from the global position) so they match only
        # their own other view.
        ids = torch.arange(n, device=z1.device) + offset
        local_keys = torch.where(labels >= 0, labels, -1 - ids)
        global_keys = all_gather_plain(local_keys)
        positives = local_keys.repeat(2).view(-1, 1) == global_keys.repeat(2).view(1, -1)
        positives[torch.arange(2 * n, device=z1.device), self_cols] = False
        pos_log_prob = torch.where(positives, log_prob, torch.zeros_like(log_prob)).sum(dim=1)
        return -(pos_log_prob / positives.sum(dim=1)).mean()


class SimilarityDistillation(nn.Module):
    """Keep a student's neighbourhoods close to a frozen teacher's (relational distillation).

    For each of the B rows of a batch, a softmax over its cosine similarity / tau to the other
    B - 1 rows, in the teacher's features and in the student's; the loss is the mean
    KL(teacher || student). It pulls the student's batch-level similarity structure toward the
    teacher's (Tung & Mori 2019's similarity preservation; the softmax form is CompRess /
    SEED's, Abbasi Koohpayegani et al. 2020, Fang et al. 2021), so contrastive adaptation adds
    invariances without forgetting which images the pretrained network finds alike.

    Shapes: student (B, D_s), teacher (B, D_t) features of the same B images. Returns a scalar.
    """

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def _logits(self, feats: torch.Tensor) -> torch.Tensor:
        a = F.normalize(feats.float(), dim=1)
        sims = a @ a.T / self.temperature
        eye = torch.eye(len(a), dtype=torch.bool, device=a.device)
        return sims.masked_fill(eye, float("-inf"))

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        if student.ndim != 2 or teacher.ndim != 2 or len(student) != len(teacher) or len(student) < 3:
            raise ValueError(
                "expected (B, D) features of the same B >= 3 images, "
                f"got {tuple(student.shape)} and {tuple(teacher.shape)}"
            )
        log_s = F.log_softmax(self._logits(student), dim=1)
        log_t = F.log_softmax(self._logits(teacher.detach()), dim=1)
        eye = torch.eye(len(student), dtype=torch.bool, device=student.device)
        # KL(p_t || p_s) per row, the diagonal (0 * -inf) left out.
        terms = (log_t.exp() * (log_t - log_s)).masked_fill(eye, 0.0)
        return terms.sum(dim=1).mean()
