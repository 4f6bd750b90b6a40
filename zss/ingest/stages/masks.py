"""Masks: unlabeled regions for PixelCLIP, as COCO RLE at the resized image `size`.

Modes (what PixelCLIP trains from):
- `sam`: segment-anything's automatic masks (a local checkpoint, `KIND:PATH`), by default from
  `zss.models.sam_amg.BatchedMaskGenerator` (the rows of a batch together; the same masks as
  segment-anything's `SamAutomaticMaskGenerator`, which `impl: reference` runs one image at a time);
- `sa1b`: the source's own SA-1B annotations (decode has rescaled them to `size`; checked here again);
- `feature-kmeans` (old name `dino-kmeans`, still accepted): spherical k-means over the image's
  patch features from the ingest's *feature backbone* (so this stage runs after features; a CLIP in
  cached PixelCLIP runs), the label grid upsampled (nearest) to `size`, one mask per cluster;
- `dino`: as PixelCLIP's release: the stage runs its *own* backbone (default DINO ViT-S/16, a timm
  name + local checkpoint) on the stored image resized to `dino_img_size`², then Euclidean k-means
  (k = `kmeans_k`, 16) of its last-layer patch tokens, upsampled (nearest) to `size`;
- `none`: no masks (`""`).

Every mode is deterministic (fixed point grid, seeded k-means with float64 decisions, canonical
JSON), so a resumed ingest rewrites byte-identical shards. The k-means modes cluster all rows of a
batch in one call of `zss.utils.kmeans_torch` (on CUDA when present), the same partitions as the
per-image numpy `zss.utils.kmeans`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from zss.errors import BadItem, ZssError
from zss.formats.rle import check_sa1b_annotations, encode_mask
from zss.formats.specs import parse_model_spec
from zss.utils.config import setting
from zss.utils.kmeans import kmeans, kmeans_label_grid, upsample_labels  # noqa: F401 (kmeans: re-exported)
from zss.utils.kmeans import kmeans_label_grids

IMPLS = ("batched", "reference")  # `sam`: zss's batched generator, or segment-anything's own
MODES = ("sam", "sa1b", "feature-kmeans", "dino-kmeans", "dino", "none")
ALIASES = {"dino-kmeans": "feature-kmeans"}  # old name: the features were the ingest backbone's
DINO_DEFAULT = "vit_small_patch16_224.dino"
SAM_KEYS = ("segmentation", "area", "bbox", "predicted_iou", "stability_score", "point_coords", "crop_box")


@dataclass
class MaskConfig:
    """Mask source and its knobs. `sam_checkpoint` is `KIND:PATH` (KIND vit_b|vit_l|vit_h|test_tiny);
    the AMG defaults are segment-anything's own (tuned for ViT-H)."""

    mode: str = "dino-kmeans"
    sam_checkpoint: str | None = None
    points_per_side: int = setting(32, ge=1)
    points_per_batch: int = setting(64, ge=1)
    pred_iou_thresh: float = setting(0.88, ge=0, le=1)
    stability_score_thresh: float = setting(0.95, ge=0, le=1)
    min_mask_region_area: int = setting(0, ge=0)
    kmeans_k: int = setting(16, ge=1)
    kmeans_iters: int = setting(50, ge=1)
    dino_model: str = DINO_DEFAULT   # `dino` mode: timm name of the mask backbone
    dino_checkpoint: str | None = None  # `dino` mode: its local weights (required: no downloads)
    dino_img_size: int = setting(640, ge=14)       # `dino` mode: square input side (the release's 640 crop -> 40x40)
    seed: int = 0
    device: str = "auto"
    impl: str = setting("batched", choices=IMPLS)  # `sam`: batched (zss.models.sam_amg) | reference (segment-anything's)
    image_batch: int = setting(8, ge=1)  # `sam` batched: crops per image-encoder call


def kmeans_masks(patch: np.ndarray, size: tuple[int, int], k: int, seed: int,
                 iters: int = 50, spherical: bool = True, grid: np.ndarray | None = None) -> list[dict[str, Any]]:
    """One annotation per non-empty cluster of an image's patch grid, clusters numbered by first
    appearance in raster order; `score` = mean cosine of the cluster's patches to its centre.
    `grid`: the label grid if already computed (a batched k-means), else computed here."""
    hp, wp, d = patch.shape
    x = patch.reshape(-1, d).astype(np.float64)
    if grid is None:
        grid = kmeans_label_grid(patch, k, seed, iters, spherical)
    labels = grid.reshape(-1)
    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    full = upsample_labels(grid, size)
    anns = []
    for j in range(int(labels.max()) + 1):
        mask = full == j
        if not mask.any():
            continue
        members = unit[labels == j]
        centre = members.mean(0)
        centre /= max(np.linalg.norm(centre), 1e-12)
        ann = encode_mask(mask)
        ann.update({"cluster": j, "score": round(float((members @ centre).mean()), 6)})
        anns.append(ann)
    return anns


