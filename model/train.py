"""The SimCLR training job: train() runs epochs of train_one_epoch() over a data feed.

Run directory layout:
    config.json      the resolved RunConfig
    metrics.jsonl    {"kind": "step", ...} every log_every steps, {"kind": "epoch", ...} per epoch
    checkpoint.pt    model + optimizer + step + RNG states, written atomically (for --resume)
    encoder.pt       f's weights and config: all that serving needs (model.checkpoint)
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from model.adapt import keep_better
from model.augment import SimCLRAugment
from model.budget import PLAN_SHARE, crop_size_at, plan_steps, real_step_runner, time_steps, view_sizes
from model.checkpoint import atomic_torch_save, save_encoder
from model.config import RunConfig
from model.distributed import (
    DistInfo,
    any_process,
    barrier,
    convert_batchnorm,
    mean_over_processes,
    slowest_process,
    teardown,
)
from model.distributed import setup as setup_distributed
from model.embed import embed_tensor
from model.encoder import SimCLRModel, freeze, set_train_mode
from model.evaluate import collapse_warning, health, knn_accuracy
from model.feed import CachedFeed, EvalSet, StreamFeed, prepare_data
from model.hardware import describe
from model.loss import NTXentLoss, SupConLoss
from model.optim import build_optimizer, lr_at
from model.precision import choose_speed, training_step_timer
from model.pretrained import load_weights

LOG = logging.getLogger(__name__)


MAX_EPOCH_ROWS = 200  # epoch evaluations (and checkpoints) in one run, at most


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
class TrainState:
    model: SimCLRModel  # the bare model: what checkpoints hold and evaluation runs
    optimizer: torch.optim.Optimizer
    aug_gen: torch.Generator
    step: int = 0
    seconds: float = 0.0  # training-step time so far, across resumes
    wall_base: float = 0.0  # wall time of earlier calls (decode, steps, evaluation, saving)
    call_start: float = field(default_factory=time.perf_counter)

    @property
    def wall_seconds(self) -> float:
        """Wall-clock time of the whole run so far, across resumed calls."""
        return self.wall_base + time.perf_counter() - self.call_start

    forward: torch.nn.Module | None = None  # what training steps call: the DDP wrapper, if any
    dist: DistInfo = field(default_factory=DistInfo)


def save_checkpoint(path: Path, cfg: RunConfig, state: TrainState) -> None:
    """Rank 0 writes; under data parallelism every process must call it (it gathers RNG states)."""
    aug_states = [state.aug_gen.get_state()]
    if state.dist.enabled:
        aug_states = [torch.empty(0, dtype=torch.uint8)] * state.dist.world_size
        torch.distributed.all_gather_object(aug_states, state.aug_gen.get_state())
    if not state.dist.is_main:
        return
    payload = {
        "config": cfg.to_dict(),
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "step": state.step,
        "seconds": state.seconds,
        "wall_seconds": state.wall_seconds,
        "world_size": state.dist.world_size,
        "aug_rng": aug_states[0],
        "aug_rng_ranks": aug_states,  # each process's augmentation stream, for exact resume
        "torch_rng": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        payload["cuda_rng"] = torch.cuda.get_rng_state_all()
    atomic_torch_save(payload, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    payload: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    return payload


class MetricsLog:
    """Append-only JSONL; on resume, rows past the checkpoint's step are dropped first."""

    def __init__(self, path: Path, keep_until_step: int | None) -> None:
        self.path = path
        if keep_until_step is not None and path.exists():
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            kept = [r for r in rows if r.get("step", 0) <= keep_until_step]
            path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        elif keep_until_step is None:
            path.write_text("")

    def write(self, row: dict[str, Any]) -> None:
        with self.path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")


@torch.no_grad()
def evaluate_epoch(
    model: SimCLRModel, cfg: RunConfig, evalset: EvalSet, device: torch.device, epoch: int, force_knn: bool = False
) -> dict[str, Any]:
    """Health on the held-out sample and, every knn_every epochs (and with force_knn), kNN top-1."""
    model.eval()
    mean, std = cfg.encoder.mean, cfg.encoder.std
    sample = evalset.heldout[: cfg.train.health_sample]
    h = embed_tensor(model.backbone, sample, mean, std, device=device)
    # Fixed-seed views so that alignment is comparable from epoch to epoch.
    aug = SimCLRAugment(cfg.augment, mean, std)
    gen = torch.Generator(device=device).manual_seed(12345)
    v1, v2 = aug(sample.to(device), gen, size=cfg.encoder.image_size)
    h1 = torch.nn.functional.normalize(model.backbone(v1).float(), dim=1).cpu()
    h2 = torch.nn.functional.normalize(model.backbone(v2).float(), dim=1).cpu()
    row: dict[str, Any] = health(h, h1, h2)
    t = cfg.train
    knn_due = t.knn_every > 0 and (force_knn or (epoch + 1) % t.knn_every == 0)
    if evalset.bank is not None and evalset.bank_labels is not None and knn_due:
        bank = embed_tensor(model.backbone, evalset.bank, mean, std, device=device)
        queries = embed_tensor(model.backbone, evalset.heldout, mean, std, device=device)
        row["knn_top1"] = knn_accuracy(bank, evalset.bank_labels, queries, evalset.heldout_labels, k=t.knn_k)
    set_train_mode(model, cfg.train.freeze_bn)
    return row


