"""Features: the frozen backbone's patch grid and global token, computed once and cached as float16.

The backbone is loaded in `__init__`, so a Ray actor holds one copy for the whole run. Rows that
failed earlier are skipped (zero placeholders); a forward that fails marks its rows `model_error`
instead of killing the job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch

from zss.formats.specs import ModelSpec, to_model_spec
from zss.utils.device import autocast, default_device
from zss.utils.config import setting


@dataclass
class FeatureConfig:
    """Which frozen backbone (`name` a timm ViT or `open_clip/ARCH`, as manifests record it;
    `checkpoint` a local file, or None for the hub) and how to run it. `batch_size` caps one
    forward; `amp` is fp16 autocast on CUDA (ignored on CPU)."""

    name: str = "vit_small_patch14_dinov2"
    checkpoint: str | None = None
    img_size: int = setting(224, ge=1)
    # Input normalisation: auto (the model's own) | imagenet | clip | custom (with mean and std).
    normalize: str = setting("auto", choices=("auto", "imagenet", "clip", "custom"))
    mean: Optional[list[float]] = None
    std: Optional[list[float]] = None
    # A local file of DVT denoiser weights applied to the patch tokens (zss.models.denoiser); None = off.
    denoiser: Optional[str] = None
    batch_size: int = setting(16, ge=1)
    device: str = "auto"
    amp: bool = True
    dtype: str = setting("float16", choices=("float16", "int8"))  # how patch features are stored: float16 | int8 (per-token absmax scale)

    def model_spec(self) -> ModelSpec:
        """`name` and `checkpoint` as one parsed spec, the form the loaders take."""
        return to_model_spec(self.name, self.checkpoint)


def _as_list(images: np.ndarray) -> list[np.ndarray]:
    """The `image` column as per-row arrays, whether stacked [B,h,w,3] or an object array."""
    return [np.asarray(im) for im in images]


class FeatureStage:
    """Batch callable adding `patch` float16 [B,Hp,Wp,D] and `global` float16 [B,D].

    With `decode.resize: short_side` images differ in size, so `patch` becomes an object array of
    per-row [Hp_i,Wp_i,D] arrays (rows of equal size still share one forward). When the batch holds
    augmented views (`view_images`, decode.views > 1) it also adds `view_patch` and `view_global`:
    per row the lists of views 1..V-1's features, computed in forwards of their own after view 0's
    (so view 0 is computed exactly as without views).
    """

    def __init__(self, cfg: FeatureConfig | None = None):
        from zss.models.backbone import load_backbone

        self.cfg = cfg or FeatureConfig()
        self.device = default_device(self.cfg.device)
        self.model = load_backbone(self.cfg.model_spec(), img_size=self.cfg.img_size, normalize=self.cfg.normalize,
                                   mean=self.cfg.mean, std=self.cfg.std, denoiser=self.cfg.denoiser).to(self.device)
        self.patch_size = int(self.model.patch_size)
        self.embed_dim = int(self.model.embed_dim)

    def describe(self) -> dict[str, Any]:
        """The backbone spec recorded in the manifest."""
        return dict(self.model.spec)

    def _forward(self, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        x = torch.from_numpy(np.stack(images)).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
        with torch.inference_mode(), autocast(self.device, self.cfg.amp):
            patch, glob = self.model(x)
        return (patch.float().cpu().numpy().astype(np.float16),
                glob.float().cpu().numpy().astype(np.float16))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["status"])
        status = np.array(batch["status"], dtype=object)
        error = np.array(batch["error"], dtype=object)
        images = _as_list(batch["image"])
        stacked = not (isinstance(batch["image"], np.ndarray) and batch["image"].dtype == object)
        side = self.cfg.img_size // self.patch_size
        patches: list[np.ndarray] = [np.zeros((side, side, self.embed_dim), np.float16)] * n
        if stacked and n:
            hp, wp = images[0].shape[0] // self.patch_size, images[0].shape[1] // self.patch_size
            patches = [np.zeros((hp, wp, self.embed_dim), np.float16)] * n
        globs = np.zeros((n, self.embed_dim), np.float16)

        groups: dict[tuple[int, ...], list[int]] = {}
        for i in range(n):
            if status[i] == "ok":
                groups.setdefault(images[i].shape, []).append(i)
        step = max(1, self.cfg.batch_size)
        for rows in groups.values():
            for start in range(0, len(rows), step):
                chunk = rows[start:start + step]
                try:
                    p, g = self._forward([images[i] for i in chunk])
                except (RuntimeError, ValueError, MemoryError) as exc:  # what torch raises on an input it
                    # cannot take (too small for a patch, out of memory): costs its rows, not the job;
                    # anything else (TypeError, AttributeError, ...) is a bug and propagates
                    for i in chunk:
                        status[i], error[i] = "model_error", f"{type(exc).__name__}: {exc}"[:500]
                    continue
                for j, i in enumerate(chunk):
                    patches[i], globs[i] = p[j], g[j]

        out = dict(batch)
        if "view_images" in batch:
            out["view_patch"], out["view_global"] = self._views(batch["view_images"], status, error)
            out.pop("view_images")
        if stacked:
            out["patch"] = np.stack(patches) if n else np.zeros((0, side, side, self.embed_dim), np.float16)
        else:
            arr = np.empty(n, dtype=object)
            for i, p in enumerate(patches):
                arr[i] = p
            out["patch"] = arr
        out.update({"global": globs, "status": status, "error": error})
        return out

    def _views(self, view_images: np.ndarray, status: np.ndarray,
               error: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features of every ok row's extra views, grouped by shape in (row, view) order and cut
        into forwards of `batch_size`; a failed forward marks its rows `model_error` (in place)."""
        n = len(view_images)
        patches = np.empty(n, dtype=object)
        globs = np.empty(n, dtype=object)
        groups: dict[tuple[int, ...], list[tuple[int, int]]] = {}
        for i in range(n):
            crops = list(view_images[i]) if status[i] == "ok" else []
            patches[i], globs[i] = [None] * len(crops), [None] * len(crops)
            for v, crop in enumerate(crops):
                groups.setdefault(np.asarray(crop).shape, []).append((i, v))
        step = max(1, self.cfg.batch_size)
        for items in groups.values():
            for start in range(0, len(items), step):
                chunk = items[start:start + step]
                try:
                    p, g = self._forward([np.asarray(view_images[i][v]) for i, v in chunk])
                except (RuntimeError, ValueError, MemoryError) as exc:  # as for view 0 above
                    for i, _ in chunk:
                        status[i], error[i] = "model_error", f"view: {type(exc).__name__}: {exc}"[:500]
                    continue
                for j, (i, v) in enumerate(chunk):
                    patches[i][v], globs[i][v] = p[j], g[j]
        for i in range(n):
            if status[i] != "ok":
                patches[i], globs[i] = [], []
        return patches, globs
