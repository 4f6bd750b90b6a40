"""Session fixtures shared by every test area: one small synthetic world, built once."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest
import torch

from zss.formats.shards import shard_entry, write_manifest, write_shard
from zss.models.tokenizer import tokenize_with_spans

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
    from zss.ingest.runner import run_ingest

    out = tmp_path_factory.mktemp("shards")
    run_ingest(out=out, **ingest_kwargs)
    return out


@pytest.fixture(scope="session")
def ray_2cpu():
    """2 CPUs, like the machine: also what proves model actors never starve the decode tasks.
    Started once for the pipeline tests (Ray start-up costs seconds), stopped at session end."""
    import logging

    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR)
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    """A random `zss-tiny-vit` OpenCLIP checkpoint (safetensors), loaded like a real one."""
    from zss.models.clip_dense import save_random_openclip

    return save_random_openclip("zss-tiny-vit", tmp_path_factory.mktemp("clip") / "tiny_vit.safetensors", seed=0)



# --- the SimZSS feature world (cached features + captions written straight to shards) ---
# A tiny *feature* world for trainer tests: shards written with the real shard writer whose patch
# features are class prototypes plus noise (what a frozen backbone would cache), captions naming the
# classes present with concept token spans from the real tokenizer, and a labelled val set to score
# zero-shot patch classification. Building it takes milliseconds, so learning tests stay fast.

CLASSES = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black"]
DIM, GRID = 32, 4
TEMPLATES = ["a {a} thing next to a {b} thing", "there is {a} and {b} here"]


@dataclass
class FeatureWorld:
    shards: Path
    val_patches: np.ndarray   # [M, GRID, GRID, DIM] float32
    val_labels: np.ndarray    # [M, GRID, GRID] int64

    def zero_shot_miou(self, tower: torch.nn.Module) -> float:
        """Class prompts -> end-of-text embeddings -> per-patch argmax -> mIoU over the val set."""
        text = tower.encode([f"a photo of a {c}." for c in CLASSES])             # [K, D]
        patches = torch.nn.functional.normalize(torch.from_numpy(self.val_patches), dim=-1)
        pred = (patches @ text.t()).argmax(-1).numpy()
        ious = []
        for k in range(len(CLASSES)):
            inter = np.sum((pred == k) & (self.val_labels == k))
            union = np.sum((pred == k) | (self.val_labels == k))
            if np.any(self.val_labels == k):
                ious.append(inter / union)
        return float(np.mean(ious))


def _image(rng: np.random.Generator, protos: np.ndarray, offset: np.ndarray):
    dim = protos.shape[1]
    a, b = rng.choice(len(CLASSES), size=2, replace=False)
    cut = int(rng.integers(1, GRID))
    labels = np.full((GRID, GRID), a, dtype=np.int64)
    labels[:, cut:] = b
    patch = offset + protos[labels] + 0.3 * rng.standard_normal((GRID, GRID, dim))
    return int(a), int(b), labels, patch.astype(np.float32)


def _caption(template: str, a: int, b: int) -> tuple[str, list[dict]]:
    text = template.format(a=CLASSES[a], b=CLASSES[b])
    spans = []
    for cid in (a, b):
        s = text.index(CLASSES[cid])
        spans.append((cid, s, s + len(CLASSES[cid])))
    _, tok_spans = tokenize_with_spans(text, [(s, e) for _, s, e in spans])
    concepts = [{"id": cid, "name": CLASSES[cid], "text": CLASSES[cid], "char_span": [s, e],
                 "token_span": list(ts)} for (cid, s, e), ts in zip(spans, tok_spans)]
    return text, concepts


def make_feature_world(root: Path, n_train: int = 64, n_val: int = 16, n_shards: int = 2,
                       seed: int = 0, dim: int = DIM, backbone: dict | None = None, views: int = 1,
                       dtype: str = "float16") -> FeatureWorld:
    """Shards (+ val set) under `root`; `backbone` is the manifest's features record.

    `views` > 1 adds views 1..V-1 per image (`zss ingest --views`), made as a crop changes the cached
    grid: the class boundary moved by one patch, fresh noise, from an RNG of their own (so view 0 and
    the val set are the same as with one view). `dtype` is the shards' feature codec."""
    rng = np.random.default_rng(seed)
    view_rng = np.random.default_rng(seed + 1000)
    protos = rng.standard_normal((len(CLASSES), dim)) * 0.5
    offset = rng.standard_normal(dim) * 2.0  # features share a large common direction, as ViT ones do
    shards = root / "shards"
    per = (n_train + n_shards - 1) // n_shards
    entries = []
    for sid in range(n_shards):
        samples = []
        for i in range(sid * per, min(n_train, (sid + 1) * per)):
            a, b, labels, patch = _image(rng, protos, offset)
            caps = [_caption(t, *(a, b) if j == 0 else (b, a)) for j, t in enumerate(TEMPLATES)]
            sample = {"source_id": str(i), "status": "ok", "error": None,
                      "captions": [c for c, _ in caps], "concepts": [c for _, c in caps],
                      "orig_size": (56, 56), "size": (56, 56), "patch": patch.astype(np.float16),
                      "global": rng.standard_normal(dim).astype(np.float16), "masks": None, "jpg": None}
            if views > 1:
                sample["views"] = [_shifted_view(view_rng, labels, a, b, protos, offset)
                                   for _ in range(views - 1)]
            samples.append(sample)
        write_shard(shards, sid, samples, feature_dtype=dtype)
        entries.append(shard_entry(shards, sid))
    return finish_feature_world(shards, entries, rng, protos, offset, n_val, dim, img_size=56, dtype=dtype,
                                backbone=backbone, views=views)


