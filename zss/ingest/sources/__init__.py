"""Source readers, one per input layout: `open_source("KIND:PATH" | PATH)` and `load_ref(ref)`.

Kinds: `coco` (captions JSON + image folder), `sa1b` (sa_*.jpg + sa_*.json), `webdataset`
(img2dataset tars), `folder` (images + optional .txt). A bare PATH is inspected to pick the kind;
a synthetic world's root (`world.json`) resolves to its COCO captions source.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zss.errors import ZssError
from zss.ingest.sources.base import BadItem, Row, Source, make_row
from zss.ingest.sources.coco import CocoSource
from zss.ingest.sources.folder import FolderSource
from zss.ingest.sources.sa1b import Sa1bSource
from zss.ingest.sources.webdataset import WebDatasetSource

SOURCES: dict[str, type[Source]] = {"coco": CocoSource, "sa1b": Sa1bSource,
                                    "webdataset": WebDatasetSource, "folder": FolderSource}
__all__ = ["BadItem", "Row", "Source", "SOURCES", "open_source", "load_ref", "infer_kind"]


def infer_kind(path: Path) -> tuple[str, Path]:
    """Pick a reader for a bare path by looking at what is there."""
    if path.is_file():
        if path.suffix == ".json":
            return "coco", path
        if path.suffix == ".tar":
            return "webdataset", path
        raise ZssError(f"cannot tell the source kind of file {path}; prefix it with KIND:")
    if not path.is_dir():
        if "{" in str(path):
            return "webdataset", path
        raise ZssError(f"source not found: {path}")
    if (path / "world.json").is_file():
        return "coco", path / "train"
    if (path / "captions.json").is_file():
        return "coco", path
    if any(path.glob("sa_*.json")):
        return "sa1b", path
    if any(path.glob("*.tar")):
        return "webdataset", path
    return "folder", path


def open_source(spec: str | Path) -> Source:
    """`coco:PATH[:IMAGE_DIR]`, `sa1b:PATH`, `webdataset:PATH|PATTERN|DIR`, `folder:PATH`, or PATH."""
    text = str(spec)
    kind, _, rest = text.partition(":")
    if kind in SOURCES and rest:
        if kind == "coco":
            path, _, image_dir = rest.partition(":")
            p = Path(path)
            if (p / "world.json").is_file():
                p = p / "train"
            return CocoSource(p, image_dir or None)
        return SOURCES[kind](rest)
    if ":" in text and not Path(text).exists() and kind.isidentifier() and len(kind) > 1:
        raise ZssError(f"unknown source kind {kind!r} (expected one of {', '.join(SOURCES)})")
    kind, path = infer_kind(Path(text))
    return SOURCES[kind](path if kind != "webdataset" else str(path))


def load_ref(ref: dict[str, Any]) -> Row:
    """Turn a ref from `Source.ref` into a row (in a worker, without re-opening the source).

    Readers turn every foreseen problem into a status; anything else an odd input triggers still
    becomes this item's `read_error` row, so one file can never stop the job."""
    try:
        return SOURCES[ref["kind"]].load(ref)
    except Exception as exc:  # noqa: BLE001 - recorded in the row, counted in the stats
        return make_row(ref["index"], ref.get("source_id", f"#{ref['index']}"), status="read_error",
                        error=f"{type(exc).__name__}: {exc}"[:500])
