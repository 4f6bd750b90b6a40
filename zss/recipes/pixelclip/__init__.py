"""PixelCLIP building blocks (Shin et al., NeurIPS 2024), each testable on its own.

prompts (learnable class prompts through the frozen text tower), sinkhorn (equipartitioned online
clustering), targets (cluster-merged binary masks), decoder (cosine maps -> mask logits), ema
(momentum teacher), augment (weak/strong views of one crop), losses (BCE over covered pixels),
model (student, EMA teacher, prompts, decoder in one module), modes (the cached and full
training modes, two objects behind one interface). `recipe` wires them into the shared training loop; `segmenter` writes and reads the model directory; `explain` names the learned
prompts; `analysis` measures cluster agreement with ground truth.
"""

from zss.recipes.pixelclip.recipe import PixelCLIPConfig, PixelCLIPRecipe
from zss.recipes.pixelclip.segmenter import PixelCLIPSegmenter

__all__ = ["PixelCLIPConfig", "PixelCLIPRecipe", "PixelCLIPSegmenter"]
