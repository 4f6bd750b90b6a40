"""The training recipes, one package each, and the registry that wires them into zss.

- `zss.recipes.simzss`: SimZSS (text tower trained on cached frozen-ViT patch tokens + captions).
- `zss.recipes.pixelclip`: PixelCLIP (CLIP image side trained from unlabeled masks via prompts).
- `zss.recipes.joint`: captions + masks of the same cached images in one run (SimZSS's text tower
  with mask-level terms; imports SimZSS and PixelCLIP pieces, a declared dependency).

`RECIPES` holds one `RecipeEntry` per recipe: its name (`zss train NAME`, the "kind" of the model
directories it writes, `zss import NAME`), its `zss.trainer.recipe.Recipe` class, the segmenter class
that reads its model directories, its release importer and any extra command groups. The classes
load on first use (they pull in torch); the commands are plain `zss.utils.cli_spec` declarations that
`zss.cli` turns into typer commands, so `zss --help` lists them without importing a model.

`get_recipe(name)` gives the recipe class behind `zss train NAME`; `load_segmenter(spec)` turns a
model directory (any recipe's kind) or an `openclip:ARCH[:CKPT]` spec into a
`zss.models.segmenter.Segmenter`. The trainer and models layers never import this package: it sits
above them and wires the recipes in. Recipe packages never import each other except along the
edges tests/test_architecture.py declares (joint -> simzss, pixelclip); only this module imports them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from zss.errors import ZssError
from zss.formats.model_dir import read_model_config, resolve_model_dir
from zss.formats.specs import is_openclip_spec, parse_model_spec
from zss.recipes import joint, pixelclip, simzss
from zss.utils.cli_spec import Command, CommandGroup

if TYPE_CHECKING:
    import torch

    from zss.trainer.recipe import Recipe


@dataclass(frozen=True)
class RecipeEntry:
    """One recipe as the rest of zss sees it; adding a recipe = its package + one entry in `RECIPES`."""

    name: str                                     # zss train NAME, model-directory kind, zss import NAME
    recipe: Callable[[], type[Recipe]]            # the Recipe class (imported when called)
    segmenter: Callable[[], type[torch.nn.Module]]  # its from_dir(model_dir, device, config) reads the kind
    importer: Command | None = None               # `zss import NAME`: an authors' release -> model dir
    groups: tuple[CommandGroup, ...] = ()         # extra command groups (`zss prompts explain`)


RECIPES: dict[str, RecipeEntry] = {e.name: e for e in (
    RecipeEntry("simzss", simzss.recipe_class, simzss.segmenter_class, simzss.IMPORT_RELEASE),
    RecipeEntry("pixelclip", pixelclip.recipe_class, pixelclip.segmenter_class, pixelclip.IMPORT_RELEASE,
                pixelclip.COMMAND_GROUPS),
    RecipeEntry("joint", joint.recipe_class, joint.segmenter_class),
)}


def get_recipe(name: str) -> type[Recipe]:
    """The recipe class registered as `name`."""
    if name not in RECIPES:
        raise ZssError(f"unknown recipe {name!r}; choose one of: {', '.join(sorted(RECIPES))}")
    return RECIPES[name].recipe()


def load_segmenter(spec: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """A model directory (`config.json` kind simzss|pixelclip, or a run dir) or `openclip:ARCH[:CKPT]`
    (the training-free MaskCLIP baseline), in eval mode on `device`."""
    from zss.models.clip_dense import OpenCLIPSegmenter

    text = str(spec)
    if is_openclip_spec(text):
        return OpenCLIPSegmenter.from_spec(parse_model_spec(text, "openclip"), device).to(device).eval()
    path = Path(text)
    if not path.exists():
        raise ZssError(f"model {text!r} is neither a directory nor openclip:ARCH[:CKPT]")
    if not path.is_dir():
        raise ZssError(f"model {text!r} is a file; give its model directory or openclip:ARCH:{text}")
    model_dir = resolve_model_dir(path)
    config = read_model_config(model_dir, tuple(RECIPES))
    model = RECIPES[config["kind"]].segmenter().from_dir(model_dir, device, config)
    return model.to(device).eval()


__all__ = ["RECIPES", "RecipeEntry", "get_recipe", "load_segmenter"]
