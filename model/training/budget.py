"""Training for a time budget: time real steps, fix the step count, lay the schedule over it.

A fixed epoch count trains a 1,000-image collection for seconds and stops a 70,000-image one
part-way through its learning-rate schedule. With `TrainConfig.minutes` the job instead times a
few training steps of the actual model, batch and augmentation (on a copy, before the run's
first step) at the smallest and the largest view size of its progressive resizing, models a
step's cost as linear in the view's pixel count, and picks the largest number of steps whose
predicted cost fits the budget. Warm-up and cosine decay are then laid over exactly those steps,
so every run ends at the end of its schedule: small collections get many epochs, large ones few.

The budget is the whole command's wall time: what the steps may take is what is left of it once
the collection is decoded, the speed trials are run and the time the end of the run needs (the
encoder choice, saving, the ONNX export: model.training.timeline) is set aside. The step plan is
run state, not recipe: a `Plan`, saved in checkpoints and config.json beside the RunConfig.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from model.training.config import AugmentConfig, RunConfig
from model.training.distributed import slowest_process
from model.training.simclr import SimCLRModel
from model.training.trial import TrialSteps

LOG = logging.getLogger(__name__)

MAX_STEPS = 10_000_000
PLAN_SHARE = 0.97  # of the budget, for the steps; the rest absorbs timing noise


def crop_size_at(cfg: AugmentConfig, step: float, total_steps: int) -> int:
    """View side at schedule position `step` under progressive resizing (multiples of 4 px)."""
    if not cfg.crop_size_min or cfg.crop_size_min >= cfg.crop_size:
        return cfg.crop_size
    progress = min(1.0, step / max(1.0, cfg.crop_ramp_end * total_steps))
    size = cfg.crop_size_min + progress * (cfg.crop_size - cfg.crop_size_min)
    return int(min(cfg.crop_size, max(cfg.crop_size_min, 4 * round(size / 4))))


def view_sizes(cfg: AugmentConfig) -> tuple[int, ...]:
    """The sizes to time: the smallest and the largest view of the run (one if they are equal)."""
    low = cfg.crop_size_min if cfg.crop_size_min and cfg.crop_size_min < cfg.crop_size else cfg.crop_size
    return (low, cfg.crop_size) if low != cfg.crop_size else (cfg.crop_size,)


def step_cost(seconds: dict[int, float], size: int) -> float:
    """Predicted seconds of a step at view side `size`: linear in the pixel count between the
    timed sizes (one timed size: that step's time)."""
    sizes = sorted(seconds)
    lo, hi = sizes[0], sizes[-1]
    if lo == hi:
        return seconds[lo]
    return seconds[lo] + (seconds[hi] - seconds[lo]) * (size * size - lo * lo) / (hi * hi - lo * lo)


def schedule_seconds(cfg: AugmentConfig, total_steps: int, seconds: dict[int, float]) -> float:
    """Predicted training time of `total_steps` steps, from timed steps at one or two view sizes."""
    if len(seconds) == 1:
        return total_steps * next(iter(seconds.values()))
    # Steps at each view size, counted per size rather than per step (totals reach millions).
    ramp_end = min(total_steps, int(cfg.crop_ramp_end * total_steps) + 1)
    counts: dict[int, int] = {}
    for step in range(ramp_end):
        size = crop_size_at(cfg, step, total_steps)
        counts[size] = counts.get(size, 0) + 1
    counts[cfg.crop_size] = counts.get(cfg.crop_size, 0) + total_steps - ramp_end
    return sum(n * step_cost(seconds, size) for size, n in counts.items())


def plan_steps(cfg: AugmentConfig, budget_seconds: float, seconds: dict[int, float]) -> int:
    """The most steps whose predicted time fits `budget_seconds` (at least 1)."""
    # No plan can hold more steps than the budget buys at the cheapest measured step.
    lo, hi = 1, max(1, min(MAX_STEPS, int(budget_seconds / max(min(seconds.values()), 1e-9)) + 1))
    while lo < hi:  # predicted time grows with the step count
        mid = (lo + hi + 1) // 2
        if schedule_seconds(cfg, mid, seconds) <= budget_seconds:
            lo = mid
        else:
            hi = mid - 1
    return lo


StepRunner = Callable[[int], float]  # one training step at a view size -> its seconds


@dataclass(frozen=True)
class Plan:
    """How many steps a run takes and how they sit on its schedule (model.training.pace).

    total_steps: real steps the run takes now; schedule_steps: the first plan's count, which the
    learning-rate and view-size schedules are laid over; replans: (step, schedule position) of each
    re-plan; step_seconds: the timed seconds of a step per view size the plans predict from;
    budget_seconds: the wall seconds the training phase may take (0: a run by epochs);
    epochs: passes over the data that hold total_steps.
    """

    total_steps: int
    schedule_steps: int
    epochs: int
    replans: tuple[tuple[int, float], ...] = ()
    step_seconds: tuple[tuple[int, float], ...] = ()
    budget_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        return cls(
            total_steps=int(data["total_steps"]),
            schedule_steps=int(data["schedule_steps"]),
            epochs=int(data["epochs"]),
            replans=tuple((int(s), float(p)) for s, p in data.get("replans", ())),
            step_seconds=tuple((int(s), float(t)) for s, t in data.get("step_seconds", ())),
            budget_seconds=float(data.get("budget_seconds", 0.0)),
        )


def real_step_runner(
    model: torch.nn.Module, cfg: RunConfig, device: torch.device, teacher: torch.nn.Module | None = None
) -> StepRunner:
    """Full steps of the run's batch, precision and layout (and the distillation teacher's
    forward, when there is one), on a copy of `model` (model.training.trial)."""
    trial = TrialSteps(model, cfg, device, images=cfg.train.batch_size, teacher=teacher)
    return lambda size: trial.run(size, bf16=bool(cfg.train.amp), channels_last=bool(cfg.train.channels_last))


def time_steps(sizes: tuple[int, ...], run: StepRunner, repeats: int = 2) -> dict[int, float]:
    """Median seconds of `repeats` steps at each size, after one untimed step."""
    out = {}
    for size in sizes:
        run(size)
        out[size] = statistics.median(run(size) for _ in range(repeats))
    return out


def plan_schedule(
    cfg: RunConfig,
    model: SimCLRModel,
    steps_per_epoch: int,
    dev: torch.device,
    budget_seconds: Callable[[], float],
    teacher: torch.nn.Module | None = None,
) -> tuple[Plan, dict[str, Any]]:
    """The run's step plan: when the recipe has a time budget, from timed steps and the training
    phase's seconds (`budget_seconds()`, read once the steps are timed); else from its epochs."""
    t = cfg.train
    info: dict[str, Any]
    seconds: dict[int, float] = {}
    budget = 0.0
    if t.minutes > 0:
        seconds = slowest_process(time_steps(view_sizes(cfg.augment), real_step_runner(model, cfg, dev, teacher)), dev)
        budget = max(0.0, budget_seconds())
        total = plan_steps(cfg.augment, budget * PLAN_SHARE, seconds)
        info = {
            "from": f"{budget:.0f} s of training phase in a {t.minutes:g}-minute budget",
            "step_seconds_by_view_size": seconds,
        }
    else:
        total = t.epochs * steps_per_epoch
        info = {"from": f"{t.epochs} epochs"}
    epochs = max(1, math.ceil(total / steps_per_epoch))
    info.update(total_steps=total, epochs=round(total / steps_per_epoch, 2), steps_per_epoch=steps_per_epoch)
    LOG.info(
        "schedule: %d steps (%.2f epochs of %d steps) from %s",
        total,
        total / steps_per_epoch,
        steps_per_epoch,
        info["from"],
    )
    plan = Plan(total, total, epochs, (), tuple(sorted(seconds.items())), budget)
    return plan, info
