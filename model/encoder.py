"""Backbone f (the representation h used for search) and projection head g (training only).

SimCLR (Chen et al. 2020): h = f(x) is a pooled CNN feature; z = g(h) is a small MLP
whose output feeds the contrastive loss and is thrown away after training.
"""

from __future__ import annotations

import torch
from torch import nn

from model.config import EncoderConfig
from model.efficientnet_lite import EfficientNetLite


def _conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """Six 3x3 conv layers in three stages (w, 2w | 4w, 4w | 8w, 8w), sized for CPU training.

    (B, 3, H, W) -> (B, 8w); max-pool between stages, global average pool at the end, so it
    accepts any input side >= 8.
    """

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        w = width
        self.features = nn.Sequential(
            _conv_bn(3, w),
            _conv_bn(w, 2 * w),
            nn.MaxPool2d(2),
            _conv_bn(2 * w, 4 * w),
            _conv_bn(4 * w, 4 * w),
            nn.MaxPool2d(2),
            _conv_bn(4 * w, 8 * w),
            _conv_bn(8 * w, 8 * w),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.out_dim = 8 * w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.features(x)
        return out


def _resnet(arch: str, small_stem: bool) -> tuple[nn.Module, int]:
    """torchvision ResNet without its classifier; CIFAR-style stem for small inputs."""
    import torchvision  # only the ResNets need it (the small CNN serves without torchvision)

    net = getattr(torchvision.models, arch)(weights=None)
    if small_stem:
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    out_dim = int(net.fc.in_features)
    net.fc = nn.Identity()
    return net, out_dim


def build_backbone(cfg: EncoderConfig) -> tuple[nn.Module, int]:
    """f and the width of h (randomly initialised: starting points load in model.pretrained)."""
    if cfg.arch == "small_cnn":
        net = SmallCNN(cfg.width)
        return net, net.out_dim
    if cfg.arch == "efficientnet_lite0":
        lite = EfficientNetLite()
        return lite, lite.out_dim
    return _resnet(cfg.arch, cfg.small_stem)


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
