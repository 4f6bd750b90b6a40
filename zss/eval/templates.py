"""Prompt templates and template-averaged class embeddings.

The 80 ImageNet templates are CLIP's (Radford et al. 2021), which SCLIP/MaskCLIP-style evaluation uses;
a class word is embedded under every template, each embedding L2-normalised, averaged, and normalised
again, so one bad template cannot dominate.
"""

from __future__ import annotations

from typing import Callable

import torch

from zss.errors import ZssError

IMAGENET_TEMPLATES: tuple[str, ...] = (
    "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.", "a photo of the hard to see {}.",
    "a low resolution photo of the {}.", "a rendering of a {}.", "graffiti of a {}.", "a bad photo of the {}.",
    "a cropped photo of the {}.", "a tattoo of a {}.", "the embroidered {}.", "a photo of a hard to see {}.",
    "a bright photo of a {}.", "a photo of a clean {}.", "a photo of a dirty {}.", "a dark photo of the {}.",
    "a drawing of a {}.", "a photo of my {}.", "the plastic {}.", "a photo of the cool {}.",
    "a close-up photo of a {}.", "a black and white photo of the {}.", "a painting of the {}.",
    "a painting of a {}.", "a pixelated photo of the {}.", "a sculpture of the {}.", "a bright photo of the {}.",
    "a cropped photo of a {}.", "a plastic {}.", "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.", "a photo of the {}.", "a good photo of the {}.", "a rendering of the {}.",
    "a {} in a video game.", "a photo of one {}.", "a doodle of a {}.", "a close-up photo of the {}.",
    "a photo of a {}.", "the origami {}.", "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.",
    "a origami {}.", "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.",
    "a photo of the clean {}.", "a photo of a large {}.", "a rendition of a {}.", "a photo of a nice {}.",
    "a photo of a weird {}.", "a blurry photo of a {}.", "a cartoon {}.", "art of a {}.", "a sketch of the {}.",
    "a embroidered {}.", "a pixelated photo of a {}.", "itap of the {}.", "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.", "a plushie {}.", "a photo of the nice {}.", "a photo of the small {}.",
    "a photo of the weird {}.", "the cartoon {}.", "art of the {}.", "a drawing of the {}.",
    "a photo of the large {}.", "a black and white photo of a {}.", "the plushie {}.", "a dark photo of a {}.",
    "itap of a {}.", "graffiti of the {}.", "a toy {}.", "itap of my {}.", "a photo of a cool {}.",
    "a photo of a small {}.", "a tattoo of the {}.",
)

# CLIP's recommended 7-template subset (found by sequential forward selection on ImageNet).
IMAGENET_TEMPLATES_7: tuple[str, ...] = (
    "itap of a {}.", "a bad photo of the {}.", "a origami {}.", "a photo of the large {}.",
    "a {} in a video game.", "art of the {}.", "a photo of the small {}.",
)

# Talk2DINO's 7-template list: CLIP's subset with "a bad photo of a {}." in place of "... of the {}.".
TALK2DINO_TEMPLATES_7: tuple[str, ...] = tuple(
    "a bad photo of a {}." if t == "a bad photo of the {}." else t for t in IMAGENET_TEMPLATES_7)

# PixelCLIP's `imagenet_select`: CLIP's 7 plus one scene prompt (no final period).
IMAGENET_SELECT: tuple[str, ...] = IMAGENET_TEMPLATES_7 + ("A photo of a {} in the scene",)

TEMPLATE_SETS: dict[str, tuple[str, ...]] = {
    "imagenet80": IMAGENET_TEMPLATES,
    "imagenet7": IMAGENET_TEMPLATES_7,
    "talk2dino7": TALK2DINO_TEMPLATES_7,
    "imagenet_select": IMAGENET_SELECT,
    "photo": ("a photo of a {}.",),
    "scene": ("a photo of a {} in the scene.",),
    "word": ("{}",),
}


def get_templates(name: str) -> tuple[str, ...]:
    """A named template set (imagenet80, imagenet7, talk2dino7, imagenet_select, photo, scene, word)."""
    if name not in TEMPLATE_SETS:
        raise ZssError(f"unknown template set {name!r}; choose from {', '.join(TEMPLATE_SETS)}")
    return TEMPLATE_SETS[name]


@torch.no_grad()
def embed_words(encode_text: Callable[[list[str]], torch.Tensor], words: list[str],
                templates: tuple[str, ...] | list[str], batch_size: int = 256,
                encode_spans: Callable[[list[str], list[tuple[int, int]]], torch.Tensor] | None = None,
                encode_raw: Callable[[list[str]], torch.Tensor] | None = None) -> torch.Tensor:
    """[len(words), C] embeddings: each word under every template, L2-normalised, averaged, renormalised.

    With `encode_spans`, each prompt is embedded from the tokens of the word itself (its char span
    inside the filled template) instead of the whole prompt; that path keeps its own pooling.
    With `encode_raw` (Talk2DINO's `template_mean: raw`), the unnormalised template embeddings are
    averaged and the mean is normalised once.
    """
    prompts = [t.format(w) for w in words for t in templates]
    if encode_spans is not None:
        spans = [(t.index("{}"), t.index("{}") + len(w)) for w in words for t in templates]
        chunks = [encode_spans(prompts[i:i + batch_size], spans[i:i + batch_size]).float()
                  for i in range(0, len(prompts), batch_size)]
    else:
        encode = encode_raw or encode_text
        chunks = [encode(prompts[i:i + batch_size]).float() for i in range(0, len(prompts), batch_size)]
    emb = torch.cat(chunks)
    if encode_raw is None or encode_spans is not None:
        emb = torch.nn.functional.normalize(emb, dim=-1)
    emb = emb.view(len(words), len(templates), -1).mean(dim=1)
    return torch.nn.functional.normalize(emb, dim=-1)
