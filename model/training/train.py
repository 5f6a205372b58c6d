"""The SimCLR training job: train() runs epochs of train_one_epoch() over a data feed.

Reading order: `train` -> `_train` (open the run folder, data, model, speed, the shipped half of
the encoder choice, the step plan, then `_loop`, then `release`) -> `train_one_epoch` (the steps).
What it writes is described in model.training.run_dir; checkpoints and resume are
model.training.checkpoint; the check between epochs is model.training.monitor; the wall-clock
budget is model.training.timeline.

Kept whole (about 360 lines): the step, the epoch and the run share one state and one set of
stop rules (schedule end, budget, this call's deadline, divergence); everything else is split out.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from model.common.hardware import describe
from model.common.processes import DistInfo, barrier, teardown
from model.common.processes import setup as setup_distributed
from model.common.spread import collapse_warning
from model.embedding.pretrained import as_is, load_weights
from model.training.adapt import Judging, shipped_for
from model.training.augment import SimCLRAugment
from model.training.budget import PLAN_SHARE, Plan, crop_size_at, plan_schedule
from model.training.checkpoint import restore, save_checkpoint
from model.training.config import RunConfig
from model.training.distributed import any_process, convert_batchnorm, mean_over_processes, slowest_process
from model.training.feed import CachedFeed, EvalSet, StreamFeed, prepare_data
from model.training.loss import NTXentLoss, SimilarityDistillation, SupConLoss
from model.training.monitor import check_images, evaluate_epoch, seconds_per_image
from model.training.optim import build_optimizer, lr_at
from model.training.pace import Pace, pace_check
from model.training.precision import choose_speed, training_step_timer
from model.training.release import release
from model.training.run_dir import CHECKPOINT, CONFIG, ENCODER, METRICS, MetricsLog, open_run, write_config
from model.training.simclr import SimCLRModel, freeze, set_train_mode
from model.training.state import TrainState
from model.training.timeline import EVAL_SHARE, Timeline, clock_text

LOG = logging.getLogger(__name__)


MAX_EPOCH_ROWS = 200  # epoch evaluations (and checkpoints) in one run by epochs, at most
PHASE_HARD_STOP = 1.05  # a budgeted training phase stops at this share of its seconds, whatever the plan
clock = time.perf_counter  # what training steps are timed with (a test can run on a fake one)
check_clock = time.perf_counter  # ... and the checks between epochs


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite: training diverged."""


@dataclass
class TrainResult:
    run_dir: Path
    encoder_path: Path
    step: int
    total_steps: int
    seconds: float
    loss: float
    knn_top1: float | None
    health: dict[str, float] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.step >= self.total_steps


@dataclass
class EpochRun:
    """What every epoch of a run shares: the recipe, the plan, the feed, where to log and when to stop.

    `plan` and `pace` change when a budgeted run re-plans its step count (model.training.pace)."""

    cfg: RunConfig
    plan: Plan
    feed: CachedFeed | StreamFeed
    pace: Pace
    device: torch.device
    log: MetricsLog | None  # None on processes other than rank 0
    ckpt_path: Path
    bar: tqdm[Any] | None
    stop_at_step: int | None  # this call stops (checkpointed) at this step
    deadline: float | None  # ... or at this many training seconds
    timeline: Timeline = field(default_factory=lambda: Timeline(0.0, 0.0))  # the command's wall clock
    after: float = 0.0  # seconds the end of the run needs (the choice, saving)
    phase_deadline: float | None = None  # the training phase stops at this many wall seconds
    image_seconds: float = 0.0  # what a check pays to embed one held-out image (timed)

    @property
    def total_steps(self) -> int:
        return self.pace.total

    def check_pace(self, state: TrainState, warmup: int) -> None:
        """At a pace check, re-plan the steps left when the budget would be missed (model.training.pace)."""
        if not self.pace.due(self.plan, state.step):
            return
        # The checks between epochs are not step time: they come out of the budget as they happen
        # (one more is expected at the end), so that one slow stretch with a check in it does not
        # make every remaining step look slow.
        now = state.phase_seconds - state.eval_seconds
        mark, state.pace_mark = state.pace_mark, (state.step, now)
        budget = self.plan.budget_seconds * PLAN_SHARE - state.eval_seconds - (state.last_eval_seconds or 0.0)
        change = pace_check(self.pace, self.plan, self.cfg.augment, state.step, now, mark, warmup, self.device, budget)
        if change is None:
            return
        self.pace, record = change
        self.plan = self.pace.apply(self.plan, self.feed.steps_per_epoch)
        if self.log is not None:
            self.log.write({"kind": "replan", **record, "seconds": state.seconds, "phase_seconds": now})
        if self.bar is not None:
            self.bar.total = self.pace.total
            self.bar.refresh()


