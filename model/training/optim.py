"""Optimisers (SGD with momentum, LARS) and the warm-up + cosine learning-rate schedule."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from model.training.config import TrainConfig


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling (You et al. 2017).

    Each weight matrix's step is scaled by trust = eta * ||w|| / ||g + wd * w||. Groups with
    `lars=False` (biases and norm layers, as in SimCLR) take plain SGD steps without decay.
    """

    def __init__(
        self,
        params: Iterable[dict[str, object]],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.001,
    ) -> None:
        if lr <= 0:
            raise ValueError("lr must be > 0")
        super().__init__(
            params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "eta": eta, "lars": True}
        )

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if group["lars"]:
                    grad = grad.add(p, alpha=group["weight_decay"])
                    w_norm, g_norm = torch.linalg.norm(p), torch.linalg.norm(grad)
                    trust = torch.where(
                        (w_norm > 0) & (g_norm > 0), group["eta"] * w_norm / g_norm, torch.ones_like(w_norm)
                    )
                    grad = grad.mul(trust)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.clone(grad).detach()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(grad)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])


def param_groups(model: nn.Module, weight_decay: float, backbone_lr_scale: float = 1.0) -> list[dict[str, object]]:
    """Weight decay (and LARS scaling) on weight matrices only, not on biases or norm layers.

    With `backbone_lr_scale` != 1 the backbone's parameters (model.backbone) get their own groups,
    whose learning rate is that fraction of the schedule's (a pretrained f adapts slowly while
    the new head g learns at full rate); each group carries its "lr_scale".
    """
    backbone = getattr(model, "backbone", None)
    in_backbone = {id(p) for p in backbone.parameters()} if backbone is not None and backbone_lr_scale != 1 else set()
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for param in model.parameters():
        if param.requires_grad:
            groups.setdefault((id(param) in in_backbone, param.ndim > 1), []).append(param)
    out: list[dict[str, object]] = []
    for is_backbone in (False, True):
        scale = backbone_lr_scale if is_backbone else 1.0
        for decays in (True, False):
            params = groups.get((is_backbone, decays), [])
            if params or not is_backbone:
                out.append(
                    {
                        "params": params,
                        "weight_decay": weight_decay if decays else 0.0,
                        "lars": decays,
                        "lr_scale": scale,
                    }
                )
    return out


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay, cfg.backbone_lr_scale)
    if cfg.optimizer == "lars":
        return LARS(groups, lr=cfg.lr, momentum=cfg.momentum)
    for group in groups:
        group.pop("lars")
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)


def lr_at(step: float, total_steps: int, warmup_steps: int, peak: float, final_fraction: float = 0.0) -> float:
    """Linear warm-up from ~0 to `peak`, then half-cosine decay to `peak * final_fraction`
    (`step`: a position on the schedule, fractional after a re-plan, model.training.pace)."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return peak * (final_fraction + (1 - final_fraction) * cosine)
