"""SA-1B folders: `sa_N.jpg` + `sa_N.json` (COCO RLE masks in the SA-1B annotation schema).

Masks are taken from the file (verified before anything decodes them); captions come from an
optional `sa_N.txt` sidecar, since SA-1B itself has none.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from zss.errors import ZssError
from zss.ingest.sources.base import (BadItem, Row, Source, failed_row, make_row, parse_sa1b_json,
                                       read_file, read_sidecar_captions)

_NAME = re.compile(r"^sa_(\d+)\.(jpg|json)$")


def _order(stem: str) -> tuple[int, str]:
    return int(stem[3:]), stem


class Sa1bSource(Source):
    kind = "sa1b"

    def __init__(self, path: str | Path):
        super().__init__(path)
        if not self.path.is_dir():
            raise ZssError(f"SA-1B folder not found: {self.path}")
        stems = {m.group(0).rsplit(".", 1)[0] for p in self.path.iterdir()
                 if (m := _NAME.match(p.name))}
        if not stems:
            raise ZssError(f"no sa_*.jpg / sa_*.json files in {self.path}")
        self._stems = sorted(stems, key=_order)

    def __len__(self) -> int:
        return len(self._stems)

    def ref(self, index: int) -> dict[str, Any]:
        stem = self._stems[index]
        return {"kind": self.kind, "index": index, "source_id": stem,
                "image": str(self.path / f"{stem}.jpg"), "json": str(self.path / f"{stem}.json"),
                "txt": str(self.path / f"{stem}.txt")}

    @staticmethod
    def load(ref: dict[str, Any]) -> Row:
        index, sid = ref["index"], ref["source_id"]
        captions: list[str] = []
        try:
            captions = read_sidecar_captions(Path(ref["txt"]))
            src_masks = parse_sa1b_json(read_file(ref["json"]))
            data = read_file(ref["image"])
        except BadItem as exc:
            return failed_row(index, sid, exc, captions)
        return make_row(index, sid, data, captions, src_masks=src_masks)