def train_one_epoch(state: TrainState, run: EpochRun, epoch: int) -> tuple[float, bool]:
    """One pass over the feed (or what is left of it). Returns (last loss, stopped early)."""
    cfg, feed, device, log, bar = run.cfg, run.feed, run.device, run.log, run.bar
    t = cfg.train
    model, opt = state.model, state.optimizer
    forward = state.forward if state.forward is not None else model
    augment = SimCLRAugment(cfg.augment, cfg.encoder.mean, cfg.encoder.std)
    ntxent, supcon = NTXentLoss(t.temperature), SupConLoss(t.temperature)
    distill = SimilarityDistillation(t.distill_temperature)
    # The learning rate and view size follow the first plan's schedule (run.pace.length steps),
    # at the position model.training.pace gives each step.
    length = run.pace.length
    warmup = min(int(t.warmup_epochs * feed.steps_per_epoch), length // 4)
    use_amp = bool(t.amp) and device.type in ("cuda", "cpu")
    fmt = torch.channels_last if t.channels_last else torch.contiguous_format
    start = state.step - epoch * feed.steps_per_epoch
    window_start, window_images, loss_value = time.perf_counter(), 0, math.nan
    # Non-finite losses are collected on the device and checked at the steps that synchronise
    # anyway (logging, checkpoints, stops, the epoch's end), so that the host never waits for
    # the accelerator in between; a diverged run still stops before any checkpoint is written.
    nonfinite = torch.zeros((), dtype=torch.bool, device=device)
    epoch_end = epoch * feed.steps_per_epoch + feed.steps_per_epoch
    for images, labels in feed.epoch(epoch, start):
        if state.step >= run.total_steps:  # a budgeted schedule ends inside its last epoch
            break
        tick = clock()
        position = run.pace.position(state.step)
        lr = lr_at(position, length, warmup, t.lr)
        for group in opt.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        view_size = crop_size_at(cfg.augment, position, length)
        images = images.to(device, non_blocking=True)
        v1, v2 = augment(images, state.aug_gen, view_size)
        x = torch.cat([v1, v2]).contiguous(memory_format=fmt)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            h, z = forward(x)
        z1, z2 = z.float().chunk(2)
        loss = supcon(z1, z2, labels.to(device)) if t.loss == "supcon" else ntxent(z1, z2)
        if state.teacher is not None:
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                h_teacher = state.teacher(x)
            loss = loss + t.distill * distill(h.float(), h_teacher.float())
        # The global batch's loss (the mean over processes), so that every process agrees on a stop.
        global_loss = mean_over_processes(loss)
        nonfinite |= ~torch.isfinite(global_loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        state.step += 1
        tock = clock()
        state.seconds += tock - tick
        state.phase_seconds += tock - (tick if state.last_step_end is None else state.last_step_end)
        state.last_step_end = tock
        window_images += images.shape[0] * state.dist.world_size
        run.check_pace(state, warmup)
        total_steps = run.total_steps
        log_due = state.step % t.log_every == 0 or state.step == total_steps
        checkpoint_due = bool(t.checkpoint_every) and state.step % t.checkpoint_every == 0
        stop = run.stop_at_step is not None and state.step >= run.stop_at_step
        if run.deadline is not None or run.phase_deadline is not None:  # clocks differ: all stop together
            late = run.deadline is not None and state.seconds >= run.deadline
            late |= run.phase_deadline is not None and state.phase_seconds >= run.phase_deadline
            stop = any_process(stop or late, device)
        if log_due or checkpoint_due or stop or state.step in (epoch_end, total_steps):
            loss_value = float(global_loss)
            if bool(nonfinite):
                raise NonFiniteLossError(
                    f"the loss became non-finite by step {state.step} (last {loss_value}, lr {lr:.4g}); "
                    "training diverged. Start a new run with a lower --set train.lr or a higher --set train.temperature"
                )
        if log is not None and log_due:
            elapsed = time.perf_counter() - window_start
            ips = window_images / max(elapsed, 1e-9)
            log.write(
                {
                    "kind": "step",
                    "step": state.step,
                    "epoch": state.step / feed.steps_per_epoch,
                    "loss": loss_value,
                    "lr": lr,
                    "images_per_s": ips,
                    "view_size": view_size,
                    "precision": "bf16" if use_amp else "fp32",
                    "seconds": state.seconds,
                }
            )
            window_start, window_images = time.perf_counter(), 0
            if bar is not None:
                shown = {"loss": f"{loss_value:.3f}", "lr": f"{lr:.3g}", "img_s": f"{ips:.0f}", "px": view_size}
                if run.timeline.budgeted:  # the whole command's time left (the bar's own ETA is the steps')
                    shown["left"] = clock_text(run.timeline.left())
                bar.set_postfix(shown)
        if bar is not None:
            bar.update(1)
        if checkpoint_due:
            save_checkpoint(run.ckpt_path, run.cfg, run.plan, state)
        if stop:
            return loss_value, True
    return loss_value, False


def train(
    cfg: RunConfig,
    data: str,
    out: str | Path,
    *,
    resume: bool = False,
    device: str | None = None,
    progress: bool = True,
    stop_at_step: int | None = None,
    stop_after_minutes: float | None = None,
    started: float | None = None,
) -> TrainResult:
    """Train (or resume) a SimCLR run in `out`. See the module docstring for what it writes.

    With `cfg.train.minutes`, the whole call (from `started`, a perf_counter() reading; default:
    this process's start) fits in that many minutes (model.training.timeline). `stop_at_step` and
    `stop_after_minutes` (of training time in this call) checkpoint and stop early, for machines
    that give a command a limited time: continue with resume=True (a resumed call follows the
    plan of the first one).

    Under torchrun (model.common.processes) every process runs this with its share of each global
    batch; only rank 0 writes files, and `out` and `data` must be paths every process can read.
    """
    info, dev, created = setup_distributed(device)
    try:
        stops = (stop_at_step, stop_after_minutes)
        return _train(cfg, data, Path(out), info, dev, resume, progress and info.is_main, stops, started)
    finally:
        if created:
            teardown()


def _train(
    cfg: RunConfig,
    data: str,
    run_dir: Path,
    info: DistInfo,
    dev: torch.device,
    resume: bool,
    progress: bool,
    stops: tuple[int | None, float | None],
    started: float | None,
) -> TrainResult:
    call_start = time.perf_counter()
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed view sizes: let cuDNN pick the fastest kernels
    saved = open_run(run_dir, resume, info.world_size)
    if saved is not None:
        cfg = RunConfig.from_dict(saved["config"])
    fresh_budget = cfg.train.minutes if saved is None else 0.0  # a resumed call follows its plan
    timeline = Timeline(fresh_budget, started) if started is not None else Timeline.since_process_start(fresh_budget)
    barrier()  # every process has checked the run folder before rank 0 writes to it
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.train.seed)

    feed, evalset, data_info = prepare_data(cfg, data, info)
    if isinstance(feed, CachedFeed):
        feed.to(dev, cfg.train.device_cache_max_bytes)
    LOG.info("data: %s", data_info)
    if data_info["batch_size"] != cfg.train.batch_size:
        LOG.warning(
            "only %d training images: batches of %d instead of %d",
            data_info["train"],
            data_info["batch_size"],
            cfg.train.batch_size,
        )
        cfg = replace(cfg, train=replace(cfg.train, batch_size=data_info["batch_size"]))
    model, cfg, speed = _build_model(cfg, dev, fresh=saved is None, dist=info)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    teacher = _teacher(cfg, dev)
    # The shipped half of the encoder choice, measured now: its cost is known before the plan.
    judging = _judging(cfg, evalset, dev, int(data_info["images"])) if timeline.budgeted and info.is_main else None
    after = judging.predicted_seconds(cfg.encoder) if judging is not None else 0.0
    if info.enabled:  # rank 0 alone judges: every process plans with its figure
        after = slowest_process({"after": after}, dev)["after"]
    if saved is not None:
        plan, schedule = Plan.from_dict(saved["plan"]), {"from": "the checkpoint"}
    else:
        plan, schedule = plan_schedule(
            cfg, model, feed.steps_per_epoch, dev, lambda: timeline.training_seconds(after), teacher
        )
    if warning := timeline.too_short(after):
        LOG.warning(warning)
    if info.is_main and (saved is None or not (run_dir / CONFIG).exists()):
        # A resumed run keeps the first call's record: its settings come from the checkpoint.
        write_config(run_dir, cfg, plan=plan.to_dict(), speed={**speed, "machine": describe(dev)}, schedule=schedule)
    if info.enabled and cfg.train.sync_bn:
        convert_batchnorm(model, dev)
    # Each process augments with its own stream; rank 0's is the one-process stream.
    aug_seed = cfg.train.seed + 1_000_003 * info.rank
    state = TrainState(
        model, build_optimizer(model, cfg.train), torch.Generator(device=dev).manual_seed(aug_seed), dist=info
    )
    state.call_start = call_start
    state.teacher = teacher
    if saved is not None:
        restore(state, saved)
        LOG.info("resumed %s at step %d", run_dir, state.step)
    state.forward = model
    if info.enabled:
        state.forward = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None
        )
    if cfg.train.compile:
        state.forward.compile()
    log = MetricsLog(run_dir / METRICS, state.step if saved is not None else None) if info.is_main else None
    # Deadlines in training seconds: the run's hard stop (max_minutes), and this call's.
    stop_at_step, stop_after_minutes = stops
    budget = cfg.train.max_minutes * 60 if cfg.train.max_minutes > 0 else None
    this_call = state.seconds + stop_after_minutes * 60 if stop_after_minutes else None
    deadline = min((d for d in (budget, this_call) if d is not None), default=None)
    phase_deadline = plan.budget_seconds * PHASE_HARD_STOP if plan.budget_seconds > 0 else None
    bar = tqdm(
        total=plan.total_steps,
        initial=state.step,
        desc="train",
        unit="step",
        dynamic_ncols=True,
        disable=not progress,
    )
    image_seconds = seconds_per_image(model, cfg, evalset, dev) if timeline.budgeted and info.is_main else 0.0
    if info.enabled:
        image_seconds = slowest_process({"s": image_seconds}, dev)["s"]
    run = EpochRun(cfg, plan, feed, Pace.of(plan), dev, log, run_dir / CHECKPOINT, bar, stop_at_step, deadline,
                   timeline, after, phase_deadline, image_seconds)  # fmt: skip
    try:
        loss, last_eval = _loop(state, run, evalset)
    finally:
        bar.close()
    plan = run.plan  # with the steps and re-plans it ran
    save_checkpoint(run.ckpt_path, cfg, plan, state)
    cut = (budget is not None and state.seconds >= budget) or (
        phase_deadline is not None and state.phase_seconds >= phase_deadline
    )
    if state.step < run.total_steps and cut:
        LOG.warning("stopped at the budget's end at step %d of %d", state.step, run.total_steps)
    if info.is_main:
        final = state.step >= run.total_steps or cut
        if final and judging is None:
            judging = _judging(cfg, evalset, dev, int(data_info["images"]))
        message = release(state, cfg, plan, str(data), run_dir, final=final, device=dev, judging=judging)
        if message:
            bar.write(message)
        if timeline.budgeted:
            LOG.info("the run took %.0f s of its %.0f-s budget", timeline.elapsed(), timeline.minutes * 60)
    barrier()  # encoder.pt exists for every process once train() returns
    return TrainResult(
        run_dir,
        run_dir / ENCODER,
        state.step,
        run.total_steps,
        state.seconds,
        loss,
        last_eval.get("knn_top1"),
        last_eval,
    )


