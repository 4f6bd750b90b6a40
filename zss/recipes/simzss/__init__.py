"""SimZSS (Stegmueller et al., ICLR 2025) on cached frozen-ViT features: only the text side learns.

text_tower (the causal text transformer), losses (global InfoNCE and the concept-local loss, pure
functions), recipe (config, trainable module, shard decoding, the loss the loop calls, export),
segmenter (the model directory's reader: text tower + frozen backbone as a Segmenter).
"""

from zss.recipes.simzss.recipe import SimZSSConfig, SimZSSRecipe
from zss.recipes.simzss.segmenter import SimZSSSegmenter

__all__ = ["SimZSSConfig", "SimZSSRecipe", "SimZSSSegmenter"]
