"""Session fixtures shared by every test area: one small synthetic world, built once."""

from __future__ import annotations

import os

import pytest

# Tests are small; keep torch from oversubscribing the 2 CI cores.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """A small synthetic world (24 train, 8 val images at 112 px), shared read-only by all tests."""
    from zss.synth.world import make_world

    root = tmp_path_factory.mktemp("world")
    make_world(root, n_train=24, n_val=8, size=112, seed=0)
    return root


@pytest.fixture(scope="session")
def ingest_kwargs(world, tmp_path_factory) -> dict:
    """How `ingested_shards` is made: `run_ingest` keyword arguments without `out` (a random
    ViT-S/14 saved to and loaded from a local file, 112 px, dino-kmeans masks, the world's class
    list as concept bank, 3 shards of 8, model batches of 4, 2 workers). Resume tests re-run it."""
    from zss.models.random_init import save_random_timm

    ckpt = save_random_timm("vit_small_patch14_dinov2",
                            tmp_path_factory.mktemp("ingest_ckpt") / "vits14_112.safetensors",
                            img_size=112, seed=0)
    return dict(source=str(world), features=f"vit_small_patch14_dinov2:{ckpt}", img_size=112,
                masks="dino-kmeans", concepts=str(world / "classes.txt"), shard_size=8, workers=2,
                overrides=["batch_size=4"])


@pytest.fixture(scope="session")
def ingested_shards(ingest_kwargs, tmp_path_factory):
    """The world's 24 training images ingested once (H1): a complete shard folder (Path) with
    manifest.json, concepts.json and 00000..00002 .tar/.parquet/_stats.json. Read-only."""
    from zss.pipeline.runner import run_ingest

    out = tmp_path_factory.mktemp("shards")
    run_ingest(out=out, **ingest_kwargs)
    return out