def _build_model(
    cfg: RunConfig, dev: torch.device, *, fresh: bool, dist: DistInfo
) -> tuple[SimCLRModel, RunConfig, dict[str, Any]]:
    """The model (from its starting point, frozen parts frozen), with the recipe completed by
    measurement: precision and layout (model.training.precision); and that measurement's record."""
    model = SimCLRModel(cfg.encoder).to(dev)
    if cfg.encoder.init and fresh:  # a resumed run takes its weights from the checkpoint
        point = load_weights(model.backbone, cfg.encoder.init)
        LOG.info("f starts from %s (weights from the package %s, %s)", point.name, point.package, point.licence)
    freeze(model.backbone, blocks=cfg.train.frozen_blocks, batch_norm=cfg.train.freeze_bn)
    # Timed on a copy of the model before any step, so the run itself is not perturbed; the
    # chosen values go into config.json and checkpoints, so a resumed run keeps them.
    speed = choose_speed(
        amp=cfg.train.amp,
        channels_last=cfg.train.channels_last,
        device=dev,
        run_step=training_step_timer(model, cfg, dev),
    )
    cfg = replace(cfg, train=replace(cfg.train, amp=speed.bf16, channels_last=speed.channels_last))
    return model, cfg, speed.record()


def _teacher(cfg: RunConfig, dev: torch.device) -> torch.nn.Module | None:
    """The frozen starting network that a distilled adaptation keeps its neighbourhoods close to."""
    if not (cfg.train.distill > 0 and cfg.encoder.init):
        return None
    teacher, _, _ = as_is(cfg.encoder.init)
    teacher = teacher.to(dev).requires_grad_(False)
    if cfg.train.channels_last:
        teacher = teacher.to(memory_format=torch.channels_last)
    return teacher


