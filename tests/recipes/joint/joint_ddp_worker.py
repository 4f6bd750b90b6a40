"""Run under `torchrun --nproc_per_node 2` by test_joint_ddp.py (gloo on CPU): the joint loss on half
a fixed batch per process gives the single-process loss terms and parameter gradients of the whole
batch (every term, including Sinkhorn clustering), and the loop trains a few steps under DDP."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "trainer"))  # the SimZSS DDP worker's sample reader
# recipe-agnostic: a shard's first samples decoded, the loss and gradients of a batch, the seeded model
from ddp_worker import build, fixed_samples, loss_and_grads  # noqa: E402
from zss.recipes.joint.recipe import JointConfig, JointRecipe  # noqa: E402
from zss.trainer import distributed as D
from zss.trainer.config import TrainConfig
from zss.trainer.loop import train
from zss.utils.config import from_dict, load_config

TINY = ["recipe.text.width=64", "recipe.text.heads=2", "recipe.text.layers=2", "recipe.text.context_length=16",
        "recipe.global_token=mean", "recipe.local_weight=1.0", "recipe.cluster_weight=0.5", "log_every=1",
        "tensorboard=false"]
TERMS = ("loss", "loss_global", "loss_local", "loss_region", "loss_mil", "loss_consistency", "loss_cluster")


def make_recipe(shards: Path, extra: list[str] = ()) -> JointRecipe:
    cfg = load_config(TrainConfig, overrides=TINY + list(extra))
    return JointRecipe(from_dict(JointConfig, cfg.recipe), shards, cfg)


def main(shards: Path, out: Path) -> None:
    info = D.setup()
    r, w = info.rank, info.world_size
    recipe = make_recipe(shards)
    samples = fixed_samples(recipe)
    module = build(recipe)
    ddp = torch.nn.parallel.DistributedDataParallel(module)
    half = len(samples) // w
    logs, grads = loss_and_grads(recipe, ddp, module, samples[r * half:(r + 1) * half])
    res: dict = {"logs": D.all_reduce_mean({k: logs[k] for k in TERMS}, torch.device("cpu"))}
    ref = torch.load(out / "reference.pt", weights_only=True)
    res["max_grad_err"] = max(float((grads[n] - ref["grads"][n]).abs().max()) for n in ref["grads"])
    res["max_grad"] = max(float(g.abs().max()) for g in ref["grads"].values())
    loop_recipe = make_recipe(shards, ["steps=3", "batch_size=4", "ckpt_every=2"])
    res["model_dir"] = str(train(loop_recipe, loop_recipe.train_cfg, out / "run"))
    (out / f"rank{r}.json").write_text(json.dumps(res))
    D.cleanup()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
