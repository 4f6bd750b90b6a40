"""COCO Captions: an annotation JSON (`images` + `annotations`) and an image folder.

All captions of an image are kept, in annotation order; images are ordered by id so the input
order (and so every shard key) is the same on every run.
"""

from __future__ import annotations

import json
import re
from array import array
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

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


_WS = re.compile(r"[ \t\n\r]*")


class _Scanner:
    """Walks a JSON document's top-level object one array element at a time (`raw_decode` on each),
    so only one element's dict exists at a time; positions are reported as byte offsets."""

    def __init__(self, text: str):
        self.text, self.dec = text, json.JSONDecoder()
        self.ascii = text.isascii()
        self._char, self._byte = 0, 0

    def skip(self, pos: int) -> int:
        return _WS.match(self.text, pos).end()  # type: ignore[union-attr]

    def byte(self, pos: int) -> int:
        """Byte offset of char `pos` (positions only ever grow, so this is linear overall)."""
        if self.ascii:
            return pos
        self._byte += len(self.text[self._char:pos].encode("utf-8"))
        self._char = pos
        return self._byte

    def expect(self, pos: int, chars: str) -> str:
        if pos >= len(self.text) or self.text[pos] not in chars:
            raise ValueError(f"expected one of {chars!r} at char {pos}")
        return self.text[pos]

    def array(self, pos: int, on_item: Callable[[Any, int, int], None]) -> int:
        """Call on_item(value, byte start, byte end) for each element of the array at `pos`;
        return the position after its `]`."""
        self.expect(pos, "[")
        pos = self.skip(pos + 1)
        if self.text.startswith("]", pos):
            return pos + 1
        while True:
            value, end = self.dec.raw_decode(self.text, pos)
            on_item(value, self.byte(pos), self.byte(end))
            pos = self.skip(end)
            if self.expect(pos, ",]") == "]":
                return pos + 1
            pos = self.skip(pos + 1)

    def top(self, arrays: dict[str, Callable[[Any, int, int], None]]) -> set[str]:
        """Feed the named top-level arrays to their callbacks; return the top-level keys seen."""
        pos = self.skip(0)
        self.expect(pos, "{")
        pos = self.skip(pos + 1)
        keys: set[str] = set()
        if self.text.startswith("}", pos):
            return keys
        while True:
            self.expect(pos, '"')
            key, pos = self.dec.raw_decode(self.text, pos)
            keys.add(key)
            pos = self.skip(pos)
            self.expect(pos, ":")
            pos = self.skip(pos + 1)
            if key in arrays:
                pos = self.array(pos, arrays[key])
            else:
                _, pos = self.dec.raw_decode(self.text, pos)
            pos = self.skip(pos)
            if self.expect(pos, ",}") == "}":
                return keys
            pos = self.skip(pos + 1)


