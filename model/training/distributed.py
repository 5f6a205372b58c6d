"""Data-parallel training: gradient-keeping collectives and global batch norm (the process group
itself: model.common.processes).

Why gathering must keep gradients: with SimCLR the negatives of an image are the other images
of the *global* batch. Process k computes the loss L_k of its own anchors against candidates
gathered from every process, so L_k depends on the projections of every process. The gradient of
the total sum_k L_k with respect to process r's projections is sum_k dL_k/dz_r: the backward of
`all_gather_with_grad` all-reduces the incoming gradient and keeps this process's slice. With
DDP's gradient averaging on top, N processes with batch B take exactly the step that one
process takes with batch N*B (tests/model/test_distributed.py checks this with gloo on CPU).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, cast

import torch
import torch.distributed as dist
from torch import nn

from model.common.processes import current


class _GatherWithGrad(torch.autograd.Function):
    """cat over processes of (n, ...) tensors of one shape; backward: sum of all processes' grads."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        world = dist.get_world_size()
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        ctx.rank, ctx.n = dist.get_rank(), x.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n]


class _AllReduceWithGrad(torch.autograd.Function):
    """Sum over processes; the backward of a sum that every process uses is again a sum."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        out = x.contiguous().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


_LOCAL_ONLY: ContextVar[bool] = ContextVar("local_only", default=False)


@contextmanager
def local_only() -> Iterator[None]:
    """Within it, the loss's gathers see this process's batch alone: for work that processes
    do a different number of times (timed trial steps), where a collective would deadlock."""
    token = _LOCAL_ONLY.set(True)
    try:
        yield
    finally:
        _LOCAL_ONLY.reset(token)


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """(n, ...) on each of W processes -> (W * n, ...), rank order; gradients flow back to every rank."""
    if not current().enabled or _LOCAL_ONLY.get():
        return x
    return cast(torch.Tensor, _GatherWithGrad.apply(x))


def all_reduce_with_grad(x: torch.Tensor) -> torch.Tensor:
    if not current().enabled:
        return x
    return cast(torch.Tensor, _AllReduceWithGrad.apply(x))


def all_gather_plain(x: torch.Tensor) -> torch.Tensor:
    """Gather without gradients (labels, indices)."""
    info = current()
    if not info.enabled:
        return x
    parts = [torch.empty_like(x) for _ in range(info.world_size)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def mean_over_processes(value: torch.Tensor) -> torch.Tensor:
    """A detached scalar averaged over processes (the global batch's loss, for logs and NaN checks)."""
    info = current()
    value = value.detach().float()
    if info.enabled:
        value = value.clone()  # all_reduce works in place
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= info.world_size
    return value


def any_process(flag: bool, device: torch.device) -> bool:
    """True on every process when any process says True (e.g. a time budget ran out on one)."""
    if not current().enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def slowest_process(seconds: dict[Any, float], device: torch.device) -> dict[Any, float]:
    """Each timing's maximum over processes, so that every process makes the same timed choice.

    The keys must be the same on every process; an infinite value (a trial cut short) stays so.
    """
    if not current().enabled or not seconds:
        return seconds
    keys = sorted(seconds, key=str)
    t = torch.tensor([min(seconds[k], 1e300) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return {k: (float("inf") if v >= 1e300 else float(v)) for k, v in zip(keys, t.tolist(), strict=True)}


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics cover the batches of all processes (CPU and GPU).

    SimCLR normalises over the global batch (Chen et al. 2020, section 2.2, "Global BN") so that a
    process cannot learn a shortcut from its local statistics. torch's SyncBatchNorm does this on
    GPUs only; this one all-reduces (sum, sum of squares, count) with gradients so it also runs on
    CPU processes (gloo). `convert_batchnorm` uses SyncBatchNorm on CUDA and this elsewhere.
    Shapes: (N, C) or (N, C, ...).
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected (N, C, ...) input, got shape {tuple(input.shape)}")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and current().enabled):
            return super().forward(input)
        channels = input.shape[1]
        dims = [0, *range(2, input.dim())]
        x = input.float()
        count = torch.tensor([input.numel() / channels], device=input.device, dtype=torch.float32)
        stats = all_reduce_with_grad(torch.cat([x.sum(dims), (x * x).sum(dims), count]))
        total, squares, n = stats[:channels], stats[channels : 2 * channels], stats[-1]
        mean = total / n
        var = (squares / n - mean * mean).clamp_min(0.0)  # biased, as BN normalises with it
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                assert self.num_batches_tracked is not None
                self.num_batches_tracked.add_(1)
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var.detach() * n.detach() / (n.detach() - 1).clamp_min(1.0)
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), momentum)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)
        shape = [1, channels] + [1] * (input.dim() - 2)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(input.dtype)


def convert_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm{1,2,3}d -> global BN over all processes (SyncBatchNorm on CUDA).

    Containers are changed in place (and returned); parameters and buffers are shared, not copied.
    """
    if device.type == "cuda":
        return cast(nn.Module, nn.SyncBatchNorm.convert_sync_batchnorm(module))  # type: ignore[no-untyped-call]
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        new = GlobalBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        # The same Parameter and buffer objects, so an optimizer built earlier still owns them.
        if module.affine:
            new.weight, new.bias = module.weight, module.bias
        if module.track_running_stats:
            new.running_mean, new.running_var = module.running_mean, module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        return new
    for name, child in module.named_children():
        module.add_module(name, convert_batchnorm(child, device))
    return module
