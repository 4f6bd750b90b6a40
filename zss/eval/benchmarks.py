"""Readers for the standard segmentation benchmarks in their usual (mmsegmentation) folder layouts.

Each benchmark knows where its images and label maps live under a data root, which class file names
its label ids, and whether mmseg evaluates it with `reduce_zero_label` (label 0 = "unlabelled/
background" dropped, ids shifted down by one). The data root may be the dataset folder itself or a
folder holding it under its usual name (e.g. `DATA/VOCdevkit/VOC2012`); see docs/eval.md.
Label maps are read as stored (palette PNGs give their palette indices, as mmseg's pillow backend does).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image, ImageOps

from zss.errors import ZssError
from zss.formats.vocab import Vocabulary, read_class_file

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass(frozen=True)
class Sample:
    """One evaluation image: an id (used for prediction file names), its image and label paths."""

    id: str
    image: Path
    label: Path


def load_image(path: Path) -> np.ndarray:
    """RGB uint8 [H,W,3], EXIF orientation applied (as mmcv's `imread(flag='color')` does)."""
    try:
        with Image.open(path) as im:
            return np.array(ImageOps.exif_transpose(im).convert("RGB"))
    except (OSError, ValueError) as exc:
        raise ZssError(f"cannot read image {path}: {exc}") from exc


def load_label(path: Path) -> np.ndarray:
    """Label ids as stored: palette indices for mode-P PNGs, gray values otherwise."""
    try:
        with Image.open(path) as im:
            arr = np.asarray(im)
    except (OSError, ValueError) as exc:
        raise ZssError(f"cannot read label map {path}: {exc}") from exc
    if arr.ndim == 3:  # RGB-saved gray labels: all channels equal
        arr = arr[..., 0]
    return arr


def _first_dir(root: Path, candidates: list[str], required: list[str]) -> Path | None:
    """The first `root/candidate` that contains every `required` relative path."""
    for cand in candidates:
        base = root / cand if cand else root
        if all((base / r).exists() for r in required):
            return base
    return None


def _split_file(base: Path, split: str, img_dir: str, ann_dir: str, img_ext: str) -> list[Sample]:
    ids = [line.strip() for line in (base / split).read_text().splitlines() if line.strip()]
    samples = [Sample(i, base / img_dir / f"{i}{img_ext}", base / ann_dir / f"{i}.png") for i in ids]
    missing = [s for s in samples if not s.image.is_file() or not s.label.is_file()]
    if missing:
        raise ZssError(f"{base / split} lists {len(missing)} image(s) without image or label file, "
                       f"e.g. {missing[0].id}")
    return samples


def _suffix_pairs(img_root: Path, ann_root: Path, img_suffix: str, ann_suffix: str,
                  recursive: bool = False) -> list[Sample]:
    """Pair `X{ann_suffix}` label files with `X{img_suffix}` images (same relative folder)."""
    pattern = f"**/*{ann_suffix}" if recursive else f"*{ann_suffix}"
    samples = []
    for label in sorted(ann_root.glob(pattern)):
        rel = label.relative_to(ann_root)
        stem = rel.name[: -len(ann_suffix)]
        image = img_root / rel.parent / f"{stem}{img_suffix}"
        if not image.is_file():
            raise ZssError(f"label {label} has no image {image}")
        samples.append(Sample(str(rel.parent / stem) if recursive else stem, image, label))
    return samples


def _voc(root: Path) -> list[Sample] | None:
    base = _first_dir(root, ["", "VOC2012", "VOCdevkit/VOC2012"],
                      ["JPEGImages", "SegmentationClass", "ImageSets/Segmentation/val.txt"])
    if base is None:
        return None
    return _split_file(base, "ImageSets/Segmentation/val.txt", "JPEGImages", "SegmentationClass", ".jpg")


def _context(root: Path) -> list[Sample] | None:
    base = _first_dir(root, ["", "VOC2010", "VOCdevkit/VOC2010"],
                      ["JPEGImages", "SegmentationClassContext", "ImageSets/SegmentationContext/val.txt"])
    if base is None:
        return None
    return _split_file(base, "ImageSets/SegmentationContext/val.txt", "JPEGImages",
                       "SegmentationClassContext", ".jpg")


_COCO_DIRS = ["", "coco_stuff164k", "coco_stuff", "cocostuff", "coco"]


def _coco(ann_suffix: str, extra: list[str]) -> Callable[[Path], list[Sample] | None]:
    def read(root: Path) -> list[Sample] | None:
        for cand in extra + _COCO_DIRS:
            base = _first_dir(root, [cand], ["images/val2017", "annotations/val2017"])
            if base is not None and next((base / "annotations/val2017").glob(f"*{ann_suffix}"), None):
                return _suffix_pairs(base / "images/val2017", base / "annotations/val2017", ".jpg", ann_suffix)
        return None
    return read


def _cityscapes(root: Path) -> list[Sample] | None:
    base = _first_dir(root, ["", "cityscapes"], ["leftImg8bit/val", "gtFine/val"])
    if base is None:
        return None
    return _suffix_pairs(base / "leftImg8bit/val", base / "gtFine/val", "_leftImg8bit.png",
                         "_gtFine_labelTrainIds.png", recursive=True)


def _ade(root: Path) -> list[Sample] | None:
    base = _first_dir(root, ["", "ADEChallengeData2016", "ade/ADEChallengeData2016"],
                      ["images/validation", "annotations/validation"])
    if base is None:
        return None
    return _suffix_pairs(base / "images/validation", base / "annotations/validation", ".jpg", ".png")


def _synth(root: Path) -> list[Sample] | None:
    base = _first_dir(root, [""], ["classes.txt", "val/images", "val/annotations"])
    if base is None:
        return None
    return _suffix_pairs(base / "val/images", base / "val/annotations", ".jpg", ".png")


@dataclass(frozen=True)
class Benchmark:
    """A benchmark: name, paper column label, class list, mmseg's reduce_zero_label, its reader."""

    name: str
    column: str
    classes: str                      # class-list name (zss/manifests/classes) or "world" for synth
    reduce_zero_label: bool
    reader: Callable[[Path], list[Sample] | None]
    layout: str                       # what docs/eval.md and error messages show

    def samples(self, data_root: Path, limit: int | None = None) -> list[Sample]:
        """Samples in a stable order; `ZssError` when the layout is not found under `data_root`."""
        root = Path(data_root)
        if not root.is_dir():
            raise ZssError(f"data root {root} is not a directory")
        found = self.reader(root)
        if found is None:
            raise ZssError(f"{self.name}: expected {self.layout} under {root}")
        if not found:
            raise ZssError(f"{self.name}: no labelled images found under {root}")
        return found[:limit] if limit else found

    def available(self, data_root: Path) -> bool:
        return self.reader(Path(data_root)) is not None

    def vocabulary(self, data_root: Path) -> Vocabulary:
        if self.classes == "world":
            return Vocabulary.build(read_class_file(Path(data_root) / "classes.txt"))
        return Vocabulary.from_file(self.classes)

    def num_classes(self, data_root: Path) -> int:
        return len(self.vocabulary(data_root))

    def iter_data(self, data_root: Path, limit: int | None = None
                  ) -> Iterator[tuple[Sample, np.ndarray, np.ndarray]]:
        """(sample, RGB image, raw label map) — the metric applies reduce_zero_label."""
        for sample in self.samples(data_root, limit):
            yield sample, load_image(sample.image), load_label(sample.label)


BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (
    Benchmark("voc21", "V21", "voc21", False, _voc,
              "VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation/val.txt}"),
    Benchmark("context60", "C60", "context60", False, _context,
              "VOCdevkit/VOC2010/{JPEGImages,SegmentationClassContext,ImageSets/SegmentationContext/val.txt}"),
    Benchmark("coco_object", "Obj", "coco_object81", False,
              _coco("_instanceTrainIds.png", ["coco_object"]),
              "coco_stuff164k/{images,annotations}/val2017 with *_instanceTrainIds.png"),
    Benchmark("voc20", "V20", "voc20", True, _voc,
              "VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation/val.txt}"),
    Benchmark("context59", "C59", "context59", True, _context,
              "VOCdevkit/VOC2010/{JPEGImages,SegmentationClassContext,ImageSets/SegmentationContext/val.txt}"),
    Benchmark("coco_stuff", "Stuff", "coco_stuff171", False, _coco("_labelTrainIds.png", []),
              "coco_stuff164k/{images,annotations}/val2017 with *_labelTrainIds.png"),
    Benchmark("cityscapes", "City", "cityscapes19", False, _cityscapes,
              "cityscapes/{leftImg8bit,gtFine}/val/CITY/*_{leftImg8bit,gtFine_labelTrainIds}.png"),
    Benchmark("ade20k", "ADE", "ade150", True, _ade,
              "ADEChallengeData2016/{images,annotations}/validation"),
    Benchmark("synth", "Synth", "world", False, _synth,
              "a zss synthetic world: classes.txt, val/images, val/annotations"),
)}

# The papers' summary-table order (SCLIP, ClearCLIP, SimZSS): with background first, then without.
PAPER_ORDER = ["voc21", "context60", "coco_object", "voc20", "context59", "coco_stuff", "cityscapes", "ade20k"]


def get_benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise ZssError(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)} or 'all'")
    return BENCHMARKS[name]


def find_benchmarks(data_root: Path, names: list[str] | None = None) -> list[Benchmark]:
    """The standard benchmarks (paper order) whose layout exists under `data_root`."""
    return [BENCHMARKS[n] for n in (names or PAPER_ORDER) if BENCHMARKS[n].available(data_root)]
