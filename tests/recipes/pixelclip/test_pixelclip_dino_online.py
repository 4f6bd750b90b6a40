"""Full-mode PixelCLIP with `masks: dino-online` (the release's DINO variant): a frozen DINO ViT-S/16
clusters each weak crop's patch tokens (Euclidean k-means) into the step's masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pixelclip_runs import assert_resume_reproduces, losses as run_losses

from zss.commands.train import run_training
from zss.errors import ZssError
from zss.models.random_init import save_random_timm
from zss.paths import MANIFESTS
from zss.recipes.pixelclip.dino_masks import DINO_DEFAULT, DinoMaskMaker, masks_from_features

DEMO = MANIFESTS / "train" / "pixelclip-cached-demo.yaml"
SIDE = 64  # tiny DINO input: a 4x4 patch grid


@pytest.fixture(scope="module")
def tiny_dino(tmp_path_factory) -> Path:
    """Random weights in the `vit_small_patch16_224.dino` architecture, saved like a real checkpoint."""
    return save_random_timm(DINO_DEFAULT, tmp_path_factory.mktemp("dino") / "dino_vits16.safetensors",
                            img_size=SIDE, seed=0)


def _images(seed: int, n: int = 2) -> torch.Tensor:
    """Blocky images (4 colour quadrants + noise), uint8 [n, 3, SIDE, SIDE]."""
    g = np.random.default_rng(seed)
    out = np.zeros((n, 3, SIDE, SIDE), np.float64)
    h = SIDE // 2
    for i in range(n):
        for r in (0, h):
            for c in (0, h):
                out[i, :, r:r + h, c:c + h] = g.uniform(0, 255, 3)[:, None, None]
    out += g.normal(0, 8, out.shape)
    return torch.from_numpy(out.clip(0, 255).round().astype(np.uint8))


def test_dino_masks_partition_the_crop_and_repeat_for_a_seed(tiny_dino):
    maker = DinoMaskMaker(DINO_DEFAULT, str(tiny_dino), SIDE, k=4, iters=50, mask_size=32)
    images = _images(0)
    masks = maker.masks(images, [7, 8])
    assert len(masks) == 2
    for m in masks:
        assert m.dtype == torch.bool and m.shape[1:] == (32, 32) and 1 <= len(m) <= 4
        assert torch.equal(m.sum(0), torch.ones(32, 32, dtype=m.sum(0).dtype))  # a partition
        assert bool(m.flatten(1).any(1).all())  # no empty mask
        # one label per 16 px patch: every mask is constant on the 8x8 blocks of the 32² map
        blocks = m.reshape(len(m), 4, 8, 4, 8).float()
        assert torch.equal(blocks.amax(dim=(2, 4)), blocks.amin(dim=(2, 4)))
    again = DinoMaskMaker(DINO_DEFAULT, str(tiny_dino), SIDE, k=4, iters=50, mask_size=32).masks(images, [7, 8])
    assert all(torch.equal(a, b) for a, b in zip(masks, again))
    assert maker.features(images).shape == (2, 4, 4, 384)  # ViT-S/16: 384-d tokens, one per 16 px


def test_two_separated_feature_clusters_give_the_true_masks():
    """Left 3 columns near one vector, right 3 near another: k=2 recovers the halves exactly, the
    mask holding the top-left patch first; upsampled by nearest to 12x12 (2 px per patch)."""
    g = np.random.default_rng(0)
    a, b = g.normal(size=16), g.normal(size=16) + 10.0
    patch = np.empty((4, 6, 16))
    patch[:, :3], patch[:, 3:] = a, b
    patch += g.normal(0, 0.05, patch.shape)
    for seed in range(5):
        masks = masks_from_features(patch, k=2, seed=seed, iters=20, size=12)
        left = np.zeros((12, 12), bool)
        left[:, :6] = True
        assert masks.shape == (2, 12, 12)
        assert np.array_equal(masks[0], left) and np.array_equal(masks[1], ~left)


def test_euclidean_not_cosine():
    """Two groups along the same direction, different lengths: one cluster under cosine, two here."""
    patch = np.ones((2, 2, 3))
    patch[:, 1] *= 10.0
    masks = masks_from_features(patch, k=2, seed=0, iters=10, size=2)
    assert np.array_equal(masks, np.array([[[1, 0], [1, 0]], [[0, 1], [0, 1]]], bool))


def _overrides(tiny_clip: Path, extra: list[str]) -> list[str]:
    return ["tensorboard=false", "log_every=1", "recipe.mode=full", f"recipe.clip=zss-tiny-vit:{tiny_clip}",
            "recipe.img_size=64", "recipe.masks=dino-online", f"recipe.dino_img_size={SIDE}",
            "recipe.dino_k=4", "recipe.dino_iters=30", "recipe.cutout_unsupervised=true",
            "recipe.cutout_p=1.0", "recipe.min_mask_pixels=2", *extra]


def test_full_mode_trains_on_online_dino_masks(sa1b_shards, tiny_clip, tiny_dino, tmp_path):
    run = tmp_path / "run"
    run_training("pixelclip", sa1b_shards, run, config=DEMO, steps=12,
                 overrides=_overrides(tiny_clip, [f"recipe.dino_checkpoint={tiny_dino}", "batch_size=4",
                                                  "recipe.k=8", "recipe.mask_size=32"]))
    losses = run_losses(run)
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses


def test_online_masks_replace_the_shard_masks_and_lose_the_cutout(sa1b_shards, tiny_clip, tiny_dino):
    """The batch's masks are DINO's (k per crop, at mask_size), the cutout box cleared from them."""
    import random

    from zss.recipes.pixelclip.recipe import PixelCLIPConfig, PixelCLIPRecipe
    from zss.trainer.config import TrainConfig
    from zss.formats.shards import read_tar_samples
    from zss.utils.config import load_config

    cfg = load_config(TrainConfig, DEMO)
    rc = PixelCLIPConfig(**{**cfg.recipe, "mode": "full", "clip": f"zss-tiny-vit:{tiny_clip}", "img_size": 64,
                            "masks": "dino-online", "dino_checkpoint": str(tiny_dino), "dino_img_size": SIDE,
                            "dino_k": 4, "cutout_unsupervised": True, "cutout_p": 1.0, "mask_size": 64,
                            "weak_color_ssd": True, "crop_size": 48})
    recipe = PixelCLIPRecipe(rc, sa1b_shards, cfg)
    assert "masks.json" not in recipe.members
    raws = list(read_tar_samples(sorted(sa1b_shards.glob("*.tar"))[0], set(recipe.members)))[:3]
    samples = [recipe.decode_sample(r, random.Random(i)) for i, r in enumerate(raws)]
    for s in samples:  # DINO sees the weak view itself: the same crop, flip and colour distortion
        assert s["dino"].dtype == torch.uint8 and s["dino"].shape == (3, SIDE, SIDE)
        assert float((s["dino"].float() / 255 - s["weak"]).abs().max()) <= 0.5 / 255 + 1e-6
    batch = recipe.online_masks(recipe.collate(samples))
    masks, owner = batch["masks"], batch["owner"]
    assert masks.shape[1:] == (64, 64) and set(owner.tolist()) == {0, 1, 2}
    for i, s in enumerate(samples):
        mine = masks[owner == i]
        assert 1 <= len(mine) <= 4
        top, left, h, w = s["cutout"]
        cover = mine.any(0)
        assert not cover[top:top + h, left:left + w].any()  # cut-out pixels: neither pooled nor supervised
        outside = torch.ones(64, 64, dtype=torch.bool)
        outside[top:top + h, left:left + w] = False
        assert bool(cover[outside].all())  # everything else is still covered (DINO masks partition the crop)


def test_missing_dino_checkpoint_is_one_line(sa1b_shards, tiny_clip, tmp_path):
    with pytest.raises(ZssError) as err:
        run_training("pixelclip", sa1b_shards, tmp_path / "run", config=DEMO, steps=2,
                     overrides=_overrides(tiny_clip, []))
    assert "dino_checkpoint" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ZssError, match="not found"):
        run_training("pixelclip", sa1b_shards, tmp_path / "run2", config=DEMO, steps=2,
                     overrides=_overrides(tiny_clip, [f"recipe.dino_checkpoint={tmp_path / 'nope.safetensors'}"]))
    with pytest.raises(ZssError, match="mode: full"):
        run_training("pixelclip", sa1b_shards, tmp_path / "run3", config=DEMO, steps=2,
                     overrides=["recipe.masks=dino-online", f"recipe.dino_checkpoint={tmp_path}"])


def test_official_presets_name_their_mask_source():
    """SA-1B presets read the shards' masks; the DINO preset is the ViT-B/16 one with online DINO
    masks (the release's settings) and the cutout left in them, nothing else changed."""
    import yaml

    from zss.recipes.pixelclip.recipe import PixelCLIPConfig

    train = MANIFESTS / "train"
    for name in ("vitb16", "convnext-b"):
        raw = yaml.safe_load((train / f"pixelclip-official-{name}.yaml").read_text())
        assert raw["recipe"]["masks"] == "shard"
    sa1b = yaml.safe_load((train / "pixelclip-official-vitb16.yaml").read_text())
    dino = yaml.safe_load((train / "pixelclip-official-vitb16-dino.yaml").read_text())
    assert set(dino["recipe"]) == set(PixelCLIPConfig.__dataclass_fields__)
    assert {k: v for k, v in dino.items() if k != "recipe"} == {k: v for k, v in sa1b.items() if k != "recipe"}
    changed = {k for k in dino["recipe"] if dino["recipe"][k] != sa1b["recipe"][k]}
    assert changed == {"masks", "dino_checkpoint", "cutout_unsupervised"}
    r = dino["recipe"]
    assert (r["masks"], r["dino_model"], r["dino_img_size"], r["dino_k"], r["dino_iters"]) == \
        ("dino-online", "vit_small_patch16_224.dino", 640, 16, 100)
    assert r["crop_size"] == 640 and r["img_size"] == 320 and r["cutout_unsupervised"] is False


def test_resume_repeats_the_online_masks(sa1b_shards, tiny_clip, tiny_dino, tmp_path):
    """k-means seeds come from the per-sample data RNG: a resumed run makes the same masks, so it
    ends with the same bytes as a straight one."""
    args = dict(config=DEMO, steps=4, overrides=_overrides(tiny_clip, [
        f"recipe.dino_checkpoint={tiny_dino}", "batch_size=4", "recipe.k=8", "recipe.mask_size=32",
        "ckpt_every=2", "keep_checkpoints=0"]))
    assert_resume_reproduces(sa1b_shards, tmp_path, ("model.safetensors", "prompts.safetensors"), **args)
