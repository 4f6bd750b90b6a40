"""PixelCLIP building blocks (Shin et al., NeurIPS 2024), each testable on its own.

prompts (learnable class prompts through the frozen text tower), sinkhorn (equipartitioned online
clustering), targets (cluster-merged binary masks), decoder (cosine maps -> mask logits), ema
(momentum teacher), augment (weak/strong views of one crop), losses (BCE over covered pixels),
model (student, EMA teacher, prompts, decoder in one module), modes (the cached and full
training modes, two objects behind one interface), dino_masks (online DINO masks for the full
mode, `masks: dino-online`).
`recipe` wires them into the shared training loop; `segmenter` writes and reads the model directory;
`release` imports the authors' checkpoints (`zss import pixelclip`); `explain` names the learned
prompts (`zss prompts explain`); `analysis` measures cluster agreement with ground truth.

This file is the recipe's plug for the registry in `zss.recipes`: the recipe and segmenter classes
(loaded on use, they pull in torch) and its two commands as plain declarations.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

from zss.utils.cli_spec import Command, CommandGroup, Param

if TYPE_CHECKING:
    from zss.recipes.pixelclip.recipe import PixelCLIPRecipe
    from zss.recipes.pixelclip.segmenter import PixelCLIPSegmenter


def recipe_class() -> type[PixelCLIPRecipe]:
    """The `zss.trainer.recipe.Recipe` behind `zss train pixelclip`."""
    from zss.recipes.pixelclip.recipe import PixelCLIPRecipe

    return PixelCLIPRecipe


def segmenter_class() -> type[PixelCLIPSegmenter]:
    """The reader of model directories of kind "pixelclip"."""
    from zss.recipes.pixelclip.segmenter import PixelCLIPSegmenter

    return PixelCLIPSegmenter


def _import_release(ckpt: Path, out: Path, arch: Optional[str], img_size: Optional[int]) -> str:
    from zss.recipes.pixelclip.release import import_pixelclip

    return import_pixelclip(ckpt, out, arch=arch, img_size=img_size)


def _explain(run: Path, k: int, out: Optional[Path]) -> str:
    from zss.recipes.pixelclip.explain import explain_prompts

    return explain_prompts(run_dir=run, k=k, out=out)


IMPORT_RELEASE = Command(
    "pixelclip", "Map a PixelCLIP release checkpoint into a model directory for `zss eval` and `zss segment`.",
    _import_release,
    (Param("ckpt", Path, "Released PixelCLIP checkpoint (detectron2 .pth)."),
     Param("out", Path, "Output zss model directory."),
     Param("arch", Optional[str], "OpenCLIP arch (default: ViT-B-16-quickgelu or convnext_base_w_320, "
           "detected).", ("--arch",)),
     Param("img_size", Optional[int], "Inference side (default 320 ViT-B, 640 ConvNeXt-B).", ("--img-size",))))

COMMAND_GROUPS = (CommandGroup("prompts", "Inspect PixelCLIP's learned prompts.", (Command(
    "explain", "Name each learned prompt by its nearest concepts and draw a 2-D map.", _explain,
    (Param("run", Path, "PixelCLIP run directory."),
     Param("k", int, None, ("-k",), 3, min=1),
     Param("out", Optional[Path], "PNG map path.", ("--out",)))),)),)