def train_one_epoch(
    state: TrainState,
    cfg: RunConfig,
    feed: CachedFeed | StreamFeed,
    epoch: int,
    total_steps: int,
    device: torch.device,
    log: MetricsLog | None,
    ckpt_path: Path,
    bar: tqdm[Any] | None,
    stop_at_step: int | None,
    deadline: float | None,
) -> tuple[float, bool]:
    """One pass over the feed (or what is left of it). Returns (last loss, stopped early)."""
    t = cfg.train
    model, opt = state.model, state.optimizer
    forward = state.forward if state.forward is not None else model
    augment = SimCLRAugment(cfg.augment, cfg.encoder.mean, cfg.encoder.std)
    ntxent, supcon = NTXentLoss(t.temperature), SupConLoss(t.temperature)
    warmup = min(int(t.warmup_epochs * feed.steps_per_epoch), total_steps // 4)
    use_amp = bool(t.amp) and device.type in ("cuda", "cpu")
    fmt = torch.channels_last if t.channels_last else torch.contiguous_format
    start = state.step - epoch * feed.steps_per_epoch
    window_start, window_images, loss_value = time.perf_counter(), 0, math.nan
    # Non-finite losses are collected on the device and checked at the steps that synchronise
    # anyway (logging, checkpoints, stops, the epoch's end), so that the host never waits for
    # the accelerator in between; a diverged run still stops before any checkpoint is written.
    nonfinite = torch.zeros((), dtype=torch.bool, device=device)
    last_step = min(epoch * feed.steps_per_epoch + feed.steps_per_epoch, total_steps)
    for images, labels in feed.epoch(epoch, start):
        if state.step >= total_steps:  # a budgeted schedule ends inside its last epoch
            break
        tick = time.perf_counter()
        lr = lr_at(state.step, total_steps, warmup, t.lr)
        for group in opt.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        view_size = crop_size_at(cfg.augment, state.step, total_steps)
        images = images.to(device, non_blocking=True)
        v1, v2 = augment(images, state.aug_gen, view_size)
        x = torch.cat([v1, v2]).contiguous(memory_format=fmt)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            _, z = forward(x)
        z1, z2 = z.float().chunk(2)
        loss = supcon(z1, z2, labels.to(device)) if t.loss == "supcon" else ntxent(z1, z2)
        # The global batch's loss (the mean over processes), so that every process agrees on a stop.
        global_loss = mean_over_processes(loss)
        nonfinite |= ~torch.isfinite(global_loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        state.step += 1
        state.seconds += time.perf_counter() - tick
        window_images += images.shape[0] * state.dist.world_size
        log_due = state.step % t.log_every == 0 or state.step == total_steps
        checkpoint_due = bool(t.checkpoint_every) and state.step % t.checkpoint_every == 0
        stop = stop_at_step is not None and state.step >= stop_at_step
        if deadline is not None:  # clocks differ between processes; all stop together
            stop = any_process(stop or state.seconds >= deadline, device)
        if log_due or checkpoint_due or stop or state.step == last_step:
            loss_value = float(global_loss)
            if bool(nonfinite):
                raise NonFiniteLossError(
                    f"the loss became non-finite by step {state.step} (last {loss_value}, lr {lr:.4g}); "
                    "training diverged. Start a new run with a lower --lr or a higher --temperature"
                )
        if log is not None and log_due:
            elapsed = time.perf_counter() - window_start
            ips = window_images / max(elapsed, 1e-9)
            log.write(
                {
                    "kind": "step",
                    "step": state.step,
                    "epoch": epoch + state_fraction(state, feed, epoch),
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
                bar.set_postfix(loss=f"{loss_value:.3f}", lr=f"{lr:.3g}", img_s=f"{ips:.0f}", px=view_size)
        if bar is not None:
            bar.update(1)
        if checkpoint_due:
            save_checkpoint(ckpt_path, cfg, state)
        if stop:
            return loss_value, True
    return loss_value, False


def state_fraction(state: TrainState, feed: CachedFeed | StreamFeed, epoch: int) -> float:
    return (state.step - epoch * feed.steps_per_epoch) / feed.steps_per_epoch


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
) -> TrainResult:
    """Train (or resume) a SimCLR run in `out`. See the module docstring for what it writes.

    `stop_at_step` and `stop_after_minutes` (of training time in this call) checkpoint and stop
    early, for machines that give a command a limited time: continue with resume=True.

    Under torchrun (model.distributed) every process runs this with its share of each global
    batch; only rank 0 writes files, and `out` and `data` must be paths every process can read.
    """
    info, dev, created = setup_distributed(device)
    try:
        stops = (stop_at_step, stop_after_minutes)
        return _train(cfg, data, Path(out), info, dev, resume, progress and info.is_main, stops)
    finally:
        if created:
            teardown()


def plan_schedule(
    cfg: RunConfig, model: SimCLRModel, steps_per_epoch: int, dev: torch.device
) -> tuple[RunConfig, dict[str, Any]]:
    """Fix the run's step count: from the time budget (`minutes`, timed steps) or from `epochs`."""
    t = cfg.train
    if t.total_steps > 0:  # resumed, or given: keep it
        return cfg, {"total_steps": t.total_steps, "from": "config"}
    plan: dict[str, Any]
    if t.minutes > 0:
        seconds = slowest_process(time_steps(view_sizes(cfg.augment), real_step_runner(model, cfg, dev)), dev)
        total = plan_steps(cfg.augment, t.minutes * 60 * PLAN_SHARE, seconds)
        plan = {"from": f"a {t.minutes:g}-minute budget", "step_seconds_by_view_size": seconds}
    else:
        total = t.epochs * steps_per_epoch
        plan = {"from": f"{t.epochs} epochs"}
    epochs = max(1, math.ceil(total / steps_per_epoch))
    plan.update(total_steps=total, epochs=round(total / steps_per_epoch, 2), steps_per_epoch=steps_per_epoch)
    LOG.info(
        "schedule: %d steps (%.2f epochs of %d steps) from %s",
        total,
        total / steps_per_epoch,
        steps_per_epoch,
        plan["from"],
    )
    return replace(cfg, train=replace(t, total_steps=total, epochs=epochs)), plan


def _train(
    cfg: RunConfig,
    data: str,
    run_dir: Path,
    info: DistInfo,
    dev: torch.device,
    resume: bool,
    progress: bool,
    stops: tuple[int | None, float | None],
) -> TrainResult:
    stop_at_step, stop_after_minutes = stops
    call_start = time.perf_counter()
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed view sizes: let cuDNN pick the fastest kernels
    ckpt_path, encoder_path = run_dir / "checkpoint.pt", run_dir / "encoder.pt"
    saved: dict[str, Any] | None = None
    if resume:
        if not ckpt_path.exists():
            raise FileNotFoundError(f"no checkpoint.pt in {str(run_dir)!r} to resume; drop --resume to start a new run")
        saved = load_checkpoint(ckpt_path)
        cfg = RunConfig.from_dict(saved["config"])
        saved_world = int(saved.get("world_size", 1))
        if saved_world != info.world_size:
            raise ValueError(
                f"{str(run_dir)!r} was trained with {saved_world} process(es) and this is {info.world_size}; "
                f"resume with the same count (torchrun --nproc-per-node {saved_world}, or no torchrun for 1) "
                "so that the batches and the schedule continue where they stopped"
            )
    elif ckpt_path.exists() or encoder_path.exists():
        raise FileExistsError(
            f"{str(run_dir)!r} already holds a run; pass --resume to continue it or choose another --out"
        )
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
    model = SimCLRModel(cfg.encoder).to(dev)
    if cfg.encoder.init and saved is None:  # a resumed run takes its weights from the checkpoint
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
    machine = describe(dev)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    cfg, plan = plan_schedule(cfg, model, feed.steps_per_epoch, dev)
    if info.is_main and (saved is None or not (run_dir / "config.json").exists()):
        # The config, and beside it the measurements behind its speed settings and step count
        # (a resumed run keeps the first call's: its settings come from the checkpoint).
        record = {**cfg.to_dict(), "speed": {**speed.record(), "machine": machine}, "schedule": plan}
        (run_dir / "config.json").write_text(json.dumps(record, indent=2) + "\n")
    if info.enabled and cfg.train.sync_bn:
        convert_batchnorm(model, dev)
    # Each process augments with its own stream; rank 0's is the one-process stream.
    aug_seed = cfg.train.seed + 1_000_003 * info.rank
    state = TrainState(
        model, build_optimizer(model, cfg.train), torch.Generator(device=dev).manual_seed(aug_seed), dist=info
    )
    state.call_start = call_start
    if saved is not None:
        model.load_state_dict(saved["model"])
        state.optimizer.load_state_dict(saved["optimizer"])
        ranks = saved.get("aug_rng_ranks") or [saved["aug_rng"]]
        state.aug_gen.set_state(ranks[info.rank])
        torch.set_rng_state(saved["torch_rng"])
        if "cuda_rng" in saved and torch.cuda.is_available() and not info.enabled:
            torch.cuda.set_rng_state_all(saved["cuda_rng"])
        state.step, state.seconds = int(saved["step"]), float(saved["seconds"])
        state.wall_base = float(saved.get("wall_seconds", saved["seconds"]))
        LOG.info("resumed %s at step %d", run_dir, state.step)
    forward: torch.nn.Module = model
    if info.enabled:
        forward = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None
        )
    if cfg.train.compile:
        forward.compile()
    state.forward = forward
    log = MetricsLog(run_dir / "metrics.jsonl", state.step if saved is not None else None) if info.is_main else None
    total_steps = cfg.train.total_steps
    # Deadlines in training seconds: the run's budget (max_minutes), and this call's.
    budget = cfg.train.max_minutes * 60 if cfg.train.max_minutes > 0 else None
    this_call = state.seconds + stop_after_minutes * 60 if stop_after_minutes else None
    deadline = min((d for d in (budget, this_call) if d is not None), default=None)
    bar = tqdm(
        total=total_steps, initial=state.step, desc="train", unit="step", dynamic_ncols=True, disable=not progress
    )
    loss, last_eval = math.nan, {}
    eval_every = max(1, math.ceil(cfg.train.epochs / MAX_EPOCH_ROWS))
    set_train_mode(model, cfg.train.freeze_bn)
    try:
        for epoch in range(state.step // feed.steps_per_epoch, cfg.train.epochs):
            loss, stopped = train_one_epoch(
                state, cfg, feed, epoch, total_steps, dev, log, ckpt_path, bar, stop_at_step, deadline
            )
            if stopped and state.step % feed.steps_per_epoch != 0:
                break
            spe, last = feed.steps_per_epoch, state.step >= total_steps
            # A small collection trained for a budget runs thousands of tiny epochs: evaluate and
            # checkpoint at most MAX_EPOCH_ROWS times, and always at the end.
            if not (stopped or last or (epoch + 1) % eval_every == 0):
                continue
            if info.is_main and log is not None:
                last_eval = evaluate_epoch(model, cfg, evalset, dev, epoch, force_knn=last)
                log.write(
                    {
                        "kind": "epoch",
                        "step": state.step,
                        "epoch": epoch + 1 if state.step % spe == 0 else state.step / spe,
                        "loss": loss,
                        "seconds": state.seconds,
                        "wall_seconds": state.wall_seconds,
                        **last_eval,
                    }
                )
                warning = collapse_warning(last_eval)
                if warning:
                    LOG.warning("epoch %d: %s", epoch + 1, warning)
                    bar.write(f"WARNING: {warning}")
            barrier()  # the others wait while rank 0 evaluates
            save_checkpoint(ckpt_path, cfg, state)
            if stopped:
                break
    finally:
        bar.close()
    save_checkpoint(ckpt_path, cfg, state)
    if state.step < total_steps and budget is not None and state.seconds >= budget:
        LOG.warning(
            "stopped at the %.1f-minute budget at step %d of %d", cfg.train.max_minutes, state.step, total_steps
        )
    if info.is_main:
        backbone, adaptation = model.backbone, None
        final = state.step >= total_steps or (budget is not None and state.seconds >= budget)
        if cfg.encoder.init and final:  # adapting must not make f worse than where it started
            backbone, adaptation = keep_better(model.backbone, cfg.encoder, evalset.heldout, dev)
            (run_dir / "adaptation.json").write_text(json.dumps(adaptation, indent=2) + "\n")
            bar.write(f"kept the {adaptation['kept']} network (copy retrieval on held-out images, adaptation.json)")
        save_encoder(
            encoder_path,
            backbone,
            cfg.encoder,
            model.feature_dim,
            trained={
                "adaptation": adaptation,
                "data": str(data),
                "step": state.step,
                "total_steps": total_steps,
                "seconds": state.seconds,
                "preset": cfg.preset,
                "processes": info.world_size,
                "precision": "bf16" if cfg.train.amp else "fp32",
                "machine": machine,
                "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
            },
        )
    barrier()  # encoder.pt exists for every process once train() returns
    return TrainResult(
        run_dir, encoder_path, state.step, total_steps, state.seconds, loss, last_eval.get("knn_top1"), last_eval
    )
