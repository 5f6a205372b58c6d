"""model.training.pace: the step -> schedule-position map and the re-plan rule, against naive sums."""

from __future__ import annotations

import pytest

from model.training.budget import crop_size_at, step_cost
from model.training.config import AugmentConfig
from model.training.pace import TOLERANCE, Pace, replan

AUG = AugmentConfig(crop_size=24, crop_size_min=16, crop_ramp_end=0.75)
SECONDS = {16: 0.4, 24: 1.0}


def test_position_is_the_step_until_a_replan_then_runs_linearly_to_the_schedules_end() -> None:
    plain = Pace(total=100, length=100)
    assert [plain.position(s) for s in (0, 37, 100)] == [0, 37, 100]
    pace = Pace(total=60, length=100, knots=((20, 20.0),))  # 40 real steps for the last 80 positions
    assert pace.position(10) == 10 and pace.position(20) == 20
    assert pace.position(40) == pytest.approx(60) and pace.position(60) == 100
    twice = Pace(total=90, length=100, knots=((20, 20.0), (40, 60.0)))  # and then 50 for the last 40
    assert twice.position(30) == pytest.approx(40) and twice.position(65) == pytest.approx(80)


def naive_remaining(pace: Pace, step: int, ratio: float) -> float:
    """Seconds the steps after `step` take at `ratio` times the plan's step cost, step by step."""
    return sum(
        ratio * step_cost(SECONDS, crop_size_at(AUG, pace.position(s), pace.length)) for s in range(step, pace.total)
    )


@pytest.mark.parametrize("ratio", [0.5, 0.8, 1.3, 2.0])
def test_replan_fits_the_steps_left_to_the_budget_at_the_measured_speed(ratio: float) -> None:
    pace = Pace(total=400, length=400)
    step = 100
    took = ratio * sum(step_cost(SECONDS, crop_size_at(AUG, s, 400)) for s in range(step))
    budget = sum(step_cost(SECONDS, crop_size_at(AUG, s, 400)) for s in range(400))  # the plan fitted it exactly
    change = replan(pace, AUG, SECONDS, step, (0, 0.0), took, budget)
    assert change is not None
    new, record = change
    assert record["speed_ratio"] == pytest.approx(ratio, rel=0.02)
    assert (new.total < 400) == (ratio > 1)
    assert new.position(step) == pytest.approx(pace.position(step)) and new.position(new.total) == 400
    finish = took + naive_remaining(new, step, ratio)
    assert finish == pytest.approx(budget, rel=0.02)  # predicted with 256 samples, checked step by step


def test_no_replan_within_the_tolerance() -> None:
    pace = Pace(total=400, length=400)
    took = (1 + TOLERANCE / 4) * sum(step_cost(SECONDS, crop_size_at(AUG, s, 400)) for s in range(100))
    budget = sum(step_cost(SECONDS, crop_size_at(AUG, s, 400)) for s in range(400))
    assert replan(pace, AUG, SECONDS, 100, (0, 0.0), took, budget) is None
