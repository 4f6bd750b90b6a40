"""The shard stream: deterministic, split across processes/workers, resumable mid-epoch."""

from __future__ import annotations

import io
import json
import random

import numpy as np

import pytest

from zss.errors import ZssError
from zss.formats.shards import read_manifest
from zss.trainer.data import Position, ShardStream, shards_from_manifest


def _stream(world, **kw) -> ShardStream:
    refs = shards_from_manifest(world.shards, read_manifest(world.shards))

    def decode(raw, rng: random.Random):
        return {"key": raw["__key__"], "pick": rng.randrange(1000)}

    opts = dict(batch_size=4, seed=3, shuffle_buffer=8)
    opts.update(kw)
    return ShardStream(refs, decode=decode, collate=lambda s: [(x["key"], x["pick"]) for x in s], **opts)


def _take(stream: ShardStream, n: int, position: Position = Position()):
    it = stream.batches(position)
    return [next(it) for _ in range(n)]


def test_stream_is_deterministic_and_covers_each_sample_once_per_epoch(feature_world):
    s = _stream(feature_world)
    n = s.batches_per_epoch(0)
    assert n == 64 // 4
    a, b = _take(s, n + 2), _take(_stream(feature_world), n + 2)
    assert [x for x, _ in a] == [x for x, _ in b]
    keys = [k for batch, _ in a[:n] for k, _ in batch]
    assert len(set(keys)) == 64
    assert a[n - 1][1] == Position(1, 0) and a[n][1] == Position(1, 1)
    # Another epoch, another order; another seed, another order.
    assert [k for k, _ in a[n][0]] != [k for k, _ in a[0][0]]
    assert [x for x, _ in _take(_stream(feature_world, seed=4), 2)] != [x for x, _ in a[:2]]


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_from_any_position_continues_the_same_stream(feature_world, workers):
    s = _stream(feature_world, num_workers=workers)
    full = _take(s, 20)                          # crosses into epoch 1 (16 batches per epoch)
    for k in (3, 16, 17):
        resumed = _take(s, 20 - k, full[k - 1][1])
        assert [x for x, _ in resumed] == [x for x, _ in full[k:]]


@pytest.mark.parametrize("world_size", [2, 4])  # 2 shards: dealt whole, or every 4th sample of each
def test_processes_read_disjoint_samples(feature_world, world_size):
    ranks = [_stream(feature_world, rank=r, world_size=world_size) for r in range(world_size)]
    n = 64 // world_size // 4
    assert all(s.batches_per_epoch() == n for s in ranks)
    keys = [{k for batch, _ in _take(s, n) for k, _ in batch} for s in ranks]
    assert sum(len(k) for k in keys) == len(set().union(*keys)) == 64


def test_too_large_batch_is_a_user_error(feature_world):
    with pytest.raises(ZssError, match="cannot fill one batch"):
        _stream(feature_world, batch_size=65)


def test_tar_reader_skips_unneeded_members_and_decodes_int8(tmp_path):
    from zss.formats import shards as sh
    from zss.formats.npy import load_npy
    from zss.formats.shards import read_tar_samples

    rng = np.random.default_rng(0)
    samples = [{"source_id": f"s{i}", "status": "ok" if i != 1 else "decode_error", "error": "",
                "captions": ["a cat"], "orig_size": (8, 8), "size": (8, 8),
                "patch": rng.normal(size=(2, 2, 8)).astype(np.float16),
                "global": rng.normal(size=8).astype(np.float16), "concepts": None,
                "masks": [{"area": i}], "jpg": b"jpeg"} for i in range(4)]
    sh.write_shard(tmp_path, 3, samples, feature_dtype="int8")
    tar = tmp_path / "00003.tar"
    got = list(read_tar_samples(tar, {"patch.npy", "json"}))
    assert [g["__key__"] for g in got] == ["000030000", "000030002", "000030003"]
    assert all(set(g) == {"__key__", "__url__", "patch.npy", "json"} for g in got)
    assert all(g["patch.npy"].dtype == np.float32 for g in got)  # decoded once, beside its scale
    np.testing.assert_allclose(load_npy(got[1]["patch.npy"]), samples[2]["patch"].astype(np.float32),
                               atol=float(np.abs(samples[2]["patch"]).max()) / 127)
    # every member, and keeping every 2nd sample, read like the reference reader does
    everything = list(read_tar_samples(tar))
    ref = list(sh.iter_samples(tar))
    assert [e["masks.json"] for e in everything] == [json.dumps(r["masks"], sort_keys=True).encode() for r in ref]
    assert [e["__key__"] for e in read_tar_samples(tar, None, lambda i: i % 2 == 1)] == ["000030002"]


def _npy(array: np.ndarray, version=None) -> bytes:
    buf = io.BytesIO()
    if version is None:
        np.save(buf, array, allow_pickle=True)
    else:
        np.lib.format.write_array(buf, array, version=version, allow_pickle=True)
    return buf.getvalue()


