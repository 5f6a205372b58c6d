"""SimCLR's model for training: backbone f followed by projection head g (Chen et al. 2020).

h = f(x) is the pooled feature search uses (model.embedding.backbones); z = g(h) is a small MLP
whose output feeds the contrastive loss and is thrown away after training.
"""

from __future__ import annotations

import torch
from torch import nn

from model.embedding.backbones import build_backbone
from model.embedding.efficientnet_lite import EfficientNetLite
from model.embedding.spec import EncoderConfig


def freeze(backbone: nn.Module, *, blocks: int, batch_norm: bool) -> None:
    """Leave the stem and the first `blocks` blocks of a pretrained f as they are (no gradients)."""
    if blocks and isinstance(backbone, EfficientNetLite):
        for part in (backbone._conv_stem, backbone._bn0, *list(backbone._blocks)[:blocks]):
            part.requires_grad_(False)
    if batch_norm:  # the affine parameters too: the statistics they pair with stay fixed
        for mod in backbone.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.requires_grad_(False)


def set_train_mode(model: nn.Module, freeze_bn: bool) -> None:
    """model.train(), except batch norm inside f stays on its (pretrained) running statistics."""
    model.train()
    backbone = getattr(model, "backbone", None)
    if freeze_bn and backbone is not None:
        for mod in backbone.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.eval()


class ProjectionHead(nn.Module):
    """g: `layers` linear layers, BN + ReLU between them (SimCLR v1 uses 2). (B, d) -> (B, out)."""

    def __init__(self, in_dim: int, hidden: int, out: int, layers: int = 2) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError("a projection head needs at least one layer")
        mods: list[nn.Module] = []
        dim = in_dim
        for _ in range(layers - 1):
            mods += [nn.Linear(dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)]
            dim = hidden
        mods.append(nn.Linear(dim, out))
        self.net = nn.Sequential(*mods)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(h)
        return out


class SimCLRModel(nn.Module):
    """f followed by g. forward(x) -> (h, z) with h: (B, d_h), z: (B, d_z)."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone, self.feature_dim = build_backbone(cfg)
        self.head = ProjectionHead(self.feature_dim, cfg.proj_hidden, cfg.proj_out, cfg.proj_layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.backbone(x)
        return h, self.head(h)
