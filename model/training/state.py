"""What a training run carries from step to step (and what a checkpoint saves of it)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from model.common.processes import DistInfo
from model.training.simclr import SimCLRModel


@dataclass
class TrainState:
    model: SimCLRModel  # the bare model: what checkpoints hold and evaluation runs
    optimizer: torch.optim.Optimizer
    aug_gen: torch.Generator
    step: int = 0
    seconds: float = 0.0  # training-step time so far, across resumes
    wall_base: float = 0.0  # wall time of earlier calls (decode, steps, evaluation, saving)
    call_start: float = field(default_factory=time.perf_counter)
    forward: torch.nn.Module | None = None  # what training steps call: the DDP wrapper, if any
    dist: DistInfo = field(default_factory=DistInfo)
    pace_mark: tuple[int, float] = (0, 0.0)  # (step, phase seconds) at the last pace check (model.training.pace)
    # Wall time of the training phase across resumed calls: from each step's end to the next one's
    # (so the checks between epochs and checkpoints count), read on the loop's clock; what a
    # budgeted run's pace is measured in. And the time of the checks alone.
    phase_seconds: float = 0.0
    last_step_end: float | None = None  # the clock at this call's latest step end
    eval_seconds: float = 0.0
    last_eval_seconds: float | None = None  # the latest check's cost, in this call
    last_check_image_seconds: float = 0.0  # ... per image it embedded
    teacher: torch.nn.Module | None = None  # the frozen starting network that f is distilled toward

    @property
    def wall_seconds(self) -> float:
        """Wall-clock time of the whole run so far, across resumed calls."""
        return self.wall_base + time.perf_counter() - self.call_start
