"""Decode and resize: encoded bytes -> RGB uint8 at the backbone's input size.

Real corpora hold every kind of image (CMYK JPEGs, 16-bit PNGs, palettes with transparency,
EXIF-rotated phone photos, decompression bombs, truncated files), so this stage turns each into
RGB or into a row status, never an exception. The pixel cap is checked on the header, before any
pixel is decoded. SA-1B masks travel at the original size and are rescaled here to the resized
image, so every later stage sees masks and image at the same `size`.

Augmented views (`views` V > 1): besides the image (view 0, the whole picture, exactly what V = 1
stores), V - 1 random-resized crops of the original are drawn, seeded by (`view_seed`, the sample's
row index, the view index), so a resumed run crops the same boxes. Only features are computed for
them (masks, concepts and the stored JPEG belong to view 0).

Centre square (`center_square` N > 0, SimZSS's img2dataset `--image_size N --resize_mode center_crop`):
the image is first cut to its centred square (side = the short side), view 0 is that square resized,
and the crops of views 1..V-1 are drawn on an N x N grid over that square (boxes still recorded in
original pixels), so no view ever sees the cut-off sides and none is squashed.
"""

from __future__ import annotations

import io
import json
import math
import random
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps
from pycocotools import mask as mask_utils

from zss.errors import ZssError
from zss.formats.rle import encode_mask
from zss.utils.config import setting

MODES = ("square", "short_side")
# Aspect ratios (w / h) a view's crop box may take: torchvision's RandomResizedCrop default, which the
# SimZSS release keeps (it only sets the scale).
VIEW_RATIO = (3 / 4, 4 / 3)
VIEW_ATTEMPTS = 10


@dataclass
class DecodeConfig:
    """How images become backbone inputs.

    `resize`: `square` (img_size x img_size, aspect not kept: one grid for every image, so batches
    stack) or `short_side` (short side to img_size, aspect kept, both sides rounded to the patch
    grid; then the `image` column is an object array of per-image arrays).
    """

    img_size: int = setting(224, ge=1)
    resize: str = "square"
    patch_size: int = setting(14, ge=1)
    max_pixels: int = setting(64_000_000, ge=1)  # header-checked cap against decompression bombs
    max_long_side: int = setting(0, ge=0)  # short_side mode: cap the long side too (0 = 2 * img_size)
    store_jpg: bool = True
    jpeg_quality: int = setting(90, ge=1, le=100)
    background: int = setting(255, ge=0, le=255)  # what transparent pixels are composited onto
    # Views per image: 1 = the image only (no crop); V > 1 adds V - 1 random-resized crops (area a
    # fraction in [view_scale_min, view_scale_max] of the original, aspect in VIEW_RATIO, bicubic).
    views: int = setting(1, ge=1, le=64)
    view_scale_min: float = setting(0.9, gt=0, le=1)
    view_scale_max: float = setting(1.0, gt=0, le=1)
    view_seed: int = setting(0, ge=0)
    center_square: int = setting(0, ge=0)  # N > 0: keep the centred square only, crops drawn on an N x N grid


def view_region(orig: tuple[int, int], cfg: DecodeConfig) -> tuple[int, int, int, int]:
    """The part of an (H, W) original every view comes from, (top, left, height, width): the whole
    image, or with `center_square` the centred square whose side is the short side."""
    h, w = orig
    if cfg.center_square <= 0:
        return 0, 0, h, w
    side = min(h, w)
    return (h - side) // 2, (w - side) // 2, side, side


class DecodeError(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def _round_to_grid(x: float, patch: int) -> int:
    return max(patch, int(round(x / patch)) * patch)


def target_size(h: int, w: int, cfg: DecodeConfig) -> tuple[int, int]:
    """(h, w) after resizing, always a multiple of the patch size."""
    if cfg.resize == "square":
        side = _round_to_grid(cfg.img_size, cfg.patch_size)
        return side, side
    scale = cfg.img_size / min(h, w)
    long_cap = cfg.max_long_side or 2 * cfg.img_size
    scale = min(scale, long_cap / max(h, w))
    return _round_to_grid(h * scale, cfg.patch_size), _round_to_grid(w * scale, cfg.patch_size)


def _to_rgb(im: Image.Image, background: int) -> Image.Image:
    """Any Pillow mode -> RGB: 16/32-bit scaled (not clipped), alpha composited, CMYK/P/L converted."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        im = im.convert("RGBA")
        canvas = Image.new("RGBA", im.size, (background, background, background, 255))
        return Image.alpha_composite(canvas, im).convert("RGB")
    return im.convert("RGB") if im.mode != "RGB" else im


def view_rng(seed: int, index: int, view: int) -> random.Random:
    """The RNG of one view's crop: a function of (seed, row index, view index) only."""
    return random.Random(f"zss-view-{seed}-{index}-{view}")


def crop_box(h: int, w: int, rng: random.Random, scale: tuple[float, float],
             ratio: tuple[float, float] = VIEW_RATIO) -> tuple[int, int, int, int]:
    """A random-resized-crop box (top, left, height, width) in an h x w image.

    torchvision's rule: up to 10 draws of an area fraction uniform in `scale` and an aspect ratio
    log-uniform in `ratio`, the first box that fits (and whose rounded area stays within `scale`)
    placed uniformly; else the largest centred box with an aspect inside `ratio`."""
    area = h * w
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(VIEW_ATTEMPTS):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(lo, hi))
        bw = int(round(math.sqrt(target * aspect)))
        bh = int(round(math.sqrt(target / aspect)))
        if 0 < bw <= w and 0 < bh <= h and scale[0] * area <= bw * bh <= scale[1] * area:
            return rng.randint(0, h - bh), rng.randint(0, w - bw), bh, bw
    aspect = w / h
    if aspect < ratio[0]:
        bw, bh = w, int(round(w / ratio[0]))
    elif aspect > ratio[1]:
        bh, bw = h, int(round(h * ratio[1]))
    else:
        bh, bw = h, w
    return (h - bh) // 2, (w - bw) // 2, bh, bw


