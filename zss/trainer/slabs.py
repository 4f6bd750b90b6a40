"""The slab transport: how a data-loader worker's batches reach the training process.

Fresh shared memory costs a page fault and a zeroed page per 4 KiB on both sides, as much as
decoding a batch. So inside data-loader workers batches are collated (`zss.trainer.collate.stack`
asks `batch_tensor` for its output) into reusable shared-memory slabs (`Arena`, six per worker). A
batch crosses to the training process as places in a slab (`InSlab`; each slab's file descriptor
is sent once, not one per tensor per batch), rebuilt there as views of the same shared memory
(`Receiver`). A slab is reused only after the training process has dropped every tensor of its
batch, so held batches are never overwritten.

Worker side: `worker_arena` (one per worker process, kept across epochs) and `send_batches`.
Training side: `Receiver.for_workers` (the slabs, made once per stream) and `Receiver.receive`.
"""

from __future__ import annotations

import multiprocessing
import weakref
from typing import Any, Callable, Iterator, NamedTuple, Sequence, TypeVar

import numpy as np
import torch
from torch.utils.data import get_worker_info

T = TypeVar("T")


class Arena:
    """Reusable shared-memory slabs one data-loader worker collates its batches into.

    A fresh shared-memory batch costs the kernel a page fault and a zeroed page per 4 KiB, on both
    sides, every batch: on 2 CPUs that is as much as decoding the batch. So each worker keeps
    `SLABS` slabs; `stack` carves a batch's tensors out of a free one; a one-byte flag per slab
    (shared with the training process) says it is in use, and the training process clears it once
    every tensor of that batch is gone (`Receiver`). When no slab is free (the consumer keeps
    batches) or a batch outgrows its slab, tensors fall back to fresh shared memory: never a wait,
    never a slab overwritten while the training process can still see it."""

    SLABS = 6
    ALIGN = 64

    @classmethod
    def aligned(cls, n: int) -> int:
        return (n + cls.ALIGN - 1) // cls.ALIGN * cls.ALIGN

    @classmethod
    def slab_size(cls, batch_bytes: int) -> int:
        """A slab's bytes for batches of `batch_bytes` (a quarter to spare for larger ones)."""
        return (batch_bytes * 5 // 4 + cls.ALIGN) // cls.ALIGN * cls.ALIGN

    @classmethod
    def batch_bytes(cls, batch: Any) -> int:
        """The slab bytes `batch`'s CPU tensors take (each aligned)."""
        sizes: list[int] = []

        def add(t: torch.Tensor) -> torch.Tensor:
            if t.device.type == "cpu":
                sizes.append(cls.aligned(t.numel() * t.element_size()))
            return t

        _map_tensors(batch, add)
        return sum(sizes)

    def __init__(self, flags: Any, base: int, slabs: Sequence[torch.UntypedStorage | None] = ()) -> None:
        self.flags, self.base = flags, base
        self.slabs: list[torch.UntypedStorage | None] = [None] * self.SLABS
        self.sizes = [0] * self.SLABS
        self.sent = [False] * self.SLABS  # the training process holds slab i
        for i, slab in enumerate(slabs):  # the training process's own (kept across epochs)
            if slab is not None:
                self.slabs[i], self.sizes[i], self.sent[i] = slab, slab.nbytes(), True
        self.want = 0          # bytes the largest batch so far asked for
        self.current: int | None = None
        self.used = 0
        self.asked = 0

    def begin(self) -> None:
        """Start a batch: pick a free slab (grown to the largest batch seen), if any."""
        self.current, self.used, self.asked = None, 0, 0
        for i in range(self.SLABS):
            if self.flags[self.base + i] == 0:
                if self.sizes[i] < self.want:
                    size = self.slab_size(self.want)
                    self.slabs[i] = torch.UntypedStorage._new_shared(size)
                    self.sizes[i] = size
                    self.sent[i] = False
                self.current = i
                return

    def tensor(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor | None:
        """An uninitialised contiguous tensor in the current slab, or None (no room)."""
        n = int(np.prod(shape, dtype=np.int64)) * torch.empty(0, dtype=dtype).element_size()
        n_aligned = self.aligned(n)
        self.asked += n_aligned
        i = self.current
        if i is None or self.slabs[i] is None or self.used + n_aligned > self.sizes[i]:
            return None
        itemsize = torch.empty(0, dtype=dtype).element_size()
        out = torch.empty(0, dtype=dtype).set_(self.slabs[i], self.used // itemsize, shape)
        self.used += n_aligned
        return out

    def adopt(self, batch: Any) -> Any:
        """A dict batch with its other CPU tensors (e.g. small index tensors built by the recipe's
        collate) copied into the slab too: each separate storage costs the training process a file
        descriptor handed over a socket, whatever its size. Other batches are returned as they are."""
        if not isinstance(batch, dict) or self.current is None:
            return batch
        out = dict(batch)
        for k, v in batch.items():
            if isinstance(v, torch.Tensor) and v.device.type == "cpu" and not v.requires_grad and not v.is_shared():
                t = self.tensor(tuple(v.shape), v.dtype)
                if t is not None:
                    out[k] = t.copy_(v)
        return out

    def finish(self) -> int | None:
        """End a batch: the flag index of the slab it lives in (now marked in use), or None."""
        self.want = max(self.want, self.asked)
        i, self.current = self.current, None
        if i is None or self.used == 0:
            return None
        self.flags[self.base + i] = 1
        return self.base + i

    def pack(self, batch: Any, token: int | None) -> tuple[Any, "Slab | None"]:
        """The batch as it travels to the training process: every tensor that lives in the slab of
        `token` replaced by its place in it (`InSlab`), and the slab itself when the training
        process does not hold it yet (once per slab: its file descriptor crosses the socket once,
        not once per tensor per batch). Tensors elsewhere travel as usual."""
        if token is None:
            return batch, None
        i = token - self.base
        slab = self.slabs[i]
        ptr, size = slab.data_ptr(), slab.nbytes()

        def place(t: torch.Tensor) -> Any:
            st = t.untyped_storage()
            if st.data_ptr() != ptr or st.nbytes() != size:
                return t
            return InSlab(t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)

        packed = _map_tensors(batch, place)
        fresh = None if self.sent[i] else Slab(slab)
        self.sent[i] = True
        return packed, fresh


class InSlab(NamedTuple):
    """Where a tensor of a batch lies in its worker's slab (offset in elements, as torch counts)."""
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: torch.dtype


class Slab:
    """A slab on its way to the training process (a plain holder: the DataLoader's pin-memory
    thread must not copy it)."""

    def __init__(self, storage: torch.UntypedStorage) -> None:
        self.storage = storage


class _SlabView:
    """One batch's view of a slab, with its own lifetime: numpy sees the slab's memory through
    this object, torch takes that array as a fresh storage, and this object stays alive (keeping
    the slab mapped) exactly as long as any tensor of the batch does."""

    def __init__(self, storage: torch.UntypedStorage) -> None:
        self.storage = storage
        self.__array_interface__ = {"data": (storage.data_ptr(), False), "shape": (storage.nbytes(),),
                                    "typestr": "|u1", "version": 3}


def _map_tensors(obj: Any, fn: Callable[[Any], Any]) -> Any:
    """`obj` with fn applied to every tensor (or `InSlab`) inside dicts, lists and tuples."""
    if isinstance(obj, (torch.Tensor, InSlab)):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: _map_tensors(v, fn) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_map_tensors(v, fn) for v in obj)
    return obj


_ARENA: Arena | None = None  # set in a data-loader worker by `send_batches` while it collates
_WORKER_ARENA: Arena | None = None  # a data-loader worker's arena (made at its first epoch)


class Receiver:
    """The training process's side of the workers' arenas. A batch arrives as places in a slab
    (`Arena.pack`); its tensors are rebuilt as views of this process's mapping of that slab, all
    sharing one storage per batch. Once that storage is freed (every tensor of the batch dropped),
    the slab's flag is cleared, checked as each new batch arrives, and the worker may reuse it.

    One receiver serves every epoch of a stream: its slabs (`slabs`, by flag index) are handed to
    each epoch's new workers, so their pages are made and faulted once per run instead of once per
    worker per epoch, and a batch of the last epoch that is still held keeps its slab's flag set."""

    def __init__(self, flags: Any, pin: bool = False) -> None:
        self.flags = flags
        self.pin = pin
        self.slabs: dict[int, torch.UntypedStorage] = {}
        self.pending: list[tuple[int, weakref.ref]] = []

    @classmethod
    def for_workers(cls, n_workers: int, batch_bytes: int, pin: bool = False) -> Receiver:
        """The receiver of `n_workers` workers (`Arena.SLABS` flags each). With `batch_bytes` (a
        collated batch's size, e.g. of a warm-up batch) their slabs are made here, once; without,
        the workers make them as batches need them."""
        receiver = cls(multiprocessing.RawArray("b", n_workers * Arena.SLABS), pin=pin)
        if batch_bytes:
            size = Arena.slab_size(batch_bytes)
            for k in range(n_workers * Arena.SLABS):
                receiver.slabs[k] = torch.UntypedStorage._new_shared(size)
        return receiver

    def release(self, abandoned: bool = False) -> None:
        """Clear the flag of every slab whose batch is gone; `abandoned` (no worker runs): also of
        every slab this process never received a batch of."""
        still = []
        for flag, alive in self.pending:
            if alive() is None:
                self.flags[flag] = 0
            else:
                still.append((flag, alive))
        self.pending = still
        if abandoned:
            held = {flag for flag, _ in still}
            for k in range(len(self.flags)):
                if k not in held:
                    self.flags[k] = 0

    def worker_slabs(self, worker: int) -> list[torch.UntypedStorage | None]:
        return [self.slabs.get(worker * Arena.SLABS + i) for i in range(Arena.SLABS)]

    def receive(self, batch: Any, token: int | None, slab: "Slab | None") -> Any:
        self.release()
        if slab is not None:
            self.slabs[token] = slab.storage
        if token is not None:
            view = _SlabView(self.slabs[token])
            base = torch.from_numpy(np.asarray(view)).untyped_storage()
            batch = _map_tensors(batch, lambda p: p if isinstance(p, torch.Tensor) else torch.empty(
                0, dtype=p.dtype).set_(base, p.offset, p.shape, p.stride))
            self.pending.append((token, weakref.ref(view)))
            del view, base
        if self.pin:  # copies into page-locked memory: the slab is free again at the next batch
            batch = _map_tensors(batch, lambda t: t.pin_memory())
        return batch



def batch_tensor(shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """An uninitialised CPU tensor of `like`'s dtype for a collated batch: in the current slab
    inside a worker that collates into one, else in fresh shared memory inside a data-loader
    worker (handing the batch over copies nothing), else in ordinary memory."""
    out = _ARENA.tensor(shape, like.dtype) if _ARENA is not None else None
    if out is None and get_worker_info() is not None:
        n = int(np.prod(shape, dtype=np.int64))
        storage = like._typed_storage()._new_shared(n, device=like.device)
        out = like.new(storage).resize_(shape)
    elif out is None:
        out = torch.empty(shape, dtype=like.dtype)
    return out


def worker_arena(flags: Any, worker: int, slabs: Sequence[torch.UntypedStorage | None]) -> Arena:
    """This data-loader worker process's arena (made at its first epoch, kept across epochs):
    flags `worker·SLABS ...`, starting from the training process's `slabs` for it."""
    global _WORKER_ARENA
    if _WORKER_ARENA is None:
        _WORKER_ARENA = Arena(flags, worker * Arena.SLABS, slabs)
    return _WORKER_ARENA


def send_batches(arena: Arena, batches: Iterator[tuple[Any, T]]
                 ) -> Iterator[tuple[Any, T, int | None, Slab | None]]:
    """(batch packed for the trip, extra, token, slab) for each (batch, extra) of `batches`,
    whose collate runs with `arena` current, so that `batch_tensor` carves it out of a free slab;
    the training process rebuilds each with `Receiver.receive(batch, token, slab)`."""
    global _ARENA
    _ARENA = arena
    try:
        while True:
            arena.begin()
            try:
                batch, extra = next(batches)
            except StopIteration:
                return
            batch = arena.adopt(batch)
            token = arena.finish()
            batch, slab = arena.pack(batch, token)
            yield batch, extra, token, slab
    finally:
        _ARENA = None
