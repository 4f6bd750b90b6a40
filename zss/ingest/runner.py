"""The ingest job: prepare OUT, check the models in the driver, plan, run the pending shards on
Ray, keep the manifest, report.

Shards are the unit of work: the driver walks the pending shards in order (`plan`), hands each
one's refs (small JSON dicts, made only when the shard is submitted, from one forward walk of the
source's lazy enumeration, see `plan.ShardRefs`) to a `ShardWorker` actor (`cluster`), and keeps a
bounded window of shards per actor in flight (`run_loop`). The actor reads, decodes, runs the model
stages in batches cut at the shard's start and writes the tar + parquet + stats itself; only the
stats (counts, seconds, sha256) come back (`report.IngestStats` collects them). So the driver's CPU
and memory per sample are tiny and do not grow with the dataset, and OUT must be reachable (a
shared folder or object storage URL) from every node. Because a shard's model batches are always
cut the same way, a resumed run computes every sample in exactly the batch an uninterrupted run
would, so shards are byte-identical either way.
"""

from __future__ import annotations

import copy
import json
import math
import tempfile
import time
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Any, Callable

from zss.errors import Interrupted, ZssError
from zss.formats import shards as sh
from zss.formats import storage
from zss.ingest.cluster import is_stage_bug, ray_error, ray_session, resources, start_workers
from zss.ingest.config import IngestConfig, build_config, fingerprint, views_record
from zss.ingest.plan import ShardRefs, plan_shards
from zss.ingest.report import IngestStats, summary_text
from zss.ingest.run_loop import ShardWindow, run_shards
from zss.ingest.sources import Source, open_source
from zss.ingest.workers import Stage, StageFactory, model_stages
from zss.utils.config import to_dict
from zss.utils.enverrors import environment_error, is_environment_error
from zss.utils.lock import FolderLock
from zss.utils.signals import StopRequest

OWN_FILES = ("manifest.json", "concepts.json", "concepts.faiss")


def _is_own(name: str) -> bool:
    return name in OWN_FILES or name.endswith(".tmp") or (
        name[:5].isdigit() and name.rsplit(".", 1)[-1] in ("tar", "parquet", "json"))


def _prepare_out(out: Path | str, cfg: IngestConfig, fp: str) -> list[str]:
    """Overwrite: remove our files. Incremental: refuse a folder made with another config.
    Returns the file names found in OUT (one listing, also used to find finished shards)."""
    if not storage.is_url(out):
        try:
            Path(out).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ZssError(f"cannot create the output folder {out}: {exc.strerror or exc}") from exc
    names = storage.listdir(out)
    if cfg.mode == "overwrite":
        for name in names:
            if _is_own(name):
                storage.remove(storage.join(out, name))
        return []
    manifest = storage.join(out, sh.MANIFEST)
    if sh.MANIFEST in names:
        old = json.loads(storage.read_bytes(manifest)).get("fingerprint")
        if old != fp:
            raise ZssError(f"{out} holds shards made with another source or config; use "
                           f"--mode overwrite or another output folder")
    return names


