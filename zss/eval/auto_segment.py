"""`zss segment --vocab auto[:FILE]`: the per-image files when the vocabulary is chosen per image.

Same outputs as a given vocabulary (STEM.png, STEM_overlay.png, STEM.json); the JSON adds
`auto_vocabulary` (each chosen name with its WordNet id, synonyms, the queries used, calibrated
score, raw cosine, region area and labelled area) and `bank`; `classes` and `vocabulary` list the
image's own names with `unknown` last, so label id i is `vocabulary[i]` of that image.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zss.errors import ZssError
from zss.eval.auto_vocab import AutoNamer, AutoVocabConfig, split_auto_overrides
from zss.eval.inference import InferenceConfig
from zss.eval.render import class_areas, overlay, save_label
from zss.formats.name_bank import NameBank, parse_auto_vocab, read_name_bank


def auto_bank(vocab: str | None) -> NameBank | None:
    """The name bank `--vocab auto` / `auto:FILE` names (read and checked now), or None for an
    ordinary vocabulary."""
    path = parse_auto_vocab(vocab) if vocab is not None else None
    return read_name_bank(path) if path is not None else None


def auto_settings(bank: NameBank | None, overrides: list[str] | None) -> tuple[AutoVocabConfig, list[str]]:
    """(auto settings, the other overrides); `auto.*` settings without --vocab auto are refused."""
    auto, rest = split_auto_overrides(overrides)
    if bank is None and len(rest) != len(list(overrides or [])):
        raise ZssError("auto.* settings only apply with --vocab auto or --vocab auto:FILE")
    return auto, rest


def auto_image_record(namer: AutoNamer, image: np.ndarray, out_size: tuple[int, int] | None = None
                      ) -> tuple[Any, list[dict], dict[str, Any]]:
    """Name and segment one image: (AutoResult, class areas, the JSON fields it adds)."""
    res = namer.predict(image, out_size)
    areas = class_areas(res.label, res.names)
    by_name = {a["name"]: a.get("fraction", a.get("area", 0.0)) for a in areas}
    record = {"auto_vocabulary": res.records(namer.bank, by_name), "unknown_fraction": round(res.unknown_area, 4),
              "bank": namer.bank.source, "classes": areas, "vocabulary": [[n] for n in res.names]}
    return res, areas, record


def segment_image_auto(namer: AutoNamer, path: Path, stem: Path, image: np.ndarray) -> Path:
    """Segment one image with its own vocabulary; writes STEM.png, STEM_overlay.png and STEM.json."""
    res, areas, extra = auto_image_record(namer, image)
    save_label(res.label, stem.with_suffix(".png"))
    overlay(image, res.label, areas).save(stem.parent / f"{stem.name}_overlay.png")
    record = {"image": str(path), "size": list(res.label.shape), "label_png": f"{stem.name}.png", **extra}
    (stem.parent / f"{stem.name}.json").write_text(json.dumps(record, indent=2))
    return stem


def make_namer(segmenter: torch.nn.Module, model: str, bank: NameBank, cfg: InferenceConfig,
               auto: AutoVocabConfig, device: torch.device) -> AutoNamer:
    return AutoNamer(segmenter, model, bank, cfg, auto, device)
