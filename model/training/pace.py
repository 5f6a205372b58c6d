"""Re-planning a budgeted run while it trains, when the machine turns out faster or slower.

model.training.budget fixes the step count from steps timed before the run; on a shared VM the speed then
drifts (steps measured 35 % slower than their trial, or faster once a neighbour stops), and the
checks between epochs add time the trial did not see, so the run would overrun its budget or
finish early. So a budgeted run checks its pace about every tenth of its steps: it compares the
wall time of the last stretch (steps, checks, checkpoints) with what the plan's timing model
predicted for it, and when the budget would be missed (or left unused) by more than TOLERANCE it
changes the number of steps left.

The learning-rate and view-size schedules stay those of the first plan: a `Pace` maps each real
step to a position on that schedule, linearly from the last re-plan to the schedule's end, so
the learning rate is continuous at a re-plan and still reaches the cosine's end at the last
step. The re-plans are part of the run's Plan (checkpointed), so a resumed run follows them.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, replace

import torch

from model.training.budget import PLAN_SHARE, Plan, crop_size_at, step_cost
from model.training.config import AugmentConfig
from model.training.distributed import slowest_process

LOG = logging.getLogger(__name__)

CHECKS = 10  # pace checks over a run, at most
MIN_CHECK_STEPS = 5  # ... and at least this many steps apart
TOLERANCE = 0.02  # of the budget: a predicted miss smaller than this leaves the plan alone
SAMPLES = 256  # schedule positions averaged to predict a stretch's step time


@dataclass(frozen=True)
class Pace:
    """Where each real step sits on the schedule the run was first planned with."""

    total: int  # real steps the run takes now
    length: int  # the schedule's length, in the first plan's steps
    knots: tuple[tuple[int, float], ...] = ()  # (real step, schedule position) of each re-plan

    @classmethod
    def of(cls, plan: Plan) -> Pace:
        return cls(plan.total_steps, plan.schedule_steps or plan.total_steps, plan.replans)

    def position(self, step: int) -> float:
        """The schedule position of real step `step` (equal to it until the first re-plan)."""
        # Piecewise linear through (0, 0), each re-plan's (step, position) and (total, length):
        # between two knots lies the pace that was in force then.
        points = [(0, 0.0), *self.knots, (self.total, float(self.length))]
        for (s0, p0), (s1, p1) in itertools.pairwise(points):
            if step < s1:
                return p0 + (step - s0) * (p1 - p0) / (s1 - s0)
        return float(self.length)

    def check_every(self) -> int:
        return max(MIN_CHECK_STEPS, self.length // CHECKS)

    def due(self, plan: Plan, step: int) -> bool:
        """Whether `step` is a pace check of a budgeted run that re-plans."""
        return plan.budget_seconds > 0 and bool(plan.step_seconds) and step % self.check_every() == 0

    def apply(self, plan: Plan, steps_per_epoch: int) -> Plan:
        """`plan` with this pace's step count, epochs and re-plans (what checkpoints and the loop read)."""
        epochs = max(1, -(-self.total // max(1, steps_per_epoch)))
        return replace(plan, total_steps=self.total, schedule_steps=self.length, replans=self.knots, epochs=epochs)


def stretch_seconds(cfg: AugmentConfig, seconds: dict[int, float], length: int, start: float, end: float) -> float:
    """Predicted seconds of one step, averaged over schedule positions [start, end)."""
    if end <= start:
        return step_cost(seconds, crop_size_at(cfg, start, length))
    n = SAMPLES
    return (
        sum(step_cost(seconds, crop_size_at(cfg, start + (i + 0.5) * (end - start) / n, length)) for i in range(n)) / n
    )


def replan(
    pace: Pace,
    cfg: AugmentConfig,
    seconds: dict[int, float],
    step: int,
    since: tuple[int, float],
    elapsed: float,
    budget: float,
) -> tuple[Pace, dict[str, float]] | None:
    """A new pace if the budget would be missed by more than TOLERANCE, else None.

    `since`: (step, training seconds) at the last check; `elapsed`: training seconds now;
    `budget`: the seconds the steps may take in all.
    """
    mark_step, mark_seconds = since
    if step <= mark_step or step >= pace.total:
        return None
    here, before = pace.position(step), pace.position(mark_step)
    predicted = (step - mark_step) * stretch_seconds(cfg, seconds, pace.length, before, here)
    ratio = (elapsed - mark_seconds) / max(predicted, 1e-12)  # > 1: slower than planned
    per_step = ratio * stretch_seconds(cfg, seconds, pace.length, here, float(pace.length))
    finish = elapsed + per_step * (pace.total - step)
    if abs(finish - budget) <= TOLERANCE * budget:
        return None
    total = step + max(1, int((budget - elapsed) / max(per_step, 1e-12)))
    if total == pace.total:
        return None
    record = {"step": step, "old_total": pace.total, "new_total": total, "speed_ratio": ratio, "position": here}
    LOG.info(
        "pace: steps took %.2fx the planned time since step %d; %d steps instead of %d so the schedule "
        "ends within the budget",
        ratio,
        mark_step,
        total,
        pace.total,
    )
    return Pace(total, pace.length, (*pace.knots, (step, here))), record


def pace_check(
    pace: Pace,
    plan: Plan,
    cfg: AugmentConfig,
    step: int,
    seconds: float,
    mark: tuple[int, float],
    warmup: int,
    device: torch.device,
    budget: float | None = None,
) -> tuple[Pace, dict[str, float]] | None:
    """`replan` at a check step (`Pace.due`) of a run, after its warm-up; `seconds`: the training
    phase's wall seconds so far; `mark`: the last check's (step, seconds); `budget`: the seconds
    the steps may take in all (default: the plan's share of its budget). Under data parallelism
    every process calls it and all decide alike."""
    if step <= warmup or mark[0] >= step:
        return None
    timing = slowest_process({"now": seconds, "mark": mark[1]}, device)  # the slowest process's clock
    budget = plan.budget_seconds * PLAN_SHARE if budget is None else budget
    return replan(pace, cfg, dict(plan.step_seconds), step, (mark[0], timing["mark"]), timing["now"], budget)
