"""Typed configuration for the SimCLR training job (the presets' defaults: model.training.presets).

A `RunConfig` is saved (as a plain dict) inside every checkpoint and `encoder.pt`, so
serving and evaluation can rebuild the encoder without any training flags.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, get_args

from model.embedding.spec import EncoderConfig

Optim = Literal["sgd", "lars"]
LossName = Literal["ntxent", "supcon"]
OPTIMIZERS: tuple[str, ...] = get_args(Optim)
LOSSES: tuple[str, ...] = get_args(LossName)


@dataclass
class AugmentConfig:
    """SimCLR's augmentation family (Chen et al. 2020, appendix A)."""

    crop_size: int = 32  # side of the views fed to the network at the end of training
    # Progressive resizing: views start at crop_size_min px and grow linearly (in steps of
    # 4 px) to crop_size at crop_ramp_end of training. 0 turns it off. Small views early
    # buy many more steps per second; the last part of training runs at full size.
    crop_size_min: int = 0
    crop_ramp_end: float = 0.75
    crop_scale: tuple[float, float] = (0.2, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    # Edits of the kind people make (model.embedding.edits): rotations up to rotate_deg, and with
    # probability zoom_out_p a zoom-out by up to zoom_out_max that frames the view in black or white.
    rotate_deg: float = 0.0
    zoom_out_p: float = 0.0
    zoom_out_max: float = 1.3
    jitter_strength: float = 0.5  # s: brightness/contrast/saturation 0.8s, hue 0.2s
    jitter_p: float = 0.8
    gray_p: float = 0.2
    blur_p: float = 0.0  # off by default for images <= 64 px
    blur_sigma: tuple[float, float] = (0.1, 2.0)

    def __post_init__(self) -> None:
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < lo <= hi <= 1, got {self.crop_scale}")
        if self.rotate_deg < 0 or self.zoom_out_max < 1:
            raise ValueError("rotate_deg must be >= 0 and zoom_out_max >= 1")
        for name in ("flip_p", "jitter_p", "gray_p", "blur_p", "zoom_out_p"):
            p = getattr(self, name)
            if not 0 <= p <= 1:
                raise ValueError(f"{name} must be a probability, got {p}")
        if self.jitter_strength < 0:
            raise ValueError("jitter_strength must be >= 0")
        if self.crop_size_min and not 8 <= self.crop_size_min <= self.crop_size:
            raise ValueError("crop_size_min must be 0 (off) or between 8 and crop_size")
        if not 0 < self.crop_ramp_end <= 1:
            raise ValueError("crop_ramp_end must be in (0, 1]")
        self.crop_scale = tuple(self.crop_scale)  # type: ignore[assignment]
        self.crop_ratio = tuple(self.crop_ratio)  # type: ignore[assignment]
        self.blur_sigma = tuple(self.blur_sigma)  # type: ignore[assignment]


@dataclass
class TrainConfig:
    """Optimisation, loss and bookkeeping."""

    epochs: int = 10  # used when minutes is 0
    # The whole command's wall time (decode, training, the checks, the encoder choice, saving):
    # the step count is planned to fill what is left of it (model.training.budget). 0: epochs.
    minutes: float = 0.0
    batch_size: int = 256  # per process: N processes train with a global batch of N * batch_size
    lr: float = 0.6  # peak learning rate (already scaled for the global batch)
    weight_decay: float = 5e-4
    momentum: float = 0.9
    optimizer: Optim = "sgd"
    warmup_epochs: float = 0.5
    temperature: float = 0.5
    loss: LossName = "ntxent"
    seed: int = 0
    log_every: int = 20  # steps between metric rows
    checkpoint_every: int = 0  # steps between mid-epoch checkpoints (0: end of epoch only)
    knn_every: int = 1  # epochs between kNN evaluations when labels exist (0: never)
    knn_k: int = 200
    knn_bank: int = 10_000  # train images in the kNN memory bank during training
    health_sample: int = 1024  # held-out images: the health metrics' pool and the end-of-run judge's sample
    health_eval: int = 1024  # of those, how many the health check between epochs embeds
    # None: chosen per run by timing trial steps on the device (model.training.precision); the chosen value
    # is what config.json and checkpoints hold, so that a resumed run trains alike.
    amp: bool | None = None  # bf16 autocast
    channels_last: bool | None = None
    compile: bool = False
    sync_bn: bool = True  # under data parallelism: batch-norm statistics over the global batch
    num_workers: int = 2  # decode workers when streaming (collections too big to cache)
    cache_max_bytes: int = 2 * 1024**3
    device_cache_max_bytes: int = 4 * 1024**3  # the cache moves to the GPU when it is at most this
    max_minutes: float = 0.0  # stop cleanly after this much training-step time (0: no limit)
    # Adapting a pretrained f: its learning rate as a fraction of the head's, its batch-norm
    # layers kept on the pretrained statistics, its first blocks left as they are.
    backbone_lr_scale: float = 1.0
    freeze_bn: bool = False
    frozen_blocks: int = 0
    # A pretrained network (model.embedding.pretrained) that a run from scratch must beat, as it ships, on
    # held-out copy retrieval at the end (model.training.adapt); "" compares with nothing.
    rival: str = ""
    # Adapting a pretrained f: weight of the similarity distillation toward the frozen network
    # it started from (model.training.loss.SimilarityDistillation, on h), and that loss's temperature.
    distill: float = 0.0
    distill_temperature: float = 0.1

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError("epochs must be >= 1")
        if self.minutes < 0 or self.max_minutes < 0:
            raise ValueError("minutes and max_minutes must be >= 0")
        if self.batch_size < 2:
            raise ValueError("batch_size must be >= 2 (contrastive learning needs negatives)")
        if self.lr <= 0:
            raise ValueError("lr must be > 0")
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be 'sgd' or 'lars', got {self.optimizer!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be 'ntxent' or 'supcon', got {self.loss!r}")
        if not 0 <= self.backbone_lr_scale <= 1:
            raise ValueError(f"backbone_lr_scale must be in [0, 1], got {self.backbone_lr_scale}")
        if self.frozen_blocks < 0:
            raise ValueError("frozen_blocks must be >= 0")
        if self.distill < 0 or self.distill_temperature <= 0:
            raise ValueError("distill must be >= 0 and distill_temperature > 0")


@dataclass
class RunConfig:
    preset: str = "cpu-small"
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """From `to_dict`'s output; keys a section no longer has (a run folder written by an
        earlier version, e.g. its step plan, now model.training.budget.Plan) are left out."""

        def known(section: type, values: dict[str, Any]) -> dict[str, Any]:
            names = {f.name for f in fields(section)}
            return {k: v for k, v in values.items() if k in names}

        return cls(
            preset=str(data.get("preset", "custom")),
            encoder=EncoderConfig(**known(EncoderConfig, data["encoder"])),
            augment=AugmentConfig(**known(AugmentConfig, data["augment"])),
            train=TrainConfig(**known(TrainConfig, data["train"])),
        )


def override(cfg: RunConfig, **values: Any) -> RunConfig:
    """Return a copy of `cfg` with dotted keys replaced, e.g. override(cfg, **{"train.lr": 0.1}).

    `None` values are ignored so that CLI options left unset keep the preset's default.
    """
    data = cfg.to_dict()
    for key, value in values.items():
        if value is None:
            continue
        section, _, name = key.partition(".")
        if section not in ("encoder", "augment", "train") or name not in data[section]:
            raise ValueError(f"unknown config key {key!r}")
        data[section][name] = value
    return RunConfig.from_dict(data)


def _coerce(key: str, text: str, current: Any) -> Any:
    """`text` as the type of the field's current value (a --set value from the command line)."""
    try:
        if isinstance(current, bool):
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("true", "1", "yes")
        if isinstance(current, int) and not isinstance(current, bool):
            return int(text)
        if isinstance(current, float):
            return float(text)
        if isinstance(current, tuple | list):
            return tuple(type(current[0])(part) if current else float(part) for part in text.split(","))
        if current is None:  # chosen by measurement unless set: booleans
            return _coerce(key, text, True)
    except ValueError:
        kind = "true/false" if isinstance(current, bool) or current is None else type(current).__name__
        raise ValueError(f"--set {key}={text}: expected a {kind} value") from None
    return text


def as_set_value(value: Any) -> str:
    """A field's value written as `--set` reads it back (None: chosen by measurement)."""
    if value is None:
        return "measured"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple | list):
        return ",".join(as_set_value(v) for v in value)
    return str(value)


def parse_sets(cfg: RunConfig, items: list[str]) -> dict[str, Any]:
    """`--set section.name=value` items -> override()'s keyword arguments, typed by the config.

    Raises ValueError naming the item for a malformed item, an unknown key or a bad value.
    """
    data = cfg.to_dict()
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        section, _, name = key.strip().partition(".")
        if not sep or not name:
            raise ValueError(f"--set {item!r}: write it as section.name=value, e.g. train.lr=0.1")
        if section not in ("encoder", "augment", "train") or name not in data[section]:
            known = (
                ", ".join(f"{section}.{n}" for n in data.get(section, {}))
                if section in data
                else "encoder, augment, train"
            )
            raise ValueError(f"--set {item!r}: unknown key {key!r} (known: {known})")
        out[f"{section}.{name}"] = _coerce(key, text.strip(), data[section][name])
    return out
