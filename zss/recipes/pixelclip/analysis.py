"""Do the learned clusters mean something? Agreement of mask→prompt assignments with ground truth.

Each unlabeled mask of the shards is assigned to its nearest learned prompt (cosine between the
mask's mean dense feature and the prompt embeddings — inference-style, no equipartition) and
compared with the ground-truth category under the mask (majority label of the world's
`train/annotations/*.png`). NMI and purity before and after training show whether PixelCLIP
discovered categories without ever seeing a label.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.metrics import normalized_mutual_info_score

from zss.errors import ZssError
from zss.formats.shards import iter_all_samples
from zss.recipes.pixelclip.targets import decode_rle_masks, pool_mask_features

IGNORE = 255


def gt_label_path(gt_dir: Path, source_id: str) -> Path:
    """`sa_12` / `12` / `000000000012` -> GT_DIR/000000000012.png (the COCO-style file name)."""
    m = re.search(r"(\d+)$", source_id)
    if not m:
        raise ZssError(f"cannot map source id {source_id!r} to a ground-truth file")
    return Path(gt_dir) / f"{int(m.group(1)):012d}.png"


def majority_labels(masks: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Majority ground-truth label under each mask [M] (-1 when the mask covers only ignore pixels)."""
    out = np.full(len(masks), -1, dtype=np.int64)
    for i, m in enumerate(masks):
        labels = gt[m]
        labels = labels[labels != IGNORE]
        if labels.size:
            out[i] = int(np.bincount(labels).argmax())
    return out


def agreement(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """NMI and purity (fraction of masks whose cluster's majority category is their own)."""
    keep = truth >= 0
    pred, truth = pred[keep], truth[keep]
    if len(pred) == 0:
        raise ZssError("no mask has a ground-truth label")
    purity = sum(np.bincount(truth[pred == c]).max() for c in np.unique(pred)) / len(pred)
    return {"nmi": float(normalized_mutual_info_score(truth, pred)), "purity": float(purity),
            "n_masks": int(len(pred)), "clusters_used": int(len(np.unique(pred)))}


@torch.no_grad()
def mask_cluster_agreement(segmenter: Any, prompts: torch.Tensor, shards: Path, gt_dir: Path,
                           img_size: int, limit: int | None = None) -> dict[str, float]:
    """Assign every shard mask to its nearest prompt with `segmenter.encode_dense` features.

    `segmenter`: anything with `encode_dense(images [B,3,H,W] in [0,1]) -> [B,C,h,w]` (normalised);
    `prompts`: [K, C] normalised prompt embeddings. Needs the shards' stored images (`KEY.jpg`).
    """
    device = prompts.device
    preds, truths = [], []
    for n, sample in enumerate(iter_all_samples(shards)):
        if limit is not None and n >= limit:
            break
        if not sample["masks"] or sample["jpg"] is None:
            continue
        masks = decode_rle_masks(sample["masks"])
        gt_path = gt_label_path(gt_dir, sample["meta"]["source_id"])
        gt = Image.open(gt_path).resize(masks.shape[:0:-1], Image.NEAREST)
        truths.append(majority_labels(masks, np.asarray(gt)))
        img = Image.open(io.BytesIO(sample["jpg"])).convert("RGB").resize((img_size, img_size), Image.BILINEAR)
        x = torch.from_numpy(np.array(img)).permute(2, 0, 1).float().div(255.0)[None].to(device)
        feats = segmenter.encode_dense(x).permute(0, 2, 3, 1)  # [1,h,w,C]
        m = torch.from_numpy(masks).to(device)
        pooled = F.normalize(pool_mask_features(feats, m, torch.zeros(len(m), dtype=torch.long, device=device)),
                             dim=-1)
        preds.append((pooled @ prompts.t()).argmax(dim=1).cpu().numpy())
    if not preds:
        raise ZssError(f"{shards}: no sample with masks and a stored image")
    return agreement(np.concatenate(preds), np.concatenate(truths))
