"""How fast the shipped network embeds, per runtime, input side and batch: what the first index's
side (app/cli/serve.py FIRST_SIDE) and batch were chosen from.

    uv run python -m bench.embed_rates --sides 128 160 224 --batches 16 64

Random pixels (the speed does not depend on them); one warm-up batch, then the median of 3.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.report import machine, table, today, write_section
from model.embedding.embed import embed_tensor
from model.embedding.encoder_file import save_encoder
from model.embedding.onnx_export import export_onnx
from model.embedding.onnx_runtime import load_onnx_encoder
from model.embedding.pretrained import as_is


def rate(call: Callable[[Any], object], batch: Any) -> float:
    """Images per second of `call` on `batch`: one warm-up call, then the median of three."""
    call(batch)
    times = []
    for _ in range(3):
        started = time.perf_counter()
        call(batch)
        times.append(time.perf_counter() - started)
    return len(batch) / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--network", default="efficientnet_lite0")
    parser.add_argument("--sides", type=int, nargs="+", default=[128, 160, 224])
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    rows = []
    for side in args.sides:
        net, cfg, dim = as_is(args.network, side)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "encoder.pt"
            save_encoder(path, net, cfg, dim)
            onnx = load_onnx_encoder(export_onnx(path))
            for batch in args.batches:
                pixels = np.random.default_rng(0).integers(0, 256, (batch, side, side, 3), dtype=np.uint8)
                tensor = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()
                by_torch = rate(partial(embed_tensor, net, mean=cfg.mean, std=cfg.std), tensor)
                by_onnx = rate(onnx.embed_pixels, pixels)
                rows.append([str(side), str(batch), f"{by_torch:.0f}", f"{by_onnx:.0f}"])
                print(rows[-1], flush=True)
    body = "\n".join(
        [
            f"## Embedding rates of {args.network} as it ships, by runtime, side and batch",
            "",
            f"Measured {today()} on {machine()}:",
            "",
            "```bash",
            f"uv run python -m bench.embed_rates --sides {' '.join(map(str, args.sides))} "
            f"--batches {' '.join(map(str, args.batches))}",
            "```",
            "",
            table(["side (px)", "batch", "torch (images/s)", "ONNX Runtime (images/s)"], rows),
        ]
    )
    if not args.no_write:
        write_section("embed-rates", body)


if __name__ == "__main__":
    main()
