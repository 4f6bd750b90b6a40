"""COCO Captions: an annotation JSON (`images` + `annotations`) and an image folder.

All captions of an image are kept, in annotation order; images are ordered by id so the input
order (and so every shard key) is the same on every run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from zss.errors import ZssError
from zss.ingest.sources.base import BadItem, Row, Source, check_captions, failed_row, make_row, read_file


def _find_image_dir(ann: Path) -> Path:
    """`images/` beside the JSON (our layout), else COCO's `annotations/captions_SPLIT.json` +
    `SPLIT/` layout."""
    candidates = [ann.parent / "images"]
    match = re.match(r"captions_(\w+)\.json$", ann.name)
    if match:
        candidates += [ann.parent.parent / match.group(1), ann.parent / match.group(1)]
    for c in candidates:
        if c.is_dir():
            return c
    raise ZssError(f"no image folder found for {ann} (tried {', '.join(map(str, candidates))}); "
                   f"give it as coco:{ann}:IMAGE_DIR")


class CocoSource(Source):
    kind = "coco"

    def __init__(self, path: str | Path, image_dir: str | Path | None = None):
        path = Path(path)
        ann = path / "captions.json" if path.is_dir() else path
        if not ann.is_file():
            raise ZssError(f"COCO captions JSON not found: {ann}")
        super().__init__(ann)
        self.image_dir = Path(image_dir) if image_dir else _find_image_dir(ann)
        try:
            doc = json.loads(ann.read_bytes())
            images = sorted(doc["images"], key=lambda im: im["id"])
            caps: dict[Any, list] = {}
            for a in doc.get("annotations", []):
                caps.setdefault(a["image_id"], []).append(a.get("caption"))
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
            raise ZssError(f"{ann} is not a COCO captions file: {exc}") from exc
        self._items = [(str(im["id"]), str(im["file_name"]), caps.get(im["id"], [])) for im in images]

    def __len__(self) -> int:
        return len(self._items)

    def ref(self, index: int) -> dict[str, Any]:
        source_id, file_name, captions = self._items[index]
        return {"kind": self.kind, "index": index, "source_id": source_id,
                "path": str(self.image_dir / file_name), "captions": captions}

    @staticmethod
    def load(ref: dict[str, Any]) -> Row:
        try:
            captions = check_captions(ref["captions"])
        except BadItem as exc:
            return failed_row(ref["index"], ref["source_id"], exc)
        try:
            data = read_file(ref["path"])
        except BadItem as exc:
            return failed_row(ref["index"], ref["source_id"], exc, captions)
        return make_row(ref["index"], ref["source_id"], data, captions)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "image_dir": str(self.image_dir.resolve())}
