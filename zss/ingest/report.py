"""The ingest report: a collector of what the finished shards send back, and the summary it prints.

The report is a plain dict (`IngestStats.report`): what `zss ingest` prints (`summary_text`) and
what benchmarks/ingest.py reads (driver and worker CPU, per-worker batch end times for
`steady_rate` and `boundary_gaps`).
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from zss.formats import shards as sh
from zss.ingest.inspect import concept_line
from zss.ingest.plan import add_status


class IngestStats:
    """Accumulates the finished shards' stats while the run loop streams (manifest entries, status
    counts, stage seconds, each model batch's end time per worker and per shard, nodes, worker CPU)
    beside the driver's own clock and CPU, and renders them into `report`."""

    def __init__(self, out: Path | str, n: int, n_shards: int, n_pending: int,
                 entries: dict[int, dict[str, Any]], by_status: dict[str, int],
                 load_seconds: float) -> None:
        self.entries, self.by_status, self.n_pending = entries, by_status, n_pending
        self.report: dict[str, Any] = {"out": str(out), "n": n, "n_shards": n_shards,
                                       "skipped": n_shards - n_pending, "written": 0,
                                       "processed": 0, "ray_seconds": 0.0, "load_seconds": load_seconds,
                                       "run_seconds": 0.0, "seconds": {}}
        self.seconds: dict[str, float] = defaultdict(float)
        self.arrivals: list[tuple[float, int, int]] = []  # (end time, images, worker) per model batch
        self.shard_chunks: list[tuple[int, list[float]]] = []  # (worker, its batches' end times) per shard
        self.nodes: dict[str, int] = defaultdict(int)
        self.worker_cpu: dict[int, float] = {}
        self._t0 = self._cpu0 = self._main0 = 0.0
        self._first: float | None = None

    def start(self) -> None:
        """The run loop starts: the clocks the run's seconds and the driver's CPU count from."""
        self._t0 = time.perf_counter()
        self._first = None
        self._cpu0, self._main0 = time.process_time(), time.thread_time()

    def add(self, shard: int, result: dict[str, Any]) -> int:
        """Record one finished shard (a `ShardWorker.write` result); returns its sample count."""
        if self._first is None:
            self._first = time.perf_counter()
            self.report["driver_cpu_first_seconds"] = time.process_time() - self._cpu0
        stats = result["stats"]
        self.entries[shard] = sh.entry_from_stats(stats)
        add_status(self.by_status, stats)
        for k, v in stats["seconds"].items():
            self.seconds[k] += v
        self.seconds["write"] += result["write_seconds"]
        for t, k in result["done_at"]:
            self.arrivals.append((t, k, result["worker"]))
        self.shard_chunks.append((result["worker"], [t for t, _ in result["done_at"]]))
        self.nodes[result.get("node", "")] += 1
        self.worker_cpu[result["worker"]] = result.get("cpu_seconds", 0.0)
        self.report["written"] += 1
        self.report["processed"] += stats["n"]
        return stats["n"]

    def progress_info(self) -> str:
        return f"{self.report['written']}/{self.n_pending} shards"

    def stop(self) -> None:
        """The run loop ended: its seconds, what arrived, and the CPU it took."""
        report = self.report
        report["run_seconds"] = time.perf_counter() - self._t0
        report["first_result_seconds"] = (self._first - self._t0) if self._first else 0.0
        report["arrivals"] = self.arrivals
        report["shard_chunks"] = self.shard_chunks
        report["seconds"] = dict(self.seconds)
        report["nodes"] = dict(self.nodes)
        # the driver's CPU while streaming (all its threads, Ray's included; and its main thread
        # alone) and the workers' (process CPU of each actor, model loading included)
        report["driver_cpu_seconds"] = time.process_time() - self._cpu0
        report["driver_main_cpu_seconds"] = time.thread_time() - self._main0
        report["worker_cpu_seconds"] = sum(self.worker_cpu.values())

    def finish(self, manifest: dict[str, Any], concept_match: Any) -> dict[str, Any]:
        """The report, completed from the final manifest."""
        self.report["by_status"] = dict(sorted(self.by_status.items()))
        self.report["complete"] = manifest["complete"]
        self.report["concepts"] = sh.concept_totals(manifest["shards"])
        self.report["concept_match"] = concept_match
        return self.report


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
