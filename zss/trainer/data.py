"""The shard stream: reproducible, resumable, shuffled batches from the cached shards.

Each epoch reads the shards in an order drawn from (seed, epoch). Reading is split into
`world_size × num_workers` *slots* (one per data-loader worker of each process): with at least one
shard per slot, shards are dealt to slots greedily by sample count; with fewer shards every slot
reads all shards and keeps every S-th sample. Each slot shuffles with a buffer seeded by
(seed, epoch, slot) and yields exactly the same number of whole batches (the smallest slot's), so
every process does the same number of steps per epoch and the DataLoader's round-robin over
workers is a fixed order. A position is therefore just (epoch, batches drawn in that epoch):
resuming re-reads the current epoch up to the position without decoding the skipped samples.

Random choices inside a sample (e.g. which caption) use an RNG seeded by (seed, epoch, key), so
they do not depend on worker count or order.

Shards are read by `zss.formats.shards.read_tar_samples` (over `zss.formats.tar_reader`): a member
the recipe does not need (`Recipe.members`) is skipped unread, int8 patch features are decoded to
float32 once, beside their per-token scale. Shard folders may be local or fsspec URLs (`s3://...`).

Speed (benchmarks/train_step.py, loader section; the goal is >= 1 GiB/s of shard bytes per loader
process): a local tar is mapped privately, so a `.npy` member is a zero-copy view for `load_npy`
(`zss.formats.npy`); URLs are streamed in large blocks. Recipes collate with
`zss.trainer.collate.stack`; with workers, batches are collated into reusable shared-memory slabs
and cross to the training process as places in them (`zss.trainer.slabs`).

Damaged shards (docs/reliability.md, `zss.trainer.damage`): a tar that cannot be read past some
point costs the rest of that shard, a sample that cannot be decoded costs that sample; batch
boundaries stay those of the raw sample stream (a slot that runs short refills from a second pass
over its shards, in a seeded order), so a damaged run still does the same number of steps per
epoch on every process and resumes exactly.
"""

from __future__ import annotations

import atexit
import copy
import logging
import multiprocessing
import random
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from zss.errors import ZssError
from zss.formats import storage
from zss.formats.shards import read_tar_samples
from zss.formats.tar_reader import READ_ERRORS
from zss.trainer.damage import DECODE_ERRORS, DamageLedger, damage_event
from zss.trainer.slabs import Arena, Receiver, Slab, send_batches, worker_arena
from zss.utils.signals import ignore_stop_signals

log = logging.getLogger(__name__)

Decode = Callable[[dict[str, Any], random.Random], "dict[str, Any] | None"]
Collate = Callable[[list], dict]


@dataclass(frozen=True)
class ShardRef:
    tar: Path | str  # a local path or a URL
    n_ok: int


@dataclass(frozen=True)
class Position:
    """Where the stream is: `batch` batches of epoch `epoch` have been drawn by this process."""

    epoch: int = 0
    batch: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batch": self.batch}


def shards_from_manifest(shard_dir: Path | str, manifest: dict[str, Any]) -> list[ShardRef]:
    """The shard tars (paths, or URLs under a URL folder) and their ok-sample counts listed in
    `manifest.json`."""
    refs = []
    remote = storage.is_url(shard_dir)
    listed = set(storage.listdir(shard_dir)) if remote else None  # one listing, not a request per shard
    for s in manifest.get("shards", []):
        tar = storage.join(shard_dir, s["tar"])
        if (s["tar"] not in listed) if remote else not Path(tar).is_file():  # type: ignore[operator]
            raise ZssError(f"shard {tar} listed in the manifest is missing")
        refs.append(ShardRef(tar=tar, n_ok=int(s["n_ok"])))
    if not refs:
        raise ZssError(f"no shards listed in {storage.join(shard_dir, 'manifest.json')}")
    return refs


def _epoch_rng(seed: int, epoch: int, *parts: Any) -> random.Random:
    return random.Random("-".join(str(x) for x in (seed, epoch, *parts)))


def sample_rng(seed: int, epoch: int, key: str) -> random.Random:
    """The per-sample RNG handed to `decode_sample`."""
    return _epoch_rng(seed, epoch, "sample", key)