def _manifest(cfg: IngestConfig, fp: str, source: dict[str, Any], models: dict[str, Any],
              bank: dict[str, Any] | None, n_shards: int, n_samples: int,
              entries: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """The manifest given the finished shards' entries (kept in memory, rewritten at a bounded rate)."""
    done = sorted(s for s in entries if s < n_shards)
    feat = models.get("features", {})
    size, patch = cfg.decode.img_size, cfg.decode.patch_size
    grid = [size // patch, size // patch] if cfg.decode.resize == "square" else None
    return {"schema_version": sh.SCHEMA_VERSION, "source": source,
            "models": {**models, "tokenizer": "clip-bpe"},
            "feature": {"grid": grid, "dim": feat.get("embed_dim"),
                        "dtype": getattr(cfg.features, "dtype", "float16")},
            "views": views_record(cfg),
            "concept_bank": bank, "n_samples": n_samples, "n_shards": n_shards,
            "complete": len(done) == n_shards,
            "shards": [entries[s] for s in done],
            "fingerprint": fp, "config": to_dict(cfg)}


def _write_manifest(out: Path | str, meta: dict[str, Any]) -> dict[str, Any]:
    """Write OUT's manifest from `meta` (the `_manifest` arguments) as it stands; returns it."""
    manifest = _manifest(**meta)
    sh.write_manifest(out, manifest)
    return manifest


def _on_cpu(cfg: IngestConfig) -> IngestConfig:
    probe = copy.deepcopy(cfg)
    for stage_cfg in (probe.features, probe.masks, probe.concepts):
        if hasattr(stage_cfg, "device"):
            stage_cfg.device = "cpu"
    return probe


def describe_stages(stages: list[tuple[str, Stage]]) -> dict[str, Any]:
    return {name: stage.describe() for name, stage in stages if hasattr(stage, "describe")}


def _write_bank(stage: Any, out: Path | str) -> dict[str, Any]:
    """The concept bank into OUT (via a local folder and one PUT per file for a URL)."""
    if not storage.is_url(out):
        return stage.write_bank(out)
    with tempfile.TemporaryDirectory(prefix="zss-bank-") as tmp:
        bank = stage.write_bank(tmp)
        for p in sorted(Path(tmp).iterdir()):
            storage.write_bytes_atomic(storage.join(out, p.name), p.read_bytes())
    return bank


def _probe(cfg: IngestConfig, factory: StageFactory, out: Path | str
           ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(the stages' descriptions, the concept bank written into OUT): the stages built once in the
    driver, on CPU (it holds no GPU memory), to fail fast with a one-line error (bad name, missing
    file) and learn what the manifest records; the loaded model also sets the patch size."""
    probe = factory(_on_cpu(cfg))
    models = describe_stages(probe)
    bank = None
    for name, stage in probe:
        if hasattr(stage, "write_bank"):
            bank = _write_bank(stage, out)
        if name == "features" and getattr(stage, "patch_size", None):
            # the loaded model knows its patch; names like open_clip/zss-tiny-vit or ConvNeXt don't say
            cfg.decode.patch_size = int(stage.patch_size)
    return models, bank


def ingest(cfg: IngestConfig, source: Source, out: str | Path,
           factory: StageFactory = model_stages, progress: bool | None = None) -> dict[str, Any]:
    """Run the job; return a report dict (what `summary_text` prints). OUT: a folder or a URL.

    One writer per local output folder (`.zss.lock`); SIGINT/SIGTERM stop submitting shards, keep
    every shard already written, shut Ray down and raise `Interrupted` (exit 130/143); disk full or
    permission errors are one line naming the path (docs/reliability.md)."""
    out = storage.location(out)  # a URL stays a string; a malformed one or a missing bucket: one line
    try:
        with (nullcontext() if storage.is_url(out) else FolderLock(out, "zss ingest")), StopRequest() as stop:
            return _ingest(cfg, source, out, factory, progress, stop)
    except OSError as exc:
        if is_environment_error(exc):
            raise environment_error(exc, out) from exc
        raise


def _interrupted(stop: StopRequest, out: Path | str) -> Interrupted:
    done = sum(1 for name in storage.listdir(out) if name.endswith("_stats.json"))
    return Interrupted(stop.exit_code, f"interrupted ({stop.name}); {done} shard(s) complete in {out}; "
                                       "re-run the same command to resume")


def _ray_failure(exc: BaseException, report: dict[str, Any]) -> ZssError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ZssError(f"the Ray job failed after {report['written']} new shard(s) "
                    f"({type(exc).__name__}: {first[:300]}); finished shards are kept, "
                    f"re-run the same command to resume")


def _ingest(cfg: IngestConfig, source: Source, out: Path | str, factory: StageFactory,
            progress: bool | None, stop: StopRequest) -> dict[str, Any]:
    if getattr(cfg.features, "dtype", "float16") not in sh.FEATURE_DTYPES:
        raise ZssError(f"features.dtype must be one of {', '.join(sh.FEATURE_DTYPES)}, "
                       f"got {cfg.features.dtype!r}")
    n = min(len(source), cfg.limit) if cfg.limit else len(source)
    src_desc = source.describe()
    fp = fingerprint(cfg, src_desc)
    names = set(_prepare_out(out, cfg, fp))

    t_load = time.perf_counter()
    models, bank = _probe(cfg, factory, out)
    load_seconds = time.perf_counter() - t_load

    n_shards = math.ceil(n / cfg.shard_size)
    pending, entries, by_status = plan_shards(out, names, n, cfg.shard_size)
    save_manifest = partial(_write_manifest, out, dict(cfg=cfg, fp=fp, source=src_desc, models=models,
                                                       bank=bank, n_shards=n_shards, n_samples=n,
                                                       entries=entries))
    save_manifest()
    stats = IngestStats(out, n, n_shards, len(pending), entries, by_status, load_seconds)
    if pending:
        window = ShardWindow(pending, ShardRefs(source, n, cfg.shard_size), str(out), stop)
        failure = _run_on_ray(cfg, factory, window, stats, save_manifest, progress)
        if stop.signum is not None:  # counted once every worker is gone: the count is final
            save_manifest()
            raise _interrupted(stop, out)
        if failure is not None:
            raise failure
    return stats.finish(save_manifest(), cfg.concepts.match)


def _run_on_ray(cfg: IngestConfig, factory: StageFactory, window: ShardWindow, stats: IngestStats,
                save_manifest: Callable[[], Any], progress: bool | None) -> ZssError | None:
    """Compute the window's shards on Ray (started here unless it runs already, shut down after).
    A dead node or actor returns a one-line error holding no Ray object (the finished shards stay,
    a re-run resumes); a stage that raised (a bug, issue 9 item 6) is raised with its traceback."""
    with ray_session(cfg) as ray_seconds:
        stats.report["ray_seconds"] = ray_seconds
        res = resources(cfg)
        stats.report["resources"] = res
        try:
            window.start(start_workers(cfg, factory, res))
            run_shards(window, stats, save_manifest, progress)
        except ray_error() as exc:
            save_manifest()
            if not window.stopped and is_stage_bug(exc):
                raise  # loud, with its traceback
            failure = _ray_failure(exc, stats.report)
            del exc
            return failure
    return None


def run_ingest(source: str, out: str | Path, preset: str | Path | None = None,
               features: str | None = None, img_size: int | None = None, masks: str | None = None,
               sam_checkpoint: str | None = None, concepts: str | None = None,
               shard_size: int | None = None, workers: int | None = None, address: str | None = None,
               mode: str | None = None, limit: int | None = None, store_images: bool | None = None,
               overrides: list[str] | None = None, views: int | None = None) -> str:
    """`zss ingest`: build the config, open the source, run, and return the summary text."""
    cfg = build_config(preset, overrides, features=features, img_size=img_size, masks=masks,
                       sam_checkpoint=sam_checkpoint, concepts=concepts, shard_size=shard_size,
                       workers=workers, address=address, mode=mode, limit=limit,
                       store_images=store_images, views=views)
    src = open_source(source)
    return summary_text(ingest(cfg, src, out))
