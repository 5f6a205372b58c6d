"""SimCLR's two-view augmentation, batched on the training device with per-sample draws.

Chen et al. 2020 ("A Simple Framework for Contrastive Learning of Visual Representations"),
appendix A: random resized crop + horizontal flip, colour jitter (p = 0.8) of strength s,
random grayscale (p = 0.2), Gaussian blur (optional). Every image in a batch gets its own
random parameters; nothing is drawn once per batch.

The crop and the flip are one affine resampling (`affine_grid` + `grid_sample`), so a
whole batch is augmented with a handful of tensor ops on the GPU (or CPU) instead of a
Python loop over PIL images.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from model.training.config import AugmentConfig

# ITU-R BT.601 luma weights, as used by torchvision's rgb_to_grayscale.
_LUMA = torch.tensor([0.299, 0.587, 0.114])


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=device) * (hi - lo) + lo


def _bernoulli(n: int, p: float, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=device) < p


def _gray(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) luma."""
    return (x * _LUMA.to(x.device, x.dtype).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)


def _hue_rotation(theta: torch.Tensor) -> torch.Tensor:
    """(B,) angles -> (B, 3, 3) RGB matrices rotating hue about the gray axis.

    A rotation in YIQ space: the luma stays fixed, the chroma plane turns by theta. It
    approximates torchvision's HSV hue shift without the per-pixel HSV round trip.
    """
    rgb2yiq = torch.tensor(
        [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
        device=theta.device,
        dtype=theta.dtype,
    )
    yiq2rgb = torch.linalg.inv(rgb2yiq)
    cos, sin = torch.cos(theta), torch.sin(theta)
    rot = torch.zeros(theta.shape[0], 3, 3, device=theta.device, dtype=theta.dtype)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2] = cos, -sin
    rot[:, 2, 1], rot[:, 2, 2] = sin, cos
    out: torch.Tensor = yiq2rgb @ rot @ rgb2yiq
    return out