def test_load_npy_matches_np_load_views_writable_buffers_and_refuses_damage():
    from zss.formats.npy import load_npy

    rng = np.random.default_rng(0)
    cases = [rng.normal(size=(3, 4, 5)).astype(np.float16), np.asfortranarray(rng.normal(size=(4, 6))),
             np.array(7, np.int8), np.zeros((0, 3), np.float32), rng.integers(0, 9, 5).astype(">i4")]
    for a in cases:
        for version in (None, (2, 0)):
            data = _npy(a, version)
            got = load_npy(bytearray(data))  # the reader's buffers are writable: a view
            assert got.dtype == a.dtype and got.shape == a.shape and np.array_equal(got, a)
            ref = np.load(io.BytesIO(data), allow_pickle=False)
            assert (got.flags.c_contiguous, got.flags.f_contiguous) == (ref.flags.c_contiguous, ref.flags.f_contiguous)
            copy = load_npy(data)  # read-only bytes: a writable copy, like np.load
            assert copy.flags.writeable and np.array_equal(copy, a)
    buf = bytearray(_npy(cases[0]))
    view = load_npy(memoryview(buf))
    assert np.shares_memory(view, np.frombuffer(buf, np.uint8))
    good = _npy(cases[0])
    for bad in (good[:-1], b"not an npy member", b"", _npy(np.array([{"a": 1}], dtype=object))):
        with pytest.raises(ValueError):
            load_npy(bad)


@pytest.mark.parametrize("cut", [0.3, 0.5, 0.77, 0.999])
def test_mapped_and_streamed_readers_agree_on_damaged_tars(tmp_path, monkeypatch, cut):
    """Local tars are read through a map, URLs streamed: same samples, same error, same point."""
    from zss.formats import shards as sh
    from zss.formats import tar_reader
    from zss.formats.npy import load_npy

    rng = np.random.default_rng(1)
    samples = [{"source_id": f"s{i}", "status": "ok", "error": "", "captions": ["a cat"],
                "orig_size": (8, 8), "size": (8, 8), "patch": rng.normal(size=(2, 2, 8)).astype(np.float16),
                "global": rng.normal(size=8).astype(np.float16), "concepts": None, "masks": None,
                "jpg": b"j" * 700} for i in range(6)]
    sh.write_shard(tmp_path, 0, samples)
    tar = tmp_path / "00000.tar"
    data = tar.read_bytes()
    tar.write_bytes(data[: int(len(data) * cut)])

    def read(members):
        got, err = [], None
        try:
            for s in sh.read_tar_samples(tar, members):
                got.append({k: (load_npy(v).tolist() if k.endswith("npy") else v) for k, v in s.items()})
        except tar_reader.READ_ERRORS + (ZssError,) as exc:
            err = (type(exc), str(exc))
        return got, err

    for members in (None, {"json", "patch.npy"}):
        mapped = read(members)
        monkeypatch.setattr(tar_reader, "_map", lambda url: None)
        streamed = read(members)
        monkeypatch.undo()
        assert mapped == streamed
        assert len(mapped[0]) < 6 or cut > 0.9  # the last cut only loses the end-of-archive blocks


def test_worker_batches_stay_intact_while_the_consumer_holds_them(feature_world):
    """Workers collate into reusable shared-memory slabs: a batch the training process still holds
    is never overwritten, and every batch equals the one the slot computes in-process."""
    import torch

    from zss.formats.npy import load_npy
    from zss.trainer.collate import stack

    refs = shards_from_manifest(feature_world.shards, read_manifest(feature_world.shards))

    def decode(raw, rng):
        return {"patch": torch.from_numpy(load_npy(raw["patch.npy"])), "pick": rng.randrange(1000)}

    def collate(samples):
        return {"patch": stack([s["patch"] for s in samples]),
                "pick": torch.tensor([s["pick"] for s in samples])}

    s = ShardStream(refs, decode, collate, batch_size=4, seed=3, shuffle_buffer=8, num_workers=2,
                    members=("patch.npy",))
    slots = [[b for b, _ in s.slot_batches_iter(0, w, 0)] for w in range(2)]
    expected = [b for pair in zip(*slots) for b in pair]
    held = [b for b, _ in s.epoch_batches(0)]  # every batch kept alive: no slab may be reused
    assert len(held) == len(expected) == 16
    for got, exp in zip(held, expected):
        assert torch.equal(got["patch"], exp["patch"]) and torch.equal(got["pick"], exp["pick"])
    for (got, _), exp in zip(s.epoch_batches(0), expected):  # dropped as they go: slabs reused
        assert torch.equal(got["patch"], exp["patch"]) and torch.equal(got["pick"], exp["pick"])


