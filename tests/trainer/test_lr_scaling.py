"""`lr_scaling: linear-256` (SimZSS's src/training/main.py L320-322): lr x batch x processes / 256,
printed at the run's start and saved under `resolved:` in RUN/config.yaml."""

from __future__ import annotations

import csv

import pytest
import yaml

from zss.cli import main
from zss.commands.train import resolve_config
from zss.trainer.config import TrainConfig, effective_lr, lr_rule_text
from zss.trainer.loop import lr_at


@pytest.mark.parametrize("lr,batch,world,accum,rule,want", [
    (3e-5, 512, 1, 1, "linear-256", 6e-5),          # args_coco.json: the released model's rate
    (3e-5, 512, 2, 1, "linear-256", 1.2e-4),
    (3e-5, 1024, 16, 1, "linear-256", 1.92e-3),     # README's 2 nodes x 8 GPUs command
    (3e-5, 512, 1, 4, "linear-256", 6e-5),          # accumulation is not in the release's formula
    (3e-5, 512, 4, 1, "none", 3e-5),
])
def test_effective_lr(lr, batch, world, accum, rule, want):
    cfg = TrainConfig(lr=lr, batch_size=batch, accum_steps=accum, lr_scaling=rule)
    assert effective_lr(cfg, world) == pytest.approx(want, rel=1e-12)


def test_rule_text():
    cfg = TrainConfig(lr=3e-5, batch_size=512, lr_scaling="linear-256")
    assert lr_rule_text(cfg, 1) == "lr 3e-05 x (512 x 1 process) / 256 = 6e-05 (lr_scaling linear-256)"
    assert lr_rule_text(TrainConfig(lr=1e-3), 2) == "lr 0.001 (lr_scaling none)"


def test_train_prints_and_saves_the_resolved_lr(feature_world, tiny_overrides, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "simzss", str(feature_world.shards), str(run), "--steps", "2"]
    for o in tiny_overrides + ["batch_size=8", "lr=1e-3", "lr_scaling=linear-256", "warmup=0"]:
        args += ["--set", o]
    assert main(args) == 0
    assert "lr 0.001 x (8 x 1 process) / 256 = 3.125e-05 (lr_scaling linear-256)" in capsys.readouterr().err
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["lr"] == 1e-3 and saved["lr_scaling"] == "linear-256"
    assert saved["resolved"] == {"lr": pytest.approx(1e-3 * 8 / 256), "lr_scaling": "linear-256", "world_size": 1}
    with open(run / "metrics.csv", newline="") as f:
        first = next(csv.DictReader(f))
    assert float(first["lr"]) == pytest.approx(lr_at(0, 2, 3.125e-5, 0.0), rel=1e-6)
    # the run's config.yaml reads back (resume) with its base rate, not the scaled one
    _, cfg, _ = resolve_config("simzss", run / "config.yaml")
    assert (cfg.lr, cfg.lr_scaling) == (1e-3, "linear-256")
