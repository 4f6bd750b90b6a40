"""Random-weight twins of the real models, saved as local files and loaded back through the real
loaders — how tests and the offline demo exercise the exact code paths real checkpoints take.
"""

from __future__ import annotations

from pathlib import Path

import torch

from zss.formats.weights import save_state_dict
from zss.models.backbone import create_timm_vit


def save_random_timm(name: str, path: str | Path, img_size: int = 224, seed: int = 0) -> Path:
    """A timm ViT `name` with seeded random weights, as safetensors at `path`.

    Load it with `load_backbone(name, path, img_size)`; the same seed gives the same bytes.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = create_timm_vit(name, img_size, checkpoint=None, pretrained=False)
    return save_state_dict(model, path)


def save_random_sam(kind: str, path: str | Path, seed: int = 0) -> Path:
    """A SAM of `kind` (`vit_b`, ..., `test_tiny`) with seeded random weights, as safetensors."""
    from zss.models.sam import build_sam

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sam = build_sam(kind)
    return save_state_dict(sam, path)


def save_random_openclip(arch: str, path: str | Path, seed: int = 0) -> Path:
    """An OpenCLIP `arch` with seeded random weights (zss.models.clip_dense owns the builder);
    here so every random twin is one import away (docs/models.md)."""
    from zss.models.clip_dense import save_random_openclip as save

    return save(arch, path, seed)
