"""SA-1B folders: `sa_N.jpg` + `sa_N.json` (COCO RLE masks in the SA-1B annotation schema).

Masks are taken from the file (verified before anything decodes them); captions come from an
optional `sa_N.txt` sidecar, since SA-1B itself has none.
"""

from __future__ import annotations

import os
import re
from itertools import islice
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from zss.errors import ZssError
from zss.ingest.sources.base import (BadItem, Row, Source, failed_row, make_row, parse_sa1b_json,
                                       read_file, read_sidecar_captions, require_folder)

_NAME = re.compile(r"^sa_(\d+)\.(jpg|json)$")


class Sa1bSource(Source):
    kind = "sa1b"

    def __init__(self, path: str | Path):
        super().__init__(path)
        require_folder(self.path, "SA-1B folder")
        # the stems' numbers as one int64 array (8 bytes per item, no Python object each); a stem
        # whose number does not print back the same (sa_007) keeps its name in a small side table
        numbers, odd = [], {}
        with os.scandir(self.path) as it:
            for e in it:
                m = _NAME.match(e.name)
                if m:
                    stem = m.group(0).rsplit(".", 1)[0]
                    k = int(stem[3:])
                    numbers.append(k)
                    if stem != f"sa_{k}":
                        odd.setdefault(k, set()).add(stem)
        if not numbers:
            raise ZssError(f"no sa_*.jpg / sa_*.json files in {self.path}")
        self._numbers = np.unique(np.asarray(numbers, dtype=np.int64))
        del numbers
        self._odd = {k: sorted(v | ({f"sa_{k}"} if (self.path / f"sa_{k}.jpg").exists()
                                    or (self.path / f"sa_{k}.json").exists() else set()))
                     for k, v in odd.items()}

    def _count(self) -> int:
        return int(len(self._numbers)) + sum(len(v) - 1 for v in self._odd.values())

    def _stems(self, start: int) -> Iterator[str]:
        if not self._odd:  # the usual case: item i is sa_{numbers[i]}
            for k in self._numbers[start:].tolist():
                yield f"sa_{k}"
            return
        stems = (s for k in self._numbers.tolist() for s in self._odd.get(k, [f"sa_{k}"]))
        yield from islice(stems, start, None)

    def iter_refs(self, start: int = 0) -> Iterator[dict[str, Any]]:
        for index, stem in enumerate(self._stems(start), start):
            yield {"kind": self.kind, "index": index, "source_id": stem,
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
