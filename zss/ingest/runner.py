"""The ingest job: Ray Data wiring, shard-level resume, progress and the final summary.

Work is cut into *chunks*: at most `batch_size` consecutive samples of one shard, aligned to the
shard's start. A chunk is one Ray row: a read+decode task turns its refs into a decoded batch, a
model actor runs features -> masks -> concepts on it as ONE model batch, and the driver writes a
shard as soon as all its chunks are back. Because chunks never straddle shards and are always cut
the same way, a resumed run computes every sample in exactly the batch an uninterrupted run would
(CPU matmul results can depend on batch composition), so shards are byte-identical either way.

Resources: model actors take a fraction of a CPU (whole actors on 2 CPUs would starve the
decode tasks and hang the job, see DESIGN "Facts"), a GPU each when the cluster has GPUs, and a
fixed torch thread count.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import time
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from zss.errors import Interrupted, ZssError
from zss.formats import shards as sh
from zss.ingest.config import IngestConfig, build_config, fingerprint
from zss.ingest.sources import Source, open_source
from zss.ingest.workers import ModelActor, Stage, StageFactory, decode_batch, model_stages
from zss.utils.config import to_dict
from zss.utils.enverrors import environment_error, is_environment_error
from zss.utils.lock import FolderLock
from zss.utils.progress import progress_bar
from zss.utils.signals import StopRequest

OWN_FILES = ("manifest.json", "concepts.json", "concepts.faiss")


# ---------------------------------------------------------------- planning


def shard_rows(n: int, shard_size: int, shard: int) -> tuple[int, int]:
    start = shard * shard_size
    return start, min(start + shard_size, n)


def plan_chunks(source: Source, n: int, shard_size: int, batch_size: int,
                shards: Iterable[int]) -> list[dict[str, Any]]:
    """Ray rows: {shard, start, n_chunks, refs (JSON)} cut at shard starts every `batch_size`."""
    chunks = []
    for s in shards:
        lo, hi = shard_rows(n, shard_size, s)
        starts = list(range(lo, hi, batch_size))
        for a in starts:
            refs = source.refs(a, min(a + batch_size, hi))
            chunks.append({"shard": s, "start": a, "n_chunks": len(starts), "refs": json.dumps(refs)})
    return chunks


def _json_or(value: Any, default: Any) -> Any:
    return json.loads(value) if isinstance(value, str) and value else default


def batch_to_samples(batch: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """A processed batch -> per-sample dicts for `shards.write_shard`."""
    samples = []
    for i in range(len(batch["index"])):
        ok = batch["status"][i] == "ok"
        s = {"source_id": str(batch["source_id"][i]), "status": str(batch["status"][i]),
             "error": str(batch["error"][i] or ""), "captions": _json_or(batch["captions"][i], [])}
        if ok:
            s.update({"orig_size": batch["orig_size"][i], "size": batch["size"][i],
                      "patch": batch["patch"][i], "global": batch["global"][i],
                      "concepts": _json_or(batch["concepts"][i], None) if "concepts" in batch else None,
                      "masks": _json_or(batch["masks"][i], None) if "masks" in batch else None,
                      "jpg": bytes(batch["jpg"][i]) or None})
        samples.append(s)
    return samples


# ---------------------------------------------------------------- Ray


def _ray_init(cfg: IngestConfig) -> tuple[bool, float]:
    """Start local Ray (num_cpus = workers) or join `cfg.address`; return (we started it, seconds)."""
    import ray

    if ray.is_initialized():
        return False, 0.0
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    t0 = time.perf_counter()
    kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False,
                                  logging_level=logging.ERROR, configure_logging=True)
    try:
        if cfg.address:
            ray.init(address=cfg.address, **kwargs)
        else:
            ray.init(address="local", num_cpus=cfg.workers, **kwargs)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = cfg.address or "a local instance"
        raise ZssError(f"cannot start/join Ray ({where}): {str(exc).splitlines()[0]}") from exc
    return True, time.perf_counter() - t0


def ray_error() -> type[Exception]:
    import ray

    return ray.exceptions.RayError


def _quiet_ray_data() -> None:
    import ray

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.execution_options.preserve_order = False
    # fewer chunks than actors (a small job) is fine, not worth a warning on the user's terminal
    warnings.filterwarnings("ignore", message="The minimum number of concurrent actors")
    for name in ("ray.data", "ray"):
        logging.getLogger(name).setLevel(logging.ERROR)


def resources(cfg: IngestConfig) -> dict[str, Any]:
    """CPU/GPU shares: actors at most half the CPUs in total so decode tasks always get some."""
    import ray

    total = ray.cluster_resources()
    cpus = float(total.get("CPU", cfg.workers))
    gpus = float(total.get("GPU", 0.0))
    actor_cpus = round(min(1.0, cpus / (2 * cfg.workers)), 3)
    task_cpus = round(min(1.0, cpus / 2), 3)
    threads = cfg.threads_per_worker or max(1, int(cpus) // cfg.workers)
    actor_gpus = round(min(1.0, gpus / cfg.workers), 3) if gpus else 0.0
    return {"actor_cpus": actor_cpus, "task_cpus": task_cpus, "actor_gpus": actor_gpus,
            "threads": threads, "cluster_cpus": cpus, "cluster_gpus": gpus}


def _actor_pool_kwargs(n: int) -> dict[str, Any]:
    """`compute=ActorPoolStrategy(size=n)` (Ray >= 2.51 prefers it; older 2.x had `concurrency=`)."""
    import ray

    try:
        return {"compute": ray.data.ActorPoolStrategy(size=n)}
    except TypeError:
        return {"concurrency": n}


def _dataset(chunks: list[dict[str, Any]], cfg: IngestConfig, factory: StageFactory,
             res: dict[str, Any]):
    import ray

    ds = ray.data.from_items(chunks, override_num_blocks=max(1, len(chunks)))
    ds = ds.map_batches(decode_batch, batch_size=1, batch_format="numpy",
                        fn_kwargs={"decode": cfg.decode}, num_cpus=res["task_cpus"])
    model_kwargs: dict[str, Any] = dict(
        batch_size=1, batch_format="numpy", num_cpus=res["actor_cpus"],
        fn_constructor_kwargs={"cfg": cfg, "factory": factory, "threads": res["threads"]})
    if res["actor_gpus"]:
        model_kwargs["num_gpus"] = res["actor_gpus"]
    try:
        return ds.map_batches(ModelActor, **model_kwargs, **_actor_pool_kwargs(cfg.workers))
    except TypeError:  # a Ray whose map_batches lacks `compute=`
        return ds.map_batches(ModelActor, **model_kwargs, concurrency=cfg.workers)


# ---------------------------------------------------------------- the job


def _prepare_out(out: Path, cfg: IngestConfig, fp: str) -> None:
    """Overwrite: remove our files. Incremental: refuse a folder made with another config."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ZssError(f"cannot create the output folder {out}: {exc.strerror or exc}") from exc
    if cfg.mode == "overwrite":
        for p in out.iterdir():
            if p.name in OWN_FILES or p.name.endswith(".tmp") or (
                    p.name[:5].isdigit() and p.suffix in (".tar", ".parquet", ".json")):
                p.unlink()
        return
    manifest = out / sh.MANIFEST
    if manifest.is_file():
        old = json.loads(manifest.read_text()).get("fingerprint")
        if old != fp:
            raise ZssError(f"{out} holds shards made with another source or config; use "
                           f"--mode overwrite or another output folder")


