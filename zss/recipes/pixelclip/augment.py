"""Two views of one crop: weak for the teacher, strong for the student.

The crop (and flip) is shared, so the teacher's cluster assignment of a mask is a valid target for
the student's view of the same pixels; only photometric distortions (colour jitter, grayscale, blur,
cutout) differ, which makes the student learn assignments that survive them. Every random draw comes
from the per-sample `random.Random` the data stream provides, so views are reproducible on resume.

Cached features cannot be re-cropped or colour-jittered; their strong view drops tokens (replaced
by the image's mean token) and adds noise, the feature-space analogue of cutout and jitter.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF


@dataclass(frozen=True)
class CropParams:
    top: int
    left: int
    height: int
    width: int
    flip: bool


def draw_crop(rng: random.Random, height: int, width: int, min_scale: float, flip: bool = True) -> CropParams:
    """A random square-ish crop covering [min_scale, 1] of the image area, and a coin for the flip."""
    area = height * width * rng.uniform(min_scale, 1.0)
    ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    ch = int(round(min(height, np.sqrt(area / ratio))))
    cw = int(round(min(width, np.sqrt(area * ratio))))
    ch, cw = max(ch, 1), max(cw, 1)
    return CropParams(rng.randint(0, height - ch), rng.randint(0, width - cw), ch, cw,
                      flip and rng.random() < 0.5)


def crop_image(img: torch.Tensor, p: CropParams, size: int) -> torch.Tensor:
    """float [3, H, W] -> [3, size, size] (bilinear, antialiased)."""
    out = TF.resized_crop(img, p.top, p.left, p.height, p.width, [size, size], antialias=True)
    return TF.horizontal_flip(out) if p.flip else out


def crop_masks(masks: torch.Tensor, p: CropParams, size: int) -> torch.Tensor:
    """bool [M, H, W] -> bool [M, size, size] (nearest, so masks stay binary)."""
    m = masks[:, p.top:p.top + p.height, p.left:p.left + p.width].float()
    out = F.interpolate(m[None], size=(size, size), mode="nearest")[0] > 0.5 if len(m) else \
        torch.zeros((0, size, size), dtype=torch.bool)
    return out.flip(-1) if p.flip else out


@dataclass(frozen=True)
class StrongAug:
    """Photometric strength of the student's view (SimCLR/DINO-style defaults)."""

    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    gray_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma_max: float = 2.0
    cutout_p: float = 0.5
    cutout_max_frac: float = 0.4
    cutout_min_frac: float = 0.1
    cutout_fill: float = 0.5        # grey; the release fills black (0.0)


def strong_view(img: torch.Tensor, rng: random.Random, cfg: StrongAug = StrongAug(),
                return_cutout: bool = False):
    """float [3, S, S] in [0, 1] -> a photometrically distorted copy (same geometry).

    With `return_cutout`, returns (view, box) where box = (top, left, height, width) of the cutout
    in the view's pixels, or None when no cutout was drawn."""
    x = img
    if rng.random() < cfg.jitter_p:
        ops = [lambda t: TF.adjust_brightness(t, rng.uniform(1 - cfg.brightness, 1 + cfg.brightness)),
               lambda t: TF.adjust_contrast(t, rng.uniform(1 - cfg.contrast, 1 + cfg.contrast)),
               lambda t: TF.adjust_saturation(t, rng.uniform(1 - cfg.saturation, 1 + cfg.saturation)),
               lambda t: TF.adjust_hue(t, rng.uniform(-cfg.hue, cfg.hue))]
        rng.shuffle(ops)
        for op in ops:
            x = op(x)
    if rng.random() < cfg.gray_p:
        x = TF.rgb_to_grayscale(x, num_output_channels=3)
    if rng.random() < cfg.blur_p:
        sigma = rng.uniform(0.1, cfg.blur_sigma_max)
        kernel = 2 * int(np.ceil(2 * sigma)) + 1
        x = TF.gaussian_blur(x, [kernel, kernel], [sigma, sigma])
    box = None
    if rng.random() < cfg.cutout_p:
        h, w = x.shape[-2:]
        ch = max(1, int(h * rng.uniform(cfg.cutout_min_frac, cfg.cutout_max_frac)))
        cw = max(1, int(w * rng.uniform(cfg.cutout_min_frac, cfg.cutout_max_frac)))
        top, left = rng.randint(0, h - ch), rng.randint(0, w - cw)
        x = x.clone()
        x[:, top:top + ch, left:left + cw] = cfg.cutout_fill
        box = (top, left, ch, cw)
    x = x.clamp(0.0, 1.0)
    return (x, box) if return_cutout else x


def color_aug_ssd(img: torch.Tensor, rng: random.Random) -> torch.Tensor:
    """SSD-style photometric distortion of the weak view (what detectron2's ColorAugSSD does, as the
    release applies it to the crop before the strong view is derived): each with probability 0.5,
    brightness shift ±32/255, contrast ×[0.5, 1.5], saturation ×[0.5, 1.5], hue shift ±18° of 180;
    contrast comes first or last (coin)."""
    x = img
    if rng.random() < 0.5:
        x = (x + rng.uniform(-32, 32) / 255.0).clamp(0.0, 1.0)
    contrast_first = rng.random() < 0.5

    def contrast(t: torch.Tensor) -> torch.Tensor:
        return (t * rng.uniform(0.5, 1.5)).clamp(0.0, 1.0) if rng.random() < 0.5 else t

    if contrast_first:
        x = contrast(x)
    if rng.random() < 0.5:
        x = TF.adjust_saturation(x, rng.uniform(0.5, 1.5))
    if rng.random() < 0.5:
        x = TF.adjust_hue(x, rng.uniform(-18, 18) / 180.0)
    if not contrast_first:
        x = contrast(x)
    return x.clamp(0.0, 1.0)


def strong_features(patch: np.ndarray, rng: random.Random, drop_p: float = 0.2,
                    noise: float = 0.1) -> np.ndarray:
    """Cached grid [h, w, C] -> a view with dropped tokens (set to the mean token) and relative noise."""
    nrng = np.random.default_rng(rng.getrandbits(63))
    x = patch.astype(np.float32)
    scale = float(np.sqrt((x ** 2).mean())) or 1.0
    drop = nrng.random(x.shape[:2]) < drop_p
    x = np.where(drop[..., None], x.mean(axis=(0, 1), keepdims=True), x)
    return x + nrng.normal(0.0, noise * scale, x.shape).astype(np.float32)
