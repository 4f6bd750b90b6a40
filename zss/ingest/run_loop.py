"""The driver's run loop: stream the pending shards through the ShardWorker actors.

At most `IN_FLIGHT_PER_WORKER` shards per actor are in flight, each new one on the least loaded
actor; a shard's refs are built only when it is submitted. Every finished shard's stats go to the
collector (`IngestStats`), the manifest is rewritten at a bounded rate, and once the stop request
has seen a signal no new shard is submitted and the loop returns (shards in flight are dropped and
rewritten by the resumed run). The actors are killed however the loop ends.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

from zss.ingest.cluster import IN_FLIGHT_PER_WORKER, stop_workers
from zss.ingest.plan import ShardRefs
from zss.ingest.report import IngestStats
from zss.utils.progress import progress_bar
from zss.utils.signals import StopRequest

WAIT_SECONDS = 2.0  # the driver wakes at least this often to see a Ctrl-C (else it sleeps in ray.wait)
MANIFEST_EVERY_SHARDS = 32  # the manifest is rewritten at most this often (and at the end) ...
MANIFEST_EVERY_SECONDS = 10.0  # ... or after this long, whichever comes first


class ShardWindow:
    """The pending shards and the ones in flight on the actors (`start` hands them over)."""

    def __init__(self, pending: Sequence[int], refs: ShardRefs, target: str, stop: StopRequest) -> None:
        self.todo = iter(pending)
        self.rows = refs.rows(pending)
        self.refs, self.target, self.stop = refs, target, stop
        self.actors: list[Any] = []
        self.load: dict[int, int] = {}
        self.in_flight: dict[Any, tuple[int, int]] = {}  # object ref -> (shard, actor index)

    def start(self, actors: list[Any]) -> None:
        self.actors = actors
        self.load = {i: 0 for i in range(len(actors))}

    @property
    def stopped(self) -> bool:
        return self.stop.signum is not None

    def _submit(self) -> bool:
        if self.stopped:
            return False
        i = min(self.load, key=lambda k: (self.load[k], k))
        if self.load[i] >= IN_FLIGHT_PER_WORKER:
            return False
        shard = next(self.todo, None)
        if shard is None:
            return False
        ref = self.actors[i].write.remote(self.target, shard, self.refs(shard))
        self.in_flight[ref] = (shard, i)
        self.load[i] += 1
        return True

    def fill(self) -> None:
        """Submit shards until every actor has its share in flight (or none is left)."""
        while self._submit():
            pass

    def next_done(self) -> tuple[int, dict[str, Any]] | None:
        """(shard, its worker's result) for a call that finished within WAIT_SECONDS, else None."""
        import ray

        done, _ = ray.wait(list(self.in_flight), num_returns=1, timeout=WAIT_SECONDS)
        if not done:
            return None
        shard, i = self.in_flight.pop(done[0])
        self.load[i] -= 1
        return shard, ray.get(done.pop())

    def close(self) -> None:
        stop_workers(self.actors, self.in_flight)


def run_shards(window: ShardWindow, stats: IngestStats, save_manifest: Callable[[], Any],
               progress: bool | None) -> None:
    """Stream the window's shards through its actors until none is in flight or a stop was asked
    for; the actors are stopped and every ref dropped on the way out, however the loop ends."""
    stats.start()
    last_manifest, since_manifest = time.monotonic(), 0
    try:
        with progress_bar(None if progress is None else not progress) as bar:
            task = bar.add_task("ingest", total=window.rows, info="", unit="samples")
            window.fill()
            while window.in_flight and not window.stopped:  # on a stop, finished shards are
                done = window.next_done()  # complete on disk; the rest resume later
                if done is None:
                    continue
                bar.update(task, advance=stats.add(*done), info=stats.progress_info())
                since_manifest += 1
                if (since_manifest >= MANIFEST_EVERY_SHARDS
                        or time.monotonic() - last_manifest >= MANIFEST_EVERY_SECONDS):
                    save_manifest()
                    last_manifest, since_manifest = time.monotonic(), 0
                window.fill()
    finally:
        window.close()
    stats.stop()
