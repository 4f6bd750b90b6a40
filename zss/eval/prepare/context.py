"""PASCAL-Context: the official release (459-class label maps) -> the 60-class maps both `context60`
and `context59` score (59 = the same maps with `reduce_zero_label`).

Official downloads: the PASCAL VOC 2010 trainval tar (`VOCtrainval_03-May-2010.tar` ->
RAW/VOCdevkit/VOC2010/{JPEGImages,ImageSets/Main/val.txt}) and PASCAL-Context's `trainval.tar.gz`
(cs.stanford.edu/~roozbeh/pascal-context/ -> RAW/trainval/ID.mat, one MATLAB file per image whose
`LabelMap` holds the ids of the release's labels.txt, 1..459). The split is VOC 2010's: the 5105
images of ImageSets/Main/val.txt (4998 train), as the PASCAL-Context paper uses it.

Table (mmseg tools/dataset_converters/pascal_context.py, `_mapping`): the sorted 459-class ids
0, 2, 9, 18, 19, 22, 23, 25, 31, 33, 34, 44, 45, 46, 59, 65, 68, 72, 80, 85, 98, 104, 105, 113, 115,
144, 158, 159, 162, 187, 189, 207, 220, 232, 258, 259, 260, 284, 295, 296, 308, 324, 326, 347, 349,
354, 355, 360, 366, 368, 397, 415, 416, 420, 424, 427, 440, 445, 454, 458 become 0..59 in that
order (0 = background). mmseg reads the masks through the Detail API, whose masks hold only those
ids; the release's maps also hold the other 400 classes, which the 60-class benchmark counts as
background: zss maps them to 0.
Output: OUT/VOCdevkit/VOC2010/{JPEGImages/ID.jpg, SegmentationClassContext/ID.png,
ImageSets/SegmentationContext/val.txt}.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zss.errors import ZssError
from zss.eval.prepare.common import Item, convert, find_dir, lookup_table, missing, remap, summary

CONTEXT_IDS = (0, 2, 9, 18, 19, 22, 23, 25, 31, 33, 34, 44, 45, 46, 59, 65, 68, 72, 80, 85, 98, 104, 105,
               113, 115, 144, 158, 159, 162, 187, 189, 207, 220, 232, 258, 259, 260, 284, 295, 296, 308,
               324, 326, 347, 349, 354, 355, 360, 366, 368, 397, 415, 416, 420, 424, 427, 440, 445, 454, 458)
LUT = lookup_table({raw: i for i, raw in enumerate(CONTEXT_IDS)}, 460, 0)
OFFICIAL_VAL = 5105
VOC_DIRS = ["", "VOCdevkit/VOC2010", "VOC2010"]


def read_label_map(path: Path) -> np.ndarray:
    """The `LabelMap` of one PASCAL-Context .mat file (459-class ids)."""
    from scipy.io import loadmat

    try:
        data = loadmat(str(path))
    except (OSError, ValueError, TypeError, NotImplementedError) as exc:
        raise ZssError(f"cannot read {path} ({exc}): a damaged or half-extracted download?") from exc
    if "LabelMap" not in data:
        raise ZssError(f"{path} has no LabelMap: not a PASCAL-Context annotation file")
    return np.asarray(data["LabelMap"]).astype(np.int64)


def _context_dir(raw: Path, voc: Path) -> Path:
    for cand in (raw / "trainval", voc / "trainval", raw / "pascal-context" / "trainval"):
        if cand.is_dir():
            return cand
    if next(raw.glob("*.mat"), None) is not None:  # the .mat files extracted straight into RAW
        return raw
    raise missing("PASCAL-Context: trainval.tar.gz extracted", raw / "trainval")


def prepare(raw: Path, out: Path) -> str:
    voc = find_dir(raw, VOC_DIRS, ["JPEGImages", "ImageSets/Main/val.txt"])
    if voc is None:
        base = find_dir(raw, VOC_DIRS, ["JPEGImages"])
        raise missing("PASCAL VOC 2010: VOCtrainval_03-May-2010.tar extracted",
                      (base / "ImageSets/Main/val.txt") if base else raw / "VOCdevkit/VOC2010/JPEGImages")
    mats = _context_dir(raw, voc)
    ids = [line.split()[0] for line in (voc / "ImageSets/Main/val.txt").read_text().splitlines() if line.strip()]
    dest = out / "VOCdevkit/VOC2010"
    items = []
    for i in ids:
        for path, what in ((voc / "JPEGImages" / f"{i}.jpg", "an image of the VOC 2010 val split"),
                           (mats / f"{i}.mat", "the PASCAL-Context annotation of a val image")):
            if not path.is_file():
                raise missing(what, path, "the archive is incomplete")
        items.append(Item(i, voc / "JPEGImages" / f"{i}.jpg", dest / "JPEGImages" / f"{i}.jpg",
                          dest / "SegmentationClassContext" / f"{i}.png", mats / f"{i}.mat"))
    if not items:
        raise ZssError(f"{voc / 'ImageSets/Main/val.txt'} lists no images")
    done, skipped = convert(items, lambda item: remap(LUT, read_label_map(item.source), item.source), "context")
    split = dest / "ImageSets/SegmentationContext/val.txt"
    split.parent.mkdir(parents=True, exist_ok=True)
    split.write_text("".join(f"{i}\n" for i in sorted(ids)))
    return summary("context", out, done, skipped, OFFICIAL_VAL, "context59 (or context60)")
