"""Loop pieces: the schedule, the weight-decay split, checkpoint completeness."""

from __future__ import annotations

import math

import pytest
import torch

from zss.recipes.simzss.text_tower import TextConfig
from zss.trainer.checkpoints import list_checkpoints, load_checkpoint, save_checkpoint
from zss.trainer.loop import lr_at
from zss.trainer.recipe import Recipe
from zss.recipes.simzss.recipe import SimZSSModel


def test_warmup_then_cosine():
    assert lr_at(0, 100, 1.0, 0.1) == pytest.approx(0.1)
    assert lr_at(9, 100, 1.0, 0.1) == pytest.approx(1.0)
    assert lr_at(10, 100, 1.0, 0.1) == pytest.approx(1.0)
    assert lr_at(55, 100, 1.0, 0.1) == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)))
    assert lr_at(100, 100, 2.0, 0.0, min_ratio=0.1) == pytest.approx(0.2)


def test_no_weight_decay_on_gains_biases_and_logit_scale():
    model = SimZSSModel(TextConfig(width=32, heads=2, layers=1, context_length=8), 16, 1 / 0.07, 100.0)
    decay, no_decay = Recipe.param_groups(None, model, 0.2)  # type: ignore[arg-type]
    names = {id(p): n for n, p in model.named_parameters()}
    nd = {names[id(p)] for p in no_decay["params"]}
    d = {names[id(p)] for p in decay["params"]}
    assert decay["weight_decay"] == 0.2 and no_decay["weight_decay"] == 0.0
    assert "logit_scale" in nd and "tower.text.ln_final.weight" in nd
    assert "tower.text.transformer.resblocks.0.attn.in_proj_bias" in nd
    assert {"tower.text.text_projection", "tower.text.token_embedding.weight",
            "tower.text.transformer.resblocks.0.mlp.c_fc.weight"} <= d
    assert len(d) + len(nd) == len(names)


def test_only_complete_checkpoints_count(tmp_path):
    model = torch.nn.Linear(3, 2)
    save_checkpoint(tmp_path, 5, model, {"step": 5, "x": torch.arange(3)})
    save_checkpoint(tmp_path, 10, model, {"step": 10})
    (tmp_path / "step_000015.safetensors").write_bytes(b"partial")  # killed before its .pt
    (tmp_path / "step_000020.pt.tmp").write_bytes(b"partial")
    assert list_checkpoints(tmp_path) == [5, 10]
    other = torch.nn.Linear(3, 2)
    state = load_checkpoint(tmp_path, 5, other)
    assert torch.equal(other.weight, model.weight) and state["x"].tolist() == [0, 1, 2]
    save_checkpoint(tmp_path, 25, model, {"step": 25}, keep=2)
    assert list_checkpoints(tmp_path) == [10, 25]


def test_param_group_lr_scale_multiplies_the_schedule(feature_world, tiny_overrides, tmp_path, monkeypatch):
    import torch.optim

    from zss.commands.train import run_training
    from zss.recipes.simzss.recipe import SimZSSRecipe

    base_groups = SimZSSRecipe.param_groups

    def scaled(self, model, wd):
        groups = base_groups(self, model, wd)
        groups[1]["lr_scale"] = 10.0
        return groups

    class Spy(torch.optim.AdamW):
        def __init__(self, groups, **kw):
            super().__init__(groups, **kw)
            Spy.last = self

    monkeypatch.setattr(SimZSSRecipe, "param_groups", scaled)
    monkeypatch.setattr(torch.optim, "AdamW", Spy)
    run_training("simzss", feature_world.shards, tmp_path / "run", steps=2,
                 overrides=tiny_overrides + ["batch_size=8", "lr=1e-3", "warmup=0"])
    lrs = [g["lr"] for g in Spy.last.param_groups]
    assert lrs[1] == pytest.approx(10 * lrs[0]) and lrs[0] == pytest.approx(lr_at(1, 2, 1e-3, 0.0))
