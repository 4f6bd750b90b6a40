"""SimZSS (Stegmueller et al., ICLR 2025) on cached frozen-ViT features: only the text side learns.

text_tower (the causal text transformer), losses (global InfoNCE and the concept-local loss, pure
functions), recipe (config, trainable module, shard decoding, the loss the loop calls, export),
segmenter (the model directory's reader: text tower + frozen backbone as a Segmenter), release
(`zss import simzss`: the authors' released checkpoint as a model directory).

This file is the recipe's plug for the registry in `zss.recipes`: the recipe and segmenter classes
(loaded on use, they pull in torch) and the `zss import simzss` command as a plain declaration.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from zss.utils.cli_spec import Command, Param

if TYPE_CHECKING:
    from zss.recipes.simzss.recipe import SimZSSRecipe
    from zss.recipes.simzss.segmenter import SimZSSSegmenter


def recipe_class() -> type[SimZSSRecipe]:
    """The `zss.trainer.recipe.Recipe` behind `zss train simzss`."""
    from zss.recipes.simzss.recipe import SimZSSRecipe

    return SimZSSRecipe


def segmenter_class() -> type[SimZSSSegmenter]:
    """The reader of model directories of kind "simzss"."""
    from zss.recipes.simzss.segmenter import SimZSSSegmenter

    return SimZSSSegmenter


def _import_release(ckpt: Path, out: Path, backbone: str) -> str:
    from zss.recipes.simzss.release import import_simzss

    return f"wrote {import_simzss(ckpt, out, backbone)}"


IMPORT_RELEASE = Command(
    "simzss", "A SimZSS release checkpoint (github.com/tileb1/simzss) -> a model directory for eval/segment.",
    _import_release,
    (Param("ckpt", Path, "The release's checkpoint file (.pt/.pth)."),
     Param("out", Path, "Model directory to write."),
     Param("backbone", str, "timm name of the release's frozen ViT.", ("--backbone",),
           "vit_base_patch14_reg4_dinov2")))
