"""NT-Xent and SupCon against naive loop implementations of the papers' formulas."""

from __future__ import annotations

import math

import pytest
import torch

from model.training.loss import NTXentLoss, SimilarityDistillation, SupConLoss


def cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


def ntxent_loop(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> float:
    """Chen et al. 2020, eq. 1, summed over all 2N anchors, one term at a time."""
    z = torch.cat([z1, z2]).double()
    n2, n = z.shape[0], z1.shape[0]
    total = 0.0
    for i in range(n2):
        pos = (i + n) % n2
        denom = sum(math.exp(cos(z[i], z[k]) / tau) for k in range(n2) if k != i)
        total += -math.log(math.exp(cos(z[i], z[pos]) / tau) / denom)
    return total / n2


def supcon_loop(z1: torch.Tensor, z2: torch.Tensor, labels: list[int], tau: float) -> float:
    """Khosla et al. 2020, eq. 2 (L_out), one anchor and one positive at a time."""
    z = torch.cat([z1, z2]).double()
    lab = labels + labels
    n2 = z.shape[0]
    total = 0.0
    for i in range(n2):
        denom = sum(math.exp(cos(z[i], z[a]) / tau) for a in range(n2) if a != i)
        positives = [p for p in range(n2) if p != i and lab[p] == lab[i]]
        total += -sum(math.log(math.exp(cos(z[i], z[p]) / tau) / denom) for p in positives) / len(positives)
    return total / n2


@pytest.mark.parametrize("n", [2, 5, 16])
@pytest.mark.parametrize("tau", [0.1, 0.5, 1.0])
def test_ntxent_matches_loop_reference(n: int, tau: float) -> None:
    gen = torch.Generator().manual_seed(n * 7)
    z1, z2 = torch.randn(n, 6, generator=gen), torch.randn(n, 6, generator=gen)
    assert float(NTXentLoss(tau)(z1, z2)) == pytest.approx(ntxent_loop(z1, z2, tau), rel=1e-5)


def test_ntxent_is_stable_at_low_temperature() -> None:
    # Aligned pairs of large vectors: exp(1 / 0.05) = 4.8e8 per term, exp(1/0.01) overflows fp32.
    gen = torch.Generator().manual_seed(0)
    z1 = torch.randn(64, 32, generator=gen) * 1e3
    z2 = z1 + 1e-3 * torch.randn(64, 32, generator=gen)
    for tau in (0.05, 0.01):
        loss = NTXentLoss(tau)(z1.requires_grad_(), z2)
        loss.backward()
        assert torch.isfinite(loss)
        assert z1.grad is not None and torch.isfinite(z1.grad).all()
        z1.grad = None
    assert float(NTXentLoss(0.05)(z1, z2)) == pytest.approx(ntxent_loop(z1, z2, 0.05), rel=1e-4, abs=1e-6)


def test_ntxent_rewards_aligned_views() -> None:
    gen = torch.Generator().manual_seed(1)
    z1 = torch.randn(8, 16, generator=gen)
    aligned = NTXentLoss(0.5)(z1, z1 + 0.01 * torch.randn(8, 16, generator=gen))
    random = NTXentLoss(0.5)(z1, torch.randn(8, 16, generator=gen))
    assert aligned < random


def test_ntxent_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        NTXentLoss(0.0)
    with pytest.raises(ValueError):
        NTXentLoss(0.5)(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ValueError):
        NTXentLoss(0.5)(torch.randn(1, 3), torch.randn(1, 3))


@pytest.mark.parametrize("labels", [[0, 1, 0, 2], [0, 0, 0, 0], [3, 1, 2, 0, 1, 3]])
@pytest.mark.parametrize("tau", [0.07, 0.5])
def test_supcon_matches_loop_reference(labels: list[int], tau: float) -> None:
    gen = torch.Generator().manual_seed(len(labels))
    n = len(labels)
    z1, z2 = torch.randn(n, 5, generator=gen), torch.randn(n, 5, generator=gen)
    got = float(SupConLoss(tau)(z1, z2, torch.tensor(labels)))
    assert got == pytest.approx(supcon_loop(z1, z2, labels, tau), rel=1e-5)


def test_supcon_without_labels_is_ntxent() -> None:
    gen = torch.Generator().manual_seed(2)
    z1, z2 = torch.randn(6, 4, generator=gen), torch.randn(6, 4, generator=gen)
    unknown = torch.full((6,), -1)
    assert float(SupConLoss(0.3)(z1, z2, unknown)) == pytest.approx(float(NTXentLoss(0.3)(z1, z2)), rel=1e-6)


def distill_loop(student: torch.Tensor, teacher: torch.Tensor, tau: float) -> float:
    """KL(teacher || student) of each row's softmax over the other rows' cosine / tau, one term at a time."""
    b = student.shape[0]
    total = 0.0
    for i in range(b):
        others = [j for j in range(b) if j != i]
        st = [math.exp(cos(student[i].double(), student[j].double()) / tau) for j in others]
        te = [math.exp(cos(teacher[i].double(), teacher[j].double()) / tau) for j in others]
        ps = [v / sum(st) for v in st]
        pt = [v / sum(te) for v in te]
        total += sum(t * math.log(t / s) for t, s in zip(pt, ps, strict=True))
    return total / b


@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_similarity_distillation_matches_the_loop(tau: float) -> None:
    gen = torch.Generator().manual_seed(3)
    student, teacher = torch.randn(7, 5, generator=gen), torch.randn(7, 9, generator=gen)
    got = float(SimilarityDistillation(tau)(student, teacher))
    assert got == pytest.approx(distill_loop(student, teacher, tau), rel=1e-4)


def test_similarity_distillation_is_zero_for_the_same_geometry_and_pulls_toward_it() -> None:
    gen = torch.Generator().manual_seed(4)
    teacher = torch.randn(8, 6, generator=gen)
    rotation, _ = torch.linalg.qr(torch.randn(6, 6, generator=gen))
    loss = SimilarityDistillation(0.1)
    # A rotated and rescaled copy has the same cosine similarities: nothing to distil.
    assert float(loss(3.0 * teacher @ rotation, teacher)) == pytest.approx(0.0, abs=1e-5)
    student = torch.randn(8, 6, generator=gen, requires_grad=True)
    before = float(loss(student, teacher))
    opt = torch.optim.SGD([student], lr=0.5)
    for _ in range(50):
        opt.zero_grad()
        loss(student, teacher).backward()
        opt.step()
    assert float(loss(student, teacher)) < 0.2 * before
    with pytest.raises(ValueError):
        loss(torch.randn(2, 3), torch.randn(2, 3))
