"""The shard contract (schema version 1): write, read, validate, manifest.

A shard is the unit of work, of failure and of resume. `write_shard` writes `NNNNN.tar` (webdataset
layout: the members of one sample adjacent, keyed `SSSSSIIII`) and the row-aligned `NNNNN.parquet`,
each to a temporary name then renamed, and `NNNNN_stats.json` LAST: the stats file's presence means
the shard is complete. Everything is byte-deterministic (fixed tar metadata, fixed parquet writer
options) so that a resumed run and an uninterrupted run produce identical files.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from zss.errors import ZssError
from zss.utils.hashing import sha256_file

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
MAX_SHARD_SIZE = 10_000  # the key holds the in-shard index on 4 digits

PARQUET_SCHEMA = pa.schema([
    ("key", pa.string()),
    ("source_id", pa.string()),
    ("status", pa.string()),
    ("error", pa.string()),
    ("n_captions", pa.int32()),
    ("concept_ids", pa.list_(pa.int32())),
    ("n_masks", pa.int32()),
])


def sample_key(shard_id: int, index_in_shard: int) -> str:
    """`000120034` for shard 12, position 34 (docs/contracts.md)."""
    return f"{shard_id:05d}{index_in_shard:04d}"


def shard_paths(out_dir: str | Path, shard_id: int) -> dict[str, Path]:
    out = Path(out_dir)
    stem = f"{shard_id:05d}"
    return {"tar": out / f"{stem}.tar", "parquet": out / f"{stem}.parquet",
            "stats": out / f"{stem}_stats.json"}


def is_shard_done(out_dir: str | Path, shard_id: int) -> bool:
    return shard_paths(out_dir, shard_id)["stats"].is_file()


def remove_partial_shard(out_dir: str | Path, shard_id: int) -> None:
    """Delete whatever an interrupted run left of a shard (files and their temporaries)."""
    for path in shard_paths(out_dir, shard_id).values():
        for p in (path, path.with_name(path.name + ".tmp")):
            if p.exists():
                p.unlink()


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    """Fixed metadata (mtime 0, root, 0644) so tar bytes depend only on content."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def _concept_ids(concepts: list[list[dict]] | None) -> list[int]:
    """Sorted unique concept ids over all captions of a sample (the parquet's filter column)."""
    ids = {int(c["id"]) for per_caption in (concepts or []) for c in per_caption}
    return sorted(ids)


def sample_meta(key: str, sample: dict[str, Any]) -> dict[str, Any]:
    """The `KEY.json` document of one sample."""
    patch = sample.get("patch")
    grid = list(patch.shape[:2]) if patch is not None else None
    return {"key": key, "source_id": str(sample["source_id"]), "status": sample["status"],
            "orig_size": [int(v) for v in sample["orig_size"]],
            "size": [int(v) for v in sample["size"]], "grid": grid,
            "captions": list(sample.get("captions") or []),
            "concepts": sample.get("concepts") or [[] for _ in sample.get("captions") or []]}


