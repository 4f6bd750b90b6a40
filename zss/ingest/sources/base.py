"""What every source reader shares: the row format, caption and SA-1B checks, the Source API.

A source is split in two so the Ray runner can spread the I/O: the driver opens the source once
(parses the COCO JSON, lists the folder, indexes the tars) and hands out small JSON-able *refs*;
workers turn refs into rows with `load_ref`, without re-opening the source. A row is one input
sample in the ingest batch format (docs/contracts.md); a broken item becomes a row with a status
and an error message, never an exception, so one bad file cannot stop a million-image job.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from itertools import islice
from pathlib import Path
from typing import Any, Iterator

from zss.errors import BadItem, ZssError
from zss.formats.rle import check_sa1b_annotations, parse_sa1b_json  # noqa: F401  (sources use them)

MAX_CAPTION_CHARS = 4096  # COCO captions are < 300 chars; anything this long is junk or an attack
MAX_CAPTIONS = 64
MAX_SIDECAR_BYTES = 1 << 20
MAX_IMAGE_BYTES = 256 << 20  # a file larger than this is refused before it is read

Row = dict[str, Any]



def make_row(index: int, source_id: str, image_bytes: bytes = b"", captions: list[str] | None = None,
             src_masks: str = "", status: str = "ok", error: str = "") -> Row:
    return {"index": int(index), "source_id": str(source_id), "status": status, "error": error,
            "image_bytes": image_bytes, "captions": json.dumps(captions or [], ensure_ascii=False),
            "src_masks": src_masks}


def failed_row(index: int, source_id: str, exc: BadItem, captions: list[str] | None = None) -> Row:
    return make_row(index, source_id, captions=captions, status=exc.kind, error=str(exc))


def check_caption(text: str | bytes) -> str:
    """A caption as clean text; `BadItem("bad_caption")` when non-UTF-8, empty or huge."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadItem("bad_caption", f"caption is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    if not isinstance(text, str):
        raise BadItem("bad_caption", f"caption is a {type(text).__name__}, not text")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates smuggled in through JSON escapes
        raise BadItem("bad_caption", "caption is not valid UTF-8 (lone surrogate)") from None
    text = " ".join(text.split())
    if not text:
        raise BadItem("bad_caption", "empty caption")
    if len(text) > MAX_CAPTION_CHARS:
        raise BadItem("bad_caption", f"caption of {len(text)} chars exceeds {MAX_CAPTION_CHARS}")
    return text


def check_captions(texts: list[str | bytes]) -> list[str]:
    if len(texts) > MAX_CAPTIONS:
        raise BadItem("bad_caption", f"{len(texts)} captions exceed {MAX_CAPTIONS}")
    return [check_caption(t) for t in texts]


def read_file(path: str | Path, limit: int = MAX_IMAGE_BYTES) -> bytes:
    """File bytes; `missing_file` / `too_large` rows instead of OSErrors."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > limit:
            raise BadItem("too_large", f"{p.name}: {size} bytes exceed {limit}")
        return p.read_bytes()
    except FileNotFoundError:
        raise BadItem("missing_file", f"file not found: {p}") from None
    except IsADirectoryError:
        raise BadItem("missing_file", f"{p} is a directory") from None
    except PermissionError:
        raise BadItem("missing_file", f"permission denied: {p}") from None
    except OSError as exc:  # I/O errors of a flaky disk or network mount
        raise BadItem("missing_file", f"cannot read {p}: {exc.strerror or exc}") from None


def read_sidecar_captions(path: Path) -> list[str]:
    """Captions from a `.txt` beside an image: one per non-empty line; [] when there is no file."""
    if not path.is_file():
        return []
    data = read_file(path, MAX_SIDECAR_BYTES)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadItem("bad_caption", f"{path.name} is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise BadItem("bad_caption", f"{path.name} holds an empty caption")
    return check_captions(lines)


def require_folder(path: Path, what: str) -> None:
    """`ZssError("WHAT not found: PATH")` unless `path` is a directory (a source read from a folder)."""
    if not path.is_dir():
        raise ZssError(f"{what} not found: {path}")


class Source(ABC):
    """A fixed, ordered sequence of input items, enumerated lazily.

    `iter_refs(start)` yields the refs of items start, start+1, ... in one deterministic order
    without building the whole list (a reader holds at most a compact index: numbers and offsets,
    or one input tar / directory at a time), so the driver's memory does not grow with the
    dataset. `len` is counted once (a pass that keeps nothing per item) and cached."""

    kind: str = ""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._n: int | None = None

    @abstractmethod
    def _count(self) -> int:
        """The number of items (called once; must not keep per-item Python objects)."""

    @abstractmethod
    def iter_refs(self, start: int = 0) -> Iterator[dict[str, Any]]:
        """Small JSON-able descriptions of items start, start+1, ..., enough for `load_ref` in a worker."""

    @staticmethod
    @abstractmethod
    def load(ref: dict[str, Any]) -> Row:
        """The row of a ref (never raises for a per-item problem)."""

    def __len__(self) -> int:
        if self._n is None:
            self._n = self._count()
        return self._n

    def ref(self, index: int) -> dict[str, Any]:
        """Item `index`'s ref (a convenience; the runner walks `iter_refs`)."""
        for r in self.iter_refs(index):
            return r
        raise IndexError(f"item {index} of a {len(self)}-item source")

    def refs(self, start: int = 0, stop: int | None = None) -> list[dict[str, Any]]:
        stop = len(self) if stop is None else min(stop, len(self))
        return list(islice(self.iter_refs(start), max(0, stop - start)))

    def describe(self) -> dict[str, Any]:
        """What the manifest records about the input."""
        return {"kind": self.kind, "path": str(self.path.resolve()), "n": len(self)}

    def __iter__(self) -> Iterator[Row]:
        for r in self.iter_refs():
            yield self.load(r)
