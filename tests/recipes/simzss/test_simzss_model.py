"""The text tower (scratch and OpenCLIP init) and the SimZSS model directory as a Segmenter."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from zss.errors import ZssError
from zss.models.clip_dense import save_random_openclip
from zss.models.random_init import save_random_timm
from zss.recipes import load_segmenter
from zss.recipes.simzss.text_tower import TextConfig, TextTower, build_text_tower
from zss.models.tokenizer import tokenize_with_spans
from zss.commands.train import run_training
from zss.utils.hashing import sha256_file


def test_text_tower_projects_every_token_and_pools_end_of_text():
    torch.manual_seed(0)
    tower = TextTower(TextConfig(width=32, heads=2, layers=1, context_length=12), out_dim=24)
    ids = tower.tokenize(["a red ball", "two striped balls on the green grass"])
    assert torch.equal(ids[0], torch.from_numpy(tokenize_with_spans("a red ball", (), 12)[0]))
    tokens, eot = tower(ids)
    assert tokens.shape == (2, 12, 24) and eot.shape == (2, 24)
    assert torch.allclose(eot, tokens[torch.arange(2), ids.argmax(-1)], atol=1e-6)
    # Causal: a token's embedding ignores what follows it.
    longer = tower.tokenize(["a red ball in a box"])
    assert torch.allclose(tower(longer)[0][0, :4], tokens[0, :4], atol=1e-5)
    emb = tower.encode(["red", "blue"])
    assert torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_text_tower_from_openclip_checkpoint(tmp_path):
    ckpt = save_random_openclip("zss-tiny-vit", tmp_path / "clip.safetensors", seed=1)
    state = load_file(str(ckpt))
    same = build_text_tower(TextConfig(init=f"zss-tiny-vit:{ckpt}"), out_dim=64)  # CLIP embed_dim 64
    assert (same.cfg.width, same.cfg.layers, same.cfg.context_length) == (64, 2, 77)
    own = same.text.state_dict()
    for key in ("token_embedding.weight", "positional_embedding", "ln_final.weight", "text_projection",
                "transformer.resblocks.1.attn.in_proj_weight"):
        assert torch.equal(own[key], state[key]), key
    other = build_text_tower(TextConfig(init=f"zss-tiny-vit:{ckpt}"), out_dim=48)  # vision width differs
    assert other.text.text_projection.shape == (64, 48)
    assert torch.equal(other.text.state_dict()["token_embedding.weight"], state["token_embedding.weight"])
    with pytest.raises(ZssError):
        build_text_tower(TextConfig(init=f"zss-tiny-vit:{tmp_path / 'missing.pt'}"), out_dim=64)
    with pytest.raises(ZssError):
        build_text_tower(TextConfig(init="no-such-arch:x"), out_dim=64)


def test_model_dir_loads_as_segmenter(tmp_path, tiny_overrides):
    from conftest import make_feature_world

    ckpt = save_random_timm("vit_small_patch14_dinov2", tmp_path / "vits14.safetensors", img_size=56)
    record = {"name": "vit_small_patch14_dinov2", "checkpoint": str(ckpt), "sha256": sha256_file(ckpt),
              "img_size": 56, "patch_size": 14, "embed_dim": 384, "global": "cls"}
    world = make_feature_world(tmp_path / "w", n_train=8, n_val=1, n_shards=1, dim=384, backbone=record)
    run_training("simzss", world.shards, tmp_path / "run", steps=2,
                 overrides=tiny_overrides + ["batch_size=4", "recipe.global_token=cls"])
    seg = load_segmenter(tmp_path / "run", "cpu")
    assert (seg.patch_size, seg.default_size) == (14, 56)
    images = torch.rand(2, 3, 56, 56)
    dense = seg.encode_dense(images)
    assert dense.shape == (2, 384, 4, 4)
    assert torch.allclose(dense.norm(dim=1), torch.ones(2, 4, 4), atol=1e-4)
    patch, _ = seg.backbone(images)
    assert torch.allclose(dense, torch.nn.functional.normalize(patch, dim=-1).permute(0, 3, 1, 2), atol=1e-5)
    text = seg.encode_text(["a photo of a red.", "a photo of a blue."])
    assert text.shape == (2, 384) and torch.allclose(text.norm(dim=-1), torch.ones(2), atol=1e-5)

    cfg_path = tmp_path / "run" / "model" / "config.json"
    config = json.loads(cfg_path.read_text())
    config["backbone"]["sha256"] = "0" * 64
    cfg_path.write_text(json.dumps(config))
    with pytest.raises(ZssError, match="sha256"):
        load_segmenter(tmp_path / "run" / "model", "cpu")