def test_slab_batches_travel_as_places_and_free_their_slab_only_when_every_tensor_is_gone():
    """A worker's batch crosses to the training process as places in its slab (the slab itself
    once), is rebuilt there as views of the same memory (strided views too), and its slab is
    handed back only after the last tensor of the batch, even a single kept view, is gone."""
    import gc
    import multiprocessing

    import torch

    from zss.trainer import slabs as D
    from zss.trainer.collate import stack

    flags = multiprocessing.RawArray("b", D.Arena.SLABS)
    arena, receiver = D.Arena(flags, 0), D.Receiver(flags)

    def make_batch(fill: float) -> tuple:
        arena.begin()
        D._ARENA = arena
        try:
            x = stack([torch.full((3, 5), fill + i) for i in range(4)])
        finally:
            D._ARENA = None
        batch = arena.adopt({"x": x, "col": x[:, :, 1], "ids": torch.arange(4) + int(fill), "name": "b"})
        token = arena.finish()
        return batch, token, arena.pack(batch, token)

    make_batch(0.0)  # the first batch only sizes the arena (no slab yet: fresh shared memory)
    sent, token, (packed, slab) = make_batch(10.0)
    assert token == 0 and slab is not None and slab.storage.data_ptr() == arena.slabs[0].data_ptr()
    assert isinstance(packed["x"], D.InSlab) and isinstance(packed["col"], D.InSlab)
    assert packed["name"] == "b" and packed["col"].stride == (15, 5)  # a strided view keeps its strides
    got = receiver.receive(packed, token, slab)
    for k in ("x", "col", "ids"):
        assert torch.equal(got[k], sent[k])
    assert got["x"].data_ptr() == arena.slabs[0].data_ptr()  # the same memory, no copy
    assert flags[0] == 1
    keep = got["col"]
    del got, sent
    gc.collect()
    receiver.release()
    assert flags[0] == 1  # one view of the batch is alive: slab 0 stays taken
    _, token2, (packed2, slab2) = make_batch(20.0)
    assert token2 == 1 and slab2 is not None  # the worker moved on to a free slab
    assert torch.equal(keep, torch.full((4, 3), 10.0) + torch.arange(4)[:, None])
    got2 = receiver.receive(packed2, token2, slab2)
    del keep
    gc.collect()
    receiver.release()
    assert flags[0] == 0 and flags[1] == 1
    _, token3, (packed3, slab3) = make_batch(30.0)
    assert token3 == 0 and slab3 is None  # slab 0 again: the training process has it already
    got3 = receiver.receive(packed3, token3, slab3)
    assert torch.equal(got3["ids"], torch.arange(4) + 30) and torch.equal(got2["ids"], torch.arange(4) + 20)


def test_worker_slabs_last_across_epochs_and_spare_a_batch_still_held(feature_world):
    """The stream's slabs are made once and handed to every epoch's workers; a batch of epoch 0
    that the training process still holds is not overwritten by epoch 1."""
    import torch

    from zss.formats.npy import load_npy
    from zss.trainer.collate import stack

    refs = shards_from_manifest(feature_world.shards, read_manifest(feature_world.shards))

    def decode(raw, rng):
        return {"patch": torch.from_numpy(load_npy(raw["patch.npy"]))}

    s = ShardStream(refs, decode, lambda xs: {"patch": stack([x["patch"] for x in xs])}, batch_size=4,
                    seed=3, shuffle_buffer=8, num_workers=2, members=("patch.npy",))
    kept = [b for b, _ in s.epoch_batches(0)][-6:]  # the last batches stay held
    snapshot = [b["patch"].clone() for b in kept]
    slabs = dict(s._receiver.slabs)
    assert len(slabs) == 2 * 6 and s._batch_bytes == 4 * int(np.prod(kept[0]["patch"].shape[1:])) * 2
    again = [b["patch"].clone() for b, _ in s.epoch_batches(1)]
    assert len(again) == 16
    assert all(torch.equal(b["patch"], snap) for b, snap in zip(kept, snapshot))
    assert {k: v.data_ptr() for k, v in s._receiver.slabs.items()} == {k: v.data_ptr() for k, v in slabs.items()}


def test_a_second_epoch_iteration_takes_the_workers_over_and_the_first_one_says_so(feature_world):
    """Two epoch_batches() of one stream part-way: the newer one gets fresh workers and the same
    batches an undisturbed run gives; resuming the older one is a clear error, not wrong data."""
    s = _stream(feature_world, num_workers=2)
    expected = [b for b, _ in s.epoch_batches(1)]
    older = s.epoch_batches(0)
    next(older)
    assert [b for b, _ in s.epoch_batches(1)] == expected
    with pytest.raises(RuntimeError, match="taken over"):
        next(older)
    s.close()
    assert [b for b, _ in s.epoch_batches(1)] == expected  # closed, then new workers
