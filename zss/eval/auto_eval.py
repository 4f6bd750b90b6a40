"""`zss eval --vocab auto[:FILE]`: score names chosen per image against a benchmark's classes.

Per image, `AutoNamer` names and segments the image; each chosen name is mapped to a dataset class by
`zss.eval.name_mapping` (WordNet relations); the label map then holds dataset class ids, with the
pixels of unmatched names counted as wrong (the out-of-range column of the confusion matrix) and
`unknown` pixels as the dataset's background class when it has one, else wrong too. Reported:

* `mIoU` (and aAcc, per class) under that mapping, mmseg's definition as for a given vocabulary;
* `name_recall`: of the dataset classes present in an image (ground truth, background left out),
  the share that one of the image's chosen names maps to, over all images;
* `name_precision`: of the chosen names, the share that map to a class present in the image;
* `name_map`: every chosen name -> its class, relation, depth and number of images;
* `given_vocab`: the same model's mIoU with the benchmark's own class list, for comparison.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zss.eval.auto_vocab import AutoNamer, AutoVocabConfig
from zss.eval.benchmarks import Benchmark
from zss.eval.inference import InferenceConfig
from zss.eval.metrics import SegMetric, reduce_zero_label
from zss.eval.name_mapping import MAX_DEPTH, NameMapper
from zss.eval.render import save_label
from zss.eval.sample_loop import benchmark_images
from zss.formats.name_bank import NameBank
from zss.utils.config import to_dict


def _pct(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else round(100.0 * float(x), 4)


class NameTally:
    """Name recall / precision counts and the name -> class map over a benchmark."""

    def __init__(self, names: list[str]):
        self.class_names = names
        self.present = self.recalled = self.chosen = self.correct = 0
        self.map: dict[str, dict[str, Any]] = {}

    def add(self, mapped: list[tuple[str, str, tuple[int, str, int] | None]], present: set[int]) -> None:
        """`mapped`: (name, bank id, mapping or None) per chosen name of one image."""
        named = {m[0] for _, _, m in mapped if m is not None}
        self.present += len(present)
        self.recalled += len(present & named)
        self.chosen += len(mapped)
        self.correct += sum(1 for _, _, m in mapped if m is not None and m[0] in present)
        for name, sid, m in mapped:
            row = self.map.setdefault(name, {"id": sid, "class": None if m is None else self.class_names[m[0]],
                                             "relation": None if m is None else m[1],
                                             "depth": None if m is None else m[2], "images": 0})
            row["images"] += 1

    def results(self) -> dict[str, Any]:
        return {"name_recall": _pct(self.recalled / self.present) if self.present else None,
                "name_precision": _pct(self.correct / self.chosen) if self.chosen else None,
                "names_per_image_total": self.chosen,
                "name_map": dict(sorted(self.map.items(), key=lambda kv: -kv[1]["images"]))}


def _present(label: np.ndarray, k: int, reduce_zero: bool, ignore: int, background: int | None) -> set[int]:
    lab = reduce_zero_label(label) if reduce_zero else label
    ids = {int(i) for i in np.unique(lab) if 0 <= i < k and i != ignore}
    return ids - ({background} if background is not None else set())


def evaluate_auto(namer: AutoNamer, bench: Benchmark, data_root: Path, cfg: InferenceConfig,
                  out: Path | None = None, limit: int | None = None, classes: str | None = None) -> dict[str, Any]:
    """One benchmark with per-image vocabularies (module doc); the given-vocabulary run is separate."""
    samples = bench.samples(data_root, limit)
    vocab = bench.vocabulary(data_root, classes)
    settings = bench.settings(data_root)
    names = bench.label_names(data_root)
    k, bg = len(vocab), vocab.background
    mapper = NameMapper(namer.bank, vocab.classes, skip={bg} if bg is not None else set())
    metric = SegMetric(k, ignore_index=settings.ignore_index, reduce_zero=settings.reduce_zero_label)
    tally = NameTally(names)
    start, skipped = time.perf_counter(), []
    for sample, image, label, status in benchmark_images(f"{bench.name} (auto)", samples, skipped):
        res = namer.predict(image, out_size=label.shape)
        maps = [mapper.map(n.entry, n.phrases[-1]) for n in res.chosen]
        lut = np.array([m[0] if m is not None else k for m in maps] + [bg if bg is not None else k])
        pred = lut[res.label]
        metric.update(pred, label)
        tally.add([(n.name, namer.bank.entries[n.entry].id, m) for n, m in zip(res.chosen, maps)],
                  _present(label, k, settings.reduce_zero_label, settings.ignore_index, bg))
        if out is not None:
            save_label(pred, out / "predictions" / f"{bench.name}-auto" / f"{sample.id}.png")
        status["info"] = f"mIoU {100 * metric.results()['mIoU']:.1f}"
    r = metric.results()
    return {"benchmark": bench.name, "column": bench.column, "n_images": len(samples) - len(skipped),
            "n_skipped": len(skipped), "num_classes": k, "vocab": "auto", "bank": namer.bank.source,
            "bank_names": len(namer.bank), "mapping_max_depth": MAX_DEPTH,
            "mIoU": _pct(r["mIoU"]), "aAcc": _pct(r["aAcc"]), "mAcc": _pct(r["mAcc"]),
            "reduce_zero_label": settings.reduce_zero_label, "ignore_index": settings.ignore_index,
            "background": bg,
            "per_class": [{"id": i, "name": names[i], "queries": list(vocab.classes[i]), "IoU": _pct(r["IoU"][i]), "Acc": _pct(r["Acc"][i])}
                          for i in range(k)],
            **tally.results(), "auto": to_dict(namer.auto),
            "unseen_penalty_used": round(namer.penalty, 4), "inference": to_dict(cfg), "skipped": skipped,
            "seconds": round(time.perf_counter() - start, 2)}


def make_auto_namer(segmenter: torch.nn.Module, model: str, bank: NameBank, cfg: InferenceConfig,
                    auto: AutoVocabConfig, device: torch.device, namer: AutoNamer | None) -> AutoNamer:
    """One namer per run (the name index and text cache are shared); a new protocol config re-wraps it."""
    if namer is None:
        return AutoNamer(segmenter, model, bank, cfg, auto, device)
    return AutoNamer(segmenter, model, bank, cfg, auto, device, index=namer.index)


def auto_lines(results: dict[str, dict[str, Any]], proto: str) -> list[str]:
    def f(x: float | None) -> str:
        return "—" if x is None else f"{x:.1f}"

    lines = []
    for name, r in results.items():
        given = (r.get("given_vocab") or {}).get("mIoU")
        ratio = f" = {r['mIoU'] / given:.2f}x" if given and r.get("mIoU") is not None else ""
        lines.append(f"[{proto}] {name} --vocab auto: mIoU {f(r['mIoU'])} under the WordNet name->class mapping "
                     f"(given vocabulary: {f(given)}{ratio}); name recall {f(r['name_recall'])}, "
                     f"precision {f(r['name_precision'])} ({r['n_images']} images, bank of {r['bank_names']} names)")
    return lines
