"""Does the data pipeline keep up with the model? Real training steps vs the bare model, one run.

    uv run python -m bench.pipeline --data ../shared/data/cifar10-jpg.tar.gz              # cpu-small
    uv run python -m bench.pipeline --data DATA --preset resnet18 --batch 512 --steps 60  # on a GPU

For each variant (fp32 / bf16 autocast / + channels_last / + torch.compile):
- bare: forward + backward + optimizer step of f and g on random tensors already on the device,
  2 x batch views at the preset's final view size, NT-Xent loss;
- pipeline: the training loop itself (model.training.train.train_one_epoch) on the decoded collection:
  batch gather from the uint8 cache (on the GPU when there is one), per-sample augmentation of
  two views on the device, the same step, its logging and non-finite checks.
Reports training images/s (2 views each) for both and their ratio (goal on a GPU: >= 0.85).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from bench.report import machine, table, today, write_section
from model.embedding.embed import pick_device
from model.training.budget import Plan
from model.training.config import RunConfig, override
from model.training.feed import CachedFeed, prepare_data
from model.training.loss import NTXentLoss
from model.training.optim import build_optimizer
from model.training.pace import Pace
from model.training.presets import preset
from model.training.run_dir import MetricsLog
from model.training.simclr import SimCLRModel
from model.training.state import TrainState
from model.training.train import EpochRun, train_one_epoch

VARIANTS = {
    "fp32": {"train.amp": False, "train.channels_last": False, "train.compile": False},
    "bf16": {"train.amp": True, "train.channels_last": False, "train.compile": False},
    "bf16+channels_last": {"train.amp": True, "train.channels_last": True, "train.compile": False},
    "bf16+channels_last+compile": {"train.amp": True, "train.channels_last": True, "train.compile": True},
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def build(cfg: RunConfig, device: torch.device) -> tuple[SimCLRModel, torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = SimCLRModel(cfg.encoder).to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    forward: torch.nn.Module = torch.compile(model) if cfg.train.compile else model  # type: ignore[assignment]
    return model, forward, build_optimizer(model, cfg.train)


def bare_images_per_second(cfg: RunConfig, device: torch.device, warmup: int, steps: int) -> float:
    _, forward, opt = build(cfg, device)
    fmt = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    b, size = cfg.train.batch_size, cfg.augment.crop_size
    x = torch.randn(2 * b, 3, size, size, device=device).contiguous(memory_format=fmt)
    loss_fn = NTXentLoss(cfg.train.temperature)
    for i in range(warmup + steps):
        if i == warmup:
            sync(device)
            started = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bool(cfg.train.amp)):
            _, z = forward(x)
        loss = loss_fn(*z.float().chunk(2))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(device)
    return b * steps / (time.perf_counter() - started)


def pipeline_images_per_second(
    cfg: RunConfig, feed: CachedFeed, device: torch.device, warmup: int, steps: int
) -> float:
    model, forward, opt = build(cfg, device)
    state = TrainState(model, opt, torch.Generator(device=device).manual_seed(0), forward=forward)
    with tempfile.TemporaryDirectory() as tmp:
        log = MetricsLog(Path(tmp) / "metrics.jsonl", None)
        total = 10 * feed.steps_per_epoch  # schedule position only; the run stops far earlier
        cfg = override(cfg, **{"train.log_every": warmup})
        plan = Plan(total, total, 10)
        run = EpochRun(cfg, plan, feed, Pace.of(plan), device, log, Path(tmp) / "ckpt.pt", None, warmup + steps, None)
        train_one_epoch(state, run, 0)
        rows = [json.loads(line) for line in log.path.read_text().splitlines()]
    timed = rows[1:]  # the first window holds the warm-up (and compilation)
    seconds = sum(warmup * cfg.train.batch_size / r["images_per_s"] for r in timed)
    return float(len(timed) * warmup * cfg.train.batch_size / seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data", default=os.environ.get("LATENT_SEARCH_DATA"), help="collection (or $LATENT_SEARCH_DATA)"
    )
    parser.add_argument("--preset", default="cpu-small")
    parser.add_argument("--batch", type=int, default=None, help="per-step batch (preset default)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps (also the timing window)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps (a multiple of --warmup)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated: {', '.join(VARIANTS)}")
    parser.add_argument("--device", default=None)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if not args.data:
        parser.error("pass --data PATH (e.g. ../shared/data/cifar10-jpg.tar.gz) or set LATENT_SEARCH_DATA")
    if args.steps % args.warmup:
        parser.error("--steps must be a multiple of --warmup")
    device = pick_device(args.device)
    # Fixed view size (no progressive resizing) so both sides do the same work every step.
    base = override(preset(args.preset), **{"augment.crop_size_min": 0, "train.batch_size": args.batch})
    started = time.perf_counter()
    feed, _, info = prepare_data(base, args.data)
    if not isinstance(feed, CachedFeed):
        raise SystemExit("the collection is too large for the decoded cache; use a smaller one for this benchmark")
    feed.to(device, base.train.device_cache_max_bytes)
    if feed.steps_per_epoch < args.warmup + args.steps:
        raise SystemExit(f"only {feed.steps_per_epoch} steps in an epoch: lower --steps or --batch")
    print(f"decoded {info['train']} training images in {time.perf_counter() - started:.0f} s", flush=True)
    rows = []
    for name in args.variants.split(","):
        cfg = override(base, **VARIANTS[name])
        bare = bare_images_per_second(cfg, device, args.warmup, args.steps)
        real = pipeline_images_per_second(cfg, feed, device, args.warmup, args.steps)
        print(f"{name}: bare {bare:.0f} img/s, pipeline {real:.0f} img/s, ratio {real / bare:.2f}", flush=True)
        rows.append([name, f"{bare:.0f}", f"{real:.0f}", f"{real / bare:.2f}"])
    first = float(rows[0][2])
    for row in rows:
        row.append(f"{float(row[2]) / first:.2f}x")
    cfg = base
    body = (
        f"## Data pipeline vs bare model, {args.preset} ({today()})\n\n"
        f"`uv run python -m bench.pipeline --data {args.data} --preset {args.preset}"
        f"{f' --batch {args.batch}' if args.batch else ''} --steps {args.steps}` on {machine()}, device {device}: "
        f"{cfg.encoder.arch}, batch {cfg.train.batch_size} × 2 views of {cfg.augment.crop_size} px, "
        f"{args.warmup} warm-up steps then {args.steps} timed. Images/s count images (2 views each); "
        "*bare* is forward + backward + step on random tensors already on the device, *pipeline* is the "
        "training loop with batch gather and per-sample augmentation.\n\n"
        + table(["variant", "bare img/s", "pipeline img/s", "pipeline / bare", "pipeline vs first row"], rows)
    )
    print(body)
    if not args.no_write:
        write_section(f"pipeline-{args.preset}", body)


if __name__ == "__main__":
    main()
