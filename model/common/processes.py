"""The process group: torchrun's environment (read here and nowhere else), joining and leaving.

Launch any latent-search command under torchrun (one process per GPU, or several CPU processes
with the gloo backend):

    torchrun --nproc-per-node 4 -m app.cli train --data DATA --out runs/x
    torchrun --nnodes 2 --node-rank R --rdzv-backend c10d --rdzv-endpoint HOST:29400 \
        --nproc-per-node 8 -m app.cli train ...

Index builds shard by rank (index.build); training's collectives: model.training.distributed.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass(frozen=True)
class TorchrunEnv:
    """What torchrun tells each process it starts (all 0/1 when there is no torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1


def torchrun_env() -> TorchrunEnv:
    """The one place torchrun's variables are read."""
    env = os.environ
    return TorchrunEnv(
        rank=int(env.get("RANK", "0")),
        world_size=int(env.get("WORLD_SIZE", "1")),
        local_rank=int(env.get("LOCAL_RANK", "0")),
        local_world_size=int(env.get("LOCAL_WORLD_SIZE", "1")),
    )


def launched_by_torchrun() -> bool:
    return torchrun_env().world_size > 1


def current() -> DistInfo:
    """This process's place in the process group (rank 0 of 1 when there is none)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    return DistInfo(dist.get_rank(), dist.get_world_size())


def setup(device: str | None = None) -> tuple[DistInfo, torch.device, bool]:
    """Join the process group described by torchrun's environment and pick this process's device.

    Returns (info, device, created): `created` is True when this call initialised the group (the
    caller then owns `teardown`). Without torchrun's variables it is a one-process no-op.
    """
    if not launched_by_torchrun() and not dist.is_initialized():
        return DistInfo(), torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu")), False
    local_rank = torchrun_env().local_rank
    use_cuda = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
    created = False
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local_rank)
            # NCCL for the training collectives on GPU tensors, gloo for CPU ones (object gathers).
            dist.init_process_group("cpu:gloo,cuda:nccl")
        else:
            dist.init_process_group("gloo")
        created = True
    dev = torch.device("cuda", local_rank) if use_cuda else torch.device(device or "cpu")
    return current(), dev, created


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if current().enabled:
        dist.barrier()


def process_age() -> float:
    """Seconds since this process started (its interpreter and imports included): what a user's
    stopwatch, or `/usr/bin/time`, counts for a command. Linux: from /proc; elsewhere: since this
    module was imported."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.monotonic() - _IMPORTED


_IMPORTED = time.monotonic()
