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

Shards are read by `read_tar_samples`, a minimal tar reader: a member the recipe does not need
(`Recipe.members`) is skipped unread, int8 patch features are decoded to float32 once, beside their
per-token scale. Shard folders may be local or fsspec URLs (`s3://...`).

Speed (benchmarks/train_step.py, loader section; the goal is >= 1 GiB/s of shard bytes per loader
process): a local tar is mapped privately, so a `.npy` member is a zero-copy view and `load_npy`
parses each distinct .npy header once per process; URLs are streamed in large blocks. `stack`
collates with numpy into one preallocated tensor (torch.stack is several times slower on CPU, and
far slower with intra-op threads on a busy machine). Inside data-loader workers batches are
collated into reusable shared-memory slabs (`_Arena`): fresh shared memory costs a page fault and a
zeroed page per 4 KiB on both sides, as much as decoding. A slab is reused only after the training
process has dropped every tensor of its batch (`_Receiver`), so held batches are never overwritten.
A batch crosses to the training process as places in a slab (each slab's file descriptor is sent
once, not one per tensor per batch), rebuilt there as views of the same shared memory.

Damaged shards (docs/reliability.md): a tar that cannot be read past some point (truncated, a
corrupt header) costs the rest of that shard; a sample whose members cannot be decoded costs that
sample (it is dropped from its batch). Each is reported once, naming the shard and sample key, and
recorded in the stream's `DamageLedger`. Batch boundaries stay those of the raw sample stream (a
slot that runs short refills from a second pass over its shards, in a seeded order), so a damaged
run still does the same number of steps per epoch on every process and resumes exactly.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import io
import logging
import mmap
import multiprocessing
import os
import random
import tarfile
import weakref
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, NamedTuple, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from zss.errors import ZssError
from zss.formats import shards as sh
from zss.utils.signals import ignore_stop_signals

log = logging.getLogger(__name__)

# What damaged bytes raise while a tar is read (truncation, garbage headers, duplicate names) ...
READ_ERRORS = (tarfile.TarError, OSError, EOFError, ValueError, zlib.error)
# ... and while a recipe decodes a sample's members (bad UTF-8/JSON, a bad .npy header, a member
# missing because its header was destroyed). Anything else raised by a decoder is a bug and propagates.
DECODE_ERRORS = (ValueError, KeyError, EOFError, OSError, zlib.error)

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


class DamageLedger:
    """Damaged shards and lost samples seen so far (each shard and sample counted once)."""

    def __init__(self) -> None:
        self.shards: dict[str, dict[str, Any]] = {}

    def add(self, event: dict[str, Any]) -> bool:
        """Record one damage event; True when it is news (then it deserves a warning)."""
        rec = self.shards.setdefault(event["tar"], {"missing": 0, "keys": [], "reason": event["reason"]})
        if event["kind"] == "read":
            if event["lost"] <= rec["missing"]:
                return False
            rec["missing"] = int(event["lost"])
            rec["reason"] = event["reason"]
            return True
        if event["key"] in rec["keys"]:
            return False
        rec["keys"].append(event["key"])
        return True

    @property
    def n_samples(self) -> int:
        return sum(r["missing"] + len(r["keys"]) for r in self.shards.values())

    @property
    def n_shards(self) -> int:
        return len(self.shards)

    def state(self) -> dict[str, Any]:
        return {k: {"missing": v["missing"], "keys": list(v["keys"]), "reason": v["reason"]}
                for k, v in self.shards.items()}

    def load(self, state: dict[str, Any]) -> None:
        self.shards = {k: {"missing": int(v["missing"]), "keys": list(v["keys"]), "reason": str(v["reason"])}
                       for k, v in (state or {}).items()}

    def summary(self) -> dict[str, Any]:
        return {"skipped_samples": self.n_samples, "skipped_shards": self.n_shards,
                "damaged": {k: {"samples_skipped": v["missing"] + len(v["keys"]), "reason": v["reason"]}
                            for k, v in sorted(self.shards.items())}}


