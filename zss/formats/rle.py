"""COCO RLE masks and SA-1B annotation records: encode a boolean mask, check a record's RLEs.

On-disk format helpers shared by ingest (masks, decode), the synthetic world and the recipes; they
sit below every layer that reads or writes masks.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from zss.errors import BadItem


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """A boolean [h, w] mask as an SA-1B style annotation core: RLE (str counts), area, bbox xywh."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"segmentation": {"size": [int(mask.shape[0]), int(mask.shape[1])],
                             "counts": rle["counts"].decode("ascii")},
            "area": int(mask.sum()), "bbox": [float(v) for v in mask_utils.toBbox(rle)]}


def _rle_counts_total(counts: str | list) -> int:
    """Sum of the run lengths of a COCO RLE, decoding the compressed string in pure Python.

    pycocotools' C decoder writes runs without bounds checks, so a corrupted RLE could write past
    the mask buffer; this check runs first and rejects any RLE whose runs do not tile the mask.
    """
    if isinstance(counts, list):
        if not all(isinstance(c, int) and c >= 0 for c in counts):
            raise ValueError("uncompressed counts must be non-negative integers")
        return sum(counts)
    if not isinstance(counts, str):
        raise ValueError(f"counts is a {type(counts).__name__}")
    runs: list[int] = []
    p, n = 0, len(counts)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            if p >= n:
                raise ValueError("truncated RLE string")
            c = ord(counts[p]) - 48
            if c < 0 or c > 63:
                raise ValueError(f"invalid RLE character {counts[p]!r}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        if x < 0:
            raise ValueError("negative run length")
        runs.append(x)
    return sum(runs)


def check_sa1b_annotations(record: Any) -> list[dict[str, Any]]:
    """The annotation list of an SA-1B JSON document, every RLE verified; `bad_masks` otherwise."""
    if not isinstance(record, dict) or not isinstance(record.get("annotations"), list):
        raise BadItem("bad_masks", "SA-1B JSON has no 'annotations' list")
    anns = record["annotations"]
    for i, ann in enumerate(anns):
        seg = ann.get("segmentation") if isinstance(ann, dict) else None
        if not isinstance(seg, dict) or "counts" not in seg or "size" not in seg:
            raise BadItem("bad_masks", f"annotation {i}: segmentation is not a COCO RLE")
        size = seg["size"]
        if (not isinstance(size, list) or len(size) != 2
                or not all(isinstance(v, int) and v > 0 for v in size)):
            raise BadItem("bad_masks", f"annotation {i}: bad RLE size {size!r}")
        try:
            total = _rle_counts_total(seg["counts"])
        except ValueError as exc:
            raise BadItem("bad_masks", f"annotation {i}: broken RLE ({exc})") from None
        if total != size[0] * size[1]:
            raise BadItem("bad_masks", f"annotation {i}: RLE covers {total} pixels, size says "
                                       f"{size[0]}x{size[1]}")
    return anns


def parse_sa1b_json(data: bytes) -> str:
    """Validated SA-1B annotations as the `src_masks` JSON string."""
    try:
        record = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadItem("bad_masks", f"SA-1B JSON does not parse: {exc}") from None
    return json.dumps(check_sa1b_annotations(record), sort_keys=True)
