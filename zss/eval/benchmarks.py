"""Readers for the standard segmentation benchmarks in their usual (mmsegmentation) folder layouts.

Each benchmark knows where its images and label maps live under a data root, which class file names
its label ids, and whether mmseg evaluates it with `reduce_zero_label` (label 0 = "unlabelled/
background" dropped, ids shifted down by one). The data root may be the dataset folder itself or a
folder holding it under its usual name (e.g. `DATA/VOCdevkit/VOC2012`); see docs/eval.md.
Label maps are read as stored (palette PNGs give their palette indices, as mmseg's pillow backend does).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import yaml
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


def _image_pairs(img_root: Path, ann_root: Path) -> list[Sample]:
    """Pair `annotations/REL/X.png` with `images/REL/X.<any image extension>`."""
    samples = []
    for label in sorted(ann_root.rglob("*.png")):
        rel = label.relative_to(ann_root).with_suffix("")
        image = next((img_root / rel.parent / f"{rel.name}{ext}" for ext in IMAGE_EXTS
                      if (img_root / rel.parent / f"{rel.name}{ext}").is_file()), None)
        if image is None:
            raise ZssError(f"label {label} has no image {img_root / rel}.{{{','.join(e[1:] for e in IMAGE_EXTS)}}}")
        samples.append(Sample(str(rel), image, label))
    return samples


def _folder(root: Path) -> list[Sample] | None:
    base = _first_dir(root, [""], ["classes.txt", "images", "annotations"])
    if base is None:
        return None
    return _image_pairs(base / "images", base / "annotations")


FOLDER_SETTINGS = "dataset.yaml"  # optional, beside classes.txt: ignore_index, background, reduce_zero_label


@dataclass(frozen=True)
class FolderSettings:
    """The custom folder's optional `dataset.yaml`: `ignore_index` (default 255), `background` (a class
    index or name; default: the class whose first word is `background`), `reduce_zero_label`."""

    ignore_index: int = 255
    background: int | None = None
    reduce_zero_label: bool = False


def folder_settings(root: Path, classes: list[list[str]]) -> FolderSettings:
    path = Path(root) / FOLDER_SETTINGS
    data = (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}
    unknown = sorted(set(data) - {"ignore_index", "background", "reduce_zero_label"})
    if unknown:
        raise ZssError(f"{path}: unknown key(s) {', '.join(unknown)} (allowed: ignore_index, background, "
                       f"reduce_zero_label)")
    bg = data.get("background", Vocabulary.build(classes).background)
    if isinstance(bg, str):
        names = [c[0] for c in classes]
        if bg not in names:
            raise ZssError(f"{path}: background {bg!r} is not a class of classes.txt")
        bg = names.index(bg)
    if bg is not None and not 0 <= int(bg) < len(classes):
        raise ZssError(f"{path}: background index {bg} is outside 0..{len(classes) - 1}")
    ignore = int(data.get("ignore_index", 255))
    if not 0 <= ignore <= 255:
        raise ZssError(f"{path}: ignore_index must be in 0..255")
    return FolderSettings(ignore, None if bg is None else int(bg), bool(data.get("reduce_zero_label", False)))


def label_problem(image: np.ndarray, label: np.ndarray, num_classes: int, ignore_index: int = 255) -> str | None:
    """Why a user label map cannot be scored against its image, or None when it can."""
    if image.shape[:2] != label.shape[:2]:
        return (f"label map is {label.shape[1]}x{label.shape[0]} but its image is "
                f"{image.shape[1]}x{image.shape[0]} (width x height)")
    values = np.unique(label)
    bad = values[(values >= num_classes) & (values != ignore_index)]
    if bad.size:
        return (f"label values {', '.join(str(int(v)) for v in bad[:5])} exceed the {num_classes} classes "
                f"of classes.txt (ids 0..{num_classes - 1}; {ignore_index} = ignore)")
    return None


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
    background: int | None = None     # label id of the background class (V21, C60, Obj: 0)

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

    @property
    def user_data(self) -> bool:
        """Classes come from the data's own classes.txt (synth, folder)."""
        return self.classes == "world"

    def settings(self, data_root: Path) -> FolderSettings:
        """ignore index / background / reduce_zero_label (a folder's dataset.yaml; fixed otherwise)."""
        if self.name == "folder":
            return folder_settings(self._base(data_root), read_class_file(self._base(data_root) / "classes.txt"))
        bg = Vocabulary.build(read_class_file(Path(data_root) / "classes.txt")).background \
            if self.user_data else self.background
        return FolderSettings(255, bg, self.reduce_zero_label)

    def _base(self, data_root: Path) -> Path:
        return Path(data_root)

    def vocabulary(self, data_root: Path, classes: str | None = None) -> Vocabulary:
        """The queries: the data's classes.txt (user data) or the protocol's class list `classes`
        (default: zss's own list); the background index is the benchmark's, not guessed from words."""
        if self.user_data:
            words = read_class_file(self._base(data_root) / "classes.txt")
            return Vocabulary([list(c) for c in words], self.settings(data_root).background)
        vocab = Vocabulary.from_file(classes or self.classes)
        reference = Vocabulary.from_file(self.classes)
        if len(vocab) != len(reference):
            raise ZssError(f"class list {classes} has {len(vocab)} classes, {self.name} has {len(reference)}")
        return Vocabulary(vocab.classes, self.background)

    def label_names(self, data_root: Path) -> list[str]:
        """The benchmark's own name for each label id (zss's class list / the data's classes.txt)."""
        if self.user_data:
            return [c[0] for c in read_class_file(self._base(data_root) / "classes.txt")]
        return Vocabulary.from_file(self.classes).names

    def num_classes(self, data_root: Path) -> int:
        return len(self.vocabulary(data_root))

    def iter_data(self, data_root: Path, limit: int | None = None
                  ) -> Iterator[tuple[Sample, np.ndarray, np.ndarray]]:
        """(sample, RGB image, raw label map) — the metric applies reduce_zero_label."""
        for sample in self.samples(data_root, limit):
            yield sample, load_image(sample.image), load_label(sample.label)


BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (
    Benchmark("voc21", "V21", "voc21", False, _voc,
              "VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation/val.txt}", 0),
    Benchmark("context60", "C60", "context60", False, _context,
              "VOCdevkit/VOC2010/{JPEGImages,SegmentationClassContext,ImageSets/SegmentationContext/val.txt}", 0),
    Benchmark("coco_object", "Obj", "coco_object81", False,
              _coco("_instanceTrainIds.png", ["coco_object"]),
              "coco_stuff164k/{images,annotations}/val2017 with *_instanceTrainIds.png", 0),
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
    Benchmark("folder", "Folder", "world", False, _folder,
              "a custom folder: classes.txt, images/, annotations/ (label PNGs), optional dataset.yaml"),
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


def read_sample(sample: Any, skipped: list[dict[str, str]]) -> tuple[Any, Any] | None:
    """A benchmark sample's (image, label), or None when either is unreadable: the sample is then
    named on stderr and recorded in `skipped` (the results say so)."""
    try:
        return load_image(sample.image), load_label(sample.label)
    except ZssError as exc:
        skipped.append({"id": sample.id, "label": str(sample.label), "problem": str(exc)})
        print(f"zss: skipped {sample.id}: {exc}", file=sys.stderr, flush=True)
        return None
