"""Mask-consistent inference (`--set refine=masks`): every class score averaged over each mask of
the image, so a region is labelled as a whole instead of patch by patch.

Masks are made online for the image being segmented, for any model:
- `masks: slic` (the default) cuts the image's pixels into SLIC superpixels of about `slic_size`
  pixels a side (scikit-image's `slic`: colour + position, `slic_compactness`): small regions that
  follow the image's edges below the patch grid, so averaging over them sharpens boundaries without
  merging objects (an over-segmentation costs a mean nothing; a merge across two classes does).
- `masks: sam` takes segment-anything's automatic masks of the image (zss's batched generator,
  `sam_checkpoint: KIND:PATH`, `sam_points_per_side`, `sam_pred_iou_thresh`, `sam_stability_thresh`),
  painted largest first so a part inside a whole keeps its own pixels; pixels no mask covers keep
  their own scores.
- `masks: feature-kmeans` clusters the model's own dense features of the whole image
  at the inference size (`zss.utils.kmeans.kmeans_label_grid`: spherical k-means, `mask_k` clusters,
  seeded) and upsamples the cluster grid to the label size (nearest): regions at patch resolution,
  which merge neighbouring objects whose features are alike (measured in docs/joint.md).
Settings live in `zss.eval.inference.InferenceConfig` (refine, masks, mask_k, mask_iters,
slic_size, slic_compactness, refine_alpha); the hook is `Predictor.label_logits`, after PAMR, so
`zss eval`, `zss segment` and `zss serve` all take them.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from zss.errors import ZssError
from zss.eval.sam_regions import paint_largest_first, require_sam_spec
from zss.eval.sam_regions import sam_generator as _sam_generator
from zss.utils.kmeans import kmeans_label_grid, upsample_labels

REFINES = ("none", "masks")
MASK_SOURCES = ("slic", "feature-kmeans", "sam")


def segment_mean(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """scores [Q,H,W], labels [H,W] (ids >= 0) -> [Q,H,W]: each pixel gets the mean score of its
    segment (the pixels sharing its label)."""
    if scores.shape[1:] != labels.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and labels {tuple(labels.shape)} differ in size")
    flat = labels.reshape(-1).long()
    n = int(flat.max()) + 1
    sums = scores.new_zeros(scores.shape[0], n).index_add_(1, flat, scores.reshape(scores.shape[0], -1))
    counts = torch.bincount(flat, minlength=n).clamp_min(1).to(scores.dtype)
    return (sums / counts)[:, flat].reshape(scores.shape)


@torch.no_grad()
def feature_kmeans_masks(model: torch.nn.Module, image: torch.Tensor, k: int, iters: int = 20,
                         seed: int = 0) -> np.ndarray:
    """image [3,h,w] in [0,1] (the inference size) -> label map [h,w] int64: spherical k-means of
    the model's dense features of the whole image (padded to a patch multiple), nearest-upsampled."""
    _, h, w = image.shape
    patch = int(model.patch_size)
    ph, pw = (-h) % patch, (-w) % patch
    x = F.pad(image[None], [0, pw, 0, ph]) if ph or pw else image[None]
    feats = model.encode_dense(x)[0].float().permute(1, 2, 0).cpu().numpy()  # [gh, gw, C]
    grid = kmeans_label_grid(feats, k, seed=seed, iters=iters, spherical=True)
    return upsample_labels(grid, (h + ph, w + pw))[:h, :w]


def slic_masks(image: torch.Tensor, size: float = 18.0, compactness: float = 50.0) -> np.ndarray:
    """image [3,h,w] in [0,1] -> label map [h,w] int64 of SLIC superpixels about `size` pixels a side
    (h·w / size² seeds on scikit-image's regular grid: deterministic)."""
    from skimage.segmentation import slic

    _, h, w = image.shape
    rgb = image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy().astype(np.float64)
    return slic(rgb, n_segments=max(1, round(h * w / size ** 2)), compactness=compactness, start_label=0,
                channel_axis=-1).astype(np.int64)


def sam_masks(image: torch.Tensor, spec: str | None, points: int = 16, iou: float = 0.88,
              stability: float = 0.95) -> np.ndarray:
    """image [3,h,w] in [0,1] -> label map [h,w] int64: segment-anything's automatic masks painted
    largest first (ids 0..), -1 where no mask covers the pixel (zss.eval.sam_regions)."""
    spec = require_sam_spec(spec, "masks=sam needs sam_checkpoint")
    rgb = (image.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    records = _sam_generator(spec, points, iou, stability, str(image.device)).generate_batch([rgb])[0]
    return paint_largest_first([r["segmentation"] for r in records], rgb.shape[:2])


def refine_logits(model: torch.nn.Module, image: torch.Tensor, logits: torch.Tensor, masks: str = "slic",
                  k: int = 8, iters: int = 20, alpha: float = 1.0, size: float = 18.0,
                  compactness: float = 50.0, sam: dict | None = None) -> torch.Tensor:
    """Cosine logits [Q,H,W] (any size) of `image` [3,h,w] -> (1 − alpha) · logits + alpha · their
    mean over each online mask (`masks`: slic superpixels about `size` px a side, or feature-kmeans
    with k clusters, or sam with the `sam` settings: sam_masks' keyword arguments and `spec`)."""
    if masks not in MASK_SOURCES:
        raise ZssError(f"masks must be one of {', '.join(MASK_SOURCES)} for refine=masks, got {masks!r}")
    if masks == "slic":
        labels = slic_masks(image, size, compactness)
    elif masks == "sam":
        labels = sam_masks(image, **(sam or {}))
    else:
        labels = feature_kmeans_masks(model, image, k, iters)
    full = torch.from_numpy(upsample_labels(labels, tuple(logits.shape[1:]))).to(logits.device)
    covered = full >= 0                                   # sam: uncovered pixels (-1) keep their scores
    averaged = torch.where(covered, segment_mean(logits, full + 1), logits)
    return averaged if alpha >= 1.0 else (1.0 - alpha) * logits + alpha * averaged
