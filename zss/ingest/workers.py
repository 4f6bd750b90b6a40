"""What runs inside Ray workers: read+decode tasks and the model-stage actor.

Kept apart from the runner so a decode task imports only the sources and Pillow: the runner's
imports (config -> every stage -> torch, spaCy) would cost each task process seconds of start-up.
A chunk (at most `batch_size` samples of one shard) travels as one payload {"batch", "seconds"}.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable

import numpy as np

from zss.errors import BadItem
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


def _passthrough(batch: dict[str, np.ndarray], payloads: np.ndarray) -> dict[str, np.ndarray]:
    return {"shard": batch["shard"], "start": batch["start"], "n_chunks": batch["n_chunks"],
            "payload": payloads}


def decode_batch(batch: dict[str, np.ndarray], decode: DecodeConfig) -> dict[str, np.ndarray]:
    """Ray read+decode task over chunk rows (stateless: a plain task, not an actor)."""
    payloads = np.empty(len(batch["shard"]), dtype=object)
    for i, refs in enumerate(batch["refs"]):
        payloads[i] = read_decode_chunk(json.loads(refs), decode)
    return _passthrough(batch, payloads)


class ModelActor:
    """Holds the model stages (loaded once per actor) and runs them chunk by chunk, with a fixed
    torch thread count (results, and so shard bytes, must not depend on where an actor runs)."""

    def __init__(self, cfg: Any, factory: StageFactory, threads: int):
        import torch

        torch.set_num_threads(threads)
        self.stages = factory(cfg)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        payloads = np.empty(len(batch["payload"]), dtype=object)
        for i, payload in enumerate(batch["payload"]):
            payloads[i] = run_model_stages(self.stages, payload)
        return _passthrough(batch, payloads)
