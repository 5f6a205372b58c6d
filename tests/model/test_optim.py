"""Optimisers and the schedule (model.training.optim) against formulas written out by hand."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from model.training.optim import LARS, lr_at


def test_warmup_then_cosine_reaches_the_end_exactly() -> None:
    peak, total, warmup = 0.3, 100, 10
    assert lr_at(0, total, warmup, peak) == pytest.approx(peak / warmup)
    assert lr_at(9, total, warmup, peak) == pytest.approx(peak)
    assert lr_at(10, total, warmup, peak) == pytest.approx(peak)
    mid = 10 + 45
    assert lr_at(mid, total, warmup, peak) == pytest.approx(peak * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_at(total, total, warmup, peak) == pytest.approx(0.0, abs=1e-12)
    assert lr_at(total, total, warmup, peak, final_fraction=0.1) == pytest.approx(0.03)
    values = [lr_at(s, total, warmup, peak) for s in range(warmup, total + 1)]
    assert all(a >= b for a, b in itertools.pairwise(values))


def test_lars_step_matches_a_hand_computed_update() -> None:
    w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))  # ||w|| = 5
    bias = torch.nn.Parameter(torch.tensor([1.0]))
    opt = LARS(
        [{"params": [w], "weight_decay": 0.1}, {"params": [bias], "lars": False, "weight_decay": 0.0}],
        lr=0.5,
        momentum=0.9,
        eta=0.01,
    )
    w.grad, bias.grad = torch.tensor([1.0, -2.0]), torch.tensor([0.2])
    opt.step()
    g = torch.tensor([1.0, -2.0]) + 0.1 * torch.tensor([3.0, 4.0])  # decay added to the gradient
    trust = 0.01 * 5.0 / float(torch.linalg.norm(g))
    torch.testing.assert_close(w.detach(), torch.tensor([3.0, 4.0]) - 0.5 * trust * g)
    torch.testing.assert_close(bias.detach(), torch.tensor([1.0 - 0.5 * 0.2]))  # plain SGD, no trust ratio
    with pytest.raises(ValueError):
        LARS([w], lr=0.0)
