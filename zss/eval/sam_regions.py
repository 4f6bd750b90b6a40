"""Segment-anything's automatic masks as image regions at inference, shared by mask-consistent
refinement (`refine=masks`, `masks=sam`) and `--vocab auto` (`auto.regions=sam`): one cached
generator per checkpoint and settings (zss's batched one), and the overlapping masks painted into
one label map."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from zss.errors import ZssError

KINDS = "KIND vit_b, vit_l, vit_h or test_tiny"


def require_sam_spec(spec: str | None, needs: str) -> str:
    """`spec` when it reads KIND:PATH, else one line: "{needs}=KIND:PATH (...; got ...)"."""
    if not spec or ":" not in spec:
        raise ZssError(f"{needs}=KIND:PATH ({KINDS}; got {spec!r})")
    return spec


@lru_cache(maxsize=2)
def sam_generator(spec: str, points: int, iou: float, stability: float, device: str):
    """The batched automatic mask generator for a local SAM checkpoint (loaded once per settings)."""
    from zss.models.sam import load_sam
    from zss.models.sam_amg import BatchedMaskGenerator

    return BatchedMaskGenerator(load_sam(spec, device=device), points_per_side=points, pred_iou_thresh=iou,
                                stability_score_thresh=stability, image_batch=1)


def paint_largest_first(masks: list[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """Overlapping binary masks -> label map [h,w] int64: painted largest first, so a smaller mask
    inside a larger one keeps its pixels; id = the mask's rank by area (0 = largest), -1 where no
    mask covers the pixel."""
    canvas = np.full(size, -1, dtype=np.int64)
    for rank, i in enumerate(sorted(range(len(masks)), key=lambda j: -int(np.count_nonzero(masks[j])))):
        canvas[np.asarray(masks[i], dtype=bool)] = rank
    return canvas
