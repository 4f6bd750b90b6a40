"""`zss eval`: score a model on benchmarks under a named protocol; write results.json + results.md.

Protocols are data (zss/manifests/benchmarks/NAME.yaml, one entry per protocol), so what a number means
is written next to it: results.json records the exact inference config of every benchmark.
Scores are percentages, as the papers and mmsegmentation print them.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from zss.errors import Interrupted, ZssError
from zss.eval.benchmarks import (BENCHMARKS, PAPER_ORDER, Benchmark, find_benchmarks, get_benchmark, load_image,
                                 load_label)
from zss.eval.inference import InferenceConfig, Predictor
from zss.eval.metrics import SegMetric
from zss.eval.render import save_label
from zss.paths import MANIFESTS
from zss.utils.config import apply_overrides, from_dict, to_dict
from zss.utils.device import default_device
from zss.utils.progress import progress_bar
from zss.utils.signals import StopRequest

PRESETS_DIR = MANIFESTS / "benchmarks"


def _protocols(benchmark: str) -> dict[str, Any] | None:
    """The protocols of the benchmark's preset file, None when it has no preset file."""
    path = PRESETS_DIR / f"{benchmark}.yaml"
    return (yaml.safe_load(path.read_text()) or {}).get("protocols", {}) if path.is_file() else None


def protocol_config(benchmark: str, protocol: str, overrides: list[str] | None = None) -> InferenceConfig:
    """The benchmark's preset for `protocol`, then `key=value` overrides."""
    protocols = _protocols(benchmark)
    if protocols is None:
        raise ZssError(f"no protocol preset for benchmark {benchmark!r} ({PRESETS_DIR / benchmark}.yaml missing)")
    if protocol not in protocols:
        raise ZssError(f"benchmark {benchmark} has no {protocol!r} protocol (has: {', '.join(protocols)})")
    data = apply_overrides(dict(protocols[protocol] or {}), list(overrides or []))
    cfg = from_dict(InferenceConfig, data)
    cfg.validate()
    return cfg


def has_protocol(benchmark: str, protocol: str) -> bool:
    return protocol in (_protocols(benchmark) or {})


def _pct(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(100.0 * float(x), 4)


def evaluate_benchmark(model: torch.nn.Module, bench: Benchmark, data_root: Path, cfg: InferenceConfig,
                       device: torch.device, out: Path | None = None, limit: int | None = None
                       ) -> dict[str, Any]:
    """Run one benchmark; predictions go to `out/predictions/NAME/ID.png` when `out` is given."""
    samples = bench.samples(data_root, limit)
    vocab = bench.vocabulary(data_root)
    predictor = Predictor(model, vocab, cfg, device)
    metric = SegMetric(len(vocab), reduce_zero=bench.reduce_zero_label)
    start = time.perf_counter()
    skipped: list[dict[str, str]] = []
    with StopRequest() as stop, progress_bar() as bar:
        task = bar.add_task(bench.name, total=len(samples), info="")
        for i, sample in enumerate(samples):
            if stop.signum is not None:
                raise Interrupted(stop.exit_code, f"interrupted during {bench.name} after {i} of {len(samples)} "
                                                  "images; no results written")
            try:  # an unreadable image or label is skipped and named; the result says so
                image, label = load_image(sample.image), load_label(sample.label)
            except ZssError as exc:
                skipped.append({"id": sample.id, "reason": str(exc)})
                print(f"zss: skipped {sample.id}: {exc}", file=sys.stderr, flush=True)
                bar.update(task, advance=1)
                continue
            pred = predictor.predict(image, out_size=label.shape)
            metric.update(pred, label)
            if out is not None:
                save_label(pred, out / "predictions" / bench.name / f"{sample.id}.png")
            bar.update(task, advance=1, info=f"mIoU {100 * metric.results()['mIoU']:.1f}")
    res = metric.results()
    return {
        "benchmark": bench.name, "column": bench.column, "n_images": len(samples) - len(skipped),
        "n_skipped": len(skipped), "skipped": skipped,
        "num_classes": len(vocab), "reduce_zero_label": bench.reduce_zero_label,
        "mIoU": _pct(res["mIoU"]), "aAcc": _pct(res["aAcc"]), "mAcc": _pct(res["mAcc"]),
        "per_class": [{"id": i, "name": name, "IoU": _pct(res["IoU"][i]), "Acc": _pct(res["Acc"][i])}
                      for i, name in enumerate(vocab.names)],
        "inference": to_dict(cfg), "seconds": round(time.perf_counter() - start, 2),
    }


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.1f}"


