"""The backbone loader: real loading path on random-weight files, grids without prefix tokens."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from zss.errors import ZssError
from zss.formats.specs import ModelSpec, parse_model_spec
from zss.models.backbone import load_backbone
from zss.models.random_init import save_random_timm
from zss.utils.hashing import sha256_file


def _normalise(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (x - mean) / std


def test_random_checkpoint_round_trip_and_grid(vit_s14):
    bb = load_backbone("vit_small_patch14_dinov2", vit_s14, img_size=56)
    saved = load_file(str(vit_s14))
    loaded = bb.model.state_dict()
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)

    x = torch.rand(2, 3, 56, 56, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        patch, glob = bb(x)
        tokens = bb.model.forward_features(_normalise(x))  # timm, normalised by hand
    assert patch.shape == (2, 4, 4, 384) and glob.shape == (2, 384)
    assert torch.allclose(glob, tokens[:, 0], atol=1e-5)  # global = CLS
    assert torch.allclose(patch.reshape(2, 16, 384), tokens[:, 1:], atol=1e-5)  # CLS dropped, row-major
    assert (bb.patch_size, bb.embed_dim, bb.img_size) == (14, 384, 56)
    assert bb.spec["sha256"] == sha256_file(vit_s14) and bb.spec["global"] == "cls"
    assert bb.spec["name"] == "vit_small_patch14_dinov2" and bb.spec["checkpoint"] == str(vit_s14)


def test_dynamic_size_frozen_and_deterministic(vit_s14):
    bb = load_backbone("vit_small_patch14_dinov2", vit_s14, img_size=56)
    bb.train()
    assert not bb.training and not bb.model.training
    assert not any(p.requires_grad for p in bb.parameters())
    x = torch.rand(1, 3, 70, 84)
    with torch.inference_mode():
        patch, _ = bb(x)
        again, _ = bb(x)
        cropped, _ = bb(torch.nn.functional.pad(x, (0, 5, 0, 3)))  # partial border patches dropped
    assert patch.shape == (1, 5, 6, 384)
    assert torch.equal(patch, again)
    assert torch.allclose(patch, cropped, atol=1e-5)


def test_registers_are_cut_from_the_grid(tmp_path):
    path = save_random_timm("vit_small_patch14_reg4_dinov2", tmp_path / "reg.safetensors", img_size=28)
    bb = load_backbone("vit_small_patch14_reg4_dinov2", str(path), img_size=28)
    assert bb.num_prefix_tokens == 5
    x = torch.rand(1, 3, 28, 42)
    with torch.inference_mode():
        patch, glob = bb(x)
        tokens = bb.model.forward_features(_normalise(x))
    assert patch.shape == (1, 2, 3, 384)
    assert torch.allclose(patch.reshape(1, 6, 384), tokens[:, 5:], atol=1e-5)
    assert torch.allclose(glob, tokens[:, 0], atol=1e-5)


def test_same_seed_same_bytes(tmp_path, vit_s14):
    again = save_random_timm("vit_small_patch14_dinov2", tmp_path / "a.safetensors", img_size=56, seed=0)
    other = save_random_timm("vit_small_patch14_dinov2", tmp_path / "b.safetensors", img_size=56, seed=1)
    assert sha256_file(again) == sha256_file(vit_s14) != sha256_file(other)


def test_open_clip_names_delegate_to_clip_dense(tmp_path):
    from zss.models.clip_dense import save_random_openclip

    path = save_random_openclip("zss-tiny-vit", tmp_path / "clip.safetensors")
    bb = load_backbone("open_clip/zss-tiny-vit", path, img_size=32)
    with torch.inference_mode():
        patch, glob = bb(torch.rand(1, 3, 32, 32))
    assert patch.shape[:3] == (1, 32 // bb.patch_size, 32 // bb.patch_size)
    assert patch.shape[-1] == glob.shape[-1] == bb.embed_dim
    assert bb.spec["sha256"] == sha256_file(path) and bb.spec["name"] == "open_clip/zss-tiny-vit"


def test_user_errors_are_zss_errors(tmp_path, vit_s14, monkeypatch):
    with pytest.raises(ZssError, match="unknown backbone"):
        load_backbone("vit_nonexistent_patch3", None, 56)
    with pytest.raises(ZssError, match="not found"):
        load_backbone("vit_small_patch14_dinov2", tmp_path / "missing.safetensors", 56)
    with pytest.raises(ZssError, match="does not fit"):  # a file without the register tokens
        load_backbone("vit_small_patch14_reg4_dinov2", vit_s14, 56)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ZssError, match=r"cannot fetch .*HF_HUB_OFFLINE is set"):  # hub name, no network, no cache
        load_backbone("vit_small_patch14_dinov2", None, 56)


def test_a_parsed_spec_loads_what_name_and_checkpoint_load(vit_s14, tmp_path):
    by_name = load_backbone("vit_small_patch14_dinov2", vit_s14, img_size=56)
    parsed = load_backbone(parse_model_spec(f"vit_small_patch14_dinov2:{vit_s14}"), img_size=56)
    assert parsed.spec == by_name.spec
    assert all(torch.equal(a, b) for a, b in zip(parsed.state_dict().values(), by_name.state_dict().values()))
    with pytest.raises(ZssError, match="not found"):  # a separate checkpoint wins over the spec's own
        load_backbone(ModelSpec("timm", "vit_small_patch14_dinov2", str(vit_s14)), tmp_path / "none.pt", 56)
    with pytest.raises(ZssError, match="'vit_b' is a sam model; expected timm or openclip"):
        load_backbone(ModelSpec("sam", "vit_b", "/x.pth"), img_size=56)
