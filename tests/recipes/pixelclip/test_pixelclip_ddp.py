"""PixelCLIP under DDP on CPU: two gloo processes under torchrun (see pixelclip_ddp_worker.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from zss.recipes.pixelclip.sinkhorn import sinkhorn


def test_sinkhorn_and_training_under_two_processes(sa1b_shards, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(Path(__file__).with_name("pixelclip_ddp_worker.py")), str(sa1b_shards), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    halves = [torch.tensor(r["q"]) for r in res]
    whole = sinkhorn(torch.tensor(res[0]["scores"]), n_iters=3)
    assert torch.allclose(torch.cat(halves), whole, atol=1e-6)
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    assert (tmp_path / "run" / "model" / "prompts.safetensors").is_file()