def _crop_views(rgb: Image.Image, orig: tuple[int, int], index: int,
                cfg: DecodeConfig) -> tuple[list[np.ndarray], list[list[int]]]:
    """Views 1..V-1 of a decoded image: crops drawn inside `view_region` (on an N x N grid with
    `center_square` N), boxes in original pixels, mapped onto `rgb` (the region's pixels, which a
    JPEG draft may have shrunk), resized bicubic to the backbone's input size."""
    top0, left0, rh, rw = view_region(orig, cfg)
    sy, sx = rgb.size[1] / rh, rgb.size[0] / rw
    gh, gw = (cfg.center_square, cfg.center_square) if cfg.center_square > 0 else (rh, rw)
    fy, fx = rh / gh, rw / gw
    images, boxes = [], []
    for v in range(1, cfg.views):
        t, l, bh, bw = crop_box(gh, gw, view_rng(cfg.view_seed, index, v),
                                (cfg.view_scale_min, cfg.view_scale_max))
        top, left, height, width = t * fy, l * fx, bh * fy, bw * fx  # inside the region
        th, tw = target_size(bh, bw, cfg)
        crop = rgb.resize((tw, th), Image.BICUBIC,
                          box=(left * sx, top * sy, (left + width) * sx, (top + height) * sy))
        images.append(np.asarray(crop, dtype=np.uint8))
        boxes.append([round(top0 + top), round(left0 + left), round(height), round(width)])
    return images, boxes


def decode_image(data: bytes, cfg: DecodeConfig) -> tuple[np.ndarray, tuple[int, int]]:
    """Bytes -> (resized RGB uint8 [h, w, 3], original (H, W) after EXIF orientation)."""
    pixels, orig, _, _ = decode_views(data, cfg, None)
    return pixels, orig


