"""The joint recipe: captions and class-agnostic masks of the same cached images in one run.

losses (the mask-level terms: region–word MIL, mask consistency, Sinkhorn region clustering, region
padding for concept-to-region attention), regions (a sample's masks as area fractions on its patch
grid), recipe (config and the SimZSS recipe extended with the mask terms). Its model directories
(kind "joint") are SimZSS's layout, read by SimZSS's segmenter. docs/joint.md has the method and
its measurements.

Declared dependencies (tests/test_architecture.py RECIPE_DEPENDS): joint imports SimZSS (text tower,
losses, recipe, segmenter) and PixelCLIP (Sinkhorn, mask decoding and pooling); neither imports joint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zss.recipes.joint.recipe import JointRecipe
    from zss.recipes.simzss.segmenter import SimZSSSegmenter


def recipe_class() -> type[JointRecipe]:
    """The `zss.trainer.recipe.Recipe` behind `zss train joint`."""
    from zss.recipes.joint.recipe import JointRecipe

    return JointRecipe


def segmenter_class() -> type[SimZSSSegmenter]:
    """The reader of model directories of kind "joint": SimZSS's (text tower + frozen backbone)."""
    from zss.recipes.simzss.segmenter import SimZSSSegmenter

    return SimZSSSegmenter
