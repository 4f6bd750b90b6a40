"""Pipeline-area fixtures: one local 2-CPU Ray instance shared by the in-process ingest tests (the
runner joins an initialised Ray instead of starting its own), and a random tiny SAM checkpoint."""

from __future__ import annotations

import logging
import struct
import zlib

import pytest


@pytest.fixture(scope="session")
def ray_2cpu():
    """2 CPUs, like the machine: also what proves model actors never starve the decode tasks.
    Started once for the pipeline tests (Ray start-up costs seconds), stopped at session end."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR)
    yield
    if started:
        ray.shutdown()


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
