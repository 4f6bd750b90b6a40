"""A plain image folder (recursive), each image with an optional sidecar `.txt` of captions
(one per line)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zss.errors import ZssError
from zss.ingest.sources.base import (BadItem, Row, Source, failed_row, make_row, read_file,
                                       read_sidecar_captions)

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


class FolderSource(Source):
    kind = "folder"

    def __init__(self, path: str | Path):
        super().__init__(path)
        if not self.path.is_dir():
            raise ZssError(f"image folder not found: {self.path}")
        self._files = sorted(p.relative_to(self.path).as_posix() for p in self.path.rglob("*")
                             if p.suffix.lower() in IMAGE_EXTS and not p.is_dir())
        if not self._files:
            raise ZssError(f"no images ({', '.join(sorted(IMAGE_EXTS))}) under {self.path}")

    def __len__(self) -> int:
        return len(self._files)

    def ref(self, index: int) -> dict[str, Any]:
        rel = self._files[index]
        path = self.path / rel
        return {"kind": self.kind, "index": index, "source_id": rel.rsplit(".", 1)[0],
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
