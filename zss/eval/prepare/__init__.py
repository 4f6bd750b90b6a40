"""`zss data prepare NAME RAW_DIR OUT`: official benchmark downloads -> the layouts `zss eval` reads.

One module per dataset (`coco_stuff`, `coco_object`, `context`, `cityscapes`); `ready` checks the two
whose official archives need no conversion (VOC 2012, ADE20K). Every converter writes OUT as a data
root holding its dataset under the usual folder name, so one OUT serves `zss eval --benchmark all`.
docs/eval.md lists the downloads, the tables and where each table comes from.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from zss.errors import ZssError

CONVERTERS = ("coco_stuff", "coco_object", "context", "cityscapes")
READY = ("voc", "ade20k")
ALIASES = {"voc21": "voc", "voc20": "voc", "voc2012": "voc", "context59": "context", "context60": "context",
           "pascal_context": "context", "ade": "ade20k", "coco_stuff164k": "coco_stuff", "city": "cityscapes"}
NAMES = CONVERTERS + READY


def run_prepare(name: str, raw: str | Path, out: str | Path | None = None) -> str:
    """Convert (or check) dataset `name` from its official download `raw` into the data root `out`;
    returns what was done and the `zss eval` line that scores it."""
    key = ALIASES.get(name, name)
    if key not in NAMES:
        raise ZssError(f"unknown dataset {name!r}; choose from {', '.join(NAMES)}")
    raw = Path(raw).expanduser()
    if not raw.is_dir():
        raise ZssError(f"RAW_DIR {raw} is not a directory")
    if key in READY:
        from zss.eval.prepare.ready import check

        said = check(key, raw)
        return said + (f"\n(nothing was written to {out}: {key} is read where it was extracted)" if out else "")
    if out is None:
        raise ZssError(f"{key} needs an OUT folder to write the converted data to")
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise ZssError(f"OUT {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    return importlib.import_module(f"zss.eval.prepare.{key}").prepare(raw, out)
