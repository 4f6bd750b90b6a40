"""Uploaded bytes -> a safe RGB array: size checked from the header before decoding, then capped."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps

from zss.errors import ZssError

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 40_000_000      # header size above this is refused before any pixel is decoded
MIN_SIDE = 8                 # a 1x1 (or 3x5) image has no patch to segment


def decode_upload(data: bytes, max_side: int) -> np.ndarray:
    """RGB uint8 [H,W,3] with EXIF orientation applied and the long side <= `max_side`.
    Anything that is not a usable image is a `ZssError` with a message for the page."""
    if not data:
        raise ZssError("no image: upload a file or pick an example")
    if len(data) > MAX_UPLOAD_BYTES:
        raise ZssError(f"file too large ({len(data) / 1e6:.1f} MB > {MAX_UPLOAD_BYTES / 1e6:.0f} MB)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
                if w * h > MAX_PIXELS:
                    raise ZssError(f"image too large to decode ({w}x{h} pixels > {MAX_PIXELS:,}); "
                                   "downscale it first")
                if min(w, h) < MIN_SIDE:
                    raise ZssError(f"image too small ({w}x{h}); both sides must be >= {MIN_SIDE} px")
                im = ImageOps.exif_transpose(im).convert("RGB")
                if max(im.size) > max_side:
                    im.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
                return np.array(im)
    except ZssError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ZssError(f"image refused (decompression bomb): {exc}") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        if isinstance(exc, Image.UnidentifiedImageError):
            raise ZssError("not an image (no format Pillow reads: PNG, JPEG, WebP, ...)") from exc
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ZssError(f"not a readable image: {first}") from exc
