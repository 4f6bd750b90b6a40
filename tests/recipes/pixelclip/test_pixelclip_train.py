"""PixelCLIP end to end on synthetic shards: both modes train through the shared loop, the cached
mode discovers the world's categories without labels, exports load for eval, prompts get names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from sklearn.metrics import normalized_mutual_info_score

from zss.paths import MANIFESTS
from zss.models.clip_dense import OpenCLIPSegmenter
from zss.recipes.pixelclip.segmenter import PixelCLIPSegmenter, load_prompts
from zss.recipes import load_segmenter
from pixelclip_runs import assert_resume_reproduces, losses as run_losses

from zss.commands.train import run_training
from zss.trainer.config import TrainConfig
from zss.recipes.pixelclip.analysis import mask_cluster_agreement
from zss.recipes.pixelclip.recipe import PixelCLIPConfig, PixelCLIPRecipe
from zss.recipes.pixelclip.explain import explain_prompts

DEMO = MANIFESTS / "train" / "pixelclip-cached-demo.yaml"
QUIET = ["tensorboard=false", "log_every=5"]


def _falls(losses: list[float]) -> bool:
    return np.mean(losses[-3:]) < 0.6 * losses[0]


@pytest.fixture(scope="module")
def cached_run(sa1b_shards, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("pixelclip_cached")
    run_training("pixelclip", sa1b_shards, run, config=DEMO, steps=60, overrides=QUIET)
    return run


def test_cached_mode_discovers_categories(cached_run, sa1b_shards, world):
    """NMI of mask→prompt assignments vs ground truth: the untrained model vs the trained one."""
    gt = world / "train" / "annotations"
    losses = run_losses(cached_run)
    assert _falls(losses), losses
    # The untrained model: the same build the loop starts from (seeded identically).
    from zss.utils.config import load_config

    cfg = load_config(TrainConfig, DEMO)
    recipe = PixelCLIPRecipe(PixelCLIPConfig(**cfg.recipe), sa1b_shards, cfg)
    torch.manual_seed(cfg.seed)
    net = recipe.build_model()
    before = mask_cluster_agreement(PixelCLIPSegmenter(net.clip, net.adapter, 64),
                                    net.prompts(net.clip).detach(), sa1b_shards, gt, 64)
    seg = load_segmenter(cached_run)
    assert isinstance(seg, PixelCLIPSegmenter) and seg.adapter is not None
    after = mask_cluster_agreement(seg, load_prompts(cached_run / "model")["embeddings"], sa1b_shards, gt, 64)
    print(f"\ncached PixelCLIP mask clusters vs ground truth: before {before}, after {after}")
    # Chance: the trained assignments with their cluster sizes kept but shuffled over masks.
    assert after["nmi"] > before["nmi"] + 0.1
    assert after["purity"] > before["purity"] + 0.1
    assert after["nmi"] > 2.5 * _chance_nmi(after["n_masks"], after["clusters_used"])


def _chance_nmi(n: int, k: int, trials: int = 20) -> float:
    """Expected NMI of `k` random clusters against 10 random categories over `n` masks."""
    rng = np.random.default_rng(0)
    return float(np.mean([normalized_mutual_info_score(rng.integers(0, 10, n), rng.integers(0, k, n))
                          for _ in range(trials)]))


def test_cached_export_is_a_segmenter(cached_run):
    seg = load_segmenter(cached_run / "model")
    dense = seg.encode_dense(torch.rand(2, 3, 64, 64))
    assert dense.shape == (2, 64, 8, 8)
    assert torch.allclose(dense.norm(dim=1), torch.ones(2, 8, 8), atol=1e-4)
    assert seg.encode_text(["grass", "ball"]).shape == (2, 64)
    assert seg.default_size == 64


def test_explain_names_prompts_and_draws_a_map(cached_run, tmp_path):
    out = tmp_path / "map.png"
    text = explain_prompts(cached_run, k=2, out=out)
    lines = [line for line in text.splitlines() if line.startswith("prompt ")]
    assert len(lines) == 16
    names = {"grass", "lawn", "water", "sea", "sand", "wall", "sky", "ball", "traffic cone", "box",
             "flower", "tire"}
    assert any(n in lines[0] for n in names)
    assert out.is_file() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cached_mode_on_kmeans_masks(kmeans_shards, tmp_path):
    run = tmp_path / "run"
    run_training("pixelclip", kmeans_shards, run, config=DEMO, steps=12, overrides=QUIET)
    losses = run_losses(run)
    assert _falls(losses), losses


def test_full_mode_trains_the_image_tower(sa1b_shards, tiny_clip, tmp_path):
    run = tmp_path / "run"
    run_training("pixelclip", sa1b_shards, run, config=DEMO, steps=12,
                 overrides=QUIET + ["recipe.mode=full", f"recipe.clip=zss-tiny-vit:{tiny_clip}",
                                    "recipe.img_size=64"])
    losses = run_losses(run)
    assert _falls(losses), losses
    seg = load_segmenter(run)
    assert isinstance(seg, PixelCLIPSegmenter) and seg.adapter is None
    x = torch.rand(1, 3, 64, 64)
    # Trained attention moved; the export is an ordinary open_clip checkpoint of the same arch.
    plain = OpenCLIPSegmenter.from_spec(f"zss-tiny-vit:{run / 'model' / 'model.safetensors'}")
    assert torch.allclose(plain.encode_dense(x), seg.encode_dense(x), atol=1e-5)
    untrained = OpenCLIPSegmenter.from_spec(f"zss-tiny-vit:{tiny_clip}")
    assert not torch.allclose(untrained.encode_dense(x), seg.encode_dense(x), atol=1e-4)
    trained_sd = seg.clip.model.state_dict()
    base_sd = untrained.clip.model.state_dict()
    assert torch.equal(trained_sd["visual.transformer.resblocks.0.mlp.c_fc.weight"],
                       base_sd["visual.transformer.resblocks.0.mlp.c_fc.weight"])  # not an attention param
    assert torch.equal(trained_sd["token_embedding.weight"], base_sd["token_embedding.weight"])  # text frozen


def test_param_groups_carry_the_lr_multipliers(sa1b_shards, tiny_clip):
    from zss.utils.config import load_config

    cfg = load_config(TrainConfig, DEMO)
    for mode, part, scale in (("cached", "adapter", 1.0), ("full", "encoder", 0.01)):
        rc = PixelCLIPConfig(**{**cfg.recipe, "mode": mode, "clip": f"zss-tiny-vit:{tiny_clip}"})
        recipe = PixelCLIPRecipe(rc, sa1b_shards, cfg)
        net = recipe.build_model()
        groups = {g["name"]: g for g in recipe.param_groups(net, 0.1)}
        assert groups["prompts_no_decay"]["lr_scale"] == 10.0 and "prompts" not in groups
        assert groups["prompts_no_decay"]["params"] == [net.prompts.ctx]
        assert groups[part]["lr_scale"] == scale and groups[part]["weight_decay"] == 0.1
        grouped = {id(p) for g in groups.values() for p in g["params"]}
        assert grouped == {id(p) for p in net.parameters() if p.requires_grad}
        assert not any(id(p) in grouped for p in net.teacher.parameters())


def test_cached_batches_mix_grid_sizes(sa1b_shards):
    from zss.utils.config import load_config

    cfg = load_config(TrainConfig, DEMO)
    recipe = PixelCLIPRecipe(PixelCLIPConfig(**cfg.recipe), sa1b_shards, cfg)
    masks = torch.ones(1, 64, 64, dtype=torch.bool)
    samples = [{"patch": torch.randn(8, 8, 64).half(), "patch_strong": torch.randn(8, 8, 64), "masks": masks},
               {"patch": torch.randn(6, 10, 64).half(), "patch_strong": torch.randn(6, 10, 64), "masks": masks}]
    batch = recipe.collate(samples)
    assert batch["patch"].shape == (2, 8, 8, 64) and batch["patch"].dtype == torch.float16
    assert torch.equal(batch["patch"][0], samples[0]["patch"])
    assert batch["owner"].tolist() == [0, 1] and int(batch["n_images"]) == 2


def test_resume_reproduces_the_model_bytes(sa1b_shards, tmp_path):
    """Stop after a checkpoint, resume: the teacher, prompts and data stream continue exactly."""
    args = dict(config=DEMO, steps=4, overrides=QUIET + ["ckpt_every=2", "keep_checkpoints=0", "log_every=1"])
    assert_resume_reproduces(sa1b_shards, tmp_path,
                             ("model.safetensors", "adapter.safetensors", "prompts.safetensors"), **args)


def test_recipe_loop_defaults_yield_to_the_user(kmeans_shards, tmp_path):
    """Without a config, PixelCLIP clips at 0.01 (its paper's setting); an explicit --set wins."""
    run_training("pixelclip", kmeans_shards, tmp_path / "a", steps=1, overrides=QUIET + ["batch_size=4"])
    assert yaml.safe_load((tmp_path / "a" / "config.yaml").read_text())["grad_clip"] == 0.01
    run_training("pixelclip", kmeans_shards, tmp_path / "b", steps=1, overrides=QUIET + ["batch_size=4", "grad_clip=0"])
    assert yaml.safe_load((tmp_path / "b" / "config.yaml").read_text())["grad_clip"] == 0
