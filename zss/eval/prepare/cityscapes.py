"""Cityscapes: the official `*_gtFine_labelIds.png` -> the 19 train ids.

Official download (cityscapes-dataset.com; mmseg's docs): `leftImg8bit_trainvaltest.zip` and
`gtFine_trainvaltest.zip` unzipped side by side, i.e. RAW/{leftImg8bit,gtFine}/val/CITY/ (RAW may also
hold them under `cityscapes/`).

Table (cityscapesScripts, cityscapesscripts/helpers/labels.py, the `id` -> `trainId` columns): ids
7 road 0, 8 sidewalk 1, 11 building 2, 12 wall 3, 13 fence 4, 17 pole 5, 19 traffic light 6,
20 traffic sign 7, 21 vegetation 8, 22 terrain 9, 23 sky 10, 24 person 11, 25 rider 12, 26 car 13,
27 truck 14, 28 bus 15, 31 train 16, 32 motorcycle 17, 33 bicycle 18; every other id -> 255 (ignored).
cityscapesscripts' `createTrainIdLabelImgs` (what mmseg's converter runs) draws the same polygons
with train ids instead of ids, skipping the license plate (id -1) in both, so mapping the released
id maps through the table gives the same images.
Output: OUT/cityscapes/{leftImg8bit,gtFine}/val/CITY/NAME_{leftImg8bit,gtFine_labelTrainIds}.png.
"""

from __future__ import annotations

from pathlib import Path

from zss.eval.prepare.common import (Item, convert, find_dir, lookup_table, missing, pair, read_png, remap,
                                     summary)

TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
             26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
LUT = lookup_table(TRAIN_IDS, 256, 255)
IMAGE, LABEL_IN, LABEL_OUT = "_leftImg8bit.png", "_gtFine_labelIds.png", "_gtFine_labelTrainIds.png"
OFFICIAL_VAL = 500


def prepare(raw: Path, out: Path) -> str:
    dirs = ["", "cityscapes"]
    base = find_dir(raw, dirs, ["leftImg8bit/val", "gtFine/val"])
    if base is None:
        for need, archive in (("leftImg8bit/val", "leftImg8bit_trainvaltest.zip"),
                              ("gtFine/val", "gtFine_trainvaltest.zip")):
            if find_dir(raw, dirs, [need]) is None:
                raise missing(f"Cityscapes: {archive} unzipped", raw / need)
    assert base is not None
    dest = out / "cityscapes"
    pairs = pair(base / "leftImg8bit/val", IMAGE, base / "gtFine/val", LABEL_IN)
    items = [Item(key, image, dest / "leftImg8bit/val" / f"{key}{IMAGE}", dest / "gtFine/val" / f"{key}{LABEL_OUT}",
                  label) for key, image, label in pairs]
    done, skipped = convert(items, lambda item: remap(LUT, read_png(item.source), item.source), "cityscapes")
    return summary("cityscapes", out, done, skipped, OFFICIAL_VAL, "cityscapes")
