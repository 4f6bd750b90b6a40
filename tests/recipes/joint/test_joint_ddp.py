"""The joint recipe under DDP on CPU: two gloo processes == one process on the gathered batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from joint_ddp_worker import TERMS, build, fixed_samples, loss_and_grads, make_recipe  # same folder
from joint_world import make_masked_world


def test_two_process_joint_matches_single_process_whole_batch(tmp_path):
    world = make_masked_world(tmp_path / "w", n_train=16, n_val=1, n_shards=1, unmasked_every=3)
    recipe = make_recipe(world.shards)
    module = build(recipe)
    logs, grads = loss_and_grads(recipe, module, module, fixed_samples(recipe))
    assert logs["loss_mil"] > 0 and logs["loss_consistency"] > 0 and logs["loss_cluster"] > 0
    torch.save({"grads": grads}, tmp_path / "reference.pt")

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(Path(__file__).with_name("joint_ddp_worker.py")), str(world.shards), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for key in TERMS:
        assert abs(res[0]["logs"][key] - logs[key]) < 1e-5, (key, res[0]["logs"][key], logs[key])
    assert res[0]["max_grad_err"] < 1e-5 * max(1.0, res[0]["max_grad"])
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