def summary_row(results: dict[str, dict[str, Any]]) -> tuple[list[str], list[str]]:
    """Paper column order (V21, C60, Obj, V20, C59, Stuff, City, ADE) + the average of those present."""
    header, row, values = [], [], []
    for name in PAPER_ORDER:
        header.append(BENCHMARKS[name].column)
        miou = results.get(name, {}).get("mIoU")
        row.append(_fmt(miou))
        if miou is not None:
            values.append(miou)
    header.append("Avg")
    row.append(_fmt(sum(values) / len(values)) if values else "—")
    return header, row


def write_markdown(path: Path, model: str, protocol: str, results: dict[str, dict[str, Any]]) -> None:
    lines = [f"# zss eval — {model}", "", f"Protocol: `{protocol}`. Scores in %.", ""]
    standard = [n for n in PAPER_ORDER if n in results]
    if len(standard) > 1:
        header, row = summary_row(results)
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), "| " + " | ".join(row) + " |", ""]
    for name, r in results.items():
        lines += [f"## {name}", "",
                  f"mIoU **{_fmt(r['mIoU'])}**, aAcc {_fmt(r['aAcc'])}, mAcc {_fmt(r['mAcc'])} — "
                  f"{r['n_images']} images, {r['num_classes']} classes"
                  f"{', reduce_zero_label' if r['reduce_zero_label'] else ''}.", "",
                  "| id | class | IoU | Acc |", "|---|---|---|---|"]
        lines += [f"| {c['id']} | {c['name']} | {_fmt(c['IoU'])} | {_fmt(c['Acc'])} |" for c in r["per_class"]]
        cfg = r["inference"]
        lines += ["", "Inference: " + ", ".join(f"{k}={v}" for k, v in cfg.items()), ""]
    path.write_text("\n".join(lines))


def select_benchmarks(benchmark: str, data_root: Path, protocol: str) -> list[Benchmark]:
    """One named benchmark, or for `all` the standard ones found under `data_root` having `protocol`."""
    if benchmark != "all":
        return [get_benchmark(benchmark)]
    benches = [b for b in find_benchmarks(data_root) if has_protocol(b.name, protocol)]
    if not benches:
        raise ZssError(f"no benchmark with a {protocol!r} protocol found under {data_root} "
                       f"(expected layouts: see docs/eval.md; a synthetic world is --benchmark synth)")
    return benches


def run_eval(model: str, benchmark: str, data_root: Path, protocol: str = "sclip", out: Path | None = None,
             save_predictions: bool = False, limit: int | None = None,
             overrides: list[str] | None = None) -> str:
    """Evaluate `model` on one benchmark or `all` found under `data_root`; returns a printable summary."""
    from zss.recipes import load_segmenter

    data_root = Path(data_root)
    if not data_root.is_dir():
        raise ZssError(f"data root {data_root} is not a directory")
    benches = select_benchmarks(benchmark, data_root, protocol)
    configs = {b.name: protocol_config(b.name, protocol, overrides) for b in benches}
    out = Path(out) if out is not None else Path("eval_out")
    out.mkdir(parents=True, exist_ok=True)
    device = default_device()
    segmenter = load_segmenter(model, device)
    results: dict[str, dict[str, Any]] = {}
    for bench in benches:
        results[bench.name] = evaluate_benchmark(segmenter, bench, data_root, configs[bench.name], device,
                                                 out if save_predictions else None, limit)
    payload: dict[str, Any] = {"model": str(model), "protocol": protocol, "data_root": str(data_root),
                               "device": str(device), "benchmarks": results}
    summary = summary_row(results) if len([n for n in PAPER_ORDER if n in results]) > 1 else None
    if summary is not None:
        payload["summary"] = dict(zip(*summary))
    (out / "results.json").write_text(json.dumps(payload, indent=2))
    write_markdown(out / "results.md", str(model), protocol, results)
    lines = [f"{n}: mIoU {_fmt(r['mIoU'])}  aAcc {_fmt(r['aAcc'])}  ({r['n_images']} images"
             + (f"; computed without {r['n_skipped']} unreadable, see results.json" if r.get("n_skipped") else "")
             + ")" for n, r in results.items()]
    if summary is not None:
        header, row = summary
        lines += ["  ".join(f"{h:>5}" for h in header), "  ".join(f"{v:>5}" for v in row)]
    lines.append(f"results: {out / 'results.md'} and {out / 'results.json'}")
    return "\n".join(lines)