def finish_feature_world(shards, entries, rng, protos, offset, n_val: int, dim: int, img_size: int, dtype: str,
                         backbone: dict | None = None, masks_mode: str | None = None, views: int = 1) -> "FeatureWorld":
    """A feature world's concept bank (CLASSES), manifest (a random ViT-S/14 record unless `backbone`;
    `models.masks` when `masks_mode`) and validation images, once its shards are written."""
    (shards / "concepts.json").write_text(json.dumps(
        {"schema": 1, "concepts": [{"id": i, "name": c, "synonyms": [], "sources": ["test"]}
                                   for i, c in enumerate(CLASSES)]}))
    models = {"features": backbone or {"name": "vit_small_patch14_dinov2", "checkpoint": None, "sha256": None,
                                       "img_size": img_size, "patch_size": 14, "embed_dim": dim, "global": "cls"},
              **({"masks": {"mode": masks_mode}} if masks_mode else {}), "tokenizer": "clip-bpe"}
    write_manifest(shards, {
        "schema_version": 1, "source": {"kind": "test-features"}, "models": models,
        "feature": {"grid": [GRID, GRID], "dim": dim, "dtype": dtype},
        **({"views": {"n": views}} if views > 1 else {}),
        "concept_bank": {"file": "concepts.json", "sha256": None}, "shards": entries, "config": {}})
    val = [_image(rng, protos, offset) for _ in range(n_val)]
    return FeatureWorld(shards=shards, val_patches=np.stack([v[3] for v in val]),
                        val_labels=np.stack([v[2] for v in val]))


def _shifted_view(rng, labels, a: int, b: int, protos, offset) -> dict:
    """One extra view of an image whose classes a | b split at a column: the split moved by one
    patch, the features redrawn with fresh noise."""
    cut = int(np.argmax(labels[0] == b))
    c = int(np.clip(cut + rng.choice([-1, 1]), 1, GRID - 1))
    lv = np.where(np.arange(GRID)[None, :] < c, a, b).repeat(GRID, 0)
    pv = offset + protos[lv] + 0.3 * rng.standard_normal((GRID, GRID, protos.shape[1]))
    return {"box": [0, 0, 50, 50], "patch": pv.astype(np.float16),
            "global": rng.standard_normal(protos.shape[1]).astype(np.float16)}


@pytest.fixture(scope="session")
def feature_world(tmp_path_factory) -> FeatureWorld:
    return make_feature_world(tmp_path_factory.mktemp("featworld"))


