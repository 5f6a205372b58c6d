"""Training-step throughput of the encoders on random tensors (no data pipeline).

    uv run python -m bench.throughput

Forward + backward + SGD step of f and g on 2 x batch random views, NT-Xent loss, with and
without bf16 autocast and channels_last, at several view sizes. Reports views/s.
"""

from __future__ import annotations

import argparse
import time

import torch

from bench.report import machine, table, today, write_section
from model.embedding.spec import EncoderConfig
from model.training.loss import NTXentLoss
from model.training.simclr import SimCLRModel


def views_per_second(cfg: EncoderConfig, size: int, bf16: bool, channels_last: bool, batch: int, steps: int) -> float:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = SimCLRModel(cfg).to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss_fn = NTXentLoss(0.2)
    x = torch.randn(2 * batch, 3, size, size, device=device).contiguous(memory_format=fmt)
    for i in range(steps + 2):
        if i == 2:  # two warm-up steps
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            _, z = model(x)
        z1, z2 = z.float().chunk(2)
        loss = loss_fn(z1, z2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * batch * steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    grid = [
        (32, 32, False, False),
        (32, 32, False, True),
        (32, 32, True, True),
        (32, 24, True, True),
        (32, 16, True, True),
        (24, 32, True, True),
        (24, 24, True, True),
        (24, 16, True, True),
    ]
    rows = []
    for width, size, bf16, cl in grid:
        vps = views_per_second(EncoderConfig(arch="small_cnn", width=width), size, bf16, cl, args.batch, args.steps)
        print(f"width {width} {size}px bf16={bf16} channels_last={cl}: {vps:.0f} views/s", flush=True)
        rows.append([str(width), str(size), "yes" if bf16 else "no", "yes" if cl else "no", f"{vps:.0f}"])
    base = float(rows[0][-1])
    for row in rows:
        row.append(f"{float(row[-1]) / base:.1f}x")
    body = (
        f"## Small-CNN training throughput ({today()})\n\n`uv run python -m bench.throughput` on {machine()}: "
        f"forward + backward + SGD step on random tensors, batch {args.batch} × 2 views, {args.steps} timed steps "
        "after 2 warm-up steps.\n\n"
        + table(["width", "view px", "bf16 autocast", "channels_last", "views/s", "vs fp32 32 px"], rows)
    )
    print(body)
    if not args.no_write:
        write_section("throughput", body)


if __name__ == "__main__":
    main()
