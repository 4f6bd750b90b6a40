"""Planning an ingest run: which shards are pending, which source rows each holds, and their refs.

Shard i is items [i*S, (i+1)*S) of the source's lazy enumeration; a shard with a complete stats
file is finished, every other one is pending (its partial files are removed). The driver holds the
pending ids (8 bytes a shard) and one shard's refs at a time, never the item list.
"""

from __future__ import annotations

import json
import math
from array import array
from itertools import islice
from pathlib import Path
from typing import Any, Iterable, Iterator

from zss.errors import ZssError
from zss.formats import shards as sh
from zss.ingest.sources import Source
from zss.ingest.workers import chunk_spans

SHARD_TAILS = (".tar", ".parquet", "_stats.json", ".tar.tmp", ".parquet.tmp", "_stats.json.tmp")


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
            add_status(by_status, stats)
            continue
        pending.append(s)
        sh.remove_partial_shard(out, s)
    return pending, entries, by_status


def _finished_stats(out: Path | str, shard: int, expected: int) -> dict[str, Any] | None:
    """The stats of a shard already finished with `expected` samples, else None (read once)."""
    try:
        stats = sh.read_stats(out, shard)
    except (OSError, json.JSONDecodeError):
        return None
    return stats if stats.get("n") == expected and "sha256" in stats else None


def add_status(total: dict[str, int], stats: dict[str, Any]) -> None:
    """Add a shard's per-status sample counts to `total`."""
    for status, k in stats["by_status"].items():
        total[status] = total.get(status, 0) + k


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

    def rows(self, shards: Iterable[int]) -> int:
        """How many source rows `shards` hold together (the progress total of a run)."""
        return sum(hi - lo for lo, hi in (shard_rows(self.n, self.shard_size, s) for s in shards))

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
