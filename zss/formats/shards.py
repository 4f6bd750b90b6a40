"""The shard contract (schema version 1): write, read, validate, manifest.

A shard is the unit of work, of failure and of resume. `write_shard` writes `NNNNN.tar` (webdataset
layout: the members of one sample adjacent, keyed `SSSSSIIII`) and the row-aligned `NNNNN.parquet`,
each to a temporary name then renamed, and `NNNNN_stats.json` LAST: the stats file's presence means
the shard is complete. Everything is byte-deterministic (fixed tar metadata, fixed parquet writer
options) so that a resumed run and an uninterrupted run produce identical files.

The output may be a local folder or an fsspec URL (`s3://bucket/prefix`, `gs://...`; the calls that
work on both are `zss.formats.storage`): for a URL the tar and parquet are built in a local
temporary folder and uploaded with one PUT each (an object appears whole or not at all), the stats
object last. Shards are read back through `zss.formats.tar_reader` (`read_tar_samples`: raw members,
what the trainer decodes; `iter_samples`: whole samples). Patch features are stored as float16 or as
int8 codes with a per-token absmax scale (`KEY.patch_scale.npy`, float16 [Hp,Wp,1]) beside them.

Augmented views (ingest `decode.views` V > 1): view 0 is the sample's `patch`/`global` as always;
views v = 1..V-1 add `KEY.patch.v.npy` (and `KEY.patch_scale.v.npy` for int8) and
`KEY.global.v.npy`, and `KEY.json` gains `views`: V records {box: [top, left, height, width] in
original pixels, grid}. With V = 1 nothing changes (same members, same bytes).
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from zss.errors import ZssError
from zss.formats import storage
from zss.formats.npy import load_npy, npy_bytes
from zss.formats.tar_reader import READ_ERRORS, read_samples
from zss.utils.hashing import sha256_file

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
MAX_SHARD_SIZE = 10_000  # the key holds the in-shard index on 4 digits
FEATURE_DTYPES = ("float16", "int8")

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


# ---------------------------------------------------------------- shard files


def shard_paths(out_dir: str | Path, shard_id: int) -> dict[str, Any]:
    """The three files of a shard: Paths for a local folder, URL strings for object storage."""
    stem = f"{shard_id:05d}"
    return {"tar": storage.join(out_dir, f"{stem}.tar"), "parquet": storage.join(out_dir, f"{stem}.parquet"),
            "stats": storage.join(out_dir, f"{stem}_stats.json")}


def is_shard_done(out_dir: str | Path, shard_id: int) -> bool:
    return storage.exists(shard_paths(out_dir, shard_id)["stats"])


def remove_partial_shard(out_dir: str | Path, shard_id: int) -> None:
    """Delete whatever an interrupted run left of a shard (files and their temporaries)."""
    for path in shard_paths(out_dir, shard_id).values():
        storage.remove(path)
        if not storage.is_url(path):
            storage.remove(path.with_name(path.name + ".tmp"))


# ---------------------------------------------------------------- feature codec


def encode_patch(patch: np.ndarray, dtype: str = "float16") -> dict[str, np.ndarray]:
    """Patch features [..., D] -> tar members: float16 `patch`, or int8 `patch` codes plus a
    float16 per-token `patch_scale` [..., 1] with codes = round(x / scale), scale = absmax / 127."""
    if dtype == "float16":
        return {"patch.npy": np.asarray(patch, np.float16)}
    if dtype != "int8":
        raise ZssError(f"features.dtype must be one of {', '.join(FEATURE_DTYPES)}, got {dtype!r}")
    x = np.asarray(patch, np.float32)
    scale = (np.abs(x).max(axis=-1, keepdims=True) / 127.0).astype(np.float16)
    s = scale.astype(np.float32)
    codes = np.clip(np.rint(x / np.where(s > 0, s, 1.0)), -127, 127).astype(np.int8)
    return {"patch.npy": codes, "patch_scale.npy": scale}


def decode_patch(patch: np.ndarray, scale: np.ndarray | None = None) -> np.ndarray:
    """The stored patch as floats: float16 as is, int8 codes times their per-token scale (float32)."""
    if patch.dtype == np.int8:
        if scale is None:
            raise ZssError("int8 patch features without their patch_scale member")
        return patch.astype(np.float32) * scale.astype(np.float32)
    return patch


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    """Fixed metadata (mtime 0, root, 0644) so tar bytes depend only on content."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def _count_concepts(counts: dict[str, int], concepts: list[list[dict]]) -> None:
    """Add one sample's captions, concept occurrences and captions naming at least one concept."""
    for per_caption in concepts:
        counts["captions"] += 1
        counts["occurrences"] += len(per_caption)
        counts["with_concept"] += bool(per_caption)


