"""Helpers for PixelCLIP training-run tests: the logged losses, and a straight-vs-resumed run."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from zss.commands.train import run_training


def losses(run: Path) -> list[float]:
    with open(run / "metrics.csv", newline="") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


def assert_resume_reproduces(shards: Path, tmp_path: Path, files: tuple[str, ...], **args) -> None:
    """Train straight through `args["steps"]` (checkpoints every 2 steps), then copy the run without
    its model and its last checkpoint and resume it: the model files in `files` and the logged
    losses must come out identical."""
    straight = tmp_path / "straight"
    run_training("pixelclip", shards, straight, **args)
    resumed = tmp_path / "resumed"
    shutil.copytree(straight, resumed)
    shutil.rmtree(resumed / "model")
    for p in (resumed / "checkpoints").glob(f"step_{args['steps']:06d}.*"):
        p.unlink()
    run_training("pixelclip", shards, resumed, resume=True, **args)
    for name in files:
        assert (straight / "model" / name).read_bytes() == (resumed / "model" / name).read_bytes(), name
    assert losses(straight) == losses(resumed)