def _event(kind: str, tar: str, key: str, reason: str, lost: int) -> dict[str, Any]:
    return {"kind": kind, "tar": tar, "key": key, "reason": reason[:300], "lost": lost}


def shards_from_manifest(shard_dir: Path | str, manifest: dict[str, Any]) -> list[ShardRef]:
    """The shard tars (paths, or URLs under a URL folder) and their ok-sample counts listed in
    `manifest.json`."""
    refs = []
    remote = sh.is_url(shard_dir)
    listed = set(sh.listdir(shard_dir)) if remote else None  # one listing, not a request per shard
    for s in manifest.get("shards", []):
        tar = sh.join(shard_dir, s["tar"])
        if (s["tar"] not in listed) if remote else not Path(tar).is_file():  # type: ignore[operator]
            raise ZssError(f"shard {tar} listed in the manifest is missing")
        refs.append(ShardRef(tar=tar, n_ok=int(s["n_ok"])))
    if not refs:
        raise ZssError(f"no shards listed in {sh.join(shard_dir, 'manifest.json')}")
    return refs


_NPY_MAGIC = b"\x93NUMPY"
# .npy header bytes -> (dtype, shape, fortran order, element count): a shard's members share a few
# headers, so each is parsed once per process instead of once per member.
_NPY_HEADERS: dict[bytes, tuple[np.dtype, tuple[int, ...], bool, int]] = {}


def _npy_header(prefix: bytes) -> tuple[np.dtype, tuple[int, ...], bool, int]:
    info = _NPY_HEADERS.get(prefix)
    if info is None:
        fp = io.BytesIO(prefix)
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
        else:
            raise ValueError(f"unsupported .npy version {version}")
        if dtype.hasobject:
            raise ValueError("object arrays cannot be loaded from shards (no pickles)")
        info = (dtype, tuple(shape), bool(fortran), int(np.prod(shape, dtype=np.int64)))
        if len(_NPY_HEADERS) > 4096:
            _NPY_HEADERS.clear()
        _NPY_HEADERS[prefix] = info
    return info