def _json(anns: list[dict[str, Any]]) -> str:
    return json.dumps(anns, sort_keys=True)


class MaskStage:
    """Batch callable adding `masks` (JSON list of COCO-RLE annotations at `size`, or `""`)."""

    def __init__(self, cfg: MaskConfig | None = None):
        self.cfg = cfg or MaskConfig()
        if self.cfg.mode not in MODES:
            raise ZssError(f"masks mode must be one of {', '.join(MODES)}, got {self.cfg.mode!r}")
        self.method = ALIASES.get(self.cfg.mode, self.cfg.mode)
        if self.method in ("feature-kmeans", "dino") and self.cfg.kmeans_k < 1:
            raise ZssError(f"kmeans_k must be at least 1, got {self.cfg.kmeans_k}")
        if self.cfg.impl not in IMPLS:
            raise ZssError(f"masks.impl must be one of {', '.join(IMPLS)}, got {self.cfg.impl!r}")
        self.generator = None
        self.dino = None
        self.sam_info: dict[str, Any] = {}
        if self.method == "sam":
            self._load_sam()
        elif self.method == "dino":
            self._load_dino()

    def _load_dino(self) -> None:
        from zss.models.backbone import load_backbone

        if not self.cfg.dino_checkpoint:
            raise ZssError(f"masks mode 'dino' needs masks.dino_checkpoint=PATH (local weights of "
                           f"{self.cfg.dino_model})")
        if self.cfg.dino_img_size < 16:
            raise ZssError(f"masks.dino_img_size must be at least 16, got {self.cfg.dino_img_size}")
        self.dino = load_backbone(self.cfg.dino_model, self.cfg.dino_checkpoint, self.cfg.dino_img_size)

    def _load_sam(self) -> None:
        from segment_anything import SamAutomaticMaskGenerator

        from zss.models.sam import load_sam, sam_spec
        from zss.models.sam_amg import BatchedMaskGenerator
        from zss.utils.device import default_device

        if not self.cfg.sam_checkpoint:
            raise ZssError("masks mode 'sam' needs --sam-checkpoint KIND:PATH (e.g. vit_h:sam_vit_h_4b8939.pth)")
        spec = parse_model_spec(self.cfg.sam_checkpoint, "sam")
        sam = load_sam(spec, device=default_device(self.cfg.device))
        kw = dict(points_per_side=self.cfg.points_per_side, points_per_batch=self.cfg.points_per_batch,
                  pred_iou_thresh=self.cfg.pred_iou_thresh, stability_score_thresh=self.cfg.stability_score_thresh,
                  min_mask_region_area=self.cfg.min_mask_region_area, output_mode="coco_rle")
        if self.cfg.impl == "reference":
            self.generator = SamAutomaticMaskGenerator(sam, **kw)
        else:
            self.generator = BatchedMaskGenerator(sam, image_batch=self.cfg.image_batch, **kw)
        self.sam_info = sam_spec(spec.arch, str(spec.checkpoint))

    def describe(self) -> dict[str, Any]:
        """Mode, model and knobs, for the manifest."""
        c = self.cfg
        info: dict[str, Any] = {"mode": c.mode}
        if c.mode == "sam":
            info.update(self.sam_info)
            info.update(points_per_side=c.points_per_side, pred_iou_thresh=c.pred_iou_thresh,
                        stability_score_thresh=c.stability_score_thresh,
                        min_mask_region_area=c.min_mask_region_area)
        elif self.method == "feature-kmeans":
            info.update(method="feature-kmeans", k=c.kmeans_k, seed=c.seed, iters=c.kmeans_iters,
                        features="patch", metric="cosine")
        elif self.method == "dino":
            info.update(method="dino", k=c.kmeans_k, seed=c.seed, iters=c.kmeans_iters, metric="euclidean",
                        backbone=self.dino.spec if self.dino is not None else None)
        return info

    def _dino(self, image: np.ndarray, size: tuple[int, int]) -> str:
        import torch
        import torch.nn.functional as F

        side = self.cfg.dino_img_size
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255.0
        x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False, antialias=True)
        with torch.no_grad():
            patch, _ = self.dino(x)
        return _json(kmeans_masks(patch[0].float().numpy(), size, self.cfg.kmeans_k, self.cfg.seed,
                                  self.cfg.kmeans_iters, spherical=False))

    def _sam(self, image: np.ndarray) -> str:
        anns = self.generator.generate(np.ascontiguousarray(image))
        return _json([{k: a[k] for k in SAM_KEYS} for a in anns])

    def _sam_batch(self, images: list[np.ndarray]) -> list[str]:
        anns = self.generator.generate_batch([np.ascontiguousarray(im) for im in images])
        return [_json([{k: a[k] for k in SAM_KEYS} for a in one]) for one in anns]

    def _dino_patches(self, images: list[np.ndarray]):
        """The `dino` backbone's patch grids [B, Hp, Wp, D] of images resized to dino_img_size²."""
        import torch
        import torch.nn.functional as F

        side = self.cfg.dino_img_size
        x = torch.cat([F.interpolate(torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1)[None].float()
                                     / 255.0, size=(side, side), mode="bilinear", align_corners=False,
                                     antialias=True) for im in images])
        with torch.no_grad():
            patch, _ = self.dino(x)
        return patch.float()

    def _batched(self, batch: dict[str, np.ndarray], rows: list[int]) -> dict[int, str]:
        """Masks of the ok rows in one batched call (batched SAM, or one k-means over all rows'
        patch grids of one shape); {} when the mode has no batched path."""
        import torch

        from zss.utils.device import default_device

        mode, c = self.method, self.cfg
        if not rows or mode in ("sa1b", "none") or (mode == "sam" and c.impl == "reference"):
            return {}
        if mode == "sam":
            return dict(zip(rows, self._sam_batch([batch["image"][i] for i in rows])))
        sizes = {i: (int(batch["size"][i][0]), int(batch["size"][i][1])) for i in rows}
        if mode == "dino":
            groups = {None: (rows, self._dino_patches([batch["image"][i] for i in rows]))}
        else:
            groups = {}
            for i in rows:
                groups.setdefault(np.asarray(batch["patch"][i]).shape, []).append(i)
            groups = {s: (g, torch.from_numpy(np.stack([np.asarray(batch["patch"][i]) for i in g])))
                      for s, g in groups.items()}
        out = {}
        dev = default_device(c.device)
        for group, patches in groups.values():
            grids = kmeans_label_grids(patches.to(dev), c.kmeans_k, c.seed, c.kmeans_iters,
                                       spherical=mode != "dino").cpu().numpy()
            host = patches.cpu().numpy()
            for i, p, g in zip(group, host, grids):
                out[i] = _json(kmeans_masks(p, sizes[i], c.kmeans_k, c.seed, c.kmeans_iters,
                                            spherical=mode != "dino", grid=g))
        return out

    def _sa1b(self, src: str, size: tuple[int, int]) -> str:
        from zss.ingest.stages.decode import DecodeError, resize_masks

        if not src:
            return "[]"
        try:
            anns = check_sa1b_annotations({"annotations": json.loads(src)})
            sizes = {tuple(a["segmentation"]["size"]) for a in anns}
            if len(sizes) > 1:
                raise BadItem("bad_masks", f"masks of one image have different sizes {sorted(sizes)}")
            if sizes and sizes != {size}:  # decode did not rescale them (e.g. masks added later)
                return resize_masks(src, sizes.pop(), size)
        except DecodeError as exc:
            raise BadItem("bad_masks", str(exc)) from None
        except ValueError as exc:
            raise BadItem("bad_masks", f"masks JSON does not parse: {exc}") from None
        return _json(anns)

    def _kmeans(self, patch: np.ndarray, size: tuple[int, int]) -> str:
        return _json(kmeans_masks(np.asarray(patch), size, self.cfg.kmeans_k, self.cfg.seed,
                                  self.cfg.kmeans_iters))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["status"])
        status = np.array(batch["status"], dtype=object)
        error = np.array(batch["error"], dtype=object)
        masks = np.array([""] * n, dtype=object)
        mode = self.method
        if mode == "feature-kmeans" and "patch" not in batch:
            raise ZssError(f"{self.cfg.mode} masks need the patch features: run the features stage first")
        ok = [i for i in range(n) if status[i] == "ok"]
        try:
            done = self._batched(batch, ok)
        except (RuntimeError, ValueError, MemoryError):  # one bad row: redo row by row to find it
            done = {}
        for i in range(n):
            if mode == "none" or status[i] != "ok":
                continue
            if i in done:
                masks[i] = done[i]
                continue
            size = (int(batch["size"][i][0]), int(batch["size"][i][1]))
            try:
                if mode == "sam":
                    masks[i] = self._sam(batch["image"][i])
                elif mode == "sa1b":
                    masks[i] = self._sa1b(str(batch.get("src_masks", [""] * n)[i] or ""), size)
                elif mode == "dino":
                    masks[i] = self._dino(batch["image"][i], size)
                else:
                    masks[i] = self._kmeans(batch["patch"][i], size)
            except BadItem as exc:  # a per-row problem of the input masks
                status[i], error[i] = exc.kind, str(exc)
            except (RuntimeError, ValueError, MemoryError) as exc:  # a model failure on this input costs
                # its row, not the job; any other exception is a bug and propagates
                status[i], error[i] = "model_error", f"masks ({mode}): {type(exc).__name__}: {exc}"[:500]
        out = dict(batch)
        out.update({"masks": masks, "status": status, "error": error})
        return out
