"""Semantic-segmentation metrics exactly as mmsegmentation defines them, on a streaming confusion matrix.

mmseg (`IoUMetric.intersect_and_union`): optionally *reduce zero label* (0 -> 255, others -1, 255 stays
255), drop pixels whose label is the ignore index, then histogram prediction, label and their
agreement over `[0, num_classes)`. Values outside that range fall out of the histograms — a label of 200
in a 150-class set is not counted as label area, but the prediction at that pixel still counts as
prediction area. A (K+1)x(K+1) confusion matrix whose last row/column collects out-of-range values
reproduces those sums exactly while also giving the full confusion for analysis. Per-class IoU of a
class with empty union is NaN and left out of mIoU (`nanmean`); aAcc = sum(intersect) / sum(label).
"""

from __future__ import annotations

from typing import Any

import numpy as np

IGNORE_INDEX = 255


def reduce_zero_label(label: np.ndarray) -> np.ndarray:
    """mmseg's `reduce_zero_label`: 0 (background/unlabelled) -> 255, k -> k-1, 255 stays 255."""
    out = label.astype(np.int64).copy()
    out[out == 0] = 255
    out = out - 1
    out[out == 254] = 255
    return out


def confusion(pred: np.ndarray, label: np.ndarray, num_classes: int, ignore_index: int = IGNORE_INDEX,
              reduce_zero: bool = False) -> np.ndarray:
    """(K+1)x(K+1) counts, rows = label, columns = prediction, index K = out of range."""
    if pred.shape != label.shape:
        raise ValueError(f"prediction {pred.shape} and label {label.shape} differ in shape")
    label = reduce_zero_label(label) if reduce_zero else label.astype(np.int64)
    keep = label != ignore_index
    lab = label[keep]
    prd = pred.astype(np.int64)[keep]
    k = num_classes
    lab = np.where((lab >= 0) & (lab < k), lab, k)
    prd = np.where((prd >= 0) & (prd < k), prd, k)
    return np.bincount(lab * (k + 1) + prd, minlength=(k + 1) ** 2).reshape(k + 1, k + 1)


class SegMetric:
    """Accumulates a confusion matrix over images; `results()` gives mmseg's IoU/Acc/aAcc."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX, reduce_zero: bool = False):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.reduce_zero = reduce_zero
        self.matrix = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)

    def update(self, pred: np.ndarray, label: np.ndarray) -> None:
        self.matrix += confusion(pred, label, self.num_classes, self.ignore_index, self.reduce_zero)

    def areas(self) -> dict[str, np.ndarray]:
        """mmseg's four per-class areas: intersect, union, pred_label, label."""
        k = self.num_classes
        m = self.matrix
        intersect = np.diag(m)[:k].astype(np.float64)
        area_label = m[:k, :].sum(axis=1).astype(np.float64)
        area_pred = m[:, :k].sum(axis=0).astype(np.float64)
        return {"intersect": intersect, "union": area_pred + area_label - intersect,
                "pred_label": area_pred, "label": area_label}

    def results(self) -> dict[str, Any]:
        """Per-class IoU/Acc (NaN where undefined) and mIoU, mAcc, aAcc — fractions in [0, 1]."""
        a = self.areas()
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = a["intersect"] / a["union"]
            acc = a["intersect"] / a["label"]
            aacc = a["intersect"].sum() / a["label"].sum() if a["label"].sum() > 0 else float("nan")
        miou = float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")
        macc = float(np.nanmean(acc)) if np.isfinite(acc).any() else float("nan")
        return {"IoU": iou, "Acc": acc, "mIoU": miou, "mAcc": macc, "aAcc": float(aacc)}
