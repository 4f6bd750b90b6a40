"""PASCAL VOC 2012 and ADE20K need no conversion: their official archives extract to the layouts
`zss eval` reads. `prepare` checks that layout (every listed image and label map present) and says so.

VOC 2012: `VOCtrainval_11-May-2012.tar` -> VOCdevkit/VOC2012/{JPEGImages, SegmentationClass (palette
PNGs: index = class id, 255 = boundary), ImageSets/Segmentation/val.txt}: 1449 val images.
ADE20K (SceneParsing): `ADEChallengeData2016.zip` -> ADEChallengeData2016/{images,annotations}/validation:
2000 val images, 0 = "other" (dropped by `reduce_zero_label`).
"""

from __future__ import annotations

from pathlib import Path

from zss.errors import ZssError
from zss.eval.benchmarks import get_benchmark

OFFICIAL = {"voc": ("voc21", "VOC 2012", 1449, "voc21 (or voc20)"),
            "ade20k": ("ade20k", "ADE20K", 2000, "ade20k")}


def check(name: str, raw: Path) -> str:
    benchmark, title, official, protocols = OFFICIAL[name]
    bench = get_benchmark(benchmark)
    if not bench.available(raw):
        raise ZssError(f"{title} not found: expected {bench.layout} under {raw}")
    n = len(bench.samples(raw))  # raises naming a listed image or label map that is missing
    note = "" if n == official else f" (the official val split has {official})"
    return (f"{title} needs no conversion: {n} val images{note} under {raw} are already in the layout zss reads\n"
            f"score with: zss eval MODEL --benchmark {protocols} --data-root {raw}")
