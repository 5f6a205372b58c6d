"""Backbone f: the network whose pooled feature h = f(x) is the vector search uses, built from
its EncoderConfig (model.embedding.spec)."""

from __future__ import annotations

import torch
from torch import nn

from model.embedding.efficientnet_lite import EfficientNetLite
from model.embedding.spec import EncoderConfig


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
    """f and the width of h (randomly initialised: starting points load in model.embedding.pretrained)."""
    if cfg.arch == "small_cnn":
        net = SmallCNN(cfg.width)
        return net, net.out_dim
    if cfg.arch == "efficientnet_lite0":
        lite = EfficientNetLite()
        return lite, lite.out_dim
    return _resnet(cfg.arch, cfg.small_stem)
