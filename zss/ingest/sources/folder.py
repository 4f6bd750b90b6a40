"""A plain image folder (recursive), each image with an optional sidecar `.txt` of captions
(one per line)."""

from __future__ import annotations

import os
from itertools import islice
from pathlib import Path
from typing import Any, Iterator

from zss.errors import ZssError
from zss.ingest.sources.base import (BadItem, Row, Source, failed_row, make_row, read_file,
                                       read_sidecar_captions, require_folder)

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


def _walk(root: Path, rel: str = "") -> Iterator[str]:
    """Image files under `root` as relative POSIX paths, in sorted-path order, one directory
    listing at a time: a directory's entries sorted with dirs keyed `name/` is exactly the order
    `sorted()` gives the full paths, so nothing but the current listings is ever held."""
    try:
        entries = list(os.scandir(root / rel if rel else root))
    except OSError:
        return
    keyed = []
    for e in entries:
        try:
            is_dir = e.is_dir()
            recurse = is_dir and not e.is_symlink()  # like Path.rglob: no symlinked dirs
        except OSError:
            continue
        if recurse:
            keyed.append((e.name + "/", True))
        elif not is_dir and Path(e.name).suffix.lower() in IMAGE_EXTS:
            keyed.append((e.name, False))
    del entries
    keyed.sort()
    for key, is_dir in keyed:
        if is_dir:
            yield from _walk(root, rel + key)
        else:
            yield rel + key


class FolderSource(Source):
    kind = "folder"

    def __init__(self, path: str | Path):
        super().__init__(path)
        require_folder(self.path, "image folder")
        if not len(self):
            raise ZssError(f"no images ({', '.join(sorted(IMAGE_EXTS))}) under {self.path}")

    def _count(self) -> int:
        return sum(1 for _ in _walk(self.path))

    def iter_refs(self, start: int = 0) -> Iterator[dict[str, Any]]:
        for index, rel in enumerate(islice(_walk(self.path), start, None), start):
            path = self.path / rel
            yield {"kind": self.kind, "index": index, "source_id": rel.rsplit(".", 1)[0],
                   "path": str(path), "txt": str(path.with_suffix(".txt"))}

    @staticmethod
    def load(ref: dict[str, Any]) -> Row:
        captions: list[str] = []
        try:
            captions = read_sidecar_captions(Path(ref["txt"]))
            data = read_file(ref["path"])
        except BadItem as exc:
            return failed_row(ref["index"], ref["source_id"], exc, captions)
        return make_row(ref["index"], ref["source_id"], data, captions)
