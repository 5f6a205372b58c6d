"""Training precision and memory format, chosen by timing real training steps on this device.

bf16 autocast and channels_last are large gains on some processors and large losses on others
(a CPU without native bf16 emulates it: a step of the CPU preset is ~13x slower than in fp32).
So the job does not assume: before the first step it times a few forward + backward passes of a
copy of the actual model (model.training.trial), at the run's view size and loss, for each candidate
setting, and keeps the fastest. A setting given explicitly (`--set train.amp=true|false`) is kept; forcing bf16 on a CPU
without native bf16 is still timed, so that the warning can say how much it costs.

On CUDA nothing is timed: bf16 where the GPU supports it (every GPU since Ampere), fp32 otherwise;
channels_last, which cuDNN's tensor-core convolutions want.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from model.common.hardware import cpu_capability, cpu_has_native_bf16
from model.training.config import RunConfig
from model.training.distributed import slowest_process
from model.training.trial import TrialSteps

LOG = logging.getLogger(__name__)

TRIAL_IMAGES = 32  # images per trial step (64 views): conv cost is linear in the batch, so ratios hold
TRIAL_REPEATS = 3  # timed steps per candidate, after one warm-up step
HOPELESS = 3.0  # a candidate whose steps take this many times the best so far is not timed further


@dataclass(frozen=True)
class Candidate:
    bf16: bool
    channels_last: bool

    @property
    def name(self) -> str:
        return f"{'bf16' if self.bf16 else 'fp32'}+{'channels_last' if self.channels_last else 'nchw'}"


@dataclass(frozen=True)
class SpeedChoice:
    """The settings a run trains with, and the measurements (seconds per trial step) behind them."""

    bf16: bool
    channels_last: bool
    reason: str
    step_seconds: dict[str, float] = field(default_factory=dict)  # inf: cut short as hopeless, or not tried
    measured_in: float = 0.0  # wall seconds the trials took

    def record(self) -> dict[str, Any]:
        return {
            "precision": "bf16" if self.bf16 else "fp32",
            "channels_last": self.channels_last,
            "reason": self.reason,
            "trial_step_seconds": {k: (None if math.isinf(v) else round(v, 5)) for k, v in self.step_seconds.items()},
            "trial_wall_seconds": round(self.measured_in, 3),
        }


StepTimer = Callable[[Candidate], float]  # runs one trial step with a candidate, returns its seconds


def time_candidates(
    candidates: Sequence[Candidate], run_step: StepTimer, repeats: int = TRIAL_REPEATS, hopeless: float = HOPELESS
) -> dict[str, float]:
    """Median seconds per step of each candidate, after one warm-up step.

    Candidates come fastest-expected first. One that is `hopeless` times slower than the best so
    far on two steps in a row stops there, and so do the later candidates of its precision (their
    cost is dominated by the same emulated arithmetic): the whole measurement stays within a few
    seconds even where bf16 is emulated.
    """
    best, out, cut_precisions = math.inf, {}, set()
    for cand in candidates:
        if cand.bf16 in cut_precisions:
            out[cand.name] = math.inf
            continue
        times: list[float] = []
        slow_in_a_row = 0
        for i in range(repeats + 1):
            seconds = run_step(cand)
            slow_in_a_row = slow_in_a_row + 1 if seconds > hopeless * best else 0
            if i > 0:
                times.append(seconds)
            if slow_in_a_row >= 2:
                cut_precisions.add(cand.bf16)
                times = [seconds]
                break
        estimate = statistics.median(times)
        out[cand.name] = estimate
        best = min(best, estimate)
    return out


def training_step_timer(model: torch.nn.Module, cfg: RunConfig, device: torch.device) -> StepTimer:
    """Time real steps (model.training.trial) of TRIAL_IMAGES images at the run's final view size."""
    trial = TrialSteps(model, cfg, device, images=TRIAL_IMAGES)
    return lambda cand: trial.run(cfg.augment.crop_size, bf16=cand.bf16, channels_last=cand.channels_last)


def choose_speed(
    *,
    amp: bool | None,
    channels_last: bool | None,
    device: torch.device,
    run_step: StepTimer | None = None,
    native_bf16: bool | None = None,
) -> SpeedChoice:
    """Resolve `amp` / `channels_last` (None: measure) for training on `device`.

    `run_step` times one trial step (see `training_step_timer`); it is only called on the CPU.
    """
    if device.type == "cuda":
        bf16 = torch.cuda.is_bf16_supported() if amp is None else amp
        why = "given" if amp is not None else ("the GPU supports bf16" if bf16 else "the GPU lacks bf16")
        return SpeedChoice(bf16, True if channels_last is None else channels_last, f"CUDA: {why}")
    if device.type != "cpu" or run_step is None:
        return SpeedChoice(bool(amp), bool(channels_last), f"{device.type}: no measurement; fp32 unless given")
    native = cpu_has_native_bf16() if native_bf16 is None else native_bf16
    forced_emulated = amp is True and not native
    precisions = [False, True] if amp is None or forced_emulated else [amp]
    layouts = [True, False] if channels_last is None else [channels_last]
    if len(precisions) * len(layouts) == 1:
        return SpeedChoice(precisions[0], layouts[0], "given")
    started = time.perf_counter()
    timings = time_candidates([Candidate(p, c) for p in precisions for c in layouts], run_step)
    timings = slowest_process(timings, device)
    measured_in = time.perf_counter() - started
    allowed = [Candidate(p, c) for p in ([True] if forced_emulated else precisions) for c in layouts]
    pick = min(allowed, key=lambda c: timings[c.name])
    trials = ", ".join(f"{k} {v * 1000:.0f} ms" if math.isfinite(v) else f"{k} cut" for k, v in timings.items())
    reason = f"fastest of timed trial steps on this CPU ({cpu_capability()}): {trials}"
    if forced_emulated:
        fp32 = min(v for k, v in timings.items() if k.startswith("fp32"))
        ratio = timings[pick.name] / fp32
        reason = f"bf16 forced (train.amp=true); {trials}"
        LOG.warning(
            "bf16 autocast was forced (train.amp=true) on a CPU without native bf16 (%s): torch emulates it, and a "
            "training step takes %.1fx as long as in fp32 (%.0f ms against %.0f ms per trial step). Leave train.amp "
            "unset to let the job choose, or pass --set train.amp=false.",
            cpu_capability(),
            ratio,
            timings[pick.name] * 1000,
            fp32 * 1000,
        )
    LOG.info("training precision: %s (%s; measured in %.1f s)", pick.name, reason, measured_in)
    return SpeedChoice(pick.bf16, pick.channels_last, reason, timings, measured_in)
