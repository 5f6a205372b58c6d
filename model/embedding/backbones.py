"""Backbone f: the network whose pooled feature h = f(x) is the vector search uses.

`EncoderConfig` describes f (and the size of the head g that trained it: model.training.simclr);
it is saved inside every encoder.pt, so that serving rebuilds f without any training flags.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import nn

from model.embedding.efficientnet_lite import EfficientNetLite

# Each closed set is written once, as a Literal; its values (for checks and CLI help) come from it.
Arch = Literal["small_cnn", "resnet18", "resnet34", "resnet50", "efficientnet_lite0"]
ARCHS: tuple[str, ...] = get_args(Arch)

# Per-channel statistics of natural images (CIFAR-10's are within 0.03 of these).
DEFAULT_MEAN = (0.485, 0.456, 0.406)
DEFAULT_STD = (0.229, 0.224, 0.225)


@dataclass
class EncoderConfig:
    """Backbone f and projection head g."""

    arch: Arch = "small_cnn"
    width: int = 32  # base channel count of the small CNN (ignored by ResNets)
    small_stem: bool = True  # 3x3 stem, no max-pool: for inputs <= 64 px
    proj_layers: int = 2  # linear layers in g (>= 1)
    proj_hidden: int = 512
    proj_out: int = 128
    image_size: int = 32  # side of the square input f sees at inference
    init: str = ""  # starting point whose weights f starts from (model.embedding.pretrained); "" = from scratch
    mean: tuple[float, float, float] = DEFAULT_MEAN
    std: tuple[float, float, float] = DEFAULT_STD

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}")
        if self.proj_layers < 1 or self.proj_hidden < 1 or self.proj_out < 1:
            raise ValueError("projection head sizes must be >= 1")
        if self.image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {self.image_size}")
        self.mean = tuple(self.mean)  # type: ignore[assignment]
        self.std = tuple(self.std)  # type: ignore[assignment]


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
