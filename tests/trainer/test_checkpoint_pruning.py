"""Pruning keeps the newest `keep` INTACT checkpoints: a damaged one is set aside (renamed with a
warning), never counted as kept while a readable older one is deleted."""

from __future__ import annotations

import logging
import shutil

import torch
from torch import nn

from zss.cli import main
from zss.commands.train import run_training
from zss.trainer.checkpoints import (checkpoint_damage, checkpoint_paths, list_checkpoints, prune_checkpoints,
                                     save_checkpoint)


def _run_of(tmp_path, steps=(5, 10, 15, 20)):
    model = nn.Linear(3, 2)
    for s in steps:
        save_checkpoint(tmp_path, s, model, {"step": s, "x": torch.arange(3)})
    return model


def test_damage_is_seen_without_reading_tensors(tmp_path):
    _run_of(tmp_path, (5, 10, 15))
    assert [checkpoint_damage(tmp_path, s) for s in (5, 10, 15)] == [None, None, None]
    w10, m10 = checkpoint_paths(tmp_path, 10)
    w10.write_bytes(w10.read_bytes()[:-4])                   # a copy cut short: 4 bytes missing
    assert "bytes, the header says" in checkpoint_damage(tmp_path, 10)
    _, m15 = checkpoint_paths(tmp_path, 15)
    m15.write_bytes(b"\0" * m15.stat().st_size)              # the state overwritten in place
    assert "BadZipFile" in checkpoint_damage(tmp_path, 15)


def test_a_damaged_checkpoint_is_never_one_of_the_kept(tmp_path, caplog):
    model = _run_of(tmp_path)
    w20, _ = checkpoint_paths(tmp_path, 20)
    w20.write_bytes(w20.read_bytes()[:100])                   # torn newest
    with caplog.at_level(logging.WARNING, logger="zss"):
        save_checkpoint(tmp_path, 25, model, {"step": 25}, keep=2)
    # newest first: 25 intact (kept), 20 damaged (set aside), 15 intact (kept), 10 and 5 deleted
    assert list_checkpoints(tmp_path) == [15, 25]
    assert sorted(p.name for p in tmp_path.glob("*.damaged")) == ["step_000020.pt.damaged",
                                                                 "step_000020.safetensors.damaged"]
    assert not checkpoint_paths(tmp_path, 10)[0].exists() and not checkpoint_paths(tmp_path, 5)[1].exists()
    assert "step_000020 is damaged" in caplog.text and "not counted as a checkpoint" in caplog.text
    assert prune_checkpoints(tmp_path, 1) == [25] and list_checkpoints(tmp_path) == [25]


def test_resume_past_a_torn_interrupt_checkpoint_keeps_the_readable_one(feature_world, tiny_overrides, tmp_path,
                                                                         caplog, crash_after_step):
    """The issue's case: checkpoints at 2 and 4 (keep 2), a torn newest one at 5 (an interrupt
    checkpoint cut short); `zss train --resume` resumes from 4, and the save at 6 keeps 4 and 6
    (before: 5 counted as kept, 4 deleted)."""
    overrides = tiny_overrides + ["batch_size=8", "ckpt_every=2", "keep_checkpoints=2"]
    run = tmp_path / "run"
    with crash_after_step(5):
        run_training("simzss", feature_world.shards, run, steps=8, overrides=overrides)
    ckpts = run / "checkpoints"
    assert list_checkpoints(ckpts) == [2, 4]
    for src, dst in zip(checkpoint_paths(ckpts, 4), checkpoint_paths(ckpts, 5)):
        shutil.copyfile(src, dst)
    torn = checkpoint_paths(ckpts, 5)[0]
    torn.write_bytes(torn.read_bytes()[:200])
    caplog.clear()
    assert main(["train", "simzss", str(feature_world.shards), str(run), "--resume", "--steps", "6"]) == 0
    assert "resuming from step 4" in caplog.text and "step_000005 is damaged" in caplog.text
    assert list_checkpoints(ckpts) == [4, 6]
    assert (ckpts / "step_000005.safetensors.damaged").is_file()
