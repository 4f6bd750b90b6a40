"""`zss train simzss` end to end on the feature world: learning, exact resume, the model directory."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import assert_losses_fell, cli_train, read_metrics
from zss.cli import main
from zss.errors import ZssError
from zss.recipes.simzss.segmenter import load_text_tower
from zss.recipes.simzss.text_tower import TextConfig, TextTower
from zss.commands.train import run_training


def test_training_learns_zero_shot_segmentation(feature_world, tiny_overrides, tmp_path):
    run = tmp_path / "run"
    rows = cli_train("simzss", feature_world.shards, run, 60,
                     tiny_overrides + ["batch_size=16", "lr=2e-3", "warmup=0.1", "ckpt_every=30"])
    assert_losses_fell(rows, ("loss_global", "loss_local"))

    torch.manual_seed(0)  # the loop seeds with cfg.seed before building: the same initial tower
    untrained = TextTower(TextConfig(width=64, heads=2, layers=2, context_length=16), 32).eval()
    trained = load_text_tower(run / "model")
    before, after = feature_world.zero_shot_miou(untrained), feature_world.zero_shot_miou(trained)
    assert after > 0.45 and after > before + 0.3, (before, after)

    config = json.loads((run / "model" / "config.json").read_text())
    assert config["kind"] == "simzss" and config["tokenizer"] == "clip-bpe" and config["global"] == "mean"
    assert config["backbone"]["name"] == "vit_small_patch14_dinov2" and config["embed_dim"] == 32
    assert json.loads((run / "model" / "concepts.json").read_text())["concepts"][0]["name"] == "red"
    assert (run / "config.yaml").is_file() and sorted((run / "checkpoints").iterdir())


def test_killed_run_resumes_exactly(feature_world, tiny_overrides, tmp_path, crash_after_step):
    overrides = tiny_overrides + ["batch_size=8", "accum_steps=2", "num_workers=2", "lr=2e-3",
                                  "warmup=0.2", "ckpt_every=4", "grad_clip=1.0", "tensorboard=true"]
    full = tmp_path / "full"
    run_training("simzss", feature_world.shards, full, steps=12, overrides=overrides)

    killed = tmp_path / "killed"
    with crash_after_step(10):
        run_training("simzss", feature_world.shards, killed, steps=12, overrides=overrides)
    assert not (killed / "model").exists()
    with pytest.raises(ZssError, match="--resume"):
        run_training("simzss", feature_world.shards, killed, steps=12, overrides=overrides)
    run_training("simzss", feature_world.shards, killed, resume=True)  # settings from RUN/config.yaml

    a, b = read_metrics(full), read_metrics(killed)
    assert [r["step"] for r in b] == [str(s) for s in range(1, 13)]
    for ra, rb in zip(a, b):
        for key in ("loss", "loss_global", "loss_local", "logit_scale", "grad_norm"):
            assert float(ra[key]) == pytest.approx(float(rb[key]), abs=1e-5), (ra["step"], key)
    wa, wb = load_file(str(full / "model" / "model.safetensors")), load_file(str(killed / "model" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    state = torch.load(killed / "checkpoints" / "step_000012.pt", weights_only=True)
    assert state["step"] == 12 and state["procs"]["0"]["data"] == {"epoch": 3, "batch": 0}
    assert len(list((killed / "checkpoints").glob("*.safetensors"))) == 3  # keep_checkpoints


def test_cli_local_target_and_user_errors(feature_world, tiny_overrides, tmp_path, capsys):
    import yaml

    base = ["train", "simzss", str(feature_world.shards)]
    sets = [a for o in tiny_overrides + ["batch_size=8"] for a in ("--set", o)]
    assert main(base + [str(tmp_path / "run"), "--steps", "2", "--local-target", "argmax"] + sets) == 0
    resolved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert resolved["recipe"]["local_target"] == "argmax" and resolved["steps"] == 2
    assert main(base + [str(tmp_path / "ep"), "--epochs", "0.5"] + sets) == 0  # 64 samples / 8 per batch
    assert read_metrics(tmp_path / "ep")[-1]["step"] == "4"
    assert main(base + [str(tmp_path / "bad"), "--steps", "2", "--local-target", "nearest"] + sets) == 2
    assert main(base + [str(tmp_path / "bad2"), "--steps", "2", "--set", "recipe.no_such_key=1"] + sets) == 2
    assert main(["train", "simzss", str(tmp_path), str(tmp_path / "bad3"), "--steps", "2"]) == 2
    assert main(["train", "nosuch", str(feature_world.shards), str(tmp_path / "bad4"), "--steps", "2"]) == 2
    err = capsys.readouterr().err
    assert "local_target must be own or argmax" in err and "unknown recipe" in err and "no_such_key" in err