def read_metrics(run) -> list[dict]:
    """A run's metrics.csv as one dict of strings per logged step."""
    import csv

    with open(Path(run) / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def cli_train(recipe: str, shards, run, steps: int, overrides: list[str]) -> list[dict]:
    """`zss train RECIPE SHARDS RUN --steps N --set ...` through the CLI's main (exit 0 asserted);
    returns the run's metrics rows, one per step."""
    from zss.cli import main

    args = ["train", recipe, str(shards), str(run), "--steps", str(steps)]
    for item in overrides:
        args += ["--set", item]
    assert main(args) == 0
    rows = read_metrics(run)
    assert [int(r["step"]) for r in rows] == list(range(1, steps + 1))
    return rows


def assert_losses_fell(rows: list[dict], keys, margin: float = 0.2) -> None:
    """Each loss's mean over the last 10 steps is below its mean over the first 5 by `margin`."""
    for key in keys:
        first = sum(float(r[key]) for r in rows[:5]) / 5
        last = sum(float(r[key]) for r in rows[-10:]) / 10
        assert last < first - margin, (key, first, last)


TINY = ["recipe.text.width=64", "recipe.text.heads=2", "recipe.text.layers=2",
        "recipe.text.context_length=16", "recipe.global_token=mean", "log_every=1", "tensorboard=false"]


@pytest.fixture
def tiny_overrides() -> list[str]:
    """`--set` overrides for a tiny text tower on the feature world."""
    return list(TINY)


@pytest.fixture
def crash_after_step(monkeypatch):
    """`with crash_after_step(n): run_training("simzss", ...)`: SimZSS's after-step hook raises
    KeyboardInterrupt right after step n, as a kill would stop the run there; the block expects that
    interrupt, and the hook is itself again after it."""
    from zss.recipes.simzss.recipe import SimZSSRecipe

    @contextlib.contextmanager
    def crash(step: int) -> Iterator[None]:
        original = SimZSSRecipe.after_step

        def after_step(self, model, at):
            original(self, model, at)
            if at == step:
                raise KeyboardInterrupt(f"killed after step {step}")

        monkeypatch.setattr(SimZSSRecipe, "after_step", after_step)
        try:
            with pytest.raises(KeyboardInterrupt):
                yield
        finally:
            monkeypatch.setattr(SimZSSRecipe, "after_step", original)

    return crash


def _accepts_connections(port: int) -> None:
    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()


@pytest.fixture
def local_server(tmp_path):
    """`local_server(name, argv, ...)` starts a server process on a free 127.0.0.1 port and returns
    the port once it is up. `argv(port)` is its command line; `ready(port)` raises OSError until it
    is up (default: the port accepts a connection), for at most `timeout` seconds; `env` is its
    environment. Its output goes to tmp_path/NAME.log; every server is stopped when the test ends."""
    procs: list[subprocess.Popen] = []

    def start(name: str, argv: Callable[[int], list[str]], ready: Callable[[int], None] = _accepts_connections,
              env: dict[str, str] | None = None, timeout: float = 30) -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        log = tmp_path / f"{name}.log"
        with open(log, "wb") as out:
            procs.append(subprocess.Popen(argv(port), env=env, stdout=out, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + timeout
        while True:
            assert procs[-1].poll() is None, f"{name} exited early:\n{log.read_text()[-3000:]}"
            try:
                ready(port)
                return port
            except OSError:
                assert time.monotonic() < deadline, f"{name} did not come up:\n{log.read_text()[-3000:]}"
                time.sleep(0.2)

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(autouse=True)
def _zss_logs_reach_caplog(monkeypatch):
    """The CLI sends `zss.*` records to its own stderr handler and stops them at the `zss` logger
    (so a user's root handlers do not print them twice). In tests they also go on to the root logger,
    so `caplog` sees them whichever test first called `main()`; stderr output is unchanged."""
    import logging

    import zss.utils.logs as logs

    original = logs.setup_logging

    def setup(*args, **kwargs):
        original(*args, **kwargs)
        logging.getLogger("zss").propagate = True

    monkeypatch.setattr(logs, "setup_logging", setup)
