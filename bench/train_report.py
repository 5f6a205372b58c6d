"""Write the training section of BENCHMARKS.md from a finished run and its `eval` output.

    uv run python -m bench.train_report --run runs/cifar-cpu-small --log runs/cifar-cpu-small.log \\
        --command "uv run latent-search train --data ../shared/data/cifar10-jpg.tar.gz --out runs/cifar-cpu-small"

Copies the run's plots into docs/ (small PNGs) so the page can show them.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

from bench.report import BENCHMARKS, machine, table, today, write_section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, type=Path)
    parser.add_argument("--log", type=Path, help="the train command's output (with a 'TOTAL <s> s wall' line)")
    parser.add_argument("--command", required=True, help="the exact train command that was run")
    parser.add_argument("--eval-command", default=None)
    args = parser.parse_args()
    run = args.run
    cfg = json.loads((run / "config.json").read_text())
    ev = json.loads((run / "eval.json").read_text())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    epochs = [r for r in rows if r["kind"] == "epoch"]
    wall = None
    if args.log and args.log.exists():
        found = re.findall(r"TOTAL ([0-9.]+) s wall", args.log.read_text(errors="replace"))
        wall = float(found[-1]) if found else None
    docs = BENCHMARKS.parent / "docs"
    docs.mkdir(exist_ok=True)
    for name in ("training_curves.png", "embedding_map.png"):
        if (run / name).exists():
            shutil.copy2(run / name, docs / f"{cfg['preset']}-{name}")
    t, a, e = cfg["train"], cfg["augment"], cfg["encoder"]
    recipe = (
        f"{e['arch']} width {e['width']} (h: {8 * e['width']}-d), projection {e['proj_layers']} layers "
        f"{e['proj_hidden']}→{e['proj_out']}; views {a['crop_size_min'] or a['crop_size']}→{a['crop_size']} px "
        f"(ramp until {a['crop_ramp_end']:.0%} of training), embedding at {e['image_size']} px; crop scale "
        f"{tuple(a['crop_scale'])}, jitter s={a['jitter_strength']} p={a['jitter_p']}, gray p={a['gray_p']}, "
        f"blur p={a['blur_p']}; {t['optimizer']} lr {t['lr']} momentum {t['momentum']} wd {t['weight_decay']}, "
        f"warm-up {t['warmup_epochs']} epochs + cosine; batch {t['batch_size']}, τ={t['temperature']}, "
        f"{t['epochs']} epochs, bf16 autocast={t['amp']}, channels_last={t['channels_last']}"
    )
    summary = table(
        ["what", "value"],
        [
            [
                "train command wall time (decode + train + per-epoch checks + save)",
                f"{wall:.0f} s ({wall / 60:.1f} min)" if wall else "n/a",
            ],
            ["training time (steps only)", f"{epochs[-1]['seconds']:.0f} s"],
            ["kNN top-1 (k=200, cosine, T=0.07 weighted votes; 50k train → 10k test)", f"{100 * ev['knn_top1']:.1f} %"],
            ["1-NN top-1", f"{100 * ev['knn1_top1']:.1f} %"],
            ["linear probe top-1 (frozen h)", f"{100 * ev['linear_probe_top1']:.1f} %"],
            ["eval command time", f"{ev['seconds']:.0f} s"],
            [
                "final uniformity / effective rank (test h)",
                f"{ev['health']['uniformity']:.2f} / {ev['health']['effective_rank']:.1f}",
            ],
        ],
    )
    per_epoch = table(
        ["epoch", "train s", "loss", "alignment", "uniformity", "std × √d", "eff. rank", "kNN (10k bank)"],
        [
            [
                str(r["epoch"]),
                f"{r['seconds']:.0f}",
                f"{r['loss']:.3f}",
                f"{r['alignment']:.3f}",
                f"{r['uniformity']:.2f}",
                f"{r['std_ratio']:.2f}",
                f"{r['effective_rank']:.1f}",
                f"{100 * r['knn_top1']:.1f} %" if r.get("knn_top1") is not None else "-",
            ]
            for r in epochs
        ],
    )
    eval_command = args.eval_command or f"uv run latent-search eval --encoder {run / 'encoder.pt'} --data ..."
    body = (
        f"## Training: `{cfg['preset']}` on CIFAR-10 ({today()})\n\n"
        f"Machine: {machine()}.\n\n```\n{args.command}\n"
        f"{eval_command}\n```\n\n"
        f"Recipe: {recipe}.\n\n{summary}\n\nPer epoch (health on 1,024 held-out test images; kNN during training "
        f"uses a 10k-image bank, `eval` uses all 50k):\n\n{per_epoch}\n\n"
        f"![training curves](docs/{cfg['preset']}-training_curves.png)\n"
        f"![embedding map](docs/{cfg['preset']}-embedding_map.png)\n"
    )
    print(body)
    write_section(f"train-{cfg['preset']}", body)


if __name__ == "__main__":
    main()
