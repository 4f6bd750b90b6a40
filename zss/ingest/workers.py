"""What runs inside Ray workers: the shard worker actor that reads, decodes, runs the model
stages and WRITES a whole shard, returning only its stats to the driver.

A shard is computed in chunks of at most `batch_size` samples cut at the shard's start (the same
cut every run, so every sample sees the same model batch and a resumed run writes the same bytes).
Decoding of the next chunk runs in a thread while the models run on the current one, and the tar +
parquet + stats of a finished shard are written outside the model lock, so an actor with two calls
in flight (`max_concurrency=2`) keeps its models busy while the previous shard is written.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

import numpy as np

from zss.errors import BadItem
from zss.formats import shards as sh
from zss.ingest.sources import load_ref
from zss.ingest.stages.decode import DecodeConfig, DecodeError, DecodeStage

Stage = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
StageFactory = Callable[[Any], list[tuple[str, Stage]]]


def model_stages(cfg: Any) -> list[tuple[str, Stage]]:
    """The real model stages of an `IngestConfig`, in contract order (dino-kmeans needs patches)."""
    from zss.ingest.stages.concepts import ConceptStage
    from zss.ingest.stages.features import FeatureStage
    from zss.ingest.stages.masks import MaskStage

    return [("features", FeatureStage(cfg.features)), ("masks", MaskStage(cfg.masks)),
            ("concepts", ConceptStage(cfg.concepts))]


def rows_to_batch(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Source rows -> the numpy batch format (strings and bytes as object arrays)."""
    batch: dict[str, np.ndarray] = {}
    for key in rows[0]:
        col = np.empty(len(rows), dtype=object)
        for i, r in enumerate(rows):
            col[i] = r[key]
        batch[key] = col
    batch["index"] = batch["index"].astype(np.int64)
    return batch


def read_decode_chunk(refs: list[dict[str, Any]], decode: DecodeConfig) -> dict[str, Any]:
    """One chunk's refs -> decoded batch + timings (what a Ray read task does)."""
    t0 = time.perf_counter()
    batch = rows_to_batch([load_ref(r) for r in refs])
    t1 = time.perf_counter()
    batch = DecodeStage(decode)(batch)
    return {"batch": batch, "seconds": {"read": t1 - t0, "decode": time.perf_counter() - t1}}


def foreseen_errors() -> tuple[type[BaseException], ...]:
    """What a stage may raise on a whole batch that is the input's or the machine's fault, not ours:
    per-item problems and running out of (GPU) memory on this batch. Anything else is a bug."""
    import torch

    return (BadItem, DecodeError, MemoryError, torch.OutOfMemoryError)


def run_model_stages(stages: list[tuple[str, Stage]], payload: dict[str, Any]) -> dict[str, Any]:
    """Run the model stages on one chunk as one batch. A stage that raises a *foreseen* error on the
    whole batch (`foreseen_errors`: a bad item, out of memory) turns that chunk's ok rows into
    `model_error` rows: the job goes on and the summary counts them. Any other exception is a bug in
    a stage: it propagates, the Ray job fails loudly and the shards finished so far stay for resume."""
    batch, seconds = payload["batch"], dict(payload["seconds"])
    foreseen = foreseen_errors()
    for name, stage in stages:
        t0 = time.perf_counter()
        try:
            batch = stage(batch)
        except foreseen as exc:  # recorded per row, never silently dropped
            status = np.array(batch["status"], dtype=object)
            error = np.array(batch["error"], dtype=object)
            ok = status == "ok"
            status[ok] = "model_error"
            error[ok] = f"{name}: {type(exc).__name__}: {str(exc)[:500]}"
            batch = {**batch, "status": status, "error": error}
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t0
            break
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t0
    return {"batch": batch, "seconds": seconds, "done_at": time.time(), "worker": os.getpid()}


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
                      "tokens": _json_or(batch["tokens"][i], None) if "tokens" in batch else None,
                      "masks": _json_or(batch["masks"][i], None) if "masks" in batch else None,
                      "jpg": bytes(batch["jpg"][i]) or None})
            if "view_boxes" in batch:  # decode.views > 1: views 1..V-1 (view 0 is patch/global)
                s["views"] = [{"box": box, "patch": p, "global": g} for box, p, g in
                              zip(batch["view_boxes"][i][1:], batch["view_patch"][i], batch["view_global"][i])]
        samples.append(s)
    return samples