def concept_totals(entries: Iterable[dict[str, Any]]) -> dict[str, int] | None:
    """`_count_concepts` summed over manifest entries (or stats) that record it, with `shards` the
    number that did; None when none does (shards written before zss recorded it)."""
    total = {"captions": 0, "occurrences": 0, "with_concept": 0, "shards": 0}
    for e in entries:
        if isinstance(e.get("concepts"), dict):
            for k in ("captions", "occurrences", "with_concept"):
                total[k] += int(e["concepts"].get(k, 0))
            total["shards"] += 1
    return total if total["shards"] else None


def _concept_ids(concepts: list[list[dict]] | None) -> list[int]:
    """Sorted unique concept ids over all captions of a sample (the parquet's filter column)."""
    ids = {int(c["id"]) for per_caption in (concepts or []) for c in per_caption}
    return sorted(ids)


def sample_meta(key: str, sample: dict[str, Any]) -> dict[str, Any]:
    """The `KEY.json` document of one sample."""
    patch = sample.get("patch")
    grid = list(patch.shape[:2]) if patch is not None else None
    meta = {"key": key, "source_id": str(sample["source_id"]), "status": sample["status"],
            "orig_size": [int(v) for v in sample["orig_size"]],
            "size": [int(v) for v in sample["size"]], "grid": grid,
            "captions": list(sample.get("captions") or []),
            "concepts": sample.get("concepts") or [[] for _ in sample.get("captions") or []]}
    if sample.get("tokens") is not None:  # the captions' token ids (from the concepts stage)
        meta["tokens"] = sample["tokens"]
    if sample.get("views"):  # only with augmented views: V = 1 documents stay as they were
        meta["views"] = [{"box": [0, 0, *meta["orig_size"]], "grid": grid}] + [
            {"box": [int(b) for b in view["box"]], "grid": list(np.shape(view["patch"])[:2])}
            for view in sample["views"]]
    return meta


def view_member(member: str, view: int) -> str:
    """The tar suffix of view `view`'s copy of `member` (`patch.npy`, 2 -> `patch.2.npy`)."""
    if view == 0:
        return member
    stem, _, ext = member.rpartition(".")
    return f"{stem}.{view}.{ext}"


def _parquet_row(rows: dict[str, list], key: str, sample: dict[str, Any]) -> None:
    """Append one input row (ok or failed) to the parquet's columns."""
    ok = str(sample["status"]) == "ok"
    masks = sample.get("masks") if ok else None
    rows["key"].append(key)
    rows["source_id"].append(str(sample["source_id"]))
    rows["status"].append(str(sample["status"]))
    rows["error"].append(sample.get("error") or None)
    rows["n_captions"].append(len(sample.get("captions") or []))
    rows["concept_ids"].append(_concept_ids(sample.get("concepts") if ok else None))
    rows["n_masks"].append(len(masks) if masks is not None else 0)


