"""Run under `torchrun --nproc_per_node 2` by test_joint_ddp.py (gloo on CPU): the joint loss on half
a fixed batch per process gives the single-process loss terms and parameter gradients of the whole
batch (every term, including Sinkhorn clustering), and the loop trains a few steps under DDP."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "trainer"))  # the SimZSS DDP worker
from ddp_worker import half_batch_vs_reference  # noqa: E402  (recipe-agnostic: any SimZSS-based recipe)
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
    r = D.setup().rank
    res = half_batch_vs_reference(make_recipe(shards), out, TERMS)
    loop_recipe = make_recipe(shards, ["steps=3", "batch_size=4", "ckpt_every=2"])
    res["model_dir"] = str(train(loop_recipe, loop_recipe.train_cfg, out / "run"))
    (out / f"rank{r}.json").write_text(json.dumps(res))
    D.cleanup()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
