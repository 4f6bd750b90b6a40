"""The simzss-official preset pair runs end to end on the synthetic world with random weights of the
release's architectures: DINOv2 ViT-B/14 reg4 at 224 px + the DVT denoiser, strict concepts over the
authors' bank, two cached views, then the release's 12 x 512 text tower for a few steps (issue 10)."""

from __future__ import annotations

import json

import pytest
import torch

from zss.cli import main
from zss.formats import shards as sh
from zss.models.denoiser import PatchDenoiser, save_denoiser
from zss.models.random_init import save_random_timm

BACKBONE = "vit_base_patch14_reg4_dinov2"


@pytest.mark.slow
@pytest.mark.usefixtures("ray_2cpu")
def test_official_ingest_train_and_segment(world, tmp_path, capsys):
    ckpt = save_random_timm(BACKBONE, tmp_path / "vitb14reg.safetensors", img_size=224, seed=0)
    torch.manual_seed(0)
    den = tmp_path / "dvt.safetensors"
    save_denoiser(PatchDenoiser(768), den)
    shards, run = tmp_path / "shards", tmp_path / "run"
    # Only what cannot be in a shipped file changes: local weights, and spaCy's installed pipeline
    # (the preset names en_core_web_trf, which this machine cannot install).
    assert main(["ingest", f"coco:{world}", str(shards), "--preset", "simzss-official",
                 "--features", f"{BACKBONE}:{ckpt}", "--limit", "8", "--shard-size", "4",
                 "--set", f"features.denoiser={den}", "--set", "concepts.spacy_model=auto"]) == 0
    out = capsys.readouterr().out
    assert "match strict" in out
    manifest = sh.read_manifest(shards)
    assert manifest["feature"]["grid"] == [16, 16] and manifest["feature"]["dim"] == 768
    assert manifest["views"]["n"] == 2
    assert main(["train", "simzss", str(shards), str(run), "--config", "simzss-official",
                 "--steps", "2", "--set", "batch_size=4", "--set", "num_workers=0",
                 "--set", "shuffle_buffer=8", "--set", "tensorboard=false"]) == 0
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["text"]["width"] == 512 and config["text"]["layers"] == 12
    assert config["backbone"]["normalize"]["name"] == "clip" and config["backbone"]["denoiser"]["sha256"]
    assert config["text_pooling"] == "eot-name"
    image = sorted((world / "val" / "images").glob("*.jpg"))[0]
    assert main(["segment", str(run), str(image), "--vocab", "grass;lawn,sky,water",
                 "--out", str(tmp_path / "seg")]) == 0
    assert list((tmp_path / "seg").glob("*_overlay.png"))