@dataclass(frozen=True)
class SlotPlan:
    """What one slot reads in one epoch: shards in order, keeping local indices ≡ offset mod stride."""

    shards: tuple[ShardRef, ...]
    stride: int
    offset: int

    @property
    def n_samples(self) -> int:
        if self.stride == 1:
            return sum(s.n_ok for s in self.shards)
        return sum(max(0, (s.n_ok - self.offset + self.stride - 1) // self.stride) for s in self.shards)


class ShardStream:
    """Batches for one training process; iterate with `batches(position)`."""

    def __init__(self, shards: list[ShardRef], decode: Decode, collate: Collate, batch_size: int,
                 seed: int = 0, rank: int = 0, world_size: int = 1, num_workers: int = 0,
                 shuffle_buffer: int = 1000, members: tuple[str, ...] | None = None) -> None:
        self.shards = list(shards)
        self.decode, self.collate = decode, collate  # the recipe's sample decoder and batch collate
        self.batch_size, self.seed = batch_size, seed
        self.rank, self.world_size, self.num_workers = rank, world_size, num_workers
        self.n_local = max(1, num_workers)
        self.n_slots = world_size * self.n_local
        self.shuffle_buffer = max(1, shuffle_buffer)
        self.members = set(members) if members else None
        self._warm = False
        self._batch_bytes = 0  # a collated batch's tensor bytes (measured on the warm-up sample)
        self._receiver: Receiver | None = None  # the workers' slabs, kept across epochs
        self._loader: tuple[DataLoader, Any] | None = None  # persistent workers + their epoch/start
        self._iteration = 0
        self._running = False  # an epoch_batches iteration is part-way
        self.damage = DamageLedger()
        self.total_samples = sum(s.n_ok for s in self.shards)
        if self.batches_per_epoch(0) == 0:
            total = sum(s.n_ok for s in self.shards)
            raise ZssError(f"{total} samples cannot fill one batch of {batch_size} in each of "
                           f"{self.n_slots} readers (processes × workers); lower batch_size or workers")

    # -- planning ---------------------------------------------------------------------------
    def plan(self, epoch: int) -> list[SlotPlan]:
        """Every slot's reading plan for `epoch` (identical on all processes)."""
        order = list(self.shards)
        _epoch_rng(self.seed, epoch, "shards").shuffle(order)
        S = self.n_slots
        if len(order) < S:
            return [SlotPlan(tuple(order), S, s) for s in range(S)]
        assigned: list[list[ShardRef]] = [[] for _ in range(S)]
        counts = [0] * S
        for ref in order:
            s = min(range(S), key=lambda i: (counts[i], i))
            assigned[s].append(ref)
            counts[s] += ref.n_ok
        return [SlotPlan(tuple(a), 1, 0) for a in assigned]

    def slot_batches(self, epoch: int) -> int:
        """Batches every slot yields in `epoch` (the smallest slot's whole batches)."""
        return min(p.n_samples for p in self.plan(epoch)) // self.batch_size

    def batches_per_epoch(self, epoch: int = 0) -> int:
        """Batches this process draws in `epoch` (the same on every process)."""
        return self.slot_batches(epoch) * self.n_local

    # -- reading ----------------------------------------------------------------------------
    def _raw_samples(self, plan: SlotPlan, events: list[dict[str, Any]] | None) -> Iterator[dict[str, Any]]:
        """The plan's raw samples; a shard that cannot be read to its end adds a `read` event
        (to `events`, when given) and the stream goes on with the next shard."""
        keep = None if plan.stride == 1 else (lambda i: i % plan.stride == plan.offset)
        for ref in plan.shards:
            expected = ref.n_ok if plan.stride == 1 else max(
                0, (ref.n_ok - plan.offset + plan.stride - 1) // plan.stride)
            got, key, reason = 0, None, None
            try:
                for sample in read_tar_samples(ref.tar, self.members, keep):
                    key = sample.get("__key__")
                    got += 1
                    yield sample
            except READ_ERRORS + (ZssError,) as exc:
                reason = f"cannot read the tar: {type(exc).__name__}: {str(exc.args[0]).split(' @ ')[0] if exc.args else ''}"
            if got < expected and events is not None:
                reason = reason or "the tar ends early (damaged header or truncated file)"
                events.append(damage_event("read", Path(str(ref.tar)).name, f"after {key}" if key else "at the start",
                                     f"{reason}; {expected - got} of {expected} samples unread", expected - got))
    def _samples(self, plan: SlotPlan, epoch: int, slot: int,
                 events: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """The slot's shuffled samples; when damage leaves it short, further passes over the same
        shards (seeded by epoch, slot and pass) fill it, so the batch count never changes."""
        yield from self._shuffled(self._raw_samples(plan, events), _epoch_rng(self.seed, epoch, "buffer", slot))
        for refill in range(1, 1000):
            n = 0
            for s in self._shuffled(self._raw_samples(plan, None), _epoch_rng(self.seed, epoch, "refill", slot, refill)):
                n += 1
                yield s
            if n == 0:
                break
        raise ZssError(f"no readable samples left in {', '.join(Path(str(r.tar)).name for r in plan.shards)}")

    def _shuffled(self, samples: Iterator[dict[str, Any]], rng: random.Random) -> Iterator[dict[str, Any]]:
        buf: list[dict[str, Any]] = []
        for s in samples:
            if len(buf) < self.shuffle_buffer:
                buf.append(s)
                continue
            j = rng.randrange(len(buf))
            buf[j], s = s, buf[j]
            yield s
        rng.shuffle(buf)
        yield from buf

    def slot_batches_iter(self, epoch: int, slot: int, skip: int) -> Iterator[tuple[Any, list[dict[str, Any]]]]:
        """(collated batch, damage events since the previous batch) of one slot in `epoch`,
        skipping the first `skip` batches undecoded."""
        plan = self.plan(epoch)[slot]
        n_batches = self.slot_batches(epoch)
        events: list[dict[str, Any]] = []
        stream = self._samples(plan, epoch, slot, events)
        for b in range(n_batches):
            raw = [next(stream) for _ in range(self.batch_size)]
            if b < skip:
                continue
            samples = []
            for r in raw:
                try:
                    d = self.decode(r, sample_rng(self.seed, epoch, r["__key__"]))
                except DECODE_ERRORS as exc:
                    tar = Path(str(r.get("__url__", "?"))).name
                    events.append(damage_event("decode", tar, r["__key__"], f"cannot decode: {type(exc).__name__}: {exc}", 1))
                    d = None
                if d is not None:
                    samples.append(d)
            if not samples:
                raise ZssError(f"every sample of a batch of epoch {epoch} was damaged; re-ingest the shards "
                               "(`zss inspect --verify`)")
            out, events = (self.collate(samples), events), []
            yield out

    def epoch_batches(self, epoch: int, start: int = 0) -> Iterator[dict[str, Any]]:
        """This process's batches of `epoch` from batch `start` on, in a fixed order.

        With workers, one set of data-loader workers serves every epoch (told the epoch and start
        through shared memory): they fork once per run, keep their slabs mapped, and an epoch
        starts without a process start-up. An epoch left before its end (the caller stops, e.g. a
        test taking a few batches) shuts them down; the next epoch starts fresh ones. Only one
        `epoch_batches` iteration of a stream can run at a time: starting one while another is
        part-way (suspended, not closed) shuts the workers down too, and the older one raises if
        it is resumed."""
        if self.num_workers == 0:
            yield from self.slot_batches_iter(epoch, self.rank, start)
            return
        if self._running:  # its batches in flight must not be drained unseen (a slab may ride on one)
            self.close()
        loader, receiver, ctl = self._workers()
        self._iteration += 1
        mine = self._iteration
        self._running = True
        receiver.release()
        ctl[0], ctl[1] = epoch, start
        it = iter(loader)  # (re)starts every worker on this epoch
        finished = False
        try:
            while True:
                if self._iteration != mine:
                    raise RuntimeError("this ShardStream's workers were closed or taken over by a newer "
                                       "epoch_batches() while this one was part-way")
                try:
                    batch, events, token, slab = next(it)
                except StopIteration:
                    break
                yield receiver.receive(batch, token, slab), events
            finished = True
        finally:
            if self._iteration == mine:
                self._running = False
                if not finished:
                    self.close()

    def _workers(self) -> tuple[DataLoader, Receiver, Any]:
        if self._loader is None:
            self._warm_up()
            receiver = self._slabs()
            ctl = multiprocessing.RawArray("q", 2)  # (epoch, start batch) of the next iteration
            # the workers' copy of this stream holds no loader: no reference cycle, so dropping the
            # stream shuts its workers down at once (not whenever the cyclic GC runs)
            ds = _EpochDataset(copy.copy(self), ctl, receiver.flags,
                               [receiver.worker_slabs(w) for w in range(self.num_workers)])
            self._loader = (DataLoader(ds, batch_size=None, num_workers=self.num_workers,
                                       worker_init_fn=_worker_init, persistent_workers=True), ctl)
            _close_at_exit(self)
        loader, ctl = self._loader
        return loader, self._receiver, ctl

    def close(self) -> None:
        """Shut the data-loader workers down (joined) and free every slab whose batch the
        training process never received. Also done when an epoch is left before its end, when
        the stream is dropped, and at the process's exit."""
        self._iteration += 1  # an epoch_batches() part-way cannot go on with these workers
        self._running = False
        if self._loader is None:
            return
        loader, _ = self._loader
        self._loader = None
        it = getattr(loader, "_iterator", None)
        shutdown = getattr(it, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        if self._receiver is not None:
            self._receiver.release(abandoned=True)

    def _slabs(self) -> Receiver:
        """The receiver and its slabs, made at the first epoch with workers: `SLABS` per worker,
        sized for the warm-up sample's batch (a worker grows one when a batch outgrows it)."""
        if self._receiver is None:
            self._receiver = Receiver.for_workers(self.num_workers, self._batch_bytes,
                                                  pin=torch.cuda.is_available())
        return self._receiver

    def __getstate__(self) -> dict[str, Any]:
        # what the workers get (a copy, or a pickle for spawn/forkserver): not the training
        # process's loader and receiver (the slabs travel in _EpochDataset)
        return {**self.__dict__, "_receiver": None, "_loader": None}

    def _warm_up(self) -> None:
        """Decode one sample here before the first workers start: state a decoder builds lazily (a
        tokenizer and its imports, caches) is then inherited by every forked worker, instead of
        rebuilt in each worker every epoch. Its batch (the sample `batch_size` times) sizes the
        workers' slabs. Damage is ignored here (the workers report it)."""
        if self._warm:
            return
        self._warm = True
        try:
            for raw in read_tar_samples(self.shards[0].tar, self.members):
                sample = self.decode(raw, sample_rng(self.seed, 0, raw["__key__"]))
                if sample is not None:
                    self._batch_bytes = Arena.batch_bytes(self.collate([sample] * self.batch_size))
                return
        except READ_ERRORS + DECODE_ERRORS + (ZssError,):
            return

    def batches(self, position: Position = Position()) -> Iterator[tuple[dict[str, Any], Position]]:
        """Endless batches from `position`, each with the position after it."""
        epoch, start = position.epoch, position.batch
        while True:
            n = self.batches_per_epoch(epoch)
            b = start
            for batch, events in self.epoch_batches(epoch, start):
                for e in events:
                    if self.damage.add(e):
                        log.warning(f"zss: warning: damaged shard {e['tar']} (sample {e['key']}): {e['reason']}; skipped")
                b += 1
                yield batch, (Position(epoch, b) if b < n else Position(epoch + 1, 0))
            epoch, start = epoch + 1, 0


_OPEN_STREAMS: "weakref.WeakSet[ShardStream]" = weakref.WeakSet()


def _close_at_exit(stream: ShardStream) -> None:
    """Close `stream` at exit, before multiprocessing joins its children: the workers ignore
    SIGTERM (see `_worker_init`), so they must be told to stop, not terminated."""
    if not _OPEN_STREAMS:
        import multiprocessing.util  # noqa: F401 - its exit hook first, so ours runs before it

        atexit.unregister(_close_streams)
        atexit.register(_close_streams)
    _OPEN_STREAMS.add(stream)


def _close_streams() -> None:
    for stream in list(_OPEN_STREAMS):
        stream.close()


def _worker_init(worker_id: int) -> None:
    """Data-loader workers ignore SIGINT/SIGTERM: a terminal's Ctrl-C reaches the whole process
    group, and the training process must be able to finish its step and checkpoint."""
    ignore_stop_signals()


class _EpochDataset(IterableDataset):
    """The epochs of one process, split over DataLoader workers (worker w = slot rank·W + w); each
    iteration reads its epoch and start batch from `ctl`, which the training process sets first."""

    def __init__(self, stream: ShardStream, ctl: Any, flags: Any,
                 slabs: list[list[torch.UntypedStorage | None]]) -> None:
        self.stream, self.ctl, self.flags, self.slabs = stream, ctl, flags, slabs

    def __iter__(self) -> Iterator[tuple[Any, list[dict[str, Any]], int | None, Slab | None]]:
        info = get_worker_info()
        wid = info.id if info is not None else 0
        epoch, start = int(self.ctl[0]), int(self.ctl[1])
        W = self.stream.n_local
        # Batch i of the epoch comes from worker slot i % W. The DataLoader asks its worker 0 first,
        # so loader worker w serves slot (w + start) % W, which holds the next batch in order.
        a = (wid + start) % W
        skip = (start - a + W - 1) // W if start > a else 0
        batches = self.stream.slot_batches_iter(epoch, self.stream.rank * W + a, skip)
        if info is None:
            yield from ((batch, events, None, None) for batch, events in batches)
            return
        yield from send_batches(worker_arena(self.flags, wid, self.slabs[wid]), batches)
