"""SimZSS on shards with augmented views (`zss ingest --views V`): each epoch a sample uses one of its
cached views, drawn from its (seed, epoch, key) RNG, so the choice is the same on every run and on
resume; with one view the stream is exactly the one of before; and training on V = 2 still learns."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from conftest import DIM, TEMPLATES, TINY, FeatureWorld, make_feature_world
from zss.commands.train import run_training
from zss.formats import shards as sh
from zss.recipes.simzss.recipe import SimZSSConfig, SimZSSRecipe
from zss.recipes.simzss.segmenter import load_text_tower
from zss.recipes.simzss.text_tower import TextConfig, TextTower
from zss.trainer.data import Position, ShardStream, sample_rng, shards_from_manifest


def make_views_world(root, views: int = 2, n_train: int = 64, n_val: int = 16, n_shards: int = 2,
                     seed: int = 0, dtype: str = "float16") -> FeatureWorld:
    """The conftest feature world with `views` feature sets per image."""
    return make_feature_world(root, n_train=n_train, n_val=n_val, n_shards=n_shards, seed=seed,
                              views=views, dtype=dtype)


@pytest.fixture(scope="module")
def views_world(tmp_path_factory) -> FeatureWorld:
    return make_views_world(tmp_path_factory.mktemp("views_world"))


def _recipe(shards) -> SimZSSRecipe:
    return SimZSSRecipe(SimZSSConfig(text=TextConfig(width=64, heads=2, layers=2, context_length=16),
                                     global_token="cls"), shards, None)


def _stream(recipe: SimZSSRecipe, **kw) -> ShardStream:
    refs = shards_from_manifest(recipe.shards, recipe.manifest)
    collate = lambda s: [(x["key"], x["view"], x["patch"].float().numpy(), x["global"].float().numpy()) for x in s]  # noqa: E731
    return ShardStream(refs, decode=recipe.decode_sample, collate=collate, batch_size=8, seed=3,
                       shuffle_buffer=8, members=recipe.members, **kw)


def _stored(shards) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """key -> [(patch, global) of view 0, 1, ...] read back with the shard reader."""
    return {s["key"]: [(s["patch"], s["global"])] + [(v["patch"], v["global"]) for v in s["views"]]
            for s in sh.iter_all_samples(shards)}


@pytest.mark.parametrize("dtype", ["float16", "int8"])
def test_stream_picks_views_deterministically_across_epochs_and_resume(views_world, tmp_path, dtype):
    shards = views_world.shards if dtype == "float16" else make_views_world(tmp_path, n_train=32, dtype=dtype).shards
    recipe = _recipe(shards)
    assert recipe.n_views == 2 and "patch.1.npy" in recipe.members and "global.1.npy" in recipe.members
    stream = _stream(recipe)
    n = stream.batches_per_epoch(0)
    it = stream.batches()
    run = [next(it) for _ in range(2 * n)]
    stored = _stored(shards)
    picks: dict[int, dict[str, int]] = {0: {}, 1: {}}
    for b, (batch, _) in enumerate(run):
        epoch = b // n
        for key, view, patch, glob in batch:
            rng = sample_rng(3, epoch, key)
            rng.randrange(len(TEMPLATES))  # the caption draw comes first
            assert view == rng.randrange(2), (epoch, key)
            want_patch, want_global = stored[key][view]
            np.testing.assert_allclose(patch, want_patch.astype(np.float32), atol=1e-6)
            np.testing.assert_array_equal(glob, want_global.astype(np.float32))
            picks[epoch][key] = view
    for epoch in (0, 1):
        assert len(picks[epoch]) == len(stored) and set(picks[epoch].values()) == {0, 1}
    assert any(picks[0][k] != picks[1][k] for k in stored)  # a sample changes view between epochs
    # resume mid-epoch (a fresh stream, as after a restart): the same batches
    again = _stream(_recipe(shards)).batches(run[n + 2][1])
    for batch, _ in run[n + 3:]:
        got = next(again)[0]
        assert [(k, v) for k, v, _, _ in got] == [(k, v) for k, v, _, _ in batch]
        assert all(np.array_equal(x[2], y[2]) for x, y in zip(got, batch))


def test_one_view_streams_as_before(feature_world):
    recipe = _recipe(feature_world.shards)
    assert recipe.n_views == 1 and recipe.members == ("json", "patch.npy", "global.npy")
    raw = next(iter(_stream(recipe).batches(Position())))  # the stream runs
    assert all(v == 0 for _, v, _, _ in raw[0])
    tar = sh.shard_tars(feature_world.shards)[0]
    from zss.formats.shards import read_tar_samples

    sample = next(read_tar_samples(tar, set(recipe.members)))
    a, b = random.Random("x"), random.Random("x")
    out = recipe.decode_sample(sample, a)
    b.randrange(len(TEMPLATES))  # one draw (the caption) and no view draw: the RNG of before
    assert out["view"] == 0 and a.random() == b.random()


def test_training_with_two_views_still_learns(views_world, tmp_path):
    run = tmp_path / "run"
    overrides = list(TINY) + ["batch_size=16", "lr=2e-3", "warmup=0.1", "ckpt_every=40"]
    run_training("simzss", views_world.shards, run, steps=40, overrides=overrides)
    torch.manual_seed(0)  # the loop seeds with cfg.seed before building: the same initial tower
    untrained = TextTower(TextConfig(width=64, heads=2, layers=2, context_length=16), DIM).eval()
    trained = load_text_tower(run / "model")
    before, after = views_world.zero_shot_miou(untrained), views_world.zero_shot_miou(trained)
    print(f"zero-shot mIoU with views V=2: untrained {before:.3f}, trained {after:.3f}")
    assert after >= 2 * before and after > 0.3, (before, after)
