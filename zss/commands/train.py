"""`zss train RECIPE SHARDS RUN`: resolve the config, pick the recipe, run the shared loop."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from zss.errors import ZssError
from zss.formats import storage
from zss.paths import shipped_file
from zss.trainer.config import RESOLVED_KEY, TrainConfig
from zss.utils.config import from_dict, load_config, merge_into, read_yaml, to_dict


def resolve_config(recipe: str, config: Optional[Path] = None, steps: Optional[int] = None,
                   epochs: Optional[float] = None, overrides: Optional[list[str]] = None
                   ) -> tuple[type, TrainConfig, Any]:
    """(recipe class, loop config, recipe config), every value typed and range-checked.

    Precedence: TrainConfig defaults < the recipe's `loop_defaults` < YAML `config` < CLI options
    (`--steps` / `--epochs`; giving one clears the other) < `--set key=value`.
    """
    from zss.recipes import get_recipe

    cls = get_recipe(recipe)
    cli: list[str] = []
    if steps is not None:
        cli = [f"steps={int(steps)}", "epochs=null"]
    elif epochs is not None:
        cli = ["steps=null", f"epochs={float(epochs)!r}"]
    defaults = merge_into({}, dict(cls.loop_defaults), keep_none=True)
    if config is not None:  # a run's config.yaml also records what the run computed (`resolved:`)
        file = read_yaml(config)
        file.pop(RESOLVED_KEY, None)
        config, defaults = None, merge_into(defaults, file, keep_none=True)
    cfg = load_config(TrainConfig, config, overrides=cli + list(overrides or []), defaults=defaults)
    recipe_cfg = from_dict(cls.config_cls, cfg.recipe, prefix="recipe.")
    cfg.recipe = to_dict(recipe_cfg)
    return cls, cfg, recipe_cfg


def _check_shards(shards: Path | str) -> None:
    if not storage.exists(storage.join(shards, "manifest.json")):
        raise ZssError(f"{shards} is not a shard folder (no manifest.json); run `zss ingest` first")


def run_training(recipe: str, shards: Path | str, run_dir: Path, config: Optional[Path] = None,
                 steps: Optional[int] = None, epochs: Optional[float] = None, resume: bool = False,
                 overrides: Optional[list[str]] = None) -> str:
    """Train `recipe` on `shards` into `run_dir`; returns a one-line summary for the CLI.

    The config is resolved and checked (`resolve_config`) before anything is read or written. On
    `--resume` without `--config`, the run's own `config.yaml` is reused so the run continues
    with the settings it started with.
    """
    from zss.trainer.loop import train

    if config is not None:
        config = shipped_file("train", config, "train config")   # a path, or a shipped name
    shards, run_dir = storage.location(shards), Path(run_dir)  # SHARDS may be a URL (s3://...)
    if config is None and resume and (run_dir / "config.yaml").is_file():
        config = run_dir / "config.yaml"
    cls, cfg, recipe_cfg = resolve_config(recipe, config, steps, epochs, overrides)
    _check_shards(shards)
    resolved = to_dict(cfg)
    rec = cls(recipe_cfg, shards, cfg)
    out = train(rec, cfg, run_dir, resume=resume, resolved_config=resolved)
    return f"trained {recipe} on {shards} -> model directory {out}"


def export_untrained(recipe: str, shards: Path | str, out: Path, config: Optional[Path] = None,
                     overrides: Optional[list[str]] = None) -> str:
    """Write the model directory of `recipe` as the loop would build it before its first step
    (same seed, same config): the untrained baseline the demo scores against."""
    import torch

    shards = storage.location(shards)
    cls, cfg, recipe_cfg = resolve_config(recipe, config, overrides=overrides)
    _check_shards(shards)
    rec = cls(recipe_cfg, shards, cfg)
    torch.manual_seed(cfg.seed)
    rec.export(rec.build_model(), Path(out))
    return f"untrained {recipe} model directory {out}"
