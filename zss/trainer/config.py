"""The training configuration: the loop's knobs plus one recipe-specific section.

The loop's fields are shared by every recipe; `recipe` holds the recipe's own dataclass fields as a
mapping so one YAML file (and `--set recipe.key=value`) configures both. Each field declares its
allowed range (`setting`), checked by `zss.utils.config.from_dict` for YAML, CLI options and
`--set` alike. `zss.commands.train` parses the section into the recipe's `config_cls` and writes the
fully resolved config to `RUN/config.yaml`, with what the run computed from it under `resolved:` (the
learning rate after `lr_scaling`, the process count); a run's config.yaml read back ignores that key.
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
    lr: float = setting(5e-4, gt=0)                     # the base rate; `lr_scaling` may scale it
    lr_scaling: str = setting("none", choices=("none", "linear-256"))  # linear-256: lr * batch * processes / 256
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


RESOLVED_KEY = "resolved"  # config.yaml's record of what the run computed (not a TrainConfig field)


def effective_lr(cfg: TrainConfig, world_size: int) -> float:
    """The peak learning rate the run uses. `linear-256` is SimZSS's rule (its src/training/main.py
    L320-322): lr * batch_size * world_size / 256, with `batch_size` per process and gradient
    accumulation not counted, as there; `none` keeps `lr`."""
    if cfg.lr_scaling == "linear-256":
        return cfg.lr * cfg.batch_size * world_size / 256.0
    return cfg.lr


def lr_rule_text(cfg: TrainConfig, world_size: int) -> str:
    """One line for the run's start: the base rate, the rule and the rate it gives."""
    lr = effective_lr(cfg, world_size)
    if cfg.lr_scaling == "none":
        return f"lr {lr:.4g} (lr_scaling none)"
    return (f"lr {cfg.lr:.4g} x ({cfg.batch_size} x {world_size} process{'es' if world_size != 1 else ''}) / 256"
            f" = {lr:.4g} (lr_scaling {cfg.lr_scaling})")