def chunk_spans(lo: int, hi: int, batch_size: int) -> list[tuple[int, int]]:
    """A shard's rows [lo, hi) cut into model batches at lo, lo+batch_size, ... (never elsewhere)."""
    return [(a, min(a + batch_size, hi)) for a in range(lo, hi, batch_size)]


def compute_shard(stages: list[tuple[str, Stage]], refs: list[dict[str, Any]], batch_size: int,
                  decode: DecodeConfig, pool: ThreadPoolExecutor | None = None,
                  first: "Future[dict[str, Any]] | None" = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Read+decode+model one shard's refs chunk by chunk; return (samples, timings).

    The next chunk is read and decoded in `pool` while the models run the current one; `first`,
    when given, is the first chunk already on its way (`prefetch_first`)."""
    spans = chunk_spans(0, len(refs), batch_size)
    own = pool is None
    pool = pool or ThreadPoolExecutor(1)
    samples: list[dict[str, Any]] = []
    seconds: dict[str, float] = {}
    done_at: list[tuple[float, int]] = []
    try:
        pending = first if first is not None else prefetch_first(pool, refs, batch_size, decode)
        for k, _ in enumerate(spans):
            payload = pending.result()  # type: ignore[union-attr]
            if k + 1 < len(spans):
                a, b = spans[k + 1]
                pending = pool.submit(read_decode_chunk, refs[a:b], decode)
            out = run_model_stages(stages, payload)
            for name, v in out["seconds"].items():
                seconds[name] = seconds.get(name, 0.0) + v
            samples += batch_to_samples(out["batch"])
            done_at.append((out["done_at"], len(out["batch"]["index"])))
    finally:
        if own:
            pool.shutdown(wait=False)
    return samples, {"seconds": seconds, "done_at": done_at}


def prefetch_first(pool: ThreadPoolExecutor, refs: list[dict[str, Any]], batch_size: int,
                   decode: DecodeConfig) -> "Future[dict[str, Any]] | None":
    """Start reading and decoding a shard's first model batch in `pool`."""
    spans = chunk_spans(0, len(refs), batch_size)
    return pool.submit(read_decode_chunk, refs[spans[0][0]:spans[0][1]], decode) if spans else None


class ShardWorker:
    """A Ray actor: holds the model stages (loaded once, fixed torch thread count so results do
    not depend on where it runs) and turns (shard id, refs) into a shard written to `out`."""

    def __init__(self, cfg: Any, factory: StageFactory, threads: int):
        import torch

        torch.set_num_threads(threads)
        self.cfg = cfg
        self.stages = factory(cfg)
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(2)

    def write(self, out: str, shard: int, refs: list[dict[str, Any]]) -> dict[str, Any]:
        """Compute and write one shard; return its stats plus the worker's timings (no features)."""
        # this shard's first chunk is read and decoded while the shard before still holds the
        # models, so they do not wait for it at the shard boundary
        first = prefetch_first(self.pool, refs, self.cfg.batch_size, self.cfg.decode)
        with self.lock:  # one shard's model batches at a time; the previous shard writes meanwhile
            samples, timing = compute_shard(self.stages, refs, self.cfg.batch_size, self.cfg.decode,
                                            pool=self.pool, first=first)
        t0 = time.perf_counter()
        node = _node_id()
        stats = sh.write_shard(out, shard, samples, timing["seconds"],
                               feature_dtype=getattr(self.cfg.features, "dtype", "float16"),
                               extra={"node": node, "host": socket.gethostname()})
        write_s = time.perf_counter() - t0
        return {"stats": stats, "write_seconds": write_s, "done_at": timing["done_at"],
                "worker": os.getpid(), "node": node, "cpu_seconds": time.process_time()}


def _node_id() -> str:
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - outside Ray (tests call the worker directly)
        return ""
