"""`zss eval`: score a model on benchmarks under a named protocol; write results.json + results.md.

Protocols are data (zss/manifests/protocols/NAME.yaml; see zss.eval.protocols), so what a number means
is written next to it: results.json records the protocol, its source and every resolved setting of
every benchmark. `--protocol all` runs each protocol in turn and prints one summary row per protocol.
Scores are percentages, as the papers and mmsegmentation print them.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch

from zss.errors import ZssError
from zss.eval.benchmarks import BENCHMARKS, PAPER_ORDER, Benchmark, find_benchmarks, get_benchmark, label_problem
from zss.eval.inference import InferenceConfig, Predictor
from zss.eval.metrics import SegMetric
from zss.eval.protocols import (Resolved, benchmarks_of, default_protocol, has_protocol, matching_published,
                                protocol_info, protocol_names, resolve)
from zss.eval.render import save_label
from zss.eval.sample_loop import benchmark_images
from zss.utils.config import to_dict
from zss.utils.device import default_device

log = logging.getLogger(__name__)


def protocol_config(benchmark: str, protocol: str, overrides: list[str] | None = None,
                    model: str | None = None) -> InferenceConfig:
    """The resolved inference config of `benchmark` under `protocol`, then `key=value` overrides
    (`model`: for a protocol that sizes the image by the model's architecture)."""
    return resolve(protocol, benchmark, overrides, model).config


def _pct(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(100.0 * float(x), 4)


def evaluate_benchmark(model: torch.nn.Module, bench: Benchmark, data_root: Path, cfg: InferenceConfig,
                       device: torch.device, out: Path | None = None, limit: int | None = None,
                       classes: str | None = None) -> dict[str, Any]:
    """Run one benchmark; predictions go to `out/predictions/NAME/ID.png` when `out` is given.

    User data (a custom folder) is checked image by image: a label map whose size differs from its
    image or whose values exceed the class count is reported (logged and listed under `skipped`) and
    left out, and the run goes on."""
    samples = bench.samples(data_root, limit)
    vocab = bench.vocabulary(data_root, classes)
    settings = bench.settings(data_root)
    names = bench.label_names(data_root)
    predictor = Predictor(model, vocab, cfg, device)
    metric = SegMetric(len(vocab), ignore_index=settings.ignore_index, reduce_zero=settings.reduce_zero_label)
    skipped: list[dict[str, str]] = []
    start = time.perf_counter()
    for sample, image, label, status in benchmark_images(bench.name, samples, skipped):
        if bench.user_data:
            problem = label_problem(image, label, len(vocab) + int(settings.reduce_zero_label), settings.ignore_index)
            if problem is not None:
                log.warning("%s: skipped %s: %s", bench.name, sample.label, problem)
                skipped.append({"id": sample.id, "label": str(sample.label), "problem": problem})
                continue
        pred = predictor.predict(image, out_size=label.shape)
        vh, vw = predictor.valid_size(image.shape[:2], label.shape)  # fit: crop scores the floored part only
        metric.update(pred[:vh, :vw], label[:vh, :vw])
        if out is not None:
            save_label(pred, out / "predictions" / bench.name / f"{sample.id}.png")
        status["info"] = f"mIoU {100 * metric.results()['mIoU']:.1f}"
    res = metric.results()
    return {
        "benchmark": bench.name, "column": bench.column, "n_images": len(samples) - len(skipped),
        "n_skipped": len(skipped), "num_classes": len(vocab), "reduce_zero_label": settings.reduce_zero_label,
        "ignore_index": settings.ignore_index, "background": vocab.background,
        "mIoU": _pct(res["mIoU"]), "aAcc": _pct(res["aAcc"]), "mAcc": _pct(res["mAcc"]),
        "per_class": [{"id": i, "name": names[i], "queries": list(vocab.classes[i]),
                       "IoU": _pct(res["IoU"][i]), "Acc": _pct(res["Acc"][i])} for i in range(len(vocab))],
        "inference": to_dict(cfg), "skipped": skipped, "seconds": round(time.perf_counter() - start, 2),
    }


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.1f}"


def _row(scores: dict[str, float | None], present: list[str]) -> list[str]:
    """mIoU per paper column (— when absent) + the average over `present` benchmarks that have a score."""
    values = [scores[n] for n in present if scores.get(n) is not None]
    return [_fmt(scores.get(n)) for n in PAPER_ORDER] + [_fmt(sum(values) / len(values)) if values else "—"]


def summary_row(results: dict[str, dict[str, Any]]) -> tuple[list[str], list[str]]:
    """Paper column order (V21, C60, Obj, V20, C59, Stuff, City, ADE) + the average of those present."""
    header = [BENCHMARKS[n].column for n in PAPER_ORDER] + ["Avg"]
    return header, _row({n: r.get("mIoU") for n, r in results.items()}, [n for n in PAPER_ORDER if n in results])


def published_lines(protocol: str, model: str, results: dict[str, dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """(label, row) per published row of the protocol for the model's backbone, averaged over the
    benchmarks zss scored, so the two rows compare like with like."""
    present = [n for n in PAPER_ORDER if n in results]
    return [(f"{row['method']} ({row['backbone']}; {row['source']})", _row(row.get("mIoU") or {}, present))
            for row in matching_published(protocol, model)]


def _table(header: list[str], rows: list[tuple[str, list[str]]], first: str) -> list[str]:
    lines = [f"| {first} | " + " | ".join(header) + " |", "|---|" + "---|" * len(header)]
    return lines + [f"| {label} | " + " | ".join(row) + " |" for label, row in rows]


def write_markdown(path: Path, model: str, runs: dict[str, dict[str, Any]]) -> None:
    """One section per protocol: the summary (zss + published rows), then per-class IoU per benchmark
    with the label names and the text queries that were used."""
    lines = [f"# zss eval — {model}", "", "Scores in %.", ""]
    if len(runs) > 1:
        header = [BENCHMARKS[n].column for n in PAPER_ORDER] + ["Avg"]
        lines += ["## Summary per protocol", ""]
        lines += _table(header, [(p, summary_row(r["benchmarks"])[1]) for p, r in runs.items()], "protocol") + [""]
    for proto, run in runs.items():
        info, results = run["protocol_info"], run["benchmarks"]
        lines += [f"## Protocol `{proto}` — {info.get('title')}", "",
                  f"Source: {info.get('repository')} ({', '.join(info.get('files') or [])}).", ""]
        if any(n in results for n in PAPER_ORDER):
            header, row = summary_row(results)
            rows = [("zss", row)] + published_lines(proto, model, results)
            lines += _table(header, rows, "") + [""]
        for name, r in results.items():
            lines += [f"### {name}", "",
                      f"mIoU **{_fmt(r['mIoU'])}**, aAcc {_fmt(r['aAcc'])}, mAcc {_fmt(r['mAcc'])} — "
                      f"{r['n_images']} images, {r['num_classes']} classes"
                      f"{', reduce_zero_label' if r['reduce_zero_label'] else ''}; class file "
                      f"`{r['classes'] or 'the data classes.txt'}`; settings from {r['source']}.", "",
                      "| id | class | queries | IoU | Acc |", "|---|---|---|---|---|"]
            lines += [f"| {c['id']} | {c['name']} | {'; '.join(c['queries'])} | {_fmt(c['IoU'])} | {_fmt(c['Acc'])} |"
                      for c in r["per_class"]]
            if r.get("skipped"):
                lines += ["", f"Skipped {len(r['skipped'])} image(s):"]
                lines += [f"- {s['label']}: {s['problem']}" for s in r["skipped"]]
            lines += ["", "Inference: " + ", ".join(f"{k}={v}" for k, v in r["inference"].items()), ""]
    path.write_text("\n".join(lines))


def select_benchmarks(benchmark: str, data_root: Path, protocol: str) -> list[Benchmark]:
    """One named benchmark, or for `all` the standard ones found under `data_root` that `protocol` defines."""
    if benchmark != "all":
        return [get_benchmark(benchmark)]
    benches = [b for b in find_benchmarks(data_root) if has_protocol(b.name, protocol)]
    if not benches:
        raise ZssError(f"no benchmark of protocol {protocol!r} ({', '.join(benchmarks_of(protocol))}) found under "
                       f"{data_root} (expected layouts: see docs/eval.md; a synthetic world is --benchmark synth)")
    return benches


def _protocols_for(benchmark: str, data_root: Path, protocol: str | None) -> list[str]:
    if protocol in (None, ""):
        return [default_protocol(benchmark)]
    if protocol != "all":
        protocol_info(protocol)  # unknown name -> ZssError listing the known ones
        return [protocol]
    names = [p for p in protocol_names()
             if (benchmark != "all" and has_protocol(benchmark, p))
             or (benchmark == "all" and any(b.available(data_root) for b in
                                            (BENCHMARKS[n] for n in benchmarks_of(p) if n in PAPER_ORDER)))]
    if not names:
        raise ZssError(f"no protocol defines benchmark {benchmark!r}")
    return names


def run_eval(model: str, benchmark: str, data_root: Path, protocol: str | None = None, out: Path | None = None,
             save_predictions: bool = False, limit: int | None = None,
             overrides: list[str] | None = None, vocab: str | None = None) -> str:
    """Evaluate `model` on one benchmark or `all` found under `data_root`, under one protocol or `all`;
    returns a printable summary. `vocab="auto"` / `"auto:FILE"`: names chosen per image, scored under
    a WordNet name -> class mapping next to the given-vocabulary score (zss.eval.auto_eval)."""
    from zss.eval.auto_segment import auto_bank, auto_settings
    from zss.recipes import load_segmenter

    bank = auto_bank(vocab)
    if vocab is not None and bank is None:
        raise ZssError(f"zss eval --vocab takes auto or auto:FILE (the benchmark's own classes are the default), "
                       f"not {vocab!r}")
    auto, overrides = auto_settings(bank, overrides)
    namer = None

    data_root = Path(data_root)
    if not data_root.is_dir():
        raise ZssError(f"data root {data_root} is not a directory")
    protocols = _protocols_for(benchmark, data_root, protocol)
    plan: dict[str, list[tuple[Benchmark, Resolved]]] = {}
    for proto in protocols:
        benches = select_benchmarks(benchmark, data_root, proto)
        plan[proto] = [(b, resolve(proto, b.name, overrides, model=str(model))) for b in benches]
    out = Path(out) if out is not None else Path("eval_out")
    out.mkdir(parents=True, exist_ok=True)
    device = default_device()
    segmenter = load_segmenter(model, device)
    runs: dict[str, dict[str, Any]] = {}
    for proto, items in plan.items():
        results: dict[str, dict[str, Any]] = {}
        pred_dir = (out / proto if len(plan) > 1 else out) if save_predictions else None
        for bench, res in items:
            r = evaluate_benchmark(segmenter, bench, data_root, res.config, device, pred_dir, limit, res.classes)
            if bank is not None:
                from zss.eval.auto_eval import evaluate_auto, make_auto_namer

                namer = make_auto_namer(segmenter, str(model), bank, res.config, auto, device, namer)
                r = {**evaluate_auto(namer, bench, data_root, res.config, pred_dir, limit, res.classes),
                     "given_vocab": {k: r[k] for k in ("mIoU", "aAcc", "mAcc", "per_class", "seconds")}}
            results[bench.name] = {**r, **res.record()}
        run: dict[str, Any] = {"protocol_info": protocol_info(proto), "benchmarks": results}
        if len([n for n in PAPER_ORDER if n in results]) > 1:
            run["summary"] = dict(zip(*summary_row(results)))
        pub = published_lines(proto, str(model), results)
        if pub:
            run["published"] = [dict(zip(["source"] + summary_row(results)[0], [label] + row)) for label, row in pub]
        runs[proto] = run
    payload: dict[str, Any] = {"model": str(model), "data_root": str(data_root), "device": str(device)}
    if len(runs) == 1:
        (proto, run), = runs.items()
        payload.update({"protocol": proto, **run})  # protocol = its name; protocol_info = its source
    else:
        payload.update({"protocol": "all", "protocols": runs})
    (out / "results.json").write_text(json.dumps(payload, indent=2))
    write_markdown(out / "results.md", str(model), runs)
    lines = _print_lines(runs, str(model))
    if bank is not None:
        from zss.eval.auto_eval import auto_lines

        lines = [line for proto, run in runs.items() for line in auto_lines(run["benchmarks"], proto)]
    return "\n".join(lines + [f"results: {out / 'results.md'} and {out / 'results.json'}"])


def _print_lines(runs: dict[str, dict[str, Any]], model: str) -> list[str]:
    lines = []
    for proto, run in runs.items():
        results = run["benchmarks"]
        lines += [f"[{proto}] {n}: mIoU {_fmt(r['mIoU'])}  aAcc {_fmt(r['aAcc'])}  ({r['n_images']} images"
                  f"{'; computed without %d skipped (unreadable or bad label), see results.json' % len(r['skipped']) if r.get('skipped') else ''})" for n, r in results.items()]
    standard = [run for run in runs.values() if len([n for n in PAPER_ORDER if n in run["benchmarks"]]) > 1]
    if standard:
        header = [BENCHMARKS[n].column for n in PAPER_ORDER] + ["Avg"]
        width = max(len(p) for p in runs) + 2
        lines.append(" " * width + "  ".join(f"{h:>5}" for h in header))
        for proto, run in runs.items():
            results = run["benchmarks"]
            if len([n for n in PAPER_ORDER if n in results]) < 2:
                continue
            lines.append(f"{proto:<{width}}" + "  ".join(f"{v:>5}" for v in summary_row(results)[1]))
            for label, row in published_lines(proto, model, results):
                lines.append(f"{'':<{width}}" + "  ".join(f"{v:>5}" for v in row) + f"  <- published: {label}")
    return lines
