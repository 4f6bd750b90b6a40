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
from pathlib import Path
from typing import Any, Iterator

MAX_CAPTION_CHARS = 4096  # COCO captions are < 300 chars; anything this long is junk or an attack
MAX_CAPTIONS = 64
MAX_SIDECAR_BYTES = 1 << 20
MAX_IMAGE_BYTES = 256 << 20  # a file larger than this is refused before it is read

Row = dict[str, Any]


class BadItem(Exception):
    """A per-item failure; `kind` becomes the row's status (`missing_file`, `bad_caption`, ...)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


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


class Source(ABC):
    """A fixed, ordered list of input items. `len`, iteration, refs for workers, a description."""

    kind: str = ""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def ref(self, index: int) -> dict[str, Any]:
        """A small JSON-able description of item `index`, enough for `load_ref` in a worker."""

    @staticmethod
    @abstractmethod
    def load(ref: dict[str, Any]) -> Row:
        """The row of a ref (never raises for a per-item problem)."""

    def describe(self) -> dict[str, Any]:
        """What the manifest records about the input."""
        return {"kind": self.kind, "path": str(self.path.resolve()), "n": len(self)}

    def refs(self, start: int = 0, stop: int | None = None) -> list[dict[str, Any]]:
        stop = len(self) if stop is None else min(stop, len(self))
        return [self.ref(i) for i in range(start, stop)]

    def __iter__(self) -> Iterator[Row]:
        for i in range(len(self)):
            yield self.load(self.ref(i))
