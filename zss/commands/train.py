"""`zss train RECIPE SHARDS RUN`: resolve the config, pick the recipe, run the shared loop."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import yaml

from zss.errors import ZssError
from zss.paths import shipped_file
from zss.trainer.config import TrainConfig
from zss.utils.config import from_dict, load_config, to_dict


def _given_keys(config: Optional[Path], overrides: list[str]) -> set[str]:
    """Top-level loop keys the user set in the YAML file or with --set (recipe defaults yield to them)."""
    keys = {o.split("=", 1)[0].split(".")[0] for o in overrides}
    if config is not None and Path(config).is_file():
        data = yaml.safe_load(Path(config).read_text()) or {}
        keys |= set(data) if isinstance(data, dict) else set()
    return keys


def run_training(recipe: str, shards: Path, run_dir: Path, config: Optional[Path] = None,
                 steps: Optional[int] = None, epochs: Optional[float] = None, resume: bool = False,
                 overrides: Optional[list[str]] = None) -> str:
    """Train `recipe` on `shards` into `run_dir`; returns a one-line summary for the CLI.

    Precedence: defaults < YAML `config` < `--set key=value` < `--steps/--epochs`. On
    `--resume` without `--config`, the run's own `config.yaml` is reused so the run continues
    with the settings it started with.
    """
    from zss.trainer.loop import train
    from zss.recipes import get_recipe

    cls = get_recipe(recipe)
    if config is not None:
        config = shipped_file("train", config, "train config")   # a path, or a shipped name
    shards, run_dir = Path(shards), Path(run_dir)
    if not (shards / "manifest.json").is_file():
        raise ZssError(f"{shards} is not a shard folder (no manifest.json); run `zss ingest` first")
    if config is None and resume and (run_dir / "config.yaml").is_file():
        config = run_dir / "config.yaml"
    cfg = load_config(TrainConfig, config, overrides=overrides)
    given = _given_keys(config, overrides or [])
    for key, value in cls.loop_defaults.items():
        if key not in given:
            setattr(cfg, key, value)
    if steps is not None:
        cfg.steps, cfg.epochs = steps, None
    elif epochs is not None:
        cfg.steps, cfg.epochs = None, epochs
    recipe_cfg = from_dict(cls.config_cls, cfg.recipe)
    cfg.recipe = to_dict(recipe_cfg)
    resolved = to_dict(cfg)
    rec = cls(recipe_cfg, shards, cfg)
    out = train(rec, cfg, run_dir, resume=resume, resolved_config=resolved)
    return f"trained {recipe} on {shards} -> model directory {out}"
