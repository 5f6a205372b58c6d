"""The named recipes (`--preset`): one registry, each recipe a function that returns its RunConfig."""

from __future__ import annotations

import functools
from collections.abc import Callable

from model.embedding.spec import EncoderConfig
from model.training.config import AugmentConfig, RunConfig, TrainConfig

PRESETS: dict[str, Callable[[], RunConfig]] = {}  # name -> the preset's defaults, in registration order


def _preset(*names: str) -> Callable[[Callable[[str], RunConfig]], Callable[[str], RunConfig]]:
    def register(make: Callable[[str], RunConfig]) -> Callable[[str], RunConfig]:
        for name in names:
            PRESETS[name] = functools.partial(make, name)
        return make

    return register


def preset(name: str) -> RunConfig:
    """The defaults for a named preset (a fresh copy each call)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]()


@_preset("cpu-small")
def _cpu_small(name: str) -> RunConfig:
    """A 6-conv CNN for small images, trained from scratch within a 12-minute command."""
    # Measured on 2 CPU cores (BENCHMARKS.md): a narrow CNN trained on small views that
    # grow from 16 to 24 px, evaluated on the full 32 px images (train/test resolution
    # discrepancy, Touvron et al. 2019: RandomResizedCrop magnifies objects, so testing
    # above the training resolution helps), tau = 0.2. Precision and memory format are timed
    # per machine (bf16 is 2x faster with native bf16 and ~13x slower where it is emulated).
    # Views turned by up to 10 degrees (corners black or white): on CIFAR-10 copies turned by 10
    # degrees are found 0.577 instead of 0.280 of the time (0.963 with the query views), at -0.4
    # kNN points (one run each, BENCHMARKS.md "Rotated views").
    return RunConfig(
        preset=name,
        encoder=EncoderConfig(arch="small_cnn", width=24, proj_hidden=512, proj_out=128, image_size=32),
        augment=AugmentConfig(
            crop_size=24, crop_size_min=16, crop_ramp_end=0.75, crop_scale=(0.2, 1.0), rotate_deg=10.0
        ),
        train=TrainConfig(
            epochs=10,  # used only with --epochs: the default is the time budget below
            minutes=12.0,  # the whole command: decode, training, the encoder choice, saving
            batch_size=256,
            lr=0.3,
            temperature=0.2,
            warmup_epochs=0.25,
            knn_every=5,
            rival="efficientnet_lite0",  # kept instead when it retrieves held-out copies better
        ),
    )


@_preset("resnet18", "resnet50")
def _resnet(name: str) -> RunConfig:
    """The GPU recipes (small-image stem)."""
    # The SimCLR CIFAR recipe (tau 0.5, jitter 0.5, no blur at 32 px, SGD lr 0.06 x batch / 128,
    # wd 5e-4, cosine); not yet measured on a GPU in this project (issue 7).
    return RunConfig(
        preset=name,
        encoder=EncoderConfig(arch="resnet18" if name == "resnet18" else "resnet50", proj_hidden=2048, proj_out=128),
        augment=AugmentConfig(crop_size=32, crop_scale=(0.2, 1.0)),
        train=TrainConfig(
            epochs=200,
            batch_size=512,
            lr=0.06 * 512 / 128,
            temperature=0.5,
            warmup_epochs=10,
            knn_every=10,
            knn_bank=50_000,
            rival="efficientnet_lite0",
        ),
    )


@_preset("pretrained-lite0")
def _pretrained_lite0(name: str) -> RunConfig:
    """Contrastive adaptation of a pretrained network (model.embedding.pretrained)."""
    # Contrastive adaptation of ImageNet EfficientNet-Lite0 (weights from an installed package,
    # model.embedding.pretrained) to the collection: a new head at full rate, f at a tenth of it with
    # its batch norm on the pretrained statistics and the stem + first 3 blocks frozen, and f's
    # batch similarities distilled toward the frozen network it started from (train.distill:
    # on flowers5, kNN 62.8 % without it and 74.2 % with it, against 72.2 % as it ships;
    # BENCHMARKS.md "Encoder choice"). 96-px views on the CPU keep a step affordable (depthwise
    # convolutions are slow in torch there); f embeds at 128 px, or at the collection's own
    # resolution up to 224 px when `auto` picks this preset (model.collections.survey.embed_side).
    return RunConfig(
        preset=name,
        encoder=EncoderConfig(
            arch="efficientnet_lite0",
            init="efficientnet_lite0",
            image_size=128,
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            proj_hidden=1280,
            proj_out=128,
        ),
        augment=AugmentConfig(crop_size=96, crop_scale=(0.2, 1.0), jitter_strength=0.5, blur_p=0.0),
        train=TrainConfig(
            minutes=10.0,  # the whole command; 4 minutes of steps gave +2.0 kNN points on flowers5, +2.6 on brain_mri4
            batch_size=64,
            lr=0.05,
            temperature=0.2,
            warmup_epochs=0.05,
            knn_every=1,
            backbone_lr_scale=0.1,
            freeze_bn=True,
            frozen_blocks=3,
            distill=1.0,
            health_eval=256,  # the health check between epochs embeds at full size in torch: keep it short
        ),
    )
