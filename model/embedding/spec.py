"""What an encoder is, as plain data: `EncoderConfig` describes f (and the size of the head g that
trained it: model.training.simclr). It is saved inside every encoder.pt, so that serving rebuilds
f without any training flags. No torch here: the CLI and the service read it without one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

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