def write_shard(out_dir: str | Path, shard_id: int, samples: list[dict[str, Any]],
                seconds: dict[str, float] | None = None) -> dict[str, Any]:
    """Write one complete shard; return its stats (also written, last, to `NNNNN_stats.json`).

    `samples` are in input order, one per input row, each a dict with `source_id`, `status`,
    `error`, `captions` (list[str]); and for `status == "ok"` rows also `orig_size`, `size`
    ((H, W)), `patch` (float16 [Hp,Wp,D]), `global` (float16 [D]), `concepts` (list per caption),
    `masks` (list of COCO-RLE annotations, or None when no mask source ran) and `jpg` (bytes or
    None). Failed rows only reach the parquet.
    """
    if len(samples) > MAX_SHARD_SIZE:
        raise ZssError(f"a shard holds at most {MAX_SHARD_SIZE} samples, got {len(samples)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = shard_paths(out, shard_id)
    remove_partial_shard(out, shard_id)

    rows: dict[str, list] = {name: [] for name in PARQUET_SCHEMA.names}
    by_status: dict[str, int] = {}
    tmp_tar = paths["tar"].with_name(paths["tar"].name + ".tmp")
    with tarfile.open(tmp_tar, "w", format=tarfile.GNU_FORMAT) as tar:
        for i, sample in enumerate(samples):
            key = sample_key(shard_id, i)
            status = str(sample["status"])
            by_status[status] = by_status.get(status, 0) + 1
            masks = sample.get("masks") if status == "ok" else None
            concepts = sample.get("concepts") if status == "ok" else None
            rows["key"].append(key)
            rows["source_id"].append(str(sample["source_id"]))
            rows["status"].append(status)
            rows["error"].append(sample.get("error") or None)
            rows["n_captions"].append(len(sample.get("captions") or []))
            rows["concept_ids"].append(_concept_ids(concepts))
            rows["n_masks"].append(len(masks) if masks is not None else 0)
            if status != "ok":
                continue
            meta = sample_meta(key, sample)
            _add_member(tar, f"{key}.json", json.dumps(meta, sort_keys=True).encode())
            _add_member(tar, f"{key}.patch.npy", _npy_bytes(np.asarray(sample["patch"], np.float16)))
            _add_member(tar, f"{key}.global.npy", _npy_bytes(np.asarray(sample["global"], np.float16)))
            if masks is not None:
                _add_member(tar, f"{key}.masks.json", json.dumps(masks, sort_keys=True).encode())
            if sample.get("jpg"):
                _add_member(tar, f"{key}.jpg", bytes(sample["jpg"]))
    os.replace(tmp_tar, paths["tar"])

    table = pa.table(rows, schema=PARQUET_SCHEMA)
    tmp_pq = paths["parquet"].with_name(paths["parquet"].name + ".tmp")
    pq.write_table(table, tmp_pq, compression="zstd", write_statistics=False)
    os.replace(tmp_pq, paths["parquet"])

    stats = {"shard": shard_id, "n": len(samples), "by_status": dict(sorted(by_status.items())),
             "seconds": {k: round(float(v), 4) for k, v in (seconds or {}).items()},
             "sha256": {"tar": sha256_file(paths["tar"]), "parquet": sha256_file(paths["parquet"])}}
    tmp_stats = paths["stats"].with_name(paths["stats"].name + ".tmp")
    tmp_stats.write_text(json.dumps(stats, indent=1))
    os.replace(tmp_stats, paths["stats"])
    return stats


def iter_samples(tar_path: str | Path) -> Iterator[dict[str, Any]]:
    """Stream the samples of one shard tar: dicts {key, meta, patch, global, masks, jpg}.

    Members of a sample are adjacent (the writer guarantees it), so one pass without an index
    suffices; `.npy` members are loaded with `allow_pickle=False`.
    """
    current: dict[str, Any] | None = None
    try:
        with tarfile.open(tar_path, "r") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                key, _, ext = info.name.partition(".")
                data = tar.extractfile(info).read()  # type: ignore[union-attr]
                if current is None or current["key"] != key:
                    if current is not None:
                        yield current
                    current = {"key": key, "meta": None, "patch": None, "global": None,
                               "masks": None, "jpg": None}
                if ext == "json":
                    current["meta"] = json.loads(data)
                elif ext == "patch.npy":
                    current["patch"] = np.load(io.BytesIO(data), allow_pickle=False)
                elif ext == "global.npy":
                    current["global"] = np.load(io.BytesIO(data), allow_pickle=False)
                elif ext == "masks.json":
                    current["masks"] = json.loads(data)
                elif ext == "jpg":
                    current["jpg"] = data
    except (tarfile.TarError, OSError) as exc:
        raise ZssError(f"cannot read shard {tar_path}: {exc}") from exc
    if current is not None:
        yield current


def read_parquet(path: str | Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise ZssError(f"cannot read {path}: {exc}") from exc


def write_manifest(out_dir: str | Path, manifest: dict[str, Any]) -> Path:
    """Write `manifest.json` atomically (it is rewritten after every run)."""
    path = Path(out_dir) / MANIFEST
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=False))
    os.replace(tmp, path)
    return path


