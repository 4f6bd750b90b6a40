"""Ingest-area fixtures: random tiny SAM / ViT / CLIP checkpoints, a decompression-bomb PNG, a class file."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_sam(tmp_path_factory) -> str:
    """`KIND:PATH` of a random `test_tiny` SAM saved as safetensors."""
    from zss.models.random_init import save_random_sam

    path = save_random_sam("test_tiny", tmp_path_factory.mktemp("sam") / "sam_tiny.safetensors", seed=0)
    return f"test_tiny:{path}"


@pytest.fixture(scope="session")
def bomb_png() -> bytes:
    """A ~60-byte PNG whose header claims 30000 x 30000 pixels (no pixel data behind it)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b""))
            + chunk(b"IEND", b""))

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
