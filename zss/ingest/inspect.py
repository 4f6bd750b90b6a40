"""`zss inspect SHARDS`: what a shard folder holds, read back through the public readers only.

A quick way to see that an ingest did what was asked (models, grid, counts by status) and what one
sample looks like to a trainer, without writing code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zss.errors import ZssError
from zss.formats import shards as sh
from zss.formats import storage


def _model_line(name: str, spec: object) -> str:
    if not isinstance(spec, dict):
        return f"  {name}: {spec}"
    keys = ("name", "mode", "kind", "checkpoint", "img_size", "patch_size", "embed_dim", "global", "bank",
            "match", "spacy")
    parts = [f"{k}={spec[k]}" for k in keys if spec.get(k) not in (None, "")]
    if spec.get("sha256"):
        parts.append(f"sha256={str(spec['sha256'])[:12]}")
    return f"  {name}: " + ", ".join(parts)


def concept_line(totals: dict[str, int] | None, match: str | None, n_shards: int) -> str | None:
    """`concepts (match M): X per caption, Y % of N captions name at least one` — what tells
    `concepts.match: strict` and `zss` apart on a corpus; None without recorded counts."""
    if not totals:
        return None
    n = totals["captions"]
    mean = totals["occurrences"] / n if n else 0.0
    share = 100.0 * totals["with_concept"] / n if n else 0.0
    part = f" (counted in {totals['shards']} of {n_shards} shards)" if totals["shards"] < n_shards else ""
    return (f"concepts (match {match or '?'}): {mean:.3f} occurrences per caption, {share:.1f} % of "
            f"{n} captions name at least one ({totals['occurrences']} occurrences){part}")


def _shard_folder(out_dir: str | Path) -> Path | str:
    """A local shard folder (it must exist) or a URL (checked: scheme, bucket)."""
    out = storage.location(out_dir)
    if not storage.is_url(out) and not Path(out).is_dir():
        raise ZssError(f"shard folder not found: {out}")
    return out


def inspect_shards(out_dir: str | Path) -> str:
    """Manifest summary, status counts over all parquet rows, and the first ok sample decoded."""
    out = _shard_folder(out_dir)
    manifest = sh.read_manifest(out)
    lines = [f"shards: {out}  (schema {manifest['schema_version']})",
             f"source: {manifest['source'].get('kind')} {manifest['source'].get('path')} "
             f"({manifest['source'].get('n')} items)"]
    lines.append("models:")
    for name, spec in manifest.get("models", {}).items():
        lines.append(_model_line(name, spec))
    feat = manifest.get("feature", {})
    lines.append(f"features: grid {feat.get('grid')}, dim {feat.get('dim')}, {feat.get('dtype')}")
    views = manifest.get("views") or {"n": 1}
    lines.append(f"views: V={views['n']}" + (
        f" (view 0 the whole image, {views['n'] - 1} random-resized crop(s), scale "
        f"{views['scale'][0]:g}-{views['scale'][1]:g}, seed {views['seed']})" if views["n"] > 1 else
        " (the whole image only)"))
    bank = manifest.get("concept_bank") or {}
    if bank:
        n_concepts = (manifest.get("models", {}).get("concepts") or {}).get("n_concepts", "?")
        lines.append(f"concept bank: {bank.get('file')} ({n_concepts} concepts)")
    entries = manifest["shards"]
    state = "complete" if manifest.get("complete") else "INCOMPLETE"
    lines.append(f"shards: {len(entries)} of {manifest.get('n_shards', '?')} done ({state}), "
                 f"{sum(e['n'] for e in entries)} samples, {sum(e['n_ok'] for e in entries)} ok")
    match = ((manifest.get("config") or {}).get("concepts") or {}).get("match", "zss" if bank else None)
    line = concept_line(sh.concept_totals(entries), match, len(entries))
    lines.append(line or "concepts: occurrences per caption not recorded (shards written by an older zss)")

    counts: dict[str, int] = {}
    errors: dict[str, str] = {}
    for e in entries:
        table = sh.read_parquet(storage.join(out, e["parquet"])).to_pydict()
        for status, error in zip(table["status"], table["error"]):
            counts[status] = counts.get(status, 0) + 1
            if status != "ok" and status not in errors:
                errors[status] = error or ""
    lines.append("status: " + (", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "none"))
    for status, error in sorted(errors.items()):
        lines.append(f"  e.g. {status}: {error[:120]}")

    sample = next((s for e in entries for s in sh.iter_samples(storage.join(out, e["tar"]))), None)
    if sample is None:
        lines.append("no ok sample to show")
        return "\n".join(lines)
    meta = sample["meta"]
    lines.append(f"sample {sample['key']} (source id {meta['source_id']}):")
    members = [k for k in ("meta", "patch", "global", "masks", "jpg") if sample[k] is not None]
    lines.append(f"  members: {', '.join(members)}")
    lines.append(f"  size {meta['size']} (original {meta['orig_size']}), grid {meta['grid']}")
    p, g = sample["patch"], sample["global"]
    lines.append(f"  patch {list(p.shape)} {p.dtype} (mean |x| {float(np.abs(p.astype(np.float32)).mean()):.3f}), "
                 f"global {list(g.shape)} {g.dtype}")
    for v, rec in enumerate(meta.get("views") or []):
        lines.append(f"  view {v}: box [top, left, h, w] {rec['box']}, grid {rec['grid']}")
    for caption, concepts in zip(meta["captions"], meta.get("concepts") or []):
        names = ", ".join(f"{c['name']}#{c['id']}" for c in concepts) or "-"
        lines.append(f"  caption: {caption!r} -> {names}")
    if sample["masks"] is not None:
        areas = sorted((m.get("area", 0) for m in sample["masks"]), reverse=True)
        lines.append(f"  masks: {len(sample['masks'])} (largest areas {areas[:5]})")
    if sample["jpg"] is not None:
        lines.append(f"  jpg: {len(sample['jpg'])} bytes")
    return "\n".join(lines)


def verify_shards(out_dir: str | Path) -> str:
    """`zss inspect --verify`: every shard's tar and parquet against the sha256 recorded at ingest.

    Returns the report when all match; raises `PartialFailure` (exit 3) listing the damaged shards
    and how to re-ingest just those (delete their stats file, re-run the same `zss ingest`: incremental
    mode recomputes only shards without one, byte-identical to the originals)."""
    from zss.errors import PartialFailure

    out = _shard_folder(out_dir)
    entries = sh.read_manifest(out)["shards"]
    damaged: list[tuple[int, str]] = []
    for e in entries:
        sid = int(e["id"])
        paths = sh.shard_paths(out, sid)
        for kind in ("tar", "parquet"):
            path = paths[kind]
            name = str(path).rsplit("/", 1)[-1]
            if not storage.exists(path):
                damaged.append((sid, f"{name} missing"))
            elif storage.sha256(path) != e["sha256"][kind]:
                damaged.append((sid, f"{name} sha256 differs from the one recorded at ingest"))
    if not damaged:
        return f"verified {len(entries)} shard(s) in {out}: every tar and parquet matches its recorded sha256"
    ids = sorted({sid for sid, _ in damaged})
    stats = " ".join(str(sh.shard_paths(out, sid)["stats"]) for sid in ids)
    lines = [f"{len(ids)} of {len(entries)} shard(s) in {out} are damaged:"]
    lines += [f"  {why}" for _, why in damaged]
    remove = "delete the objects" if storage.is_url(out) else "rm"
    lines.append(f"to re-ingest just these: {remove} {stats} and re-run the same `zss ingest` command "
                 "(incremental mode recomputes only shards without a stats file)")
    raise PartialFailure(3, "\n".join(lines))
