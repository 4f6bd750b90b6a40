"""`zss segment`: a user's images + any words -> label PNG, overlay PNG with a legend, per-class areas.

The default protocol is the evaluation one without dataset specifics, at the model's own scale: short
side = the model's default input size (what its features were trained at), slide windows of that size
with half overlap, ImageNet-80 templates. `--set key=value` changes any
`InferenceConfig` field (e.g. `prob_thd=0.3` with a "background" class, `pamr_steps=10`).
"""

from __future__ import annotations

import json
from pathlib import Path

from zss.errors import ZssError
from zss.eval.benchmarks import IMAGE_EXTS, load_image
from zss.eval.inference import InferenceConfig, Predictor
from zss.eval.render import class_areas, overlay, save_label
from zss.formats.vocab import Vocabulary
from zss.utils.config import apply_overrides, from_dict
from zss.utils.device import default_device
from zss.utils.progress import progress_bar

SEGMENT_DEFAULTS = {"short_side": None, "mode": "slide", "crop": 0, "stride": 0, "templates": "imagenet80"}


def segment_config(overrides: list[str] | None = None) -> InferenceConfig:
    cfg = from_dict(InferenceConfig, apply_overrides(dict(SEGMENT_DEFAULTS), list(overrides or [])))
    cfg.validate()
    return cfg


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


def segment_image(predictor: Predictor, path: Path, stem: Path) -> Path:
    """Segment one image file; writes STEM.png (palette labels), STEM_overlay.png and STEM.json."""
    names = predictor.vocab.names
    image = load_image(path)
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
    from zss.recipes import load_segmenter

    words = load_vocabulary(vocab, vocab_file)
    cfg = segment_config(overrides)
    base, images = list_images(Path(inputs))
    out = Path(out)
    device = default_device()
    predictor = Predictor(load_segmenter(model, device), words, cfg, device)
    written = []
    with progress_bar() as bar:
        task = bar.add_task("segment", total=len(images), info="")
        for path in images:
            written.append(segment_image(predictor, path, out / path.relative_to(base).with_suffix("")))
            bar.update(task, advance=1, info=path.name)
    first = written[0]
    return (f"segmented {len(written)} image(s) into {out}: label PNG, overlay PNG and areas JSON each "
            f"(e.g. {first.parent / (first.name + '_overlay.png')})")
