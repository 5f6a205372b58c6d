"""Health of a space (model.evaluation.health): a collapse is flagged, a spread is not, a small sample is fair."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from model.common.spread import collapse_warning
from model.evaluation.health import effective_rank, health, uniformity


def test_health_flags_collapse_and_passes_a_spread() -> None:
    gen = torch.Generator().manual_seed(0)
    spread = F.normalize(torch.randn(256, 32, generator=gen), dim=1)
    assert collapse_warning(health(spread, spread, spread)) is None
    assert effective_rank(spread) > 20
    collapsed = F.normalize(torch.ones(256, 32) + 1e-4 * torch.randn(256, 32, generator=gen), dim=1)
    warning = collapse_warning(health(collapsed, collapsed, collapsed))
    assert warning is not None and "collapse" in warning
    assert uniformity(collapsed) > uniformity(spread)


def test_a_small_sample_is_not_mistaken_for_dimensional_collapse() -> None:
    few = torch.nn.functional.normalize(torch.randn(11, 1280, generator=torch.Generator().manual_seed(0)), dim=1)
    assert collapse_warning(health(few, few, few)) is None  # 11 points span 10 dimensions, not 1280
    same = few[:1].repeat(11, 1) + 1e-4 * few
    assert collapse_warning(health(same, same, same)) is not None
