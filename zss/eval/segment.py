"""`zss segment`: a user's images + any words -> label PNG, overlay PNG with a legend, per-class areas.

The default protocol is the evaluation one without dataset specifics, at the model's own scale: short
side = the model's default input size (what its features were trained at), slide windows of that size
with half overlap, ImageNet-80 templates. `--set key=value` changes any
`InferenceConfig` field (e.g. `prob_thd=0.3` with a "background" class, `pamr_steps=10`), and
`max_pixels=N` caps the pixel count of an input image (default 100 M, checked from the header before
decoding, so a decompression bomb costs nothing).

Bad input never stops the job: every file is tried; one that cannot be read, is empty, is not an image
or is over the cap is one line on stderr naming it and why, and an entry of OUT/summary.json's
`failed`. Exit 0 when every image was segmented, 3 (`PartialFailure`) when some failed, 130 on Ctrl-C
(docs/reliability.md).
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from zss.errors import BadItem, Interrupted, PartialFailure, ZssError
from zss.eval.benchmarks import IMAGE_EXTS
from zss.eval.inference import InferenceConfig, Predictor
from zss.eval.render import class_areas, overlay, save_label
from zss.formats.vocab import Vocabulary
from zss.utils.config import apply_overrides, from_dict
from zss.utils.device import default_device
from zss.utils.progress import progress_bar, quiet
from zss.utils.signals import StopRequest

SEGMENT_DEFAULTS = {"short_side": None, "mode": "slide", "crop": 0, "stride": 0, "templates": "imagenet80"}
MAX_PIXELS = 100_000_000
EXIT_SOME_FAILED = 3


def _split_max_pixels(overrides: list[str]) -> tuple[int, list[str]]:
    """`max_pixels=N` (a segment option, not an inference one) out of the overrides."""
    limit, rest = MAX_PIXELS, []
    for o in overrides:
        if o.split("=", 1)[0].strip() == "max_pixels":
            value = o.split("=", 1)[1].strip() if "=" in o else ""
            if not value.isdigit() or int(value) < 1:
                raise ZssError(f"max_pixels must be a whole number >= 1, got {value!r}")
            limit = int(value)
        else:
            rest.append(o)
    return limit, rest


def segment_config(overrides: list[str] | None = None) -> InferenceConfig:
    _, overrides = _split_max_pixels(list(overrides or []))
    cfg = from_dict(InferenceConfig, apply_overrides(dict(SEGMENT_DEFAULTS), overrides))
    cfg.validate()
    return cfg


def read_image(path: Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """RGB uint8 [H,W,3] (EXIF orientation applied), or `BadItem` saying why the file cannot be one."""
    try:
        if path.stat().st_size == 0:
            raise BadItem("empty", "empty file (0 bytes)")
        pil_cap = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None  # our own cap below, from the header, before any decoding
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as im:
                    w, h = im.size
                    if w * h > max_pixels:
                        raise BadItem("too_large", f"{w}x{h} = {w * h} pixels is over the cap of {max_pixels} "
                                                   "(a decompression bomb?; --set max_pixels=N to raise it)")
                    return np.array(ImageOps.exif_transpose(im).convert("RGB"))
        finally:
            Image.MAX_IMAGE_PIXELS = pil_cap
    except BadItem:
        raise
    except Image.UnidentifiedImageError:
        raise BadItem("not_an_image", "not an image Pillow can read") from None
    except Image.DecompressionBombError as exc:
        raise BadItem("too_large", str(exc)) from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # truncated or corrupt data
        raise BadItem("unreadable", f"{type(exc).__name__}: {exc}") from None


def list_images(inputs: Path) -> tuple[Path, list[Path]]:
    """(base folder, images): one image, or every image under a folder (recursively, sorted)."""
    inputs = Path(inputs)
    if inputs.is_file():
        return inputs.parent, [inputs]
    if inputs.is_dir():
        images = sorted(p for p in inputs.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
        if not images:
            raise ZssError(f"no images ({', '.join(IMAGE_EXTS)}) under {inputs}")
        return inputs, images
    raise ZssError(f"{inputs} is neither an image nor a folder")


def load_vocabulary(vocab: str | None, vocab_file: Path | None) -> Vocabulary:
    if (vocab is None) == (vocab_file is None):
        raise ZssError("give exactly one of --vocab \"a,b;b2,c\" or --vocab-file FILE")
    return Vocabulary.from_string(vocab) if vocab is not None else Vocabulary.from_file(vocab_file)


def segment_image(predictor: Predictor, path: Path, stem: Path, max_pixels: int = MAX_PIXELS) -> Path:
    """Segment one image file; writes STEM.png (palette labels), STEM_overlay.png and STEM.json."""
    names = predictor.vocab.names
    image = read_image(path, max_pixels)
    label = predictor.predict(image)
    areas = class_areas(label, names)
    save_label(label, stem.with_suffix(".png"))
    overlay(image, label, areas).save(stem.parent / f"{stem.name}_overlay.png")
    record = {"image": str(path), "size": list(label.shape), "label_png": f"{stem.name}.png",
              "classes": areas, "vocabulary": predictor.vocab.classes}
    (stem.parent / f"{stem.name}.json").write_text(json.dumps(record, indent=2))
    return stem


def run_segment(model: str, inputs: Path, vocab: str | None = None, vocab_file: Path | None = None,
                out: Path = Path("segment_out"), overrides: list[str] | None = None) -> str:
    """Segment one image or a folder; writes OUT/REL.png, OUT/REL_overlay.png, OUT/REL.json per image."""
    from zss.eval.auto_segment import auto_bank, auto_settings, make_namer, segment_image_auto
    from zss.recipes import load_segmenter

    bank = auto_bank(vocab) if vocab_file is None else None  # --vocab auto | auto:FILE (docs/auto-vocab.md)
    words = load_vocabulary(vocab, vocab_file) if bank is None else None
    understood = f" with {words.describe()}" if words is not None else ""
    auto, overrides = auto_settings(bank, overrides)
    max_pixels, _ = _split_max_pixels(list(overrides or []))
    cfg = segment_config(overrides)
    base, images = list_images(Path(inputs))
    out = Path(out)
    device = default_device()
    segmenter = load_segmenter(model, device)
    if words is not None and not quiet():  # what the words were understood as, once inputs and model loaded
        print(f"zss: vocabulary: {words.describe()}", file=sys.stderr, flush=True)
    elif bank is not None and not quiet():
        print(f"zss: vocabulary: auto, chosen per image from the {bank.summary()}", file=sys.stderr, flush=True)
    if bank is None:
        predictor = Predictor(segmenter, words, cfg, device)
        segment_one = lambda path, stem: segment_image(predictor, path, stem, max_pixels)  # noqa: E731
    else:
        namer = make_namer(segmenter, model, bank, cfg, auto, device)
        segment_one = lambda path, stem: segment_image_auto(namer, path, stem, read_image(path, max_pixels))  # noqa: E731
    written: list[Path] = []
    failed: list[dict[str, str]] = []
    with StopRequest() as stop, progress_bar() as bar:
        task = bar.add_task("segment", total=len(images), info="")
        for path in images:
            if stop.signum is not None:
                break
            try:
                written.append(segment_one(path, out / path.relative_to(base).with_suffix("")))
            except BadItem as exc:
                failed.append({"image": str(path), "kind": exc.kind, "reason": str(exc)})
                print(f"zss: skipped {path}: {exc}", file=sys.stderr, flush=True)
            bar.update(task, advance=1, info=path.name)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"images": len(images), "segmented": [str(p.with_suffix(".png")) for p in written],
               "failed": failed, "interrupted": stop.signum is not None}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if stop.signum is not None:
        raise Interrupted(stop.exit_code, f"interrupted after {len(written) + len(failed)} of {len(images)} "
                                          f"image(s); {len(written)} written to {out}")
    if failed:
        raise PartialFailure(EXIT_SOME_FAILED, f"segmented {len(written)} of {len(images)} image(s) into {out}; "
                                               f"{len(failed)} failed (listed in {out / 'summary.json'})")
    first = written[0]
    return (f"segmented {len(written)} image(s){understood} into {out}: label PNG, overlay PNG and areas "
            f"JSON each (e.g. {first.parent / (first.name + '_overlay.png')})")
