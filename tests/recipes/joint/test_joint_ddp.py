"""The joint recipe under DDP on CPU: two gloo processes == one process on the gathered batch."""

from __future__ import annotations

from pathlib import Path

import torch

from ddp_worker import build, fixed_samples, loss_and_grads, run_two_processes  # tests/trainer: recipe-agnostic
from joint_ddp_worker import TERMS, make_recipe  # same folder
from joint_world import make_masked_world


def test_two_process_joint_matches_single_process_whole_batch(tmp_path):
    world = make_masked_world(tmp_path / "w", n_train=16, n_val=1, n_shards=1, unmasked_every=3)
    recipe = make_recipe(world.shards)
    module = build(recipe)
    logs, grads = loss_and_grads(recipe, module, module, fixed_samples(recipe))
    assert logs["loss_mil"] > 0 and logs["loss_consistency"] > 0 and logs["loss_cluster"] > 0
    torch.save({"grads": grads}, tmp_path / "reference.pt")

    res = run_two_processes(Path(__file__).with_name("joint_ddp_worker.py"), world.shards, tmp_path)
    for key in TERMS:
        assert abs(res[0]["logs"][key] - logs[key]) < 1e-5, (key, res[0]["logs"][key], logs[key])
    assert res[0]["max_grad_err"] < 1e-5 * max(1.0, res[0]["max_grad"])
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
