"""Run under `torchrun --nproc_per_node 2` by test_distributed.py (gloo on CPU).

1. all_gather_with_grad: values and gradients (world · upstream grad of the own rows).
2. The SimZSS loss under DDP on half a fixed batch per process gives the single-process loss and
   parameter gradients of the whole batch (global InfoNCE and the gathered concept bank).
3. The shared loop trains for a few steps under DDP and writes the model directory.
Results go to OUT/rank{r}.json; the test asserts on them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from zss.trainer import distributed as D
from zss.trainer.config import TrainConfig
from zss.trainer.data import sample_rng
from zss.trainer.loop import train
from zss.recipes.simzss.recipe import SimZSSConfig, SimZSSRecipe
from zss.utils.config import from_dict, load_config

TINY = ["recipe.text.width=64", "recipe.text.heads=2", "recipe.text.layers=2", "recipe.text.context_length=16",
        "recipe.global_token=mean", "recipe.local_weight=1.0", "log_every=1", "tensorboard=false"]


def make_recipe(shards: Path, extra: list[str] = ()) -> SimZSSRecipe:
    cfg = load_config(TrainConfig, overrides=TINY + list(extra))
    return SimZSSRecipe(from_dict(SimZSSConfig, cfg.recipe), shards, cfg)


def fixed_samples(recipe: SimZSSRecipe, n: int = 8) -> list[dict]:
    """The first `n` samples of the recipe's first shard, read by the trainer's own tar reader and
    decoded by the recipe (any SimZSS-based recipe)."""
    from zss.formats.tar_reader import read_samples

    tar = recipe.shards / recipe.manifest["shards"][0]["tar"]
    raws = [r for _, r in zip(range(n), read_samples(tar))]
    return [recipe.decode_sample(r, sample_rng(0, 0, r["__key__"])) for r in raws]


def run_two_processes(worker: Path, shards: Path, out: Path, timeout: int = 300) -> list[dict]:
    """Test side: `torchrun --nproc_per_node 2 WORKER SHARDS OUT` (gloo, 1 thread each); returns the
    two ranks' OUT/rank{r}.json."""
    import os
    import subprocess

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(worker), str(shards), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def half_batch_vs_reference(recipe: SimZSSRecipe, out: Path, keys=None) -> dict:
    """Worker side: this rank's half of `fixed_samples` through DDP; the loss terms averaged over the
    ranks (`keys`, default all) and the largest gradient difference to OUT/reference.pt (the test's
    single-process gradients of the whole batch)."""
    r, w = D.rank(), D.world_size()
    samples = fixed_samples(recipe)
    module = build(recipe)
    ddp = torch.nn.parallel.DistributedDataParallel(module)
    half = len(samples) // w
    logs, grads = loss_and_grads(recipe, ddp, module, samples[r * half:(r + 1) * half])
    ref = torch.load(out / "reference.pt", weights_only=True)["grads"]
    return {"logs": D.all_reduce_mean({k: logs[k] for k in (keys or logs)}, torch.device("cpu")),
            "max_grad_err": max(float((grads[n] - ref[n]).abs().max()) for n in ref),
            "max_grad": max(float(g.abs().max()) for g in ref.values())}


def loss_and_grads(recipe: SimZSSRecipe, model, module, samples) -> tuple[dict, dict]:
    """The recipe's loss terms (floats) and the gradients of `module`'s parameters that got one
    (any SimZSS-based recipe: SimZSS, joint)."""
    torch.manual_seed(0)
    batch = {k: (v.float() if v.is_floating_point() else v) for k, v in recipe.collate(samples).items()}
    loss, logs = recipe.loss(model, batch)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in module.named_parameters() if p.grad is not None}
    return {k: float(v) for k, v in {"loss": loss.detach(), **logs}.items()}, grads


def build(recipe: SimZSSRecipe):
    torch.manual_seed(0)
    return recipe.build_model()


def main(shards: Path, out: Path) -> None:
    info = D.setup()
    r, w = info.rank, info.world_size
    res: dict = {"world": w}

    x = torch.arange(3.0 * (r + 1)).reshape(r + 1, 3).requires_grad_()  # ranks hold 1 and 2 rows
    y = D.all_gather_with_grad(x)
    (y * torch.arange(y.numel(), dtype=torch.float).reshape(y.shape)).sum().backward()
    res["gather_rows"] = y.shape[0]
    res["gather_grad"] = x.grad.tolist()
    res["offset"] = D.gather_offset(r + 1, x.device)

    res.update(half_batch_vs_reference(make_recipe(shards), out))

    cfg_recipe = make_recipe(shards, ["steps=3", "batch_size=4", "ckpt_every=2"])
    model_dir = train(cfg_recipe, cfg_recipe.train_cfg, out / "run")
    res["model_dir"] = str(model_dir)
    (out / f"rank{r}.json").write_text(json.dumps(res))
    D.cleanup()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
