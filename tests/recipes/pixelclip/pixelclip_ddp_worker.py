"""Run under `torchrun --nproc_per_node 2` by test_pixelclip_ddp.py (gloo on CPU).

1. Sinkhorn on each process's half of a score matrix equals Sinkhorn on the whole matrix in one
   process (its normalising sums are all-reduced).
2. The shared loop trains cached PixelCLIP for a few steps under DDP and writes the model directory.
Results go to OUT/rank{r}.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from zss.paths import MANIFESTS
from zss.trainer import distributed as D
from zss.commands.train import run_training
from zss.recipes.pixelclip.sinkhorn import sinkhorn

DEMO = MANIFESTS / "train" / "pixelclip-cached-demo.yaml"


def scores() -> torch.Tensor:
    """A fixed, unbalanced score matrix (every row prefers cluster 0)."""
    s = torch.randn(12, 4, generator=torch.Generator().manual_seed(0)) * 3
    s[:, 0] += 4
    return s


def main(shards: Path, out: Path) -> None:
    info = D.setup()
    s = scores()
    half = s[:5] if info.rank == 0 else s[5:]  # uneven split on purpose
    q = sinkhorn(half, n_iters=3)
    run_training("pixelclip", shards, out / "run", config=DEMO, steps=3,
                 overrides=["tensorboard=false", "log_every=1", "batch_size=4"])
    (out / f"rank{info.rank}.json").write_text(json.dumps({"q": q.tolist(), "scores": s.tolist()}))
    D.cleanup()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