def decode_views(data: bytes, cfg: DecodeConfig, index: int | None
                 ) -> tuple[np.ndarray, tuple[int, int], list[np.ndarray], list[list[int]]]:
    """`decode_image` plus, when `index` (the sample's row index) is given and `cfg.views` > 1, the
    crops of views 1..V-1 and their boxes [top, left, height, width] in original pixels."""
    if not data:
        raise DecodeError("decode_error", "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            w, h = im.size
            if w * h > cfg.max_pixels:
                raise DecodeError("too_large", f"{w}x{h} = {w * h} pixels exceed max_pixels "
                                               f"{cfg.max_pixels}")
            if w <= 0 or h <= 0:
                raise DecodeError("decode_error", f"image has size {w}x{h}")
            orientation = im.getexif().get(0x0112, 1)
            orig = (h, w) if orientation < 5 else (w, h)
            _, _, rh, rw = view_region(orig, cfg)
            th, tw = target_size(rh, rw, cfg)
            dh, dw = math.ceil(th * orig[0] / rh), math.ceil(tw * orig[1] / rw)  # the whole image at that scale
            if im.format == "JPEG":
                # DCT-domain downscaling: decodes big photos at a fraction of the cost.
                im.draft("RGB", (dw, dh) if orientation < 5 else (dh, dw))
            im.load()
            im = ImageOps.exif_transpose(im)
            rgb = _to_rgb(im, cfg.background)
            if cfg.center_square > 0:  # cut first (as img2dataset does), so no view sees the sides
                top, left, _, _ = view_region(orig, cfg)
                sy, sx = rgb.size[1] / orig[0], rgb.size[0] / orig[1]
                rgb = rgb.crop((round(left * sx), round(top * sy), round((left + rw) * sx), round((top + rh) * sy)))
            crops, boxes = (_crop_views(rgb, orig, index, cfg) if index is not None and cfg.views > 1
                            else ([], []))
            if rgb.size != (tw, th):
                rgb = rgb.resize((tw, th), Image.BICUBIC)
            pixels = np.asarray(rgb, dtype=np.uint8)
    except DecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise DecodeError("too_large", str(exc)) from None
    except Exception as exc:  # Pillow raises many types (OSError, SyntaxError, ValueError, ...)
        raise DecodeError("decode_error", f"{type(exc).__name__}: {exc}") from None
    return pixels, orig, crops, boxes


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def resize_masks(src_masks: str, orig: tuple[int, int], size: tuple[int, int]) -> str:
    """SA-1B annotations at `orig` -> the same annotations as COCO RLE at `size` (empty ones dropped)."""
    anns = json.loads(src_masks)
    out: list[dict[str, Any]] = []
    h, w = size
    for ann in anns:
        seg = ann["segmentation"]
        if tuple(seg["size"]) != tuple(orig):
            raise DecodeError("bad_masks", f"mask size {seg['size']} differs from the image's "
                                           f"{list(orig)}")
        rle = dict(seg)
        if isinstance(rle["counts"], list):
            rle = mask_utils.frPyObjects(rle, *rle["size"])
        mask = mask_utils.decode(rle)
        if (h, w) != tuple(orig):
            mask = np.asarray(Image.fromarray(mask * 255).resize((w, h), Image.NEAREST)) > 127
        if not mask.any():
            continue
        new = {k: v for k, v in ann.items() if k not in ("point_coords", "crop_box")}
        new.update(encode_mask(mask))  # segmentation (RLE at `size`), area, bbox
        out.append(new)
    return json.dumps(out, sort_keys=True)


class DecodeStage:
    """Batch callable: drops `image_bytes`, adds `image`, `orig_size`, `size`, `jpg`; rescales
    `src_masks` to `size`. Failed rows get a status/error and zero placeholders. With `views` > 1
    it also adds `view_images` (per row a list of the V - 1 crops; empty for failed rows) and
    `view_boxes` (per row the V boxes [top, left, height, width], view 0 the whole image)."""

    def __init__(self, cfg: DecodeConfig | None = None):
        self.cfg = cfg or DecodeConfig()
        if self.cfg.resize not in MODES:
            raise ZssError(f"decode.resize must be one of {', '.join(MODES)}, got {self.cfg.resize!r}")
        if self.cfg.view_scale_min > self.cfg.view_scale_max:
            raise ZssError(f"decode.view_scale_min ({self.cfg.view_scale_min}) is above "
                           f"decode.view_scale_max ({self.cfg.view_scale_max})")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["index"])
        status = np.array(batch["status"], dtype=object)
        error = np.array(batch["error"], dtype=object)
        src_masks = np.array(batch.get("src_masks", np.full(n, "", dtype=object)), dtype=object)
        images: list[np.ndarray] = []
        orig_size = np.zeros((n, 2), np.int32)
        size = np.zeros((n, 2), np.int32)
        jpgs = np.empty(n, dtype=object)
        with_views = self.cfg.views > 1
        view_images = np.empty(n, dtype=object)
        view_boxes = np.empty(n, dtype=object)
        placeholder = target_size(self.cfg.img_size, self.cfg.img_size, self.cfg)
        for i in range(n):
            image = np.zeros((*placeholder, 3), np.uint8)
            jpgs[i] = b""
            view_images[i], view_boxes[i] = [], []
            if status[i] == "ok":
                try:
                    image, orig, crops, boxes = decode_views(bytes(batch["image_bytes"][i]), self.cfg,
                                                             int(batch["index"][i]) if with_views else None)
                    orig_size[i] = orig
                    size[i] = image.shape[:2]
                    if with_views:
                        view_images[i] = crops
                        view_boxes[i] = [[int(v) for v in view_region(orig, self.cfg)]] + boxes
                    if src_masks[i] and self.cfg.center_square > 0:
                        raise ZssError("decode.center_square cuts the image; it cannot carry SA-1B masks "
                                       "(set masks.mode none or center_square 0)")
                    if src_masks[i]:
                        try:
                            src_masks[i] = resize_masks(src_masks[i], orig, image.shape[:2])
                        except (ValueError, KeyError, TypeError) as exc:  # JSON the source let through
                            raise DecodeError("bad_masks", f"{type(exc).__name__}: {exc}") from None
                    if self.cfg.store_jpg:
                        jpgs[i] = encode_jpeg(image, self.cfg.jpeg_quality)
                except DecodeError as exc:
                    status[i], error[i] = exc.kind, str(exc)
                    image = np.zeros((*placeholder, 3), np.uint8)
                    orig_size[i] = size[i] = 0
                    view_images[i], view_boxes[i] = [], []
            images.append(image)
        out = {k: v for k, v in batch.items() if k != "image_bytes"}
        if self.cfg.resize == "square":
            out["image"] = np.stack(images) if images else np.zeros((0, *placeholder, 3), np.uint8)
        else:
            arr = np.empty(n, dtype=object)
            for i, im in enumerate(images):
                arr[i] = im
            out["image"] = arr
        out.update({"status": status, "error": error, "src_masks": src_masks,
                    "orig_size": orig_size, "size": size, "jpg": jpgs})
        if with_views:
            out.update({"view_images": view_images, "view_boxes": view_boxes})
        return out