def _sample_members(key: str, sample: dict[str, Any], meta: dict[str, Any],
                    feature_dtype: str) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of an ok sample's tar members, in their fixed order."""
    yield f"{key}.json", json.dumps(meta, sort_keys=True).encode()
    for ext, array in encode_patch(sample["patch"], feature_dtype).items():
        yield f"{key}.{ext}", npy_bytes(array)
    yield f"{key}.global.npy", npy_bytes(np.asarray(sample["global"], np.float16))
    for v, view in enumerate(sample.get("views") or [], start=1):
        for ext, array in encode_patch(view["patch"], feature_dtype).items():
            yield f"{key}.{view_member(ext, v)}", npy_bytes(array)
        yield f"{key}.{view_member('global.npy', v)}", npy_bytes(np.asarray(view["global"], np.float16))
    if sample.get("masks") is not None:
        yield f"{key}.masks.json", json.dumps(sample["masks"], sort_keys=True).encode()
    if sample.get("jpg"):
        yield f"{key}.jpg", bytes(sample["jpg"])


def _write_tar(path: Path, shard_id: int, samples: list[dict[str, Any]], feature_dtype: str) -> dict[str, int]:
    """The shard's tar (ok samples only), written to `path.tmp` then renamed; returns the caption
    counts of its samples (`_count_concepts`)."""
    counts = {"captions": 0, "occurrences": 0, "with_concept": 0}
    tmp = path.with_name(path.name + ".tmp")
    with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tar:
        for i, sample in enumerate(samples):
            if str(sample["status"]) != "ok":
                continue
            key = sample_key(shard_id, i)
            meta = sample_meta(key, sample)
            _count_concepts(counts, meta["concepts"])
            for name, data in _sample_members(key, sample, meta, feature_dtype):
                _add_member(tar, name, data)
    os.replace(tmp, path)
    return counts


def _write_parquet(path: Path, shard_id: int, samples: list[dict[str, Any]]) -> dict[str, int]:
    """The shard's parquet (one row per input row), written to `path.tmp` then renamed; returns
    the row counts by status."""
    rows: dict[str, list] = {name: [] for name in PARQUET_SCHEMA.names}
    by_status: dict[str, int] = {}
    for i, sample in enumerate(samples):
        status = str(sample["status"])
        by_status[status] = by_status.get(status, 0) + 1
        _parquet_row(rows, sample_key(shard_id, i), sample)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(pa.table(rows, schema=PARQUET_SCHEMA), tmp, compression="zstd", write_statistics=False)
    os.replace(tmp, path)
    return by_status


