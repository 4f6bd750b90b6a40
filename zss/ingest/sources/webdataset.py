"""img2dataset-style WebDataset tars: `KEY.jpg` (or png/webp) + `KEY.txt` and/or `KEY.json`.

Opening the source indexes the tars once (member offsets, read from headers only), so workers can
read any sample by seeking, and shard boundaries of our output need not follow the input tars.
Captions: the json's `captions` list when present (all captions kept), else the `.txt`, else the
json's `caption`.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any, Iterator

import braceexpand
import numpy as np

from zss.errors import ZssError
from zss.ingest.sources.base import (MAX_IMAGE_BYTES, MAX_SIDECAR_BYTES, BadItem, Row, Source,
                                       check_captions, failed_row, make_row)

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")


def _tar_files(spec: str) -> list[Path]:
    path = Path(spec)
    if path.is_dir():
        files = sorted(path.glob("*.tar"))
    else:
        files = [Path(p) for p in braceexpand.braceexpand(spec)]
    missing = [str(f) for f in files if not f.is_file()]
    if not files or missing:
        raise ZssError(f"webdataset tars not found: {', '.join(missing) or spec}")
    return files


def _index_tar(path: Path) -> list[tuple[str, dict[str, tuple[int, int]]]]:
    """[(key, {ext: (data offset, size)})] in tar order, grouping adjacent members by key."""
    samples: list[tuple[str, dict[str, tuple[int, int]]]] = []
    try:
        with tarfile.open(path, "r:") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                base = info.name.rsplit("/", 1)
                stem = base[-1]
                if "." not in stem or stem.startswith("."):
                    continue
                key_part, ext = stem.split(".", 1)
                key = (base[0] + "/" + key_part) if len(base) == 2 else key_part
                if not samples or samples[-1][0] != key:
                    samples.append((key, {}))
                samples[-1][1][ext.lower()] = (info.offset_data, info.size)
    except (tarfile.TarError, OSError) as exc:
        raise ZssError(f"cannot index webdataset tar {path}: {exc}") from exc
    return samples


def _read(f, member: tuple[int, int], limit: int, what: str) -> bytes:
    offset, size = member
    if size > limit:
        raise BadItem("too_large", f"{what}: {size} bytes exceed {limit}")
    f.seek(offset)
    data = f.read(size)
    if len(data) != size:
        raise BadItem("missing_file", f"{what}: tar truncated")
    return data


class WebDatasetSource(Source):
    kind = "webdataset"

    def __init__(self, spec: str | Path):
        super().__init__(spec)
        self._spec = str(spec)
        self.tars = _tar_files(self._spec)
        # one pass over the tar headers keeps only a count per tar; `iter_refs` re-indexes one tar
        # at a time, so millions of samples never sit in the driver as Python objects
        self._counts = np.array([len(_index_tar(p)) for p in self.tars], dtype=np.int64)
        self._starts = np.concatenate([[0], np.cumsum(self._counts)])
        if not self._starts[-1]:
            raise ZssError(f"no samples in {self._spec}")

    def _count(self) -> int:
        return int(self._starts[-1])

    def iter_refs(self, start: int = 0) -> Iterator[dict[str, Any]]:
        if start >= len(self):
            return
        t = int(np.searchsorted(self._starts, start, side="right")) - 1
        index, skip = start, start - int(self._starts[t])
        for t in range(t, len(self.tars)):
            tar = str(self.tars[t])
            for key, members in _index_tar(self.tars[t])[skip:]:
                yield {"kind": self.kind, "index": index, "source_id": key, "tar": tar,
                       "members": {ext: list(m) for ext, m in members.items()}}
                index += 1
            skip = 0

    @staticmethod
    def load(ref: dict[str, Any]) -> Row:
        index, key, members = ref["index"], ref["source_id"], ref["members"]
        captions: list[str] = []
        try:
            with open(ref["tar"], "rb") as f:
                meta: dict[str, Any] = {}
                if "json" in members:
                    try:
                        meta = json.loads(_read(f, members["json"], MAX_SIDECAR_BYTES, f"{key}.json"))
                    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                        raise BadItem("bad_caption", f"{key}.json does not parse: {exc}") from None
                    if not isinstance(meta, dict):
                        raise BadItem("bad_caption", f"{key}.json is not an object")
                if isinstance(meta.get("captions"), list):
                    raw: list = meta["captions"]
                elif "txt" in members:
                    raw = [_read(f, members["txt"], MAX_SIDECAR_BYTES, f"{key}.txt")]
                elif "caption" in meta:
                    raw = [meta["caption"]]
                else:
                    raw = []
                captions = check_captions(raw)
                ext = next((e for e in IMAGE_EXTS if e in members), None)
                if ext is None:
                    raise BadItem("missing_file", f"sample {key} has no image member")
                data = _read(f, members[ext], MAX_IMAGE_BYTES, f"{key}.{ext}")
        except OSError as exc:
            return failed_row(index, key, BadItem("missing_file", f"cannot read {ref['tar']}: "
                                                                  f"{exc.strerror or exc}"))
        except BadItem as exc:
            return failed_row(index, key, exc, captions)
        return make_row(index, key, data, captions)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self._spec, "tars": [str(t.resolve()) for t in self.tars],
                "n": len(self)}