def load_npy(data: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """A `.npy` tar member's bytes as an array (no pickles); an array (already decoded by the
    reader, e.g. int8 patch features) is returned as is.

    The array is a view of the member's buffer when that buffer is writable (what the shard reader
    hands out: a private map of the tar), else a copy, as `np.load` would give. Damaged bytes raise
    ValueError like `np.load` does."""
    if isinstance(data, np.ndarray):
        return data
    buf = memoryview(data)
    if buf.ndim != 1 or buf.itemsize != 1:
        buf = buf.cast("B")
    head = bytes(buf[:12])
    if head[:6] != _NPY_MAGIC or len(head) < 10:
        raise ValueError("not a .npy member (bad magic string)")
    if head[6] == 1:
        start = 10 + int.from_bytes(head[8:10], "little")
    elif head[6] in (2, 3) and len(head) == 12:
        start = 12 + int.from_bytes(head[8:12], "little")
    else:
        raise ValueError(f"unsupported .npy version {head[6]}")
    if head[6] == 3 or start > len(buf):
        return np.load(io.BytesIO(buf), allow_pickle=False)  # rare (utf-8 header) or damaged
    dtype, shape, fortran, count = _npy_header(bytes(buf[:start]))
    if count * dtype.itemsize > len(buf) - start:
        raise ValueError(f"truncated .npy member: {len(buf) - start} bytes for {shape} {dtype}")
    if count == 0:
        return np.empty(shape, dtype, order="F" if fortran else "C")
    arr = np.frombuffer(buf, dtype=dtype, count=count, offset=start)
    arr = arr.reshape(shape[::-1]).T if fortran else arr.reshape(shape)
    return arr.copy() if buf.readonly else arr


def stack(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """`torch.stack(tensors)` for collating a batch on the CPU, several times faster: the output is
    allocated once and filled by numpy copies. Inside a data-loader worker it is allocated in shared
    memory (so handing the batch to the training process copies nothing), from the worker's
    reusable `_Arena` when there is one. Anything unusual (other devices, autograd, shapes or
    dtypes that differ) goes to torch.stack."""
    first = tensors[0]
    if (first.device.type != "cpu" or first.requires_grad
            or any(t.shape != first.shape or t.dtype != first.dtype or t.device != first.device
                   or t.requires_grad for t in tensors)):
        return torch.stack(list(tensors))
    shape = (len(tensors), *first.shape)
    out = _ARENA.tensor(shape, first.dtype) if _ARENA is not None else None
    if out is None and get_worker_info() is not None:
        storage = first._typed_storage()._new_shared(first.numel() * len(tensors), device=first.device)
        out = first.new(storage).resize_(shape)
    elif out is None:
        out = torch.empty(shape, dtype=first.dtype)
    try:
        o = out.numpy()
        for i, t in enumerate(tensors):
            o[i] = t.numpy()
    except (TypeError, RuntimeError):  # a dtype or tensor numpy cannot view (bfloat16, conj bits)
        torch.stack(list(tensors), out=out)
    return out


class _Arena:
    """Reusable shared-memory slabs one data-loader worker collates its batches into.

    A fresh shared-memory batch costs the kernel a page fault and a zeroed page per 4 KiB, on both
    sides, every batch: on 2 CPUs that is as much as decoding the batch. So each worker keeps
    `SLABS` slabs; `stack` carves a batch's tensors out of a free one; a one-byte flag per slab
    (shared with the training process) says it is in use, and the training process clears it once
    every tensor of that batch is gone (`_Receiver`). When no slab is free (the consumer keeps
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

    def pack(self, batch: Any, token: int | None) -> tuple[Any, "_Slab | None"]:
        """The batch as it travels to the training process: every tensor that lives in the slab of
        `token` replaced by its place in it (`_InSlab`), and the slab itself when the training
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
            return _InSlab(t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)

        packed = _map_tensors(batch, place)
        fresh = None if self.sent[i] else _Slab(slab)
        self.sent[i] = True
        return packed, fresh


class _InSlab(NamedTuple):
    """Where a tensor of a batch lies in its worker's slab (offset in elements, as torch counts)."""
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: torch.dtype


class _Slab:
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
    """`obj` with fn applied to every tensor (or `_InSlab`) inside dicts, lists and tuples."""
    if isinstance(obj, (torch.Tensor, _InSlab)):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: _map_tensors(v, fn) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_map_tensors(v, fn) for v in obj)
    return obj


_ARENA: _Arena | None = None  # set in data-loader workers by _EpochDataset while collating
_WORKER_ARENA: _Arena | None = None  # a data-loader worker's arena (made at its first epoch)


class _Receiver:
    """The training process's side of the workers' arenas. A batch arrives as places in a slab
    (`_Arena.pack`); its tensors are rebuilt as views of this process's mapping of that slab, all
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
        return [self.slabs.get(worker * _Arena.SLABS + i) for i in range(_Arena.SLABS)]

    def receive(self, batch: Any, token: int | None, slab: "_Slab | None") -> Any:
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


# ---------------------------------------------------------------- reading shard tars


def _open(url: Path | str) -> BinaryIO:
    return sh.open_read(url)


def _octal(field: bytes) -> int:
    field = field.rstrip(b"\0 ").lstrip(b" ")
    return int(field, 8) if field else 0


def _header(header: bytes) -> tuple[int, bytes, int]:
    """(size, type flag, size padded to whole 512-byte blocks) of a tar header block."""
    size = _octal(header[124:136])
    return size, header[156:157], (size + 511) & ~511


def _member_name(header: bytes, long_name: str | None) -> str:
    """The member's path: a preceding GNU long name, else the header's name (with its ustar prefix)."""
    if long_name:
        return long_name
    name = header[:100].rstrip(b"\0").decode()
    prefix = header[345:500].rstrip(b"\0") if header[257:262] == b"ustar" else b""
    return prefix.decode() + "/" + name if prefix else name


def _members(f: BinaryIO, wanted: set[str] | None) -> Iterator[tuple[str, str, bytes]]:
    """(key, suffix, data) of the regular files of a tar stream; members whose suffix is not in
    `wanted` are skipped unread (seek) and yielded with empty data so sample grouping still sees
    their keys. Understands ustar/GNU headers and GNU long names (what `write_shard` writes)."""
    seekable = f.seekable()
    long_name: str | None = None
    while True:
        header = f.read(512)
        if len(header) < 512 or header == b"\0" * 512:
            return
        size, kind, padded = _header(header)
        if kind == b"L":  # GNU long name: the next member's name is this member's data
            long_name = f.read(padded)[:size].rstrip(b"\0").decode()
            continue
        name, long_name = _member_name(header, long_name), None
        if kind not in (b"0", b"\0"):
            _skip(f, padded, seekable)
            continue
        key, _, ext = name.rpartition("/")[2].partition(".")
        if wanted is not None and ext not in wanted:
            _skip(f, padded, seekable)
            yield key, ext, b""
            continue
        if ext.endswith("npy"):  # a writable buffer: load_npy can then view it instead of copying
            data = bytearray(size)
            got = f.readinto(data) if size else 0
        else:
            data = f.read(size)
            got = len(data)
        if got != size:
            raise ZssError(f"truncated tar member {name}")
        _skip(f, padded - size, seekable)
        yield key, ext, data


def _skip(f: BinaryIO, n: int, seekable: bool) -> None:
    if n <= 0:
        return
    if seekable:
        f.seek(n, 1)
    else:
        f.read(n)


def _map(url: Path | str) -> "mmap.mmap | bytes | None":
    """A local shard's bytes as a private (copy-on-write) map: members become zero-copy views and
    nothing is read twice. None for URLs (streamed instead) or files that cannot be mapped."""
    if sh.is_url(url):
        return None
    with open(url, "rb") as f:  # a missing file raises here, like the streaming reader would
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return b""
        try:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        except (OSError, ValueError):
            return None
    if hasattr(mm, "madvise"):
        mm.madvise(mmap.MADV_SEQUENTIAL)
    return mm


def _mapped_members(mm: "mmap.mmap | bytes", wanted: set[str] | None
                    ) -> Iterator[tuple[str, str, bytes | memoryview]]:
    """`_members` over a mapped tar: the same members, names and errors, with each `.npy` member
    a zero-copy (writable, private) view and other members as bytes."""
    view = memoryview(mm)
    size = len(view)
    pos = 0
    long_name: str | None = None
    while True:
        if pos + 512 > size:
            return
        header = mm[pos:pos + 512]
        if header == _ZERO_BLOCK:
            return
        pos += 512
        n, kind, padded = _header(header)
        if kind == b"L":
            long_name = mm[pos:pos + padded][:n].rstrip(b"\0").decode()
            pos += padded
            continue
        name, long_name = _member_name(header, long_name), None
        start = pos
        pos += max(padded, 0)
        if kind not in (b"0", b"\0"):
            continue
        key, _, ext = name.rpartition("/")[2].partition(".")
        if wanted is not None and ext not in wanted:
            yield key, ext, b""
            continue
        if n < 0 or start + n > size:
            raise ZssError(f"truncated tar member {name}")
        yield key, ext, (view[start:start + n] if ext.endswith("npy") else mm[start:start + n])


_ZERO_BLOCK = b"\0" * 512


def _decode_int8(sample: dict[str, Any]) -> dict[str, Any]:
    """int8 patch codes + per-token scale -> float32 `patch.npy` array (decoded once here)."""
    scale = sample.pop("patch_scale.npy", None)
    if scale is not None and "patch.npy" in sample:
        sample["patch.npy"] = sh.decode_patch(load_npy(sample["patch.npy"]), load_npy(scale))
    return sample


def read_tar_samples(url: Path | str, members: set[str] | None = None,
                     keep: Callable[[int], bool] | None = None) -> Iterator[dict[str, Any]]:
    """The samples of one shard tar as {suffix: bytes, "__key__": key}, in order. Only `members`
    (suffixes) are read; `keep(i)` False skips the i-th sample's data altogether."""
    wanted = None
    if members is not None:
        wanted = set(members) | ({"patch_scale.npy"} if "patch.npy" in members else set())
    mapped = _map(url)
    with (contextlib.nullcontext() if mapped is not None else _open(url)) as f:
        members = _mapped_members(mapped, wanted) if mapped is not None else _members(f, wanted)
        current: dict[str, Any] | None = None
        i = -1
        take = True
        for key, ext, data in members:
            if current is None or current["__key__"] != key:
                if current is not None and take:
                    yield _decode_int8(current)
                current = {"__key__": key, "__url__": str(url)}
                i += 1
                take = keep is None or keep(i)
            if take and (wanted is None or ext in wanted):
                current[ext] = data
        if current is not None and take:
            yield _decode_int8(current)


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
        self.decode = decode
        self.collate = collate
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.num_workers = num_workers
        self.n_local = max(1, num_workers)
        self.n_slots = world_size * self.n_local
        self.shuffle_buffer = max(1, shuffle_buffer)
        self.members = set(members) if members else None
        self._warm = False
        self._batch_bytes = 0  # a collated batch's tensor bytes (measured on the warm-up sample)
        self._receiver: _Receiver | None = None  # the workers' slabs, kept across epochs
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
                events.append(_event("read", Path(str(ref.tar)).name, f"after {key}" if key else "at the start",
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
                    events.append(_event("decode", tar, r["__key__"], f"cannot decode: {type(exc).__name__}: {exc}", 1))
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

    def _workers(self) -> tuple[DataLoader, _Receiver, Any]:
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

    def _slabs(self) -> _Receiver:
        """The receiver and its slabs, made at the first epoch with workers: `SLABS` per worker,
        sized for the warm-up sample's batch (a worker grows one when a batch outgrows it)."""
        if self._receiver is None:
            flags = multiprocessing.RawArray("b", self.num_workers * _Arena.SLABS)
            self._receiver = _Receiver(flags, pin=torch.cuda.is_available())
            if self._batch_bytes:
                size = _Arena.slab_size(self._batch_bytes)
                for k in range(self.num_workers * _Arena.SLABS):
                    self._receiver.slabs[k] = torch.UntypedStorage._new_shared(size)
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
                    self._batch_bytes = _Arena.batch_bytes(self.collate([sample] * self.batch_size))
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

    def __iter__(self) -> Iterator[tuple[Any, list[dict[str, Any]], int | None, "_Slab | None"]]:
        global _ARENA, _WORKER_ARENA
        info = get_worker_info()
        wid = info.id if info is not None else 0
        epoch, start = int(self.ctl[0]), int(self.ctl[1])
        W = self.stream.n_local
        # Batch i of the epoch comes from worker slot i % W. The DataLoader asks its worker 0 first,
        # so loader worker w serves slot (w + start) % W, which holds the next batch in order.
        a = (wid + start) % W
        skip = (start - a + W - 1) // W if start > a else 0
        batches = self.stream.slot_batches_iter(epoch, self.stream.rank * W + a, skip)
        arena = None
        if info is not None:  # one arena per worker process, kept across its epochs
            if _WORKER_ARENA is None:
                _WORKER_ARENA = _Arena(self.flags, wid * _Arena.SLABS, self.slabs[wid])
            arena = _ARENA = _WORKER_ARENA
        try:
            while True:
                if arena is not None:
                    arena.begin()
                try:
                    batch, events = next(batches)
                except StopIteration:
                    return
                if arena is None:
                    yield batch, events, None, None
                    continue
                batch = arena.adopt(batch)
                token = arena.finish()
                batch, slab = arena.pack(batch, token)
                yield batch, events, token, slab
        finally:
            _ARENA = None
