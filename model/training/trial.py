"""Timed training steps on a copy of the run's model: what the speed choices are measured with.

`model.training.precision` times them per precision and memory layout on a small batch; `model.training.budget`
times them at the run's batch and view sizes to plan the step count. Each step is a real one
(per-sample augmentation, forward, the teacher's forward when distilling, NT-Xent, backward,
an SGD step) on a deep copy, with random
pixels and generators of its own: the run's model, optimizer and random streams are untouched.
"""

from __future__ import annotations

import copy
import time

import torch

from model.training.augment import SimCLRAugment
from model.training.config import RunConfig
from model.training.distributed import local_only
from model.training.loss import NTXentLoss
from model.training.simclr import set_train_mode


class TrialSteps:
    def __init__(
        self,
        model: torch.nn.Module,
        cfg: RunConfig,
        device: torch.device,
        images: int,
        teacher: torch.nn.Module | None = None,
    ) -> None:
        self.device = device
        self.teacher = teacher  # a distilled run's frozen network: its forward is part of each step
        self.model = copy.deepcopy(model).to(device)
        set_train_mode(self.model, cfg.train.freeze_bn)  # as the run trains: frozen batch norm stays so
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.SGD(trainable, lr=1e-6, momentum=0.9)
        self.augment = SimCLRAugment(cfg.augment, cfg.encoder.mean, cfg.encoder.std)
        self.loss = NTXentLoss(cfg.train.temperature)
        self.gen = torch.Generator(device=device).manual_seed(0)
        side = cfg.encoder.image_size
        pixels = torch.randint(
            0, 256, (images, 3, side, side), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
        )
        self.images = pixels.to(device)

    def run(self, size: int, *, bf16: bool, channels_last: bool) -> float:
        """Seconds of one step with `size`-px views."""
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.model.to(memory_format=fmt)
        self._sync()
        start = time.perf_counter()
        v1, v2 = self.augment(self.images, self.gen, size)
        x = torch.cat([v1, v2]).contiguous(memory_format=fmt)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
            _, z = self.model(x)
            if self.teacher is not None:
                with torch.no_grad():
                    self.teacher(x)
        # Processes may run different numbers of trial steps (slow candidates are cut on each
        # one's own timings): no collective may happen here, or they would wait for each other.
        with local_only():
            loss = self.loss(*z.float().chunk(2))
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
        self.opt.step()
        self._sync()
        return time.perf_counter() - start

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