def read_manifest(out_dir: str | Path) -> dict[str, Any]:
    """The manifest of a shard folder; `ZssError` when it is missing or of another schema."""
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        raise ZssError(f"no {MANIFEST} in {out_dir}: not a zss shard folder (run `zss ingest`)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ZssError(f"{path} is not valid JSON: {exc}") from exc
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise ZssError(f"{path} has schema version {manifest.get('schema_version')}, "
                       f"this zss reads {SCHEMA_VERSION}")
    return manifest


def shard_tars(out_dir: str | Path) -> list[Path]:
    """The tar files of the finished shards listed in the manifest, in order."""
    out = Path(out_dir)
    return [out / s["tar"] for s in read_manifest(out)["shards"]]


def iter_all_samples(out_dir: str | Path) -> Iterator[dict[str, Any]]:
    for tar in shard_tars(out_dir):
        yield from iter_samples(tar)


def validate_shards(out_dir: str | Path) -> list[str]:
    """Check a shard folder against its manifest: hashes, counts, tar/parquet row alignment.

    Returns the list of problems found (empty when the folder is valid).
    """
    out = Path(out_dir)
    manifest = read_manifest(out)
    problems: list[str] = []
    for entry in manifest["shards"]:
        sid = int(entry["id"])
        paths = shard_paths(out, sid)
        if not paths["stats"].is_file():
            problems.append(f"shard {sid}: no stats file (unfinished)")
            continue
        stats = json.loads(paths["stats"].read_text())
        for kind in ("tar", "parquet"):
            if not paths[kind].is_file():
                problems.append(f"shard {sid}: {kind} missing")
                continue
            digest = sha256_file(paths[kind])
            if digest != stats["sha256"][kind] or digest != entry["sha256"][kind]:
                problems.append(f"shard {sid}: {kind} sha256 mismatch")
        if problems and problems[-1].startswith(f"shard {sid}:"):
            continue
        table = read_parquet(paths["parquet"]).to_pydict()
        if len(table["key"]) != entry["n"] or len(table["key"]) != stats["n"]:
            problems.append(f"shard {sid}: parquet has {len(table['key'])} rows, "
                            f"manifest says {entry['n']}")
        expected = [sample_key(sid, i) for i in range(len(table["key"]))]
        if table["key"] != expected:
            problems.append(f"shard {sid}: parquet keys are not in shard order")
        ok_keys = [k for k, s in zip(table["key"], table["status"]) if s == "ok"]
        tar_keys = []
        for sample in iter_samples(paths["tar"]):
            tar_keys.append(sample["key"])
            meta = sample["meta"]
            if meta is None or sample["patch"] is None or sample["global"] is None:
                problems.append(f"shard {sid}: sample {sample['key']} lacks json/patch/global")
                continue
            if list(sample["patch"].shape[:2]) != list(meta["grid"]):
                problems.append(f"shard {sid}: sample {sample['key']} grid mismatch")
            feat = manifest.get("feature") or {}
            if feat.get("dim") is not None and sample["patch"].shape[-1] != feat["dim"]:
                problems.append(f"shard {sid}: sample {sample['key']} feature dim mismatch")
        if tar_keys != ok_keys:
            problems.append(f"shard {sid}: tar samples do not match the parquet's ok rows")
        if entry.get("n_ok") is not None and entry["n_ok"] != len(ok_keys):
            problems.append(f"shard {sid}: manifest n_ok {entry['n_ok']} != {len(ok_keys)}")
    return problems


def shard_entry(out_dir: str | Path, shard_id: int) -> dict[str, Any]:
    """The manifest's record of a finished shard, rebuilt from its stats file."""
    paths = shard_paths(out_dir, shard_id)
    stats = json.loads(paths["stats"].read_text())
    return {"id": shard_id, "tar": paths["tar"].name, "parquet": paths["parquet"].name,
            "n": stats["n"], "n_ok": stats["by_status"].get("ok", 0), "sha256": stats["sha256"]}


def collect_stats(out_dir: str | Path, shard_ids: Iterable[int]) -> dict[str, int]:
    """Status counts summed over finished shards."""
    total: dict[str, int] = {}
    for sid in shard_ids:
        stats = json.loads(shard_paths(out_dir, sid)["stats"].read_text())
        for status, n in stats["by_status"].items():
            total[status] = total.get(status, 0) + n
    return dict(sorted(total.items()))