def _finished_entry(out: Path, shard: int, expected: int) -> dict[str, Any] | None:
    """The manifest entry of a shard already finished with `expected` samples, else None
    (its stats file read once)."""
    if not sh.is_shard_done(out, shard):
        return None
    try:
        entry = sh.shard_entry(out, shard)
    except (json.JSONDecodeError, KeyError):
        return None
    return entry if entry["n"] == expected else None


def _manifest(cfg: IngestConfig, fp: str, source: dict[str, Any], models: dict[str, Any],
              bank: dict[str, Any] | None, n_shards: int, n_samples: int,
              entries: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """The manifest given the finished shards' entries (kept in memory: rewritten per shard)."""
    done = sorted(s for s in entries if s < n_shards)
    feat = models.get("features", {})
    size, patch = cfg.decode.img_size, cfg.decode.patch_size
    grid = [size // patch, size // patch] if cfg.decode.resize == "square" else None
    return {"schema_version": sh.SCHEMA_VERSION, "source": source,
            "models": {**models, "tokenizer": "clip-bpe"},
            "feature": {"grid": grid, "dim": feat.get("embed_dim"), "dtype": "float16"},
            "concept_bank": bank, "n_samples": n_samples, "n_shards": n_shards,
            "complete": len(done) == n_shards,
            "shards": [entries[s] for s in done],
            "fingerprint": fp, "config": to_dict(cfg)}


def _on_cpu(cfg: IngestConfig) -> IngestConfig:
    probe = copy.deepcopy(cfg)
    for stage_cfg in (probe.features, probe.masks, probe.concepts):
        if hasattr(stage_cfg, "device"):
            stage_cfg.device = "cpu"
    return probe


def describe_stages(stages: list[tuple[str, Stage]]) -> dict[str, Any]:
    return {name: stage.describe() for name, stage in stages if hasattr(stage, "describe")}


def ingest(cfg: IngestConfig, source: Source, out: str | Path,
           factory: StageFactory = model_stages, progress: bool | None = None) -> dict[str, Any]:
    """Run the job; return a report dict (what `summary_text` prints).

    One writer per output folder (`.zss.lock`); SIGINT/SIGTERM stop taking results, keep every
    shard already written, shut Ray down and raise `Interrupted` (exit 130/143); disk full or
    permission errors are one line naming the path (docs/reliability.md)."""
    out = Path(out)
    try:
        with FolderLock(out, "zss ingest"), StopRequest() as stop:
            return _ingest(cfg, source, out, factory, progress, stop)
    except OSError as exc:
        if is_environment_error(exc):
            raise environment_error(exc, out) from exc
        raise


def _interrupted(stop: StopRequest, out: Path) -> Interrupted:
    done = sum(1 for _ in out.glob("*_stats.json"))
    return Interrupted(stop.exit_code, f"interrupted ({stop.name}); {done} shard(s) complete in {out}; "
                                       "re-run the same command to resume")


def _is_stage_bug(exc: BaseException) -> bool:
    """A Ray task/actor whose code raised something other than a user error: a bug in a stage
    (foreseen per-item problems never leave the worker, see `workers.run_model_stages`)."""
    import ray

    if not isinstance(exc, ray.exceptions.RayTaskError):
        return False
    seen, e = set(), exc
    while e is not None and id(e) not in seen:
        if isinstance(e, ZssError):
            return False
        seen.add(id(e))
        e = getattr(e, "cause", None) or e.__cause__
    return True


def _ingest(cfg: IngestConfig, source: Source, out: Path, factory: StageFactory,
            progress: bool | None, stop: StopRequest) -> dict[str, Any]:
    n = min(len(source), cfg.limit) if cfg.limit else len(source)
    src_desc = source.describe()
    fp = fingerprint(cfg, src_desc)
    _prepare_out(out, cfg, fp)

    t_load = time.perf_counter()
    probe = factory(_on_cpu(cfg))  # fail fast in the driver with a one-line error (bad name, missing
    # file), and learn what the manifest records; on CPU, so the driver holds no GPU memory
    models = describe_stages(probe)
    bank = None
    for name, stage in probe:
        if hasattr(stage, "write_bank"):
            bank = stage.write_bank(out)
        if name == "features" and getattr(stage, "patch_size", None):
            # the loaded model knows its patch; names like open_clip/zss-tiny-vit or ConvNeXt don't say
            cfg.decode.patch_size = int(stage.patch_size)
    del probe
    load_seconds = time.perf_counter() - t_load

    n_shards = math.ceil(n / cfg.shard_size)
    expected = {s: shard_rows(n, cfg.shard_size, s) for s in range(n_shards)}
    found = {s: _finished_entry(out, s, expected[s][1] - expected[s][0]) for s in range(n_shards)}
    entries = {s: e for s, e in found.items() if e is not None}
    pending = [s for s in range(n_shards) if s not in entries]
    for s in pending:
        sh.remove_partial_shard(out, s)
    meta = dict(cfg=cfg, fp=fp, source=src_desc, models=models, bank=bank, n_shards=n_shards,
                n_samples=n, entries=entries)
    sh.write_manifest(out, _manifest(**meta))

    report: dict[str, Any] = {"out": str(out), "n": n, "n_shards": n_shards,
                              "skipped": n_shards - len(pending), "written": 0,
                              "processed": 0, "ray_seconds": 0.0, "load_seconds": load_seconds,
                              "run_seconds": 0.0, "seconds": {}}
    if pending:
        started, report["ray_seconds"] = _ray_init(cfg)
        try:
            _quiet_ray_data()
            res = resources(cfg)
            report["resources"] = res
            chunks = plan_chunks(source, n, cfg.shard_size, cfg.batch_size, pending)
            try:
                _execute(out, cfg, factory, res, chunks, report, progress, meta,
                         sum(expected[s][1] - expected[s][0] for s in pending), stop)
            except ray_error() as exc:  # a dead node or actor: finished shards stay, resume later
                if stop.signum is not None:  # Ctrl-C reached the workers too
                    raise _interrupted(stop, out) from None
                if _is_stage_bug(exc):  # our code raised (issue 9 item 6): loud, with its traceback
                    raise
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ZssError(f"the Ray job failed after {report['written']} new shard(s) "
                               f"({type(exc).__name__}: {first[:300]}); finished shards are kept, "
                               f"re-run the same command to resume") from exc
        finally:
            if started:
                import ray

                ray.shutdown()
        if stop.signum is not None:
            raise _interrupted(stop, out)
    manifest = _manifest(**meta)
    sh.write_manifest(out, manifest)
    report["by_status"] = sh.collect_stats(out, range(n_shards))
    report["complete"] = manifest["complete"]
    return report


def _execute(out: Path, cfg: IngestConfig, factory: StageFactory, res: dict[str, Any],
             chunks: list[dict[str, Any]], report: dict[str, Any], progress: bool | None,
             meta: dict[str, Any], total: int, stop: StopRequest | None = None) -> None:
    ds = _dataset(chunks, cfg, factory, res)
    got: dict[int, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    seconds: dict[str, float] = defaultdict(float)
    t0 = time.perf_counter()
    first: float | None = None
    # (wall-clock time the chunk's model stages finished, rows, worker pid): for steady-state
    # rates that do not depend on how Ray Data batches results on their way back to the driver
    arrivals: list[tuple[float, int, int]] = []
    with progress_bar(None if progress is None else not progress) as bar:
        task = bar.add_task("ingest", total=total, info="")
        rows = iter(ds.iter_rows())
        for row in rows:
            if stop is not None and stop.signum is not None:
                _close(rows)  # stop the streaming executor before Ray is shut down
                return  # stop taking results; the shards written so far are complete
            if first is None:
                first = time.perf_counter()
            shard, payload = int(row["shard"]), row["payload"]
            got[shard].append((int(row["start"]), payload))
            arrivals.append((payload.get("done_at", time.time()), len(payload["batch"]["index"]),
                             payload.get("worker", 0)))
            bar.update(task, advance=len(payload["batch"]["index"]),
                       info=f"{report['written']}/{len(got) + report['written']} shards")
            if len(got[shard]) < int(row["n_chunks"]):
                continue
            parts = sorted(got.pop(shard), key=lambda p: p[0])
            shard_seconds: dict[str, float] = defaultdict(float)
            samples: list[dict[str, Any]] = []
            for _, part in parts:
                samples += batch_to_samples(part["batch"])
                for k, v in part["seconds"].items():
                    shard_seconds[k] += v
            tw = time.perf_counter()
            sh.write_shard(out, shard, samples, {**shard_seconds})
            shard_seconds["write"] = time.perf_counter() - tw
            for k, v in shard_seconds.items():
                seconds[k] += v
            report["written"] += 1
            report["processed"] += len(samples)
            meta["entries"][shard] = sh.shard_entry(out, shard)
            sh.write_manifest(out, _manifest(**meta))
            if stop is not None and stop.signum is not None:
                _close(rows)
                return
    report["run_seconds"] = time.perf_counter() - t0
    report["first_result_seconds"] = (first - t0) if first else 0.0
    report["arrivals"] = arrivals
    report["seconds"] = dict(seconds)
    if got:
        raise ZssError(f"ingest ended with unfinished shards {sorted(got)}")


def _close(rows: Any) -> None:
    """Close Ray Data's row iterator (its executor threads must end before `ray.shutdown()`)."""
    close = getattr(rows, "close", None)
    if close is not None:
        close()
    time.sleep(0.5)


def steady_rate(arrivals: list[tuple[float, int, int]]) -> float:
    """Images/s while every worker is busy and warm.

    A worker processes its chunks back to back, so its chunk i occupied (done[i-1], done[i]]. The
    window runs from the moment the last worker finished its first (warm-up) chunk to the moment
    the first worker finished its last chunk; each chunk counts pro rata of its overlap with it.
    """
    per: dict[int, list[tuple[float, int]]] = {}
    for t, n, worker in sorted(arrivals):
        per.setdefault(worker, []).append((t, n))
    if any(len(v) < 2 for v in per.values()) or not per:
        return float("nan")
    lo = max(v[0][0] for v in per.values())
    hi = min(v[-1][0] for v in per.values())
    if hi <= lo:
        return float("nan")
    images = 0.0
    for chunks in per.values():
        for (t0, _), (t1, n) in zip(chunks, chunks[1:]):
            overlap = max(0.0, min(t1, hi) - max(t0, lo))
            images += n * overlap / (t1 - t0) if t1 > t0 else 0.0
    return images / (hi - lo)


def summary_text(report: dict[str, Any]) -> str:
    run = report["run_seconds"]
    rate = report["processed"] / run if run > 0 else 0.0
    steady = steady_rate(report.get("arrivals", []))
    status = ", ".join(f"{k}={v}" for k, v in report.get("by_status", {}).items()) or "none"
    lines = [f"ingested {report['n']} samples into {report['out']}: {report['n_shards']} shards "
             f"({report['written']} written, {report['skipped']} already done)",
             f"status: {status}",
             (f"throughput: {rate:.2f} images/s overall ({report['processed']} images in {run:.1f} s; "
              f"first chunk back after {report.get('first_result_seconds', 0.0):.1f} s of actor start-up)"
              + (f", {steady:.2f} images/s steady" if steady == steady else "")
              if report["processed"] else "nothing to compute: every shard was already done")
             + f"; Ray start-up {report['ray_seconds']:.1f} s and the driver's model check "
               f"{report['load_seconds']:.1f} s apart"]
    if report["seconds"]:
        lines.append("stage time (summed over workers): " + ", ".join(
            f"{k} {v:.1f} s" for k, v in sorted(report["seconds"].items())))
    if not report.get("complete", True):
        lines.append("INCOMPLETE: re-run the same command to finish (incremental mode)")
    return "\n".join(lines)


def run_ingest(source: str, out: str | Path, preset: str | Path | None = None,
               features: str | None = None, img_size: int | None = None, masks: str | None = None,
               sam_checkpoint: str | None = None, concepts: str | None = None,
               shard_size: int | None = None, workers: int | None = None, address: str | None = None,
               mode: str | None = None, limit: int | None = None, store_images: bool | None = None,
               overrides: list[str] | None = None) -> str:
    """`zss ingest`: build the config, open the source, run, and return the summary text."""
    cfg = build_config(preset, overrides, features=features, img_size=img_size, masks=masks,
                       sam_checkpoint=sam_checkpoint, concepts=concepts, shard_size=shard_size,
                       workers=workers, address=address, mode=mode, limit=limit,
                       store_images=store_images)
    src = open_source(source)
    return summary_text(ingest(cfg, src, out))
