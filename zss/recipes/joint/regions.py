"""A sample's class-agnostic masks (`KEY.masks.json`, COCO RLE at the resized image size) as area
fractions on its cached patch grid: what the joint recipe's mask terms read.

With augmented views (`zss ingest --views V`) the sample's feature grid may be a crop: the masks are
cut to the view's box (recorded in original pixels, scaled to the resized size) before pooling.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from zss.errors import ZssError
from zss.recipes.pixelclip.targets import decode_rle_masks


def view_box(meta: dict[str, Any], view: int, size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """View `view`'s box [top, left, bottom, right] at the resized `size` (None for the whole image)."""
    views = meta.get("views") or []
    if view == 0 or view >= len(views):
        return None
    top, left, height, width = (float(v) for v in views[view]["box"])
    oh, ow = (float(v) for v in (meta.get("orig_size") or size))
    sy, sx = size[0] / oh, size[1] / ow
    y0, x0 = int(round(top * sy)), int(round(left * sx))
    y1, x1 = max(int(round((top + height) * sy)), y0 + 1), max(int(round((left + width) * sx)), x0 + 1)
    return y0, x0, min(y1, size[0]), min(x1, size[1])


def _area_fractions(masks: np.ndarray, grid: tuple[int, int]) -> torch.Tensor:
    """bool [M,H,W] -> float32 [M,gh,gw]: each cell's covered fraction (adaptive average pooling; a
    reshape-sum in numpy when the size is a multiple of the grid, which is the usual case and avoids
    torch's thread pool in data workers)."""
    m, h, w = masks.shape
    gh, gw = grid
    if h % gh == 0 and w % gw == 0:
        sums = masks.reshape(m, gh, h // gh, gw, w // gw).sum(axis=(2, 4), dtype=np.int32)
        return torch.from_numpy((sums / float((h // gh) * (w // gw))).astype(np.float32))
    return F.adaptive_avg_pool2d(torch.from_numpy(np.ascontiguousarray(masks)).float()[:, None], grid)[:, 0]


def grid_masks(raw: dict[str, Any], meta: dict[str, Any], grid: tuple[int, int], view: int = 0,
               max_regions: int = 16, min_frac: float = 0.01) -> torch.Tensor:
    """The sample's masks as area fractions per patch, float16 [R, Hp, Wp] (R may be 0): largest
    first, at most `max_regions` (0 = all), masks covering under `min_frac` of the grid dropped."""
    if "masks.json" not in raw:
        return torch.zeros(0, *grid, dtype=torch.float16)
    masks = decode_rle_masks(json.loads(raw["masks.json"]))
    if len(masks) == 0:
        return torch.zeros(0, *grid, dtype=torch.float16)
    size = tuple(int(v) for v in (meta.get("size") or masks.shape[1:]))
    if masks.shape[1:] != size:
        raise ZssError(f"sample {raw['__key__']}: masks are {masks.shape[1:]} but the image is {size}")
    box = view_box(meta, view, size)
    if box is not None:
        masks = masks[:, box[0]:box[2], box[1]:box[3]]
    frac = _area_fractions(masks, grid)
    area = frac.flatten(1).mean(1)
    order = [int(i) for i in torch.argsort(-area, stable=True) if area[i] >= max(min_frac, 1e-6)]
    if max_regions > 0:
        order = order[:max_regions]
    return frac[order].to(torch.float16)