class SimCLRAugment:
    """Callable: uint8 (B, 3, S, S) -> float views (B, 3, crop, crop), normalised.

    Args:
        cfg: the augmentation family's parameters.
        mean, std: per-channel normalisation applied last.
    """

    def __init__(self, cfg: AugmentConfig, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.cfg = cfg
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)

    def crop_boxes(self, n: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
        """(n, 4) boxes (cx, cy, w, h) as fractions of the image, RandomResizedCrop-style.

        Area fraction ~ U(scale), log aspect ratio ~ U(log ratio); a box that does not fit is
        shrunk to fit (torchvision retries 10 times then falls back to a centre crop; on a
        square image both give nearly the same distribution).
        """
        lo, hi = self.cfg.crop_scale
        area = _uniform(n, lo, hi, gen, device)
        log_r = _uniform(n, math.log(self.cfg.crop_ratio[0]), math.log(self.cfg.crop_ratio[1]), gen, device)
        ratio = torch.exp(log_r)
        w = torch.sqrt(area * ratio).clamp(max=1.0)
        h = torch.sqrt(area / ratio).clamp(max=1.0)
        cx = w / 2 + torch.rand(n, generator=gen, device=device) * (1 - w)
        cy = h / 2 + torch.rand(n, generator=gen, device=device) * (1 - h)
        return torch.stack([cx, cy, w, h], dim=1)

    def crop_and_flip(self, x: torch.Tensor, gen: torch.Generator, size: int) -> torch.Tensor:
        n, device = x.shape[0], x.device
        cx, cy, w, h = self.crop_boxes(n, gen, device).unbind(1)
        flip = torch.where(_bernoulli(n, self.cfg.flip_p, gen, device), -1.0, 1.0)
        theta = torch.zeros(n, 2, 3, device=device, dtype=x.dtype)
        theta[:, 0, 0] = w * flip.to(x.dtype)
        theta[:, 0, 2] = cx * 2 - 1
        theta[:, 1, 1] = h
        theta[:, 1, 2] = cy * 2 - 1
        if not (self.cfg.rotate_deg or self.cfg.zoom_out_p):
            grid = F.affine_grid(theta, [n, 3, size, size], align_corners=False)
            return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        return self._rotate_and_frame(x, theta, gen, size)

    def _rotate_and_frame(self, x: torch.Tensor, theta: torch.Tensor, gen: torch.Generator, size: int) -> torch.Tensor:
        """The crop, plus a small rotation and (sometimes) a zoom-out that leaves a plain frame.

        The edits people make to pictures include rotating them and framing them (borders,
        letterboxing); views that show both teach f to ignore them. What falls outside the image
        is filled with black or white, one or the other per view.
        """
        n, device, dtype = x.shape[0], x.device, x.dtype
        angle = _uniform(n, -1.0, 1.0, gen, device) * math.radians(self.cfg.rotate_deg)
        cos, sin = torch.cos(angle).to(dtype), torch.sin(angle).to(dtype)
        rot = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)  # (n, 2, 2)
        zoom = torch.where(
            _bernoulli(n, self.cfg.zoom_out_p, gen, device), _uniform(n, 1.0, self.cfg.zoom_out_max, gen, device), 1.0
        ).to(dtype)
        theta = theta.clone()
        theta[:, :, :2] = (theta[:, :, :2] @ rot) * zoom.view(n, 1, 1)
        fill = torch.where(_bernoulli(n, 0.5, gen, device), 1.0, 0.0).to(dtype).view(n, 1, 1, 1)
        grid = F.affine_grid(theta, [n, 3, size, size], align_corners=False)
        out = F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return out + fill

    def color_jitter(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Brightness, contrast, saturation (factors in [1-0.8s, 1+0.8s]) and hue (±0.2s turns)."""
        n, device, s = x.shape[0], x.device, self.cfg.jitter_strength
        apply = _bernoulli(n, self.cfg.jitter_p, gen, device).view(n, 1, 1, 1)
        b, c, sat = 0.8 * s, 0.8 * s, 0.8 * s
        brightness = _uniform(n, max(0.0, 1 - b), 1 + b, gen, device).view(n, 1, 1, 1)
        contrast = _uniform(n, max(0.0, 1 - c), 1 + c, gen, device).view(n, 1, 1, 1)
        saturation = _uniform(n, max(0.0, 1 - sat), 1 + sat, gen, device).view(n, 1, 1, 1)
        hue = _uniform(n, -0.2 * s, 0.2 * s, gen, device) * (2 * math.pi)
        y = (x * brightness).clamp(0, 1)
        mean = _gray(y).mean(dim=(2, 3), keepdim=True)
        y = ((y - mean) * contrast + mean).clamp(0, 1)
        gray = _gray(y)
        y = ((y - gray) * saturation + gray).clamp(0, 1)
        y = torch.einsum("bij,bjhw->bihw", _hue_rotation(hue.to(x.dtype)), y).clamp(0, 1)
        return torch.where(apply, y, x)

    def grayscale(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        apply = _bernoulli(x.shape[0], self.cfg.gray_p, gen, x.device).view(-1, 1, 1, 1)
        return torch.where(apply, _gray(x).expand_as(x), x)

    def blur(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Gaussian blur, kernel ~10% of the side, sigma ~ U(blur_sigma), one sigma per image."""
        n, _, height, _ = x.shape
        apply = _bernoulli(n, self.cfg.blur_p, gen, x.device)
        if not bool(apply.any()):
            return x
        radius = max(1, int(0.1 * height) // 2)
        sigma = _uniform(n, *self.cfg.blur_sigma, gen, x.device)
        offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
        kernel = torch.exp(-(offsets.view(1, -1) ** 2) / (2 * sigma.view(-1, 1).to(x.dtype) ** 2))
        kernel = kernel / kernel.sum(dim=1, keepdim=True)  # (n, K)
        kernel = kernel.repeat_interleave(3, dim=0)  # one per (image, channel)
        flat = x.reshape(1, n * 3, height, -1)
        flat = F.pad(flat, (radius, radius, radius, radius), mode="reflect")
        flat = F.conv2d(flat, kernel.view(n * 3, 1, 1, -1), groups=n * 3)
        flat = F.conv2d(flat, kernel.view(n * 3, 1, -1, 1), groups=n * 3)
        return torch.where(apply.view(n, 1, 1, 1), flat.view_as(x), x)

    def view(self, images: torch.Tensor, gen: torch.Generator, size: int | None = None) -> torch.Tensor:
        """One random view per image: uint8 (B, 3, S, S) -> (B, 3, size, size), size defaulting
        to cfg.crop_size."""
        x = images.float().div_(255)
        x = self.crop_and_flip(x, gen, size or self.cfg.crop_size)
        x = self.color_jitter(x, gen)
        x = self.grayscale(x, gen)
        if self.cfg.blur_p > 0:
            x = self.blur(x, gen)
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def __call__(
        self, images: torch.Tensor, gen: torch.Generator, size: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Two independent views of every image: ((B, 3, c, c), (B, 3, c, c))."""
        return self.view(images, gen, size), self.view(images, gen, size)
