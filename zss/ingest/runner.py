"""The ingest job: shard workers on Ray, a streaming plan, shard-level resume, progress, summary.

Shards are the unit of work: the driver walks the pending shards in order, hands each one's refs
(small JSON dicts, made only when the shard is submitted, from one forward walk of the source's
lazy enumeration: shard i = items [i*S, (i+1)*S), see `ShardRefs`) to a `ShardWorker` actor, and keeps at
most `IN_FLIGHT_PER_WORKER` shards per actor in flight. The actor reads, decodes, runs the model
stages in batches cut at the shard's start and writes the tar + parquet + stats itself; only the
stats (counts, seconds, sha256) come back. So the driver's CPU and memory per sample are tiny and
do not grow with the dataset, and OUT must be reachable (a shared folder or object storage URL)
from every node. Because a shard's model batches are always cut the same way, a resumed run
computes every sample in exactly the batch an uninterrupted run would, so shards are
byte-identical either way.

Resources: model actors take a fraction of a CPU (whole actors on 2 CPUs would starve anything
else Ray runs, see docs/ingest.md), a GPU share each when the cluster has GPUs, a fixed torch
thread count, and are spread over the nodes.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import tempfile
import time
from array import array
from collections import defaultdict
from contextlib import nullcontext
from itertools import islice
from pathlib import Path
from typing import Any, Iterator, Sequence

from zss.errors import Interrupted, ZssError
from zss.formats import shards as sh
from zss.formats import storage
from zss.ingest.config import IngestConfig, build_config, fingerprint, views_record
from zss.ingest.sources import Source, open_source
from zss.ingest.inspect import concept_line
from zss.ingest.workers import (ShardWorker, Stage, StageFactory, batch_to_samples,  # noqa: F401
                                chunk_spans, model_stages)
from zss.utils.config import to_dict
from zss.utils.enverrors import environment_error, is_environment_error
from zss.utils.lock import FolderLock
from zss.utils.progress import progress_bar
from zss.utils import procs
from zss.utils.signals import StopRequest

IN_FLIGHT_PER_WORKER = 2  # one shard computing, one being written (or waiting for the models)
WAIT_SECONDS = 2.0  # the driver wakes at least this often to see a Ctrl-C (else it sleeps in ray.wait)
MANIFEST_EVERY_SHARDS = 32  # the manifest is rewritten at most this often (and at the end) ...
MANIFEST_EVERY_SECONDS = 10.0  # ... or after this long, whichever comes first
OWN_FILES = ("manifest.json", "concepts.json", "concepts.faiss")
SHARD_TAILS = (".tar", ".parquet", "_stats.json", ".tar.tmp", ".parquet.tmp", "_stats.json.tmp")


# ---------------------------------------------------------------- planning


def shard_rows(n: int, shard_size: int, shard: int) -> tuple[int, int]:
    start = shard * shard_size
    return start, min(start + shard_size, n)


def plan_chunks(source: Source, n: int, shard_size: int, batch_size: int,
                shards: list[int]) -> list[dict[str, Any]]:
    """The model batches of `shards` as {shard, start, n_chunks, refs (JSON)} (what the workers
    cut: at shard starts every `batch_size`); for tests and inspection, the run never lists them."""
    chunks = []
    for s in shards:
        lo, hi = shard_rows(n, shard_size, s)
        spans = chunk_spans(lo, hi, batch_size)
        for a, b in spans:
            chunks.append({"shard": s, "start": a, "n_chunks": len(spans),
                           "refs": json.dumps(source.refs(a, b))})
    return chunks


def plan_shards(out: Path | str, names: set[str], n: int, shard_size: int
                ) -> tuple[array, dict[int, dict[str, Any]], dict[str, int]]:
    """(pending shard ids, manifest entries of finished shards, their status counts), from one
    listing of OUT (`names`) and a read only for shards with a stats file; partial files of a
    pending shard are removed. Pending ids are an int64 array: 8 bytes a shard, no items."""
    entries: dict[int, dict[str, Any]] = {}
    by_status: dict[str, int] = {}
    pending = array("q")
    for s in range(math.ceil(n / shard_size)):
        stem = f"{s:05d}"
        if not names or not any(stem + tail in names for tail in SHARD_TAILS):
            pending.append(s)
            continue
        lo, hi = shard_rows(n, shard_size, s)
        stats = _finished_stats(out, s, hi - lo) if stem + "_stats.json" in names else None
        if stats is not None:
            entries[s] = sh.entry_from_stats(stats)
            _add_status(by_status, stats)
            continue
        pending.append(s)
        sh.remove_partial_shard(out, s)
    return pending, entries, by_status


class ShardRefs:
    """The refs of shards asked for in increasing order, from one forward walk of the source:
    shard i is items [i*S, (i+1)*S) of `source.iter_refs()`, built only when the shard is
    submitted, so the driver holds one shard's refs at a time, never the item list. A gap
    (finished shards skipped on resume) is walked over when short, re-opened at the shard's
    start (`iter_refs(start)`) when long."""

    REOPEN_AFTER_SHARDS = 4

    def __init__(self, source: Source, n: int, shard_size: int):
        self.source, self.n, self.shard_size = source, n, shard_size
        self._it: Iterator[dict[str, Any]] | None = None
        self._pos = 0

    def __call__(self, shard: int) -> list[dict[str, Any]]:
        lo, hi = shard_rows(self.n, self.shard_size, shard)
        gap = lo - self._pos
        if self._it is None or gap < 0 or gap > self.REOPEN_AFTER_SHARDS * self.shard_size:
            self._it, self._pos = self.source.iter_refs(lo), lo
        elif gap:
            next(islice(self._it, gap - 1, gap), None)
        refs = list(islice(self._it, hi - lo))
        self._pos = lo + len(refs)
        if len(refs) != hi - lo:
            raise ZssError(f"the source yielded {self._pos} items, fewer than the {self.n} it counted; "
                           f"did it change during the run?")
        return refs


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


def resources(cfg: IngestConfig) -> dict[str, Any]:
    """CPU/GPU shares: actors at most half the CPUs in total (Ray accounting only: an actor
    decodes in its own threads), at most one GPU each."""
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


STORAGE_ENV_PREFIXES = ("AWS_", "FSSPEC_", "GOOGLE_", "GCS_", "AZURE_")


def storage_env() -> dict[str, str]:
    """The driver's object-storage settings (AWS_*, FSSPEC_* ...), forwarded to the workers so a
    worker writes to the same endpoint with the same credentials wherever it runs."""
    return {k: v for k, v in os.environ.items() if k.startswith(STORAGE_ENV_PREFIXES)}


def start_workers(cfg: IngestConfig, factory: StageFactory, res: dict[str, Any]) -> list[Any]:
    """`cfg.workers` ShardWorker actors, spread over the nodes, two calls each at a time."""
    import ray

    opts: dict[str, Any] = dict(num_cpus=res["actor_cpus"], max_concurrency=IN_FLIGHT_PER_WORKER,
                                scheduling_strategy="SPREAD")
    if res["actor_gpus"]:
        opts["num_gpus"] = res["actor_gpus"]
    env = storage_env()
    if env:
        opts["runtime_env"] = {"env_vars": env}
    worker = ray.remote(ShardWorker)
    return [worker.options(**opts).remote(cfg, factory, res["threads"]) for _ in range(cfg.workers)]


# ---------------------------------------------------------------- the job


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


def _finished_stats(out: Path | str, shard: int, expected: int) -> dict[str, Any] | None:
    """The stats of a shard already finished with `expected` samples, else None (read once)."""
    try:
        stats = sh.read_stats(out, shard)
    except (OSError, json.JSONDecodeError):
        return None
    return stats if stats.get("n") == expected and "sha256" in stats else None


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


def _add_status(total: dict[str, int], stats: dict[str, Any]) -> None:
    for status, k in stats["by_status"].items():
        total[status] = total.get(status, 0) + k


def ingest(cfg: IngestConfig, source: Source, out: str | Path,
           factory: StageFactory = model_stages, progress: bool | None = None) -> dict[str, Any]:
    """Run the job; return a report dict (what `summary_text` prints). OUT: a folder or a URL.

    One writer per local output folder (`.zss.lock`); SIGINT/SIGTERM stop submitting shards, keep
    every shard already written, shut Ray down and raise `Interrupted` (exit 130/143); disk full or
    permission errors are one line naming the path (docs/reliability.md)."""
    out = str(out) if storage.is_url(out) else Path(out)
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
    probe = factory(_on_cpu(cfg))  # fail fast in the driver with a one-line error (bad name, missing
    # file), and learn what the manifest records; on CPU, so the driver holds no GPU memory
    models = describe_stages(probe)
    bank = None
    for name, stage in probe:
        if hasattr(stage, "write_bank"):
            bank = _write_bank(stage, out)
        if name == "features" and getattr(stage, "patch_size", None):
            # the loaded model knows its patch; names like open_clip/zss-tiny-vit or ConvNeXt don't say
            cfg.decode.patch_size = int(stage.patch_size)
    del probe
    load_seconds = time.perf_counter() - t_load

    n_shards = math.ceil(n / cfg.shard_size)
    pending, entries, by_status = plan_shards(out, names, n, cfg.shard_size)
    meta = dict(cfg=cfg, fp=fp, source=src_desc, models=models, bank=bank, n_shards=n_shards,
                n_samples=n, entries=entries)
    sh.write_manifest(out, _manifest(**meta))

    report: dict[str, Any] = {"out": str(out), "n": n, "n_shards": n_shards,
                              "skipped": n_shards - len(pending), "written": 0,
                              "processed": 0, "ray_seconds": 0.0, "load_seconds": load_seconds,
                              "run_seconds": 0.0, "seconds": {}}
    if pending:
        before = procs.descendants()
        started, report["ray_seconds"] = _ray_init(cfg)
        ours = procs.descendants() - before if started else set()  # the local Ray we started
        failure: BaseException | None = None
        try:
            res = resources(cfg)
            report["resources"] = res
            try:
                _execute(out, cfg, factory, res, source, n, pending, report, progress, meta, by_status, stop)
            except ray_error() as exc:  # a dead node or actor: finished shards stay, resume later
                sh.write_manifest(out, _manifest(**meta))
                if stop.signum is None and _is_stage_bug(exc):  # our code raised (issue 9 item 6):
                    raise  # loud, with its traceback
                failure = _ray_failure(exc, report)  # a one-line error, holding no Ray object
                del exc
        finally:
            if started:
                import ray

                # the actors were killed and every ref dropped by `_execute`; the workers of the
                # local Ray go with its raylet, and whatever is still alive after a grace period
                # is killed, so no Ray process outlives the command
                ours |= procs.descendants() - before
                ray.shutdown()
                procs.reap(ours)
        if stop.signum is not None:  # counted once every worker is gone: the count is final
            sh.write_manifest(out, _manifest(**meta))
            raise _interrupted(stop, out)
        if failure is not None:
            raise failure
    manifest = _manifest(**meta)
    sh.write_manifest(out, manifest)
    report["by_status"] = dict(sorted(by_status.items()))
    report["complete"] = manifest["complete"]
    report["concepts"] = sh.concept_totals(manifest["shards"])
    report["concept_match"] = cfg.concepts.match
    return report


def _execute(out: Path | str, cfg: IngestConfig, factory: StageFactory, res: dict[str, Any],
             source: Source, n: int, pending: Sequence[int], report: dict[str, Any],
             progress: bool | None, meta: dict[str, Any], by_status: dict[str, int],
             stop: StopRequest | None = None) -> None:
    """Stream the pending shards through the workers, a bounded window at a time; once `stop` has
    seen a signal no new shard is submitted and the loop returns (shards in flight are dropped and
    rewritten by the resumed run)."""
    import ray

    actors = start_workers(cfg, factory, res)
    load = {i: 0 for i in range(len(actors))}
    in_flight: dict[Any, tuple[int, int]] = {}  # object ref -> (shard, actor index)
    todo = iter(pending)
    shard_refs = ShardRefs(source, n, cfg.shard_size)
    seconds: dict[str, float] = defaultdict(float)
    arrivals: list[tuple[float, int, int]] = []
    shard_chunks: list[tuple[int, list[float]]] = []  # (worker, its model batches' end times) per shard
    nodes: dict[str, int] = defaultdict(int)
    t0 = time.perf_counter()
    first: float | None = None
    last_manifest, since_manifest = time.monotonic(), 0
    total = sum(hi - lo for lo, hi in (shard_rows(n, cfg.shard_size, s) for s in pending))
    target = str(out)

    def submit() -> bool:
        if stop is not None and stop.signum is not None:
            return False
        i = min(load, key=lambda k: (load[k], k))
        if load[i] >= IN_FLIGHT_PER_WORKER:
            return False
        shard = next(todo, None)
        if shard is None:
            return False
        ref = actors[i].write.remote(target, shard, shard_refs(shard))
        in_flight[ref] = (shard, i)
        load[i] += 1
        return True

    worker_cpu: dict[int, float] = {}
    cpu0, main0 = time.process_time(), time.thread_time()
    try:
        with progress_bar(None if progress is None else not progress) as bar:
            task = bar.add_task("ingest", total=total, info="", unit="samples")
            while submit():
                pass
            while in_flight:
                if stop is not None and stop.signum is not None:
                    break  # finished shards are complete on disk; the rest resume later
                done, _ = ray.wait(list(in_flight), num_returns=1, timeout=WAIT_SECONDS)
                if not done:
                    continue
                shard, i = in_flight.pop(done[0])
                load[i] -= 1
                result = ray.get(done[0])
                if first is None:
                    first = time.perf_counter()
                    report["driver_cpu_first_seconds"] = time.process_time() - cpu0
                stats = result["stats"]
                meta["entries"][shard] = sh.entry_from_stats(stats)
                _add_status(by_status, stats)
                for k, v in stats["seconds"].items():
                    seconds[k] += v
                seconds["write"] += result["write_seconds"]
                for t, k in result["done_at"]:
                    arrivals.append((t, k, result["worker"]))
                shard_chunks.append((result["worker"], [t for t, _ in result["done_at"]]))
                nodes[result.get("node", "")] += 1
                worker_cpu[result["worker"]] = result.get("cpu_seconds", 0.0)
                report["written"] += 1
                report["processed"] += stats["n"]
                bar.update(task, advance=stats["n"], info=f"{report['written']}/{len(pending)} shards")
                since_manifest += 1
                if (since_manifest >= MANIFEST_EVERY_SHARDS
                        or time.monotonic() - last_manifest >= MANIFEST_EVERY_SECONDS):
                    sh.write_manifest(out, _manifest(**meta))
                    last_manifest, since_manifest = time.monotonic(), 0
                while submit():
                    pass
    finally:
        # stop every actor now (a shard in flight is abandoned: its temporary files are removed by
        # the resumed run) and drop every ref and handle, so nothing of this Ray session is
        # referenced once the caller shuts Ray down, whatever ended the loop
        for actor in actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already dead, node gone
                pass
        if in_flight:  # let the failed replies of the killed calls land before Ray is shut down
            try:
                ray.wait(list(in_flight), num_returns=len(in_flight), timeout=10)
            except Exception:  # noqa: BLE001 - nothing to save here
                pass
        in_flight.clear()
        actors.clear()
        done = result = None  # noqa: F841 - frames kept by a traceback must not hold refs
    report["run_seconds"] = time.perf_counter() - t0
    report["first_result_seconds"] = (first - t0) if first else 0.0
    report["arrivals"] = arrivals
    report["shard_chunks"] = shard_chunks
    report["seconds"] = dict(seconds)
    report["nodes"] = dict(nodes)
    # the driver's CPU while streaming (all its threads, Ray's included; and its main thread alone)
    # and the workers' (process CPU of each actor, model loading included): for benchmarks/ingest.py
    report["driver_cpu_seconds"] = time.process_time() - cpu0
    report["driver_main_cpu_seconds"] = time.thread_time() - main0
    report["worker_cpu_seconds"] = sum(worker_cpu.values())


def boundary_gaps(shard_chunks: list[tuple[int, list[float]]]) -> tuple[float, float]:
    """(mean time between a worker's model batches inside a shard, mean time from a shard's last
    batch to the worker's next shard's first): equal when the models never wait for a shard to be
    written (the write runs beside the next shard's batches). NaN when there is nothing to compare."""
    inside: list[float] = []
    across: list[float] = []
    by_worker: dict[int, list[list[float]]] = defaultdict(list)
    for worker, times in shard_chunks:
        if times:
            by_worker[worker].append(sorted(times))
    for shards in by_worker.values():
        shards.sort(key=lambda ts: ts[0])
        for ts in shards:
            inside += [b - a for a, b in zip(ts, ts[1:])]
        across += [nxt[0] - cur[-1] for cur, nxt in zip(shards, shards[1:])]
    mean = (lambda xs: sum(xs) / len(xs) if xs else float("nan"))
    return mean(inside), mean(across)


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
    line = concept_line(report.get("concepts"), report.get("concept_match"), report["n_shards"])
    if line:
        lines.append(line)
    if report.get("nodes"):
        lines.append(f"shards written by workers on {len(report['nodes'])} node(s): "
                     + ", ".join(f"{k[:8] or '?'} {v}" for k, v in sorted(report["nodes"].items())))
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
               overrides: list[str] | None = None, views: int | None = None) -> str:
    """`zss ingest`: build the config, open the source, run, and return the summary text."""
    cfg = build_config(preset, overrides, features=features, img_size=img_size, masks=masks,
                       sam_checkpoint=sam_checkpoint, concepts=concepts, shard_size=shard_size,
                       workers=workers, address=address, mode=mode, limit=limit,
                       store_images=store_images, views=views)
    src = open_source(source)
    return summary_text(ingest(cfg, src, out))
