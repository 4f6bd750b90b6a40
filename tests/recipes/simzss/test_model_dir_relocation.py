"""A trained SimZSS model directory travels (issue 23): the frozen backbone and the denoiser are put
inside it at export (hard link or copy, sha256 recorded), config.json names them relative to the
folder, and after moving the folder and moving the original weights away `zss segment` (a real
subprocess) writes the very same label map. A directory with absolute paths (older zss) still loads."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import torch
from PIL import Image

from zss.cli import main
from zss.commands.train import run_training
from zss.models.denoiser import PatchDenoiser, save_denoiser
from zss.models.random_init import save_random_timm
from zss.recipes import load_segmenter
from zss.utils.hashing import sha256_file


def _zss(*args: str) -> subprocess.CompletedProcess:
    exe = os.path.join(os.path.dirname(sys.executable), "zss")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=240)


def test_model_dir_moves_and_segments_the_same(tmp_path, tiny_overrides, capsys):
    from conftest import make_feature_world

    weights = tmp_path / "weights"
    weights.mkdir()
    ckpt = save_random_timm("vit_small_patch14_dinov2", weights / "vits14.safetensors", img_size=56)
    torch.manual_seed(0)
    den = weights / "dvt.safetensors"
    save_denoiser(PatchDenoiser(384, 4), den)
    record = {"name": "vit_small_patch14_dinov2", "checkpoint": str(ckpt), "sha256": sha256_file(ckpt),
              "img_size": 56, "patch_size": 14, "embed_dim": 384, "global": "cls",
              "denoiser": {"type": "transformer", "file": str(den), "sha256": sha256_file(den),
                           "dim": 384, "grid": 4}}
    world = make_feature_world(tmp_path / "w", n_train=8, n_val=1, n_shards=1, dim=384, backbone=record)
    run_training("simzss", world.shards, tmp_path / "run", steps=2,
                 overrides=tiny_overrides + ["batch_size=4", "recipe.global_token=cls"])
    model = tmp_path / "run" / "model"
    config = json.loads((model / "config.json").read_text())
    assert config["backbone"]["checkpoint"] == "backbone.safetensors"
    assert config["backbone"]["sha256"] == sha256_file(ckpt)
    assert config["backbone"]["denoiser"]["file"] == "denoiser.safetensors"
    assert os.path.samefile(model / "backbone.safetensors", ckpt)          # one file system: hard link
    assert (model / "concepts.json").is_file()

    img = tmp_path / "im.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 84, 3), dtype=np.uint8)).save(img)
    assert main(["segment", str(model), str(img), "--vocab", "red,green,blue", "--out", str(tmp_path / "a")]) == 0

    moved = tmp_path / "elsewhere" / "my model"
    moved.parent.mkdir()
    shutil.move(str(model), str(moved))
    shutil.move(str(weights), str(tmp_path / "weights_gone"))
    done = _zss("segment", str(moved), str(img), "--vocab", "red,green,blue", "--out", str(tmp_path / "b"))
    assert done.returncode == 0, done.stderr
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a" / "im.png")),
                          np.asarray(Image.open(tmp_path / "b" / "im.png")))
    assert json.loads((tmp_path / "a" / "im.json").read_text()) == json.loads((tmp_path / "b" / "im.json").read_text())

    # a bundled file that went missing is one line naming it
    (moved / "denoiser.safetensors").unlink()
    assert main(["segment", str(moved), str(img), "--vocab", "red,green", "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "denoiser.safetensors is missing" in err and "Traceback" not in err


def test_model_dir_with_absolute_paths_still_loads(tmp_path, tiny_overrides):
    """What zss wrote before model directories were self-contained: absolute paths outside it."""
    from conftest import make_feature_world

    ckpt = save_random_timm("vit_small_patch14_dinov2", tmp_path / "vits14.safetensors", img_size=56)
    record = {"name": "vit_small_patch14_dinov2", "checkpoint": str(ckpt), "sha256": sha256_file(ckpt),
              "img_size": 56, "patch_size": 14, "embed_dim": 384, "global": "cls"}
    world = make_feature_world(tmp_path / "w", n_train=8, n_val=1, n_shards=1, dim=384, backbone=record)
    run_training("simzss", world.shards, tmp_path / "run", steps=1,
                 overrides=tiny_overrides + ["batch_size=4", "recipe.global_token=cls"])
    model = tmp_path / "run" / "model"
    config = json.loads((model / "config.json").read_text())
    (model / "backbone.safetensors").unlink()
    config["backbone"]["checkpoint"] = str(ckpt)
    (model / "config.json").write_text(json.dumps(config))
    seg = load_segmenter(model, "cpu")
    assert seg.backbone.spec["checkpoint"] == str(ckpt)
    assert seg.encode_dense(torch.rand(1, 3, 56, 56)).shape == (1, 384, 4, 4)


def test_hub_backbone_weights_are_saved_into_the_model_dir(tmp_path, tiny_overrides, monkeypatch):
    """Features made with a hub name (no :FILE): export writes the cached hub weights into the folder
    (cache only, never the network); without the cache the folder still gives the same features."""
    from huggingface_hub import constants
    from safetensors.torch import save_file

    from conftest import make_feature_world
    from zss.models.backbone import create_timm_vit, load_backbone

    cache = tmp_path / "hf"
    repo = cache / "models--timm--vit_small_patch14_dinov2.lvd142m"
    (repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    torch.manual_seed(0)
    vit = create_timm_vit("vit_small_patch14_dinov2", 518, None, pretrained=False)  # the hub's 37x37 grid
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()},
              str(repo / "snapshots" / ("0" * 40) / "model.safetensors"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub = load_backbone("vit_small_patch14_dinov2", None, 56)
    assert hub.spec["checkpoint"] is None
    record = {**{k: hub.spec[k] for k in ("name", "checkpoint", "sha256", "img_size", "patch_size", "embed_dim")},
              "global": "cls"}
    world = make_feature_world(tmp_path / "w", n_train=8, n_val=1, n_shards=1, dim=384, backbone=record)
    run_training("simzss", world.shards, tmp_path / "run", steps=1,
                 overrides=tiny_overrides + ["batch_size=4", "recipe.global_token=cls"])
    model = tmp_path / "run" / "model"
    config = json.loads((model / "config.json").read_text())["backbone"]
    assert config["checkpoint"] == "backbone.safetensors" and config["from_hub"] == "vit_small_patch14_dinov2"
    assert config["sha256"] == sha256_file(model / "backbone.safetensors")
    shutil.rmtree(cache)
    images = torch.rand(2, 3, 56, 70)
    with torch.no_grad():
        want, _ = hub(images)
        got, _ = load_segmenter(model, "cpu").backbone(images)
    assert torch.equal(got, want)