def write_shard(out_dir: str | Path, shard_id: int, samples: list[dict[str, Any]],
                seconds: dict[str, float] | None = None,
                feature_dtype: str = "float16", extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write one complete shard; return its stats (also written, last, to `NNNNN_stats.json`).

    `samples` are in input order, one per input row, each a dict with `source_id`, `status`,
    `error`, `captions` (list[str]); and for `status == "ok"` rows also `orig_size`, `size`
    ((H, W)), `patch` (float [Hp,Wp,D]), `global` (float16 [D]), `concepts` (list per caption),
    `masks` (list of COCO-RLE annotations, or None when no mask source ran) and `jpg` (bytes or
    None). Failed rows only reach the parquet. `out_dir` may be a local folder or a URL.
    `extra` (JSON-able, e.g. the node that wrote the shard) is added to the stats only.
    """
    if len(samples) > MAX_SHARD_SIZE:
        raise ZssError(f"a shard holds at most {MAX_SHARD_SIZE} samples, got {len(samples)}")
    if feature_dtype not in FEATURE_DTYPES:
        raise ZssError(f"features.dtype must be one of {', '.join(FEATURE_DTYPES)}, got {feature_dtype!r}")
    remote = storage.is_url(out_dir)
    if not remote:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    paths = shard_paths(out_dir, shard_id)
    remove_partial_shard(out_dir, shard_id)
    with storage.staged({"tar": paths["tar"], "parquet": paths["parquet"]}) as local:
        counts = _write_tar(local["tar"], shard_id, samples, feature_dtype)
        by_status = _write_parquet(local["parquet"], shard_id, samples)
        stats = {"shard": shard_id, "n": len(samples), "by_status": dict(sorted(by_status.items())),
                 "concepts": counts,
                 "seconds": {k: round(float(v), 4) for k, v in (seconds or {}).items()},
                 "sha256": {"tar": sha256_file(local["tar"]), "parquet": sha256_file(local["parquet"])},
                 **(extra or {})}
        if remote:
            for kind in ("tar", "parquet"):
                storage.upload(local[kind], paths[kind])
    storage.write_bytes_atomic(paths["stats"], json.dumps(stats, indent=1).encode())
    return stats


# ---------------------------------------------------------------- reading


def read_tar_samples(url: Path | str, members: set[str] | None = None,
                     keep: Callable[[int], bool] | None = None) -> Iterator[dict[str, Any]]:
    """The samples of one shard tar (a path or URL) as `zss.formats.tar_reader.read_samples` reads
    them ({suffix: data, "__key__", "__url__"}; `.npy` data for `load_npy`). Only `members`
    (suffixes) are read; `keep(i)` False skips the i-th sample's data altogether. int8 `patch.npy`
    codes are decoded to float32 here, once, beside their per-token scale (then dropped)."""
    wanted = None
    if members is not None:
        wanted = set(members) | ({"patch_scale.npy"} if "patch.npy" in members else set())
    for sample in read_samples(url, wanted, keep):
        scale = sample.pop("patch_scale.npy", None)
        if scale is not None and "patch.npy" in sample:
            sample["patch.npy"] = decode_patch(load_npy(sample["patch.npy"]), load_npy(scale))
        yield sample


_VIEW_MEMBER = re.compile(r"^(patch|patch_scale|global)\.([1-9][0-9]*)\.npy$")
_FIELDS = {"json": "meta", "patch.npy": "patch", "global.npy": "global", "masks.json": "masks", "jpg": "jpg"}


def _sample_record(raw: dict[str, Any]) -> dict[str, Any]:
    """A sample of `read_tar_samples` as {key, meta, patch, global, masks, jpg, views}."""
    sample: dict[str, Any] = {"key": raw["__key__"], **{f: None for f in _FIELDS.values()}}
    views: dict[int, dict[str, np.ndarray]] = {}
    for ext, data in raw.items():
        view = _VIEW_MEMBER.match(ext)
        if view is not None:
            views.setdefault(int(view[2]), {})[view[1]] = load_npy(data)
        elif ext in _FIELDS:
            sample[_FIELDS[ext]] = (json.loads(data) if ext.endswith("json")
                                    else load_npy(data) if ext.endswith("npy") else data)
    if sample["patch"] is not None:
        sample["patch"] = decode_patch(sample["patch"])  # int8 codes without their scale: an error
    sample["views"] = [{"patch": decode_patch(views[v]["patch"], views[v].get("patch_scale"))
                        if "patch" in views[v] else None, "global": views[v].get("global")}
                       for v in sorted(views)]
    return sample


def iter_samples(tar_path: str | Path) -> Iterator[dict[str, Any]]:
    """Stream the samples of one shard tar (a path or URL): dicts {key, meta, patch, global,
    masks, jpg, views}, int8 patches decoded to float32; `views` lists views 1..V-1 as {patch,
    global} (empty without augmented views); `.npy` members are loaded without pickles. A tar
    that cannot be read raises `ZssError`."""
    samples = read_tar_samples(tar_path)
    while True:
        try:
            raw = next(samples, None)
        except READ_ERRORS + (ZssError,) as exc:
            raise ZssError(f"cannot read shard {tar_path}: {exc}") from exc
        if raw is None:
            return
        yield _sample_record(raw)


def read_parquet(path: str | Path) -> pa.Table:
    try:
        if storage.is_url(path):
            return pq.read_table(io.BytesIO(storage.read_bytes(path)))
        return pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise ZssError(f"cannot read {path}: {exc}") from exc


def write_manifest(out_dir: str | Path, manifest: dict[str, Any]) -> Path | str:
    """Write `manifest.json` atomically (tmp + rename locally, one PUT on object storage)."""
    path = storage.join(out_dir, MANIFEST)
    storage.write_bytes_atomic(path, json.dumps(manifest, indent=1, sort_keys=False).encode())
    return path


def read_manifest(out_dir: str | Path) -> dict[str, Any]:
    """The manifest of a shard folder; `ZssError` when it is missing or of another schema."""
    path = storage.join(out_dir, MANIFEST)
    if not storage.exists(path):
        raise ZssError(f"no {MANIFEST} in {out_dir}: not a zss shard folder (run `zss ingest`)")
    try:
        manifest = json.loads(storage.read_bytes(path))
    except json.JSONDecodeError as exc:
        raise ZssError(f"{path} is not valid JSON: {exc}") from exc
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise ZssError(f"{path} has schema version {manifest.get('schema_version')}, "
                       f"this zss reads {SCHEMA_VERSION}")
    return manifest


def shard_tars(out_dir: str | Path) -> list[Path | str]:
    """The tar files (paths or URLs) of the finished shards listed in the manifest, in order."""
    return [storage.join(out_dir, s["tar"]) for s in read_manifest(out_dir)["shards"]]


def iter_all_samples(out_dir: str | Path) -> Iterator[dict[str, Any]]:
    for tar in shard_tars(out_dir):
        yield from iter_samples(tar)


def validate_shards(out_dir: str | Path) -> list[str]:
    """Check a shard folder against its manifest: hashes, counts, tar/parquet row alignment.

    Returns the list of problems found (empty when the folder is valid).
    """
    out = out_dir
    manifest = read_manifest(out)
    problems: list[str] = []
    for entry in manifest["shards"]:
        sid = int(entry["id"])
        paths = shard_paths(out, sid)
        if not storage.exists(paths["stats"]):
            problems.append(f"shard {sid}: no stats file (unfinished)")
            continue
        stats = json.loads(storage.read_bytes(paths["stats"]))
        for kind in ("tar", "parquet"):
            if not storage.exists(paths[kind]):
                problems.append(f"shard {sid}: {kind} missing")
                continue
            digest = storage.sha256(paths[kind])
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
            n_views = int((manifest.get("views") or {}).get("n", 1))
            views = meta.get("views") or [{}]
            if len(views) != n_views or len(sample["views"]) != n_views - 1:
                problems.append(f"shard {sid}: sample {sample['key']} has {len(sample['views']) + 1} "
                                f"view(s), the manifest says {n_views}")
            elif any(v["patch"] is None or v["global"] is None
                     or list(v["patch"].shape[:2]) != list(rec["grid"])
                     for v, rec in zip(sample["views"], views[1:])):
                problems.append(f"shard {sid}: sample {sample['key']} lacks a view's patch/global "
                                "or its grid differs")
            feat = manifest.get("feature") or {}
            if feat.get("dim") is not None and sample["patch"].shape[-1] != feat["dim"]:
                problems.append(f"shard {sid}: sample {sample['key']} feature dim mismatch")
        if tar_keys != ok_keys:
            problems.append(f"shard {sid}: tar samples do not match the parquet's ok rows")
        if entry.get("n_ok") is not None and entry["n_ok"] != len(ok_keys):
            problems.append(f"shard {sid}: manifest n_ok {entry['n_ok']} != {len(ok_keys)}")
    return problems


def entry_from_stats(stats: dict[str, Any]) -> dict[str, Any]:
    """The manifest's record of a finished shard, given its stats."""
    stem = f"{int(stats['shard']):05d}"
    entry = {"id": int(stats["shard"]), "tar": f"{stem}.tar", "parquet": f"{stem}.parquet",
             "n": stats["n"], "n_ok": stats["by_status"].get("ok", 0), "sha256": stats["sha256"]}
    if "concepts" in stats:  # caption/occurrence counts (absent in stats of older zss)
        entry["concepts"] = stats["concepts"]
    return entry


def read_stats(out_dir: str | Path, shard_id: int) -> dict[str, Any]:
    return json.loads(storage.read_bytes(shard_paths(out_dir, shard_id)["stats"]))


def shard_entry(out_dir: str | Path, shard_id: int) -> dict[str, Any]:
    """The manifest's record of a finished shard, rebuilt from its stats file."""
    return entry_from_stats(read_stats(out_dir, shard_id))

