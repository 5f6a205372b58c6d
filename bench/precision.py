"""Same command, two kinds of CPU: training speed with the measured precision vs forced fp32 / bf16.

    uv run python -m bench.precision --data ../shared/data/cifar10-jpg.tar.gz

Runs `latent-search train` (cpu-small preset, fixed 24-px views, no kNN) for --steps steps in a
fresh process per row, once on this CPU as it is and once restricted to AVX2 kernels
(`ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`: torch and oneDNN then run as on a CPU
without AVX-512 / native bf16, which is how bf16 becomes emulated; it is an emulation on this
CPU, not a second machine). Per row: the precision the job chose (or was forced to), steps/s
from the run's own training-step clock, and the time the choice's trial steps took. The ratio
column compares each row with the --no-amp row of the same CPU mode, measured in the same call.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.report import machine, table, today, write_section

MODES = {"as is": {}, "AVX2 only (emulated)": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}}
SETTINGS = {"default (measured)": [], "--no-amp": ["--set", "train.amp=false"], "--amp": ["--set", "train.amp=true"]}


@dataclass(frozen=True)
class Result:
    precision: str
    layout: str
    rate: float  # steps/s
    trial: float  # seconds of trial steps before training
    capability: str


def run(data: str, env_extra: dict[str, str], flags: list[str], steps: int) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = [
            sys.executable,
            "-m",
            "app.cli",
            "train",
            "--data",
            data,
            "--out",
            str(out),
            "--set",
            "augment.crop_size_min=0",
        ]
        cmd += ["--set", "train.knn_every=0", "--set", "train.log_every=5", "--stop-after-steps", str(steps), *flags]
        subprocess.run(cmd, check=True, env={**os.environ, **env_extra}, capture_output=True)
        record = json.loads((out / "config.json").read_text())
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps_rows = [r for r in rows if r["kind"] == "step"]
    # Steps/s after the first window (oneDNN builds its kernels on the first steps).
    first, last = steps_rows[0], steps_rows[-1]
    rate = (last["step"] - first["step"]) / (last["seconds"] - first["seconds"])
    speed = record["speed"]
    return Result(
        speed["precision"],
        "channels_last" if speed["channels_last"] else "nchw",
        rate,
        float(speed.get("trial_wall_seconds", 0.0)),
        speed["machine"]["cpu_capability"],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("LATENT_SEARCH_DATA"), help="collection")
    parser.add_argument("--steps", type=int, default=55, help="steps per run (the first 5 are not timed)")
    parser.add_argument("--amp-steps", type=int, default=10, help="steps of the forced --amp rows")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if not args.data:
        parser.error("pass --data PATH or set LATENT_SEARCH_DATA")
    rows = []
    for mode, env_extra in MODES.items():
        results = {}
        for name, flags in SETTINGS.items():
            steps = args.amp_steps if name == "--amp" else args.steps
            results[name] = run(args.data, env_extra, flags, steps)
            print(mode, name, results[name], flush=True)
        base = results["--no-amp"].rate
        for name, r in results.items():
            rows.append(
                [
                    mode,
                    r.capability,
                    name,
                    f"{r.precision}+{r.layout}",
                    f"{r.rate:.2f}",
                    f"{r.rate / base:.2f}",
                    f"{r.trial:.1f} s",
                ]
            )
    body = (
        f"## Training precision chosen by measurement ({today()})\n\n"
        f"`uv run python -m bench.precision --data {args.data} --steps {args.steps}` on {machine()}. "
        "cpu-small preset, batch 256 × 2 views of 24 px, steps/s over the steps after the first 5 "
        f"({args.steps - 5} for the default and `--no-amp` rows, {args.amp_steps - 5} for forced `--amp`). "
        "*AVX2 only* restricts torch and oneDNN to AVX2 kernels on the same CPU "
        "(`ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`), which is how a CPU without native bf16 runs; "
        "no second kind of CPU was available. *trial* is the time the job spent timing candidates before "
        "its first step (none when the setting is forced).\n\n"
        + table(["CPU mode", "torch capability", "command", "trained with", "steps/s", "vs --no-amp", "trial"], rows)
    )
    print(body)
    if not args.no_write:
        write_section("precision", body)


if __name__ == "__main__":
    main()
