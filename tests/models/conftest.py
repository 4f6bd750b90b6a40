"""Random-weight checkpoints for the model tests, written once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from zss.models.random_init import save_random_timm


@pytest.fixture(scope="session")
def vit_s14(tmp_path_factory) -> Path:
    """A random `vit_small_patch14_dinov2` saved as safetensors (pos-embeds for 56 px)."""
    return save_random_timm("vit_small_patch14_dinov2", tmp_path_factory.mktemp("ckpt") / "vits14.safetensors",
                            img_size=56, seed=0)
