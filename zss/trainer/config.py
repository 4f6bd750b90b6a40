"""The training configuration: the loop's knobs plus one recipe-specific section.

The loop's fields are shared by every recipe; `recipe` holds the recipe's own dataclass fields as a
mapping so one YAML file (and `--set recipe.key=value`) configures both. Each field declares its
allowed range (`setting`), checked by `zss.utils.config.from_dict` for YAML, CLI options and
`--set` alike. `zss.commands.train` parses the section into the recipe's `config_cls` and writes the
fully resolved config to `RUN/config.yaml`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from zss.utils.config import setting


@dataclass
class TrainConfig:
    """Loop settings (optimiser, schedule, data stream, logging, checkpoints)."""

    seed: int = setting(0, ge=0)
    steps: Optional[int] = setting(None, ge=1)          # optimizer steps; wins over `epochs`
    epochs: Optional[float] = setting(None, gt=0)       # passes over the shards when `steps` is unset
    batch_size: int = setting(64, ge=1)                 # per process, per micro-step
    accum_steps: int = setting(1, ge=1)                 # micro-steps per optimizer step
    lr: float = setting(5e-4, gt=0)
    weight_decay: float = setting(0.2, ge=0)            # none on gains, biases, logit scales (see Recipe)
    beta1: float = setting(0.9, ge=0, lt=1)
    beta2: float = setting(0.98, ge=0, lt=1)
    eps: float = setting(1e-6, gt=0)
    warmup: float = setting(0.05, ge=0, lt=1)           # fraction of the optimizer steps, linear from 0
    min_lr_ratio: float = setting(0.0, ge=0, le=1)      # cosine floor as a fraction of `lr`
    grad_clip: float = setting(0.0, ge=0)               # max global grad norm; 0 = off
    amp: bool = True                                    # mixed precision, CUDA only (no effect on CPU)
    device: str = "auto"                                # auto = CUDA when present
    num_workers: int = setting(0, ge=0)                 # data-loader worker processes per training process
    shuffle_buffer: int = setting(1000, ge=1)           # samples held by each reader's shuffling buffer
    log_every: int = setting(10, ge=1)                  # optimizer steps between metrics rows
    ckpt_every: int = setting(500, ge=1)                # optimizer steps between checkpoints (and at the end)
    keep_checkpoints: int = setting(3, ge=0)            # newest checkpoints kept on disk; 0 = keep all
    tensorboard: bool = True
    max_bad_fraction: float = setting(0.01, ge=0.0, le=1.0)        # share of samples lost to damaged shards before the run stops
    recipe: dict[str, Any] = field(default_factory=dict)  # the recipe's own config_cls fields
