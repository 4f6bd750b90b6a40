"""What every benchmark converter shares: finding the official files, placing images, writing label
maps atomically, and a resumable conversion loop with a progress display.

A converter turns an official download (RAW) into the layout `zss eval --data-root OUT` reads
(`zss.eval.benchmarks`). Images are hard-linked into OUT (copied across file systems); label maps
are written to a temporary name and renamed, so an interrupted run never leaves a half-written file
that a second run would take as done: the second run skips every file already there.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from PIL import Image

from zss.errors import ZssError
from zss.utils.progress import progress_bar


def find_dir(raw: Path, candidates: Iterable[str], required: Iterable[str]) -> Path | None:
    """The first `raw/candidate` holding every `required` relative path."""
    required = list(required)
    for cand in candidates:
        base = raw / cand if cand else raw
        if all((base / r).exists() for r in required):
            return base
    return None


def missing(what: str, path: Path, hint: str = "") -> ZssError:
    """The one-line error for a file or folder an official download should have."""
    return ZssError(f"missing {path} ({what}){': ' + hint if hint else ''}")


def read_png(path: Path) -> np.ndarray:
    """A label PNG as stored (palette indices or gray values), or one line naming a damaged file."""
    try:
        with Image.open(path) as im:
            im.load()
            arr = np.asarray(im)
    except (OSError, ValueError, SyntaxError) as exc:
        raise ZssError(f"cannot read {path} ({type(exc).__name__}): a damaged or half-extracted download?") from exc
    return arr[..., 0] if arr.ndim == 3 else arr


def write_label(path: Path, label: np.ndarray) -> None:
    """Save a uint8 label map as a gray PNG (what mmseg's converters write), atomically."""
    if label.dtype != np.uint8:
        raise AssertionError(f"label maps are uint8, got {label.dtype}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(label, mode="L").save(tmp, format="PNG")
    os.replace(tmp, path)


def place_image(src: Path, dest: Path) -> None:
    """`dest` becomes the image `src`: a hard link, or a copy when linking is not possible."""
    if dest.is_file():
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dest)


def lookup_table(pairs: dict[int, int], size: int, default: int) -> np.ndarray:
    """A uint8 table `size` long: `pairs` (raw id -> label id), every other raw id -> `default`."""
    lut = np.full(size, default, dtype=np.uint8)
    for raw_id, label_id in pairs.items():
        lut[raw_id] = label_id
    return lut


@dataclass(frozen=True)
class Item:
    """One image to prepare: its id, the official image, where it goes, where its labels go, and the
    official annotation file it is made from (when there is one per image)."""

    id: str
    image: Path
    image_out: Path
    label_out: Path
    source: Path | None = None


def convert(items: list[Item], make_label: Callable[[Item], np.ndarray], description: str) -> tuple[int, int]:
    """Write every item's label map (and place its image); items whose label map is already there
    are skipped. Returns (converted, skipped)."""
    done = skipped = 0
    with progress_bar() as bar:
        task = bar.add_task(description, total=len(items), unit="images")
        for item in items:
            place_image(item.image, item.image_out)
            if item.label_out.is_file():
                skipped += 1
            else:
                write_label(item.label_out, make_label(item))
                done += 1
            bar.update(task, advance=1)
    return done, skipped


def summary(name: str, out: Path, done: int, skipped: int, official: int, protocols: str) -> str:
    total = done + skipped
    note = "" if total == official else f" (the official val split has {official})"
    return (f"{name}: {total} val images{note} in {out} — {done} converted, {skipped} already there\n"
            f"score with: zss eval MODEL --benchmark {protocols} --data-root {out}")


def pair(images: Path, image_suffix: str, labels: Path, label_suffix: str,
         skip: tuple[str, ...] = ()) -> list[tuple[str, Path, Path]]:
    """(id, image, label) for every `REL/ID{label_suffix}` under `labels` and `REL/ID{image_suffix}`
    under `images`, in a stable order. An image without its label map, or a label map without its
    image (one archive only half extracted), is one line naming the missing file. Label files whose
    name ends with one of `skip` (earlier conversions written in place) are not inputs."""
    found_labels = {str(p.relative_to(labels))[: -len(label_suffix)]: p
                    for p in labels.rglob(f"*{label_suffix}") if not p.name.endswith(skip)}
    found_images = {str(p.relative_to(images))[: -len(image_suffix)]: p
                    for p in images.rglob(f"*{image_suffix}")}
    for key in sorted(found_labels):
        if key not in found_images:
            raise missing("the image of a label map", images / f"{key}{image_suffix}",
                          "the image archive is incomplete")
    for key in sorted(found_images):
        if key not in found_labels:
            raise missing("the label map of an image", labels / f"{key}{label_suffix}",
                          "the annotation archive is incomplete")
    if not found_labels:
        raise ZssError(f"no *{label_suffix} label maps under {labels}")
    return [(key, found_images[key], found_labels[key]) for key in sorted(found_labels)]


def remap(lut: np.ndarray, raw: np.ndarray, path: Path) -> np.ndarray:
    """`lut[raw]`, or one line naming the file when it holds ids the table has no room for."""
    if raw.size and int(raw.max()) >= len(lut):
        raise ZssError(f"{path} holds id {int(raw.max())}, beyond the {len(lut)} ids of its dataset's table")
    return lut[raw]
