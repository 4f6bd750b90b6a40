"""The training configuration: the loop's knobs plus one recipe-specific section.

The loop's fields are shared by every recipe; `recipe` holds the recipe's own dataclass fields as a
mapping so one YAML file (and `--set recipe.key=value`) configures both. `zss.commands.train` parses the
section into the recipe's `config_cls` and writes the fully resolved config to `RUN/config.yaml`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass
class TrainConfig:
    """Loop settings (optimiser, schedule, data stream, logging, checkpoints)."""

    seed: int = 0
    steps: Optional[int] = None            # optimizer steps; wins over `epochs`
    epochs: Optional[float] = None         # passes over the shards when `steps` is unset
    batch_size: int = 64                   # per process, per micro-step
    accum_steps: int = 1                   # micro-steps per optimizer step
    lr: float = 5e-4
    weight_decay: float = 0.2              # none on gains, biases, logit scales (see Recipe)
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-6
    warmup: float = 0.05                   # fraction of the optimizer steps, linear from 0
    min_lr_ratio: float = 0.0              # cosine floor as a fraction of `lr`
    grad_clip: float = 0.0                 # max global grad norm; 0 = off
    amp: bool = True                       # mixed precision, CUDA only (no effect on CPU)
    device: str = "auto"                   # auto = CUDA when present
    num_workers: int = 0                   # data-loader worker processes per training process
    shuffle_buffer: int = 1000             # samples held by each reader's shuffling buffer
    log_every: int = 10                    # optimizer steps between metrics rows
    ckpt_every: int = 500                  # optimizer steps between checkpoints (and at the end)
    keep_checkpoints: int = 3              # newest checkpoints kept on disk; 0 = keep all
    tensorboard: bool = True
    max_bad_fraction: float = 0.01         # share of samples lost to damaged shards before the run stops
    recipe: dict[str, Any] = field(default_factory=dict)  # the recipe's own config_cls fields
