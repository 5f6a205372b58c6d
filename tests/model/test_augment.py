"""The two-view augmentation: shapes, randomness per sample, determinism, geometry."""

from __future__ import annotations

from dataclasses import replace

import torch

from model.embedding.embed import normalize
from model.training.augment import SimCLRAugment
from model.training.config import AugmentConfig

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def batch(n: int = 8, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_two_views_have_the_right_shape_and_dtype_and_differ() -> None:
    aug = SimCLRAugment(AugmentConfig(crop_size=24, blur_p=0.5), MEAN, STD)
    v1, v2 = aug(batch(), torch.Generator().manual_seed(0))
    assert v1.shape == v2.shape == (8, 3, 24, 24)
    assert v1.dtype == v2.dtype == torch.float32
    assert not torch.allclose(v1, v2)


def test_each_sample_gets_its_own_draw() -> None:
    # The same image repeated: if parameters were drawn once per batch every view would match.
    one = batch(1).expand(16, -1, -1, -1).contiguous()
    aug = SimCLRAugment(AugmentConfig(), MEAN, STD)
    views = aug.view(one, torch.Generator().manual_seed(0))
    distinct = {tuple(v.flatten()[:50].tolist()) for v in views}
    assert len(distinct) == 16
    boxes = aug.crop_boxes(1000, torch.Generator().manual_seed(0), torch.device("cpu"))
    area = boxes[:, 2] * boxes[:, 3]
    assert area.min() >= 0.2 - 1e-6 and area.max() <= 1.0 + 1e-6
    assert area.std() > 0.1  # spread across the scale range, not constant


def test_deterministic_under_a_seed() -> None:
    aug = SimCLRAugment(AugmentConfig(blur_p=0.5), MEAN, STD)
    a = aug(batch(), torch.Generator().manual_seed(42))
    b = aug(batch(), torch.Generator().manual_seed(42))
    c = aug(batch(), torch.Generator().manual_seed(43))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_full_crop_without_jitter_is_the_identity_and_flip_mirrors() -> None:
    images = batch(4)
    plain = AugmentConfig(
        crop_size=32, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0, gray_p=0.0
    )
    view = SimCLRAugment(plain, MEAN, STD).view(images, torch.Generator().manual_seed(0))
    assert torch.allclose(view, normalize(images, MEAN, STD), atol=1e-4)
    flipped = SimCLRAugment(AugmentConfig(**{**plain.__dict__, "flip_p": 1.0}), MEAN, STD)
    view = flipped.view(images, torch.Generator().manual_seed(0))
    assert torch.allclose(view, normalize(images, MEAN, STD).flip(-1), atol=1e-4)


def test_grayscale_views_have_equal_channels() -> None:
    cfg = AugmentConfig(gray_p=1.0, jitter_p=0.0)
    aug = SimCLRAugment(cfg, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    v = aug.view(batch(), torch.Generator().manual_seed(0))
    assert torch.allclose(v[:, 0], v[:, 1], atol=1e-5) and torch.allclose(v[:, 1], v[:, 2], atol=1e-5)


def test_colour_jitter_keeps_values_in_range_and_changes_colour() -> None:
    cfg = AugmentConfig(
        jitter_p=1.0, jitter_strength=1.0, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, gray_p=0.0
    )
    aug = SimCLRAugment(cfg, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    images = batch()
    v = aug.view(images, torch.Generator().manual_seed(0))
    assert v.min() >= 0.0 and v.max() <= 1.0
    assert (v - images.float() / 255).abs().mean() > 0.02


def test_blur_smooths() -> None:
    cfg = AugmentConfig(
        blur_p=1.0,
        blur_sigma=(2.0, 2.0),
        jitter_p=0.0,
        gray_p=0.0,
        crop_scale=(1.0, 1.0),
        crop_ratio=(1.0, 1.0),
        flip_p=0.0,
    )
    aug = SimCLRAugment(cfg, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    images = batch()
    v = aug.view(images, torch.Generator().manual_seed(0))
    tv = lambda x: (x[..., 1:] - x[..., :-1]).abs().mean()  # noqa: E731
    assert tv(v) < 0.5 * tv(images.float() / 255)


def test_zoomed_out_views_are_framed_in_black_or_white_and_rotation_keeps_the_centre() -> None:
    cfg = AugmentConfig(crop_size=32, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0,
                        gray_p=0.0, zoom_out_p=1.0, zoom_out_max=1.6, rotate_deg=0.0)  # fmt: skip
    aug = SimCLRAugment(cfg, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    images = torch.full((64, 3, 32, 32), 128, dtype=torch.uint8)
    views = aug.view(images, torch.Generator().manual_seed(0))
    corners = views[:, :, 0, 0]  # outside the image whenever the zoom-out exceeds ~1.07
    framed = (corners - views[:, :, 16, 16]).abs().amax(dim=1) > 0.2
    assert framed.float().mean() > 0.6
    assert set(corners[framed].round().unique().tolist()) <= {0.0, 1.0}
    assert torch.allclose(views[:, :, 16, 16], torch.full((64, 3), 128 / 255), atol=1e-5)  # the image stays inside
    turned = SimCLRAugment(replace(cfg, zoom_out_p=0.0, rotate_deg=30.0), (0.0,) * 3, (1.0,) * 3)
    tv = turned.view(images, torch.Generator().manual_seed(1))
    assert torch.allclose(tv[:, :, 16, 16], torch.full((64, 3), 128 / 255), atol=1e-5)
    assert ((tv[:, :, 0, 0] - 128 / 255).abs() > 0.2).any()  # some rotated corners fall outside
