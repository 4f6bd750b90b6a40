"""Ray for an ingest run: start or join it, size the actors, start and stop them, shut it down.

Resources: model actors take a fraction of a CPU (whole actors on 2 CPUs would starve anything
else Ray runs, see docs/ingest.md), a GPU share each when the cluster has GPUs, a fixed torch
thread count, and are spread over the nodes. A local Ray started here goes with the command: no
Ray process outlives it.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from typing import Any, Iterator

from zss.errors import ZssError
from zss.ingest.config import IngestConfig
from zss.ingest.workers import ShardWorker, StageFactory
from zss.utils import procs

IN_FLIGHT_PER_WORKER = 2  # one shard computing, one being written (or waiting for the models)
STORAGE_ENV_PREFIXES = ("AWS_", "FSSPEC_", "GOOGLE_", "GCS_", "AZURE_")


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


@contextmanager
def ray_session(cfg: IngestConfig) -> Iterator[float]:
    """Ray for the body (already initialised, joined at `cfg.address` or started locally); yields
    its start-up seconds. A Ray started here is shut down on exit, and whatever it spawned that is
    still alive after a grace period is killed. The body must have killed its actors and dropped
    every ref by then (`stop_workers`)."""
    before = procs.descendants()
    started, seconds = _ray_init(cfg)
    ours = procs.descendants() - before if started else set()  # the local Ray we started
    try:
        yield seconds
    finally:
        if started:
            import ray

            # the workers of the local Ray go with its raylet, and whatever is still alive after
            # a grace period is killed, so no Ray process outlives the command
            ours |= procs.descendants() - before
            ray.shutdown()
            procs.reap(ours)


def ray_error() -> type[Exception]:
    import ray

    return ray.exceptions.RayError


def is_stage_bug(exc: BaseException) -> bool:
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


def stop_workers(actors: list[Any], in_flight: dict[Any, Any]) -> None:
    """Kill every actor now (a shard in flight is abandoned: its temporary files are removed by
    the resumed run) and drop every ref and handle, so nothing of this Ray session is referenced
    once Ray is shut down. `in_flight` maps the calls still running (object refs) to anything."""
    import ray

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
