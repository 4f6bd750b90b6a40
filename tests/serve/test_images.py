"""Upload checks of `zss serve`: every bad upload is a ZssError (a message on the page), never a crash."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from zss.errors import ZssError
from zss.serve.images import MAX_PIXELS, decode_upload


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def test_rgb_image_round_trips_and_is_capped():
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)
    out = decode_upload(png_bytes(Image.fromarray(arr)), max_side=1024)
    np.testing.assert_array_equal(out, arr)
    capped = decode_upload(png_bytes(Image.fromarray(arr)), max_side=30)
    assert capped.shape == (20, 30, 3)                 # long side capped, aspect kept


def test_gray_and_rgba_become_rgb():
    assert decode_upload(png_bytes(Image.new("L", (16, 12), 7)), 64).shape == (12, 16, 3)
    assert decode_upload(png_bytes(Image.new("RGBA", (16, 12))), 64).shape == (12, 16, 3)


@pytest.mark.parametrize("data, words", [
    (b"", "no image"),
    (b"%PDF-1.4 not an image at all", "not an image"),
    (png_bytes(Image.new("RGB", (1, 1))), "too small"),
])
def test_bad_uploads_are_messages(data, words):
    with pytest.raises(ZssError, match=words):
        decode_upload(data, 1024)


def test_truncated_image_is_a_message():
    data = png_bytes(Image.new("RGB", (64, 64), (3, 4, 5)))
    with pytest.raises(ZssError, match="not a readable image"):
        decode_upload(data[:len(data) // 2], 1024)


def test_decompression_bomb_is_refused_from_the_header():
    side = int(MAX_PIXELS ** 0.5) + 100               # a few KB on disk, > MAX_PIXELS decoded
    data = png_bytes(Image.new("1", (side, side)))
    assert len(data) < 200_000
    with pytest.raises(ZssError, match="too large"):
        decode_upload(data, 1024)