def _judging(cfg: RunConfig, evalset: EvalSet, dev: torch.device, images: int) -> Judging | None:
    """The shipped network measured on the held-out images (None: nothing to compare with)."""
    shipped = shipped_for(cfg.encoder, cfg.train.rival)
    return None if shipped is None else Judging(shipped, evalset.heldout, dev, images)


def _eval_due(
    state: TrainState, run: EpochRun, evalset: EvalSet, epoch: int, last: bool, stopped: bool
) -> tuple[bool, bool | None]:
    """Whether the check between epochs runs now, and whether with kNN (None: by knn_every).

    A run by epochs checks at most MAX_EPOCH_ROWS times, and always at its end. A budgeted run
    checks on a sample (model.training.monitor.KNN_SAMPLE), predicts each check's cost from the
    images it embeds and the timed cost of one, spends at most EVAL_SHARE of its training phase on
    them (spread over it), and checks at its end only when the time left holds it; a check that
    does not fit with kNN runs without it, or not at all."""
    if not run.timeline.budgeted:
        eval_every = max(1, math.ceil(run.plan.epochs / MAX_EPOCH_ROWS))
        return stopped or last or (epoch + 1) % eval_every == 0, None
    t = run.cfg.train
    want_knn = evalset.bank is not None and t.knn_every > 0 and (last or (epoch + 1) % t.knn_every == 0)
    # The timed cost of one image, or what the last check really paid per image if that was more
    # (a busy machine, another process on the same cores).
    per_image = max(run.image_seconds, state.last_check_image_seconds)
    costs = [(knn, per_image * check_images(run.cfg, evalset, knn=knn, sample=True))
             for knn in ((True, False) if want_knn else (False,))]  # fmt: skip
    if last or stopped:
        room = run.timeline.training_seconds(run.after)
    elif state.eval_seconds > EVAL_SHARE * state.phase_seconds:
        return False, False  # spread the checks over the run
    else:
        room = EVAL_SHARE * run.plan.budget_seconds - state.eval_seconds
    for knn, cost in costs:
        if cost <= room:
            return True, knn
    return False, False