class CocoSource(Source):
    """The index is a handful of int64 arrays (byte spans of each image and annotation object in
    the JSON, images in id order, each image's annotations in file order); a ref carries its spans
    and the worker re-reads those objects from the file. Opening parses the JSON one element at a time, so the
    file never turns into one Python dict per image or caption."""

    kind = "coco"

    def __init__(self, path: str | Path, image_dir: str | Path | None = None):
        path = Path(path)
        ann = path / "captions.json" if path.is_dir() else path
        if not ann.is_file():
            raise ZssError(f"COCO captions JSON not found: {ann}")
        super().__init__(ann)
        self.image_dir = Path(image_dir) if image_dir else _find_image_dir(ann)
        img_ids: list[Any] = []
        img_span = array("q")
        ann_ids: list[Any] = []
        ann_span = array("q")

        def on_image(im: Any, a: int, b: int) -> None:
            im["file_name"]  # noqa: B018 - a KeyError here names a malformed file
            img_ids.append(im["id"])
            img_span.extend((a, b))

        def on_annotation(an: Any, a: int, b: int) -> None:
            ann_ids.append(an["image_id"])
            ann_span.extend((a, b))

        try:
            text = ann.read_bytes().decode("utf-8")
            keys = _Scanner(text).top({"images": on_image, "annotations": on_annotation})
            del text
            if "images" not in keys:
                raise KeyError("images")
            order, ann_order, ann_image = _group(img_ids, ann_ids)
        except (ValueError, UnicodeDecodeError, KeyError, TypeError) as exc:
            raise ZssError(f"{ann} is not a COCO captions file: {exc}") from exc
        spans = np.frombuffer(img_span, dtype=np.int64).reshape(-1, 2)
        self._img = spans[order].copy()  # images in id order (stable: as today's sorted())
        aspans = np.frombuffer(ann_span, dtype=np.int64).reshape(-1, 2)
        self._ann = aspans[ann_order].copy()  # annotations grouped by image position, file order
        # image k's annotations: self._ann[first[k]:first[k + 1]]
        self._first = np.searchsorted(ann_image, np.arange(len(order) + 1)).astype(np.int64)

    def _count(self) -> int:
        return int(len(self._img))

    BLOCK = 4096  # refs are cut from the index arrays this many images at a time

    def iter_refs(self, start: int = 0) -> Iterator[dict[str, Any]]:
        """Refs carry byte spans into the JSON (the worker reads and checks the objects), so the
        driver spends a few microseconds per item and never parses a caption."""
        path, image_dir, n = str(self.path), str(self.image_dir), len(self)
        for b0 in range(start, n, self.BLOCK):
            b1 = min(n, b0 + self.BLOCK)
            images = self._img[b0:b1].tolist()
            first = self._first[b0:b1 + 1].tolist()
            anns = self._ann[first[0]:first[-1]].tolist()
            base = first[0]
            for j, span in enumerate(images):
                yield {"kind": self.kind, "index": b0 + j, "json": path, "image_dir": image_dir,
                       "image": span, "annotations": anns[first[j] - base:first[j + 1] - base]}

    @staticmethod
    def resolve(ref: dict[str, Any]) -> dict[str, Any]:
        """A span ref -> {index, source_id, path, captions}, reading its objects from the JSON."""
        with open(ref["json"], "rb") as f:
            def obj(span: list[int]) -> Any:
                f.seek(span[0])
                return json.loads(f.read(span[1] - span[0]))

            im = obj(ref["image"])
            captions = [obj(span).get("caption") for span in ref["annotations"]]
        return {"index": ref["index"], "source_id": str(im["id"]),
                "path": str(Path(ref["image_dir"]) / str(im["file_name"])), "captions": captions}

    @staticmethod
    def load(ref: dict[str, Any]) -> Row:
        if "json" in ref:
            ref = CocoSource.resolve(ref)
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


def _group(img_ids: list[Any], ann_ids: list[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image order by id, annotation order grouped by image then file order, each sorted
    annotation's image position). Annotations of an unknown image id are dropped (as before)."""
    n = len(img_ids)
    if all(type(i) is int for i in img_ids) and all(type(i) is int for i in ann_ids):
        ids = np.asarray(img_ids, dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        sorted_ids = ids[order]
        anns = np.asarray(ann_ids, dtype=np.int64)
        pos = np.searchsorted(sorted_ids, anns)
        pos_c = np.minimum(pos, max(n - 1, 0))
        known = (pos < n) & (sorted_ids[pos_c] == anns) if n else np.zeros(len(anns), bool)
    else:  # ids of other JSON types: Python's order, as `sorted(images, key=id)` had it
        order = np.asarray(sorted(range(n), key=img_ids.__getitem__), dtype=np.int64)
        where: dict[Any, int] = {}
        for p, i in enumerate(order.tolist()):
            where.setdefault(img_ids[i], p)
        pos = np.asarray([where.get(a, -1) if isinstance(a, (int, str, float)) else -1 for a in ann_ids],
                         dtype=np.int64)
        known = pos >= 0
    idx = np.flatnonzero(known)
    ann_order = idx[np.argsort(pos[idx], kind="stable")]
    return order, ann_order, pos[ann_order]
