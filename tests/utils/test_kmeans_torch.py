"""Batched torch k-means vs zss's per-image numpy k-means: the same partitions on fixed inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zss.utils.kmeans import first_appearance as np_first_appearance
from zss.utils.kmeans import image_like_features
from zss.utils.kmeans import kmeans as np_kmeans
from zss.utils.kmeans import kmeans_label_grid as np_label_grid
from zss.utils.kmeans import upsample_labels as np_upsample

from zss.utils.kmeans_torch import first_appearance, kmeans, kmeans_label_grids, upsample_labels


def image_like(b: int, h: int = 12, w: int = 12, d: int = 48, seed: int = 0) -> np.ndarray:
    """Patch features shaped like a backbone's (the shared generator, smaller): a few regions, one
    smooth wave, a shared mean, noise (float32 [b, h, w, d])."""
    return image_like_features(b, h, w, d, seed, rank=16, mean_scale=2, regions=(3, 8), waves=1, phase=False,
                               noise=0.4)


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    return np.array_equal(np_first_appearance(a), np_first_appearance(b))


def check(x: np.ndarray, k: int, seeds: list[int], iters: int, spherical: bool) -> None:
    got = kmeans(torch.from_numpy(x), k, seeds, iters, spherical).numpy()
    assert got.shape == x.shape[:2] and got.dtype == np.int64
    for i, (row, seed) in enumerate(zip(x, seeds)):
        ref = np_kmeans(row, k, seed, iters, spherical)
        assert same_partition(ref, got[i]), f"image {i} (seed {seed}) differs"


@pytest.mark.parametrize("spherical", [True, False])
def test_image_like_features(spherical):
    x = image_like(10, 16, 16, 64).reshape(10, 256, 64)
    check(x, 8, list(range(10)), 50, spherical)


@pytest.mark.parametrize("spherical", [True, False])
def test_the_benchmark_shape(spherical):
    x = image_like(3, 40, 40, 384, seed=3).reshape(3, 1600, 384)
    check(x, 16, [0, 1, 2], 50, spherical)


@pytest.mark.parametrize("spherical", [True, False])
def test_gaussian_noise_and_blobs(spherical):
    rng = np.random.default_rng(1)
    noise = rng.normal(size=(4, 300, 32)).astype(np.float32)
    check(noise, 12, [5, 6, 7, 8], 50, spherical)
    centres = rng.normal(size=(4, 6, 32)) * 3
    blobs = (centres[np.arange(4)[:, None], rng.integers(6, size=(4, 300))]
             + rng.normal(size=(4, 300, 32))).astype(np.float32)
    check(blobs, 6, [0, 0, 1, 1], 50, spherical)


@pytest.mark.parametrize("iters", [1, 2, 3, 7])
def test_every_stopping_point(iters):
    """Unconverged runs too: after 1 step (the init's assignment: the same init draws) and after a few."""
    x = image_like(6, 12, 12, 48, seed=4).reshape(6, 144, 48)
    for spherical in (True, False):
        check(x, 10, [3, 1, 4, 1, 5, 9], iters, spherical)


def test_float16_and_float64_inputs():
    x = image_like(4, 10, 10, 40, seed=5).reshape(4, 100, 40)
    check(x.astype(np.float16).astype(np.float32), 6, [0, 1, 2, 3], 50, True)  # shard patches are float16
    got = kmeans(torch.from_numpy(x.astype(np.float16)), 6, [0, 1, 2, 3], 50, True).numpy()
    for i in range(4):
        assert same_partition(np_kmeans(x[i].astype(np.float16), 6, i, 50, True), got[i])
    x64 = x.astype(np.float64) * (1 + 1e-9)  # not float32-representable
    check(x64, 6, [0, 1, 2, 3], 50, False)


def test_degenerate_inputs():
    rng = np.random.default_rng(2)
    few = np.repeat(rng.normal(size=(1, 3, 8)), 20, axis=1)[:, rng.permutation(60)]  # 3 distinct rows
    check(few.astype(np.float32), 16, [0], 50, False)
    check(few.astype(np.float32), 16, [0], 50, True)
    const = np.ones((2, 30, 8), np.float32)
    check(const, 5, [0, 1], 50, False)
    zeros = np.zeros((1, 30, 8), np.float32)
    zeros[0, :10] = rng.normal(size=(10, 8))  # spherical: zero rows stay zero
    check(zeros, 4, [0], 50, True)
    small = rng.normal(size=(2, 5, 8)).astype(np.float32)  # k > n
    check(small, 16, [0, 1], 50, True)
    one = rng.normal(size=(2, 40, 8)).astype(np.float32)
    check(one, 1, [0, 1], 50, True)


def test_label_grids_and_upsampling_match_numpy():
    patch = image_like(5, 8, 10, 24, seed=6)
    grids = kmeans_label_grids(torch.from_numpy(patch), 6, [0, 1, 2, 3, 4], 50, False)
    for i in range(5):
        ref = np_label_grid(patch[i], 6, i, 50, False)
        assert np.array_equal(grids[i].numpy(), ref)  # ids by first appearance: equal, not just same partition
        assert np.array_equal(upsample_labels(grids[i:i + 1], (37, 45))[0].numpy(), np_upsample(ref, (37, 45)))
    labels = torch.tensor([[3, 3, 1, 0, 1], [2, 0, 2, 2, 0]])
    for row, got in zip(labels.numpy(), first_appearance(labels).numpy()):
        assert np.array_equal(np_first_appearance(row), got)


def test_settings_are_restored_and_seeds_checked():
    x = torch.from_numpy(image_like(2, 6, 6, 16).reshape(2, 36, 16))
    torch.set_float32_matmul_precision("medium")
    threads = torch.get_num_threads()
    try:
        kmeans(x, 4, 0)
        assert torch.get_float32_matmul_precision() == "medium"
        assert torch.get_num_threads() == threads
    finally:
        torch.set_float32_matmul_precision("highest")
    with pytest.raises(ValueError, match="seeds"):
        kmeans(x, 4, [0, 1, 2])
    assert kmeans(torch.zeros(0, 5, 3), 4).shape == (0, 5)


def test_threads_split_the_images_and_give_the_same_labels():
    """threads=2: two Python threads cluster halves of the batch (odd sizes too); same labels."""
    x = torch.from_numpy(image_like(5, 12, 12, 48, seed=9).reshape(5, 144, 48))
    for spherical in (True, False):
        one = kmeans(x, 7, [4, 3, 2, 1, 0], 50, spherical)
        assert torch.equal(kmeans(x, 7, [4, 3, 2, 1, 0], 50, spherical, threads=2), one)
        assert torch.equal(kmeans(x, 7, [4, 3, 2, 1, 0], 50, spherical, threads=3, chunk=1), one)
    check(x.numpy(), 7, [4, 3, 2, 1, 0], 50, True)


def test_the_batched_init_draws_what_the_per_image_init_draws():
    """The GPU init (whole batch in torch, `choice` re-implemented) vs the CPU init (numpy's own
    `choice`), run on a CPU: the same centres, duplicates and early stops included."""
    from zss.utils.kmeans_init import kmeanspp_batched, kmeanspp_cpu

    rng = np.random.default_rng(3)
    few = np.repeat(rng.normal(size=(1, 3, 8)), 20, axis=1)[:, rng.permutation(60)]
    for x in (image_like(4, 10, 10, 24, seed=2).reshape(4, 100, 24), rng.normal(size=(2, 60, 8)), few):
        x = torch.from_numpy(x.astype(np.float64))
        xx = (x * x).sum(-1)
        a = kmeanspp_cpu(x, xx, 9, [np.random.default_rng(s) for s in range(len(x))])
        b = kmeanspp_batched(x, xx, 9, [np.random.default_rng(s) for s in range(len(x))])
        assert torch.equal(a[1], b[1]) and torch.equal(a[0], b[0])
    assert int(a[1].sum()) == 3  # 3 distinct rows: numpy stops drawing after 3 centres


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_numpy():
    x = image_like(8, 20, 20, 64, seed=7).reshape(8, 400, 64)
    for spherical in (True, False):
        got = kmeans(torch.from_numpy(x).cuda(), 10, list(range(8)), 50, spherical)
        assert got.is_cuda
        for i in range(8):
            assert same_partition(np_kmeans(x[i], 10, i, 50, spherical), got[i].cpu().numpy())


def test_public_batched_entry_and_the_ingest_stage_match_the_numpy_path():
    """`zss.utils.kmeans.kmeans_label_grids` (what the ingest and dino-online call) gives per image
    the numpy `kmeans_label_grid`, and the ingest's feature-kmeans stage (one batched call) writes
    the same JSON as the per-image numpy `kmeans_masks`."""
    from zss.ingest.stages.masks import MaskConfig, MaskStage, _json, kmeans_masks
    from zss.utils.kmeans import kmeans_label_grids

    patch = image_like(4, 6, 6, 32, seed=8).astype(np.float16)
    grids = kmeans_label_grids(torch.from_numpy(patch), 5, [0, 1, 2, 3], 50, True)
    for i in range(4):
        assert np.array_equal(grids[i].numpy(), np_label_grid(patch[i], 5, i, 50, True))
    batch = {"index": np.arange(4), "status": np.array(["ok", "ok", "bad", "ok"], dtype=object),
             "error": np.array([""] * 4, dtype=object), "size": np.array([[24, 30]] * 4, dtype=np.int32),
             "patch": patch}
    out = MaskStage(MaskConfig(mode="feature-kmeans", kmeans_k=5, seed=3))(batch)
    for i in range(4):
        want = "" if i == 2 else _json(kmeans_masks(patch[i], (24, 30), 5, 3, 50))
        assert out["masks"][i] == want


def test_dino_online_masks_match_the_per_image_numpy_masks(tmp_path):
    from zss.models.random_init import save_random_timm
    from zss.recipes.pixelclip.dino_masks import DINO_DEFAULT, DinoMaskMaker, masks_from_features

    ckpt = save_random_timm(DINO_DEFAULT, tmp_path / "dino.safetensors", img_size=64, seed=0)
    maker = DinoMaskMaker(DINO_DEFAULT, str(ckpt), 64, k=4, iters=50, mask_size=32)
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (3, 3, 64, 64), dtype=np.uint8))
    got = maker.masks(images, [5, 6, 7])
    feats = maker.features(images).numpy()
    for f, s, m in zip(feats, [5, 6, 7], got):
        assert torch.equal(m, torch.from_numpy(masks_from_features(f, 4, s, 50, 32)))