def _loop(state: TrainState, run: EpochRun, evalset: EvalSet) -> tuple[float, dict[str, Any]]:
    """Epochs until the schedule's end (or a stop): (last loss, last evaluation row)."""
    spe = run.feed.steps_per_epoch
    loss, last_eval = math.nan, {}
    set_train_mode(state.model, run.cfg.train.freeze_bn)
    for epoch in itertools.count(state.step // spe):
        if epoch >= run.plan.epochs:  # read each time: a re-plan changes it
            break
        loss, stopped = train_one_epoch(state, run, epoch)
        if stopped and state.step % spe != 0:
            break
        last = state.step >= run.total_steps
        due, knn = _eval_due(state, run, evalset, epoch, last, stopped)
        # Clocks differ between processes: all check (and meet at the barrier) if any would.
        agreed = slowest_process({"due": float(due), "knn": float(bool(knn))}, run.device)
        due, knn = agreed["due"] > 0, None if knn is None else agreed["knn"] > 0
        if not due:
            continue
        began = check_clock()
        if run.log is not None:
            last_eval = evaluate_epoch(state.model, run.cfg, evalset, run.device, epoch, force_knn=last, knn=knn,
                                       sample=run.timeline.budgeted)  # fmt: skip
            run.log.write(
                {
                    "kind": "epoch",
                    "step": state.step,
                    "epoch": epoch + 1 if state.step % spe == 0 else state.step / spe,
                    "loss": loss,
                    "seconds": state.seconds,
                    "wall_seconds": state.wall_seconds,
                    "eval_seconds": round(check_clock() - began, 2),
                    **last_eval,
                }
            )
            warning = collapse_warning(last_eval)
            if warning:
                LOG.warning("epoch %d: %s", epoch + 1, warning)
                if run.bar is not None:
                    run.bar.write(f"WARNING: {warning}")
        barrier()  # the others wait while rank 0 evaluates
        state.last_eval_seconds = check_clock() - began  # on every process: all of them waited
        state.eval_seconds += state.last_eval_seconds
        if run.timeline.budgeted:
            images = check_images(run.cfg, evalset, knn=bool(knn) and "knn_top1" in last_eval, sample=True)
            state.last_check_image_seconds = state.last_eval_seconds / max(1, images)
        save_checkpoint(run.ckpt_path, run.cfg, run.plan, state)
        if stopped:
            break
    return loss, last_eval
