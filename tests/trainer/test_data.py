"""The shard stream: deterministic, split across processes/workers, resumable mid-epoch."""

from __future__ import annotations

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
    from zss.trainer.data import load_npy, read_tar_samples

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
