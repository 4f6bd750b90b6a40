"""DDP on CPU: two gloo processes under torchrun (see ddp_worker.py)."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from ddp_worker import build, fixed_samples, loss_and_grads, make_recipe, run_two_processes  # same folder


def test_two_process_ddp_matches_single_process_whole_batch(feature_world, tmp_path):
    recipe = make_recipe(feature_world.shards)
    module = build(recipe)
    logs, grads = loss_and_grads(recipe, module, module, fixed_samples(recipe))
    torch.save({"grads": grads}, tmp_path / "reference.pt")

    res = run_two_processes(Path(__file__).with_name("ddp_worker.py"), feature_world.shards, tmp_path, timeout=180)

    # Gather: 3 rows in rank order; each process gets world × its rows' upstream gradient.
    assert [x["gather_rows"] for x in res] == [3, 3] and [x["offset"] for x in res] == [0, 1]
    assert res[0]["gather_grad"] == [[0.0, 2.0, 4.0]]
    assert res[1]["gather_grad"] == [[6.0, 8.0, 10.0], [12.0, 14.0, 16.0]]

    # DDP halves == one process on the whole batch (loss terms and every parameter gradient).
    for key in ("loss", "loss_global", "loss_local"):
        assert abs(res[0]["logs"][key] - logs[key]) < 1e-5, key
    assert res[0]["max_grad_err"] < 1e-5 * max(1.0, res[0]["max_grad"])

    run = tmp_path / "run"
    assert (run / "model" / "model.safetensors").is_file()
    with open(run / "metrics.csv", newline="") as f:
        assert [r["step"] for r in csv.DictReader(f)] == ["1", "2", "3"]
