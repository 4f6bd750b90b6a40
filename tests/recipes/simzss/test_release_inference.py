"""A SimZSS model directory carries the feature options it was trained on (normalisation, DVT
denoiser with its sha256) into inference, and the release's text pooling (`eot-name`)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from zss.errors import ZssError
from zss.commands.train import run_training
from zss.models.backbone import load_backbone
from zss.models.denoiser import PatchDenoiser, save_denoiser
from zss.models.random_init import save_random_timm
from zss.recipes import load_segmenter


def test_model_dir_reapplies_normalisation_and_denoiser(tmp_path, tiny_overrides):
    from conftest import make_feature_world

    ckpt = save_random_timm("vit_small_patch14_dinov2", tmp_path / "vits14.safetensors", img_size=56)
    torch.manual_seed(0)
    den_path = tmp_path / "dvt.safetensors"
    save_denoiser(PatchDenoiser(384), den_path)
    bb = load_backbone("vit_small_patch14_dinov2", ckpt, 56, normalize="clip", denoiser=den_path)
    world = make_feature_world(tmp_path / "w", n_train=8, n_val=1, n_shards=1, dim=384, backbone=dict(bb.spec))
    run_training("simzss", world.shards, tmp_path / "run", steps=2,
                 overrides=tiny_overrides + ["batch_size=4", "recipe.global_token=cls",
                                             "recipe.text_pooling=eot-name"])
    config = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert config["backbone"]["denoiser"]["sha256"] == bb.spec["denoiser"]["sha256"]
    assert config["backbone"]["normalize"]["name"] == "clip" and config["text_pooling"] == "eot-name"

    seg = load_segmenter(tmp_path / "run", "cpu")
    images = torch.rand(2, 3, 56, 56)
    with torch.no_grad():
        want = F.normalize(bb(images)[0], dim=-1).permute(0, 3, 1, 2)
    assert torch.allclose(seg.encode_dense(images), want, atol=1e-5)

    # eot-name: the bare class name's end-of-text embedding, whatever template surrounds it.
    prompts = ["a photo of a red car.", "there is a blue in the scene."]
    spans = [(13, 20), (11, 15)]
    got = seg.encode_text_spans(prompts, spans)
    assert torch.allclose(got, seg.encode_text(["red car", "blue"]), atol=1e-6)
    assert seg.text_pooling == "concept"  # the predictor hands spans, which eot-name cuts the names from

    den_path.write_bytes(den_path.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(ZssError, match="denoiser.*sha256"):
        load_segmenter(tmp_path / "run", "cpu")
