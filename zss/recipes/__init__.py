"""The training recipes, one package each, and the two look-ups the commands need.

- `zss.recipes.simzss`: SimZSS (text tower trained on cached frozen-ViT patch tokens + captions).
- `zss.recipes.pixelclip`: PixelCLIP (CLIP image side trained from unlabeled masks via prompts).

`get_recipe(name)` gives the `zss.trainer.recipe.Recipe` class behind `zss train NAME`;
`load_segmenter(spec)` turns a model directory (any recipe's kind) or an `openclip:ARCH[:CKPT]`
spec into a `zss.models.segmenter.Segmenter`. The trainer and models layers never import this
package: it sits above them and wires the recipes in.
"""

from __future__ import annotations

from pathlib import Path

import torch

from zss.errors import ZssError
from zss.formats.model_dir import read_model_config, resolve_model_dir
from zss.formats.specs import is_openclip_spec
from zss.recipes.pixelclip import PixelCLIPRecipe, PixelCLIPSegmenter
from zss.recipes.simzss import SimZSSRecipe, SimZSSSegmenter
from zss.trainer.recipe import Recipe

RECIPES: dict[str, type[Recipe]] = {cls.name: cls for cls in (SimZSSRecipe, PixelCLIPRecipe)}
# model-directory kind (config.json "kind") -> segmenter class that reads it
SEGMENTERS = {"simzss": SimZSSSegmenter, "pixelclip": PixelCLIPSegmenter}


def get_recipe(name: str) -> type[Recipe]:
    """The recipe class registered as `name`."""
    if name not in RECIPES:
        raise ZssError(f"unknown recipe {name!r}; choose one of: {', '.join(sorted(RECIPES))}")
    return RECIPES[name]


def load_segmenter(spec: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """A model directory (`config.json` kind simzss|pixelclip, or a run dir) or `openclip:ARCH[:CKPT]`
    (the training-free MaskCLIP baseline), in eval mode on `device`."""
    from zss.models.clip_dense import OpenCLIPSegmenter

    text = str(spec)
    if is_openclip_spec(text):
        return OpenCLIPSegmenter.from_spec(text, device).to(device).eval()
    path = Path(text)
    if not path.exists():
        raise ZssError(f"model {text!r} is neither a directory nor openclip:ARCH[:CKPT]")
    if not path.is_dir():
        raise ZssError(f"model {text!r} is a file; give its model directory or openclip:ARCH:{text}")
    model_dir = resolve_model_dir(path)
    config = read_model_config(model_dir, tuple(SEGMENTERS))
    model = SEGMENTERS[config["kind"]].from_dir(model_dir, device, config)
    return model.to(device).eval()


__all__ = ["RECIPES", "SEGMENTERS", "get_recipe", "load_segmenter"]
