"""Random-weight checkpoints and a small class list shared by the model-stage tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def vit_ckpt(tmp_path_factory) -> Path:
    from zss.models.random_init import save_random_timm

    return save_random_timm("vit_small_patch14_dinov2", tmp_path_factory.mktemp("vit") / "vits14.safetensors",
                            img_size=28, seed=0)


@pytest.fixture(scope="session")
def sam_ckpt(tmp_path_factory) -> Path:
    from zss.models.random_init import save_random_sam

    return save_random_sam("test_tiny", tmp_path_factory.mktemp("sam") / "sam_tiny.safetensors", seed=0)


@pytest.fixture(scope="session")
def clip_ckpt(tmp_path_factory) -> Path:
    from zss.models.clip_dense import save_random_openclip

    return save_random_openclip("zss-tiny-vit", tmp_path_factory.mktemp("clip") / "clip.safetensors", seed=0)


@pytest.fixture()
def class_file(tmp_path) -> Path:
    """A world's classes.txt: one class per line, synonyms after ';'."""
    path = tmp_path / "classes.txt"
    path.write_text("grass;lawn\nball;sphere\ntraffic cone\nwall\ncar;automobile\n", encoding="utf-8")
    return path
