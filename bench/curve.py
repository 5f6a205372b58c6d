"""kNN accuracy against training time from a run's metrics.jsonl: the time-to-accuracy curve.

    uv run python -m bench.curve --run runs/cifar-resnet18 --command "bash bench/gpu_recipe.sh DATA"

Reads the epoch rows (kNN top-1 on the held-out split, the bank being the run's `knn_bank` train
images; with knn_bank >= 50,000 on CIFAR-10 it is the `latent-search eval` protocol), writes
docs/<preset>-knn_vs_time.png and a BENCHMARKS.md section with the first time each threshold is
reached. Time is the run's wall-clock time summed across resumed calls (decoding, per-epoch
evaluation and checkpointing included; the gaps between calls are not), or with --clock train
the training steps only.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.report import BENCHMARKS, machine, table, today, write_section


def time_to(points: list[tuple[float, float]], threshold: float) -> float | None:
    """Training seconds at the first evaluation with accuracy >= threshold (None: never)."""
    return next((seconds for seconds, acc in points if acc >= threshold), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, type=Path)
    parser.add_argument("--command", required=True, help="the exact command(s) that trained the run")
    parser.add_argument("--thresholds", default="0.80,0.85,0.90")
    parser.add_argument(
        "--clock",
        choices=("wall", "train"),
        default="wall",
        help="wall: the whole run (decode, evaluation, resumes included); train: training steps only",
    )
    parser.add_argument("--machine", default=None, help="where the run trained, if not here (e.g. a GPU machine)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    cfg = json.loads((args.run / "config.json").read_text())
    rows = [json.loads(line) for line in (args.run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    clock = "wall_seconds" if args.clock == "wall" else "seconds"
    points = [
        (r.get(clock, r["seconds"]), r["knn_top1"])
        for r in rows
        if r["kind"] == "epoch" and r.get("knn_top1") is not None
    ]
    if not points:
        raise SystemExit(f"no kNN evaluations in {args.run / 'metrics.jsonl'} (train with --set train.knn_every=N)")
    thresholds = [float(x) for x in args.thresholds.split(",")]
    docs = BENCHMARKS.parent / "docs"
    docs.mkdir(exist_ok=True)
    plot = docs / f"{cfg['preset']}-knn_vs_time.png"
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot([s / 60 for s, _ in points], [100 * a for _, a in points], marker=".")
    for threshold in thresholds:
        ax.axhline(100 * threshold, color="grey", linewidth=0.6, linestyle="--")
    ax.set_xlabel("wall-clock time of the run (min)" if args.clock == "wall" else "training-step time (min)")
    ax.set_ylabel("kNN top-1 (%)")
    ax.set_title(f"{cfg['preset']}: kNN accuracy vs training time")
    fig.tight_layout()
    fig.savefig(plot, dpi=110)
    summary = table(
        ["kNN top-1 reached", "wall-clock time" if args.clock == "wall" else "training-step time"],
        [
            [f"{100 * th:.0f} %", f"{t / 60:.1f} min" if (t := time_to(points, th)) is not None else "not reached"]
            for th in thresholds
        ]
        + [["final", f"{100 * points[-1][1]:.1f} % at {points[-1][0] / 60:.1f} min"]],
    )
    t = cfg["train"]
    body = (
        f"## Time to accuracy: `{cfg['preset']}` ({today()})\n\nMachine: {args.machine or machine()}.\n\n"
        f"```\n{args.command}\n```\n\n"
        f"kNN during training: k={t['knn_k']}, bank of {t['knn_bank']} train images, every {t['knn_every']} "
        f"epoch(s); {t['epochs']} epochs, batch {t['batch_size']}, lr {t['lr']}, τ={t['temperature']}.\n\n"
        f"{summary}\n\n![kNN vs time](docs/{plot.name})\n"
    )
    print(body)
    if not args.no_write:
        write_section(f"curve-{cfg['preset']}", body)


if __name__ == "__main__":
    main()
