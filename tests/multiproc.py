"""Run a function in several CPU processes joined by the gloo backend, as torchrun would."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
import torch.multiprocessing as mp

from tests.conftest import free_port


def _entry(rank: int, world: int, port: int, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
    # The variables torchrun sets; model.training.distributed.setup() (or init_process_group) reads them.
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world),
    )
    torch.set_num_threads(1)
    fn(rank, *args)


def run_processes(world: int, fn: Callable[..., None], *args: Any) -> None:
    """fn(rank, *args) in `world` fresh processes; raises if any of them fails."""
    mp.start_processes(_entry, args=(world, free_port(), fn, args), nprocs=world, join=True, start_method="spawn")
