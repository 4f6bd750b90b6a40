"""Pictures of predictions: palette label PNGs (ids preserved) and overlays with a legend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def voc_colormap() -> np.ndarray:
    """[256,3] uint8: the PASCAL VOC bit-interleaving colour map (distinct, deterministic)."""
    cmap = np.zeros((256, 3), dtype=np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


# Label id k -> VOC colour k+1 (black would read as "nothing"); 255 (ignore/unlabelled) -> white.
COLOURS = np.concatenate([voc_colormap()[1:], np.array([[255, 255, 255]], dtype=np.uint8)])


def label_image(label: np.ndarray) -> Image.Image:
    """A mode-P PNG image whose pixel values are the label ids (<= 255) and whose palette shows them."""
    if label.max(initial=0) > 255:
        raise ValueError("label PNGs hold at most 256 classes")
    im = Image.fromarray(label.astype(np.uint8), mode="P")
    im.putpalette(COLOURS.flatten().tolist())
    return im


def save_label(label: np.ndarray, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    label_image(label).save(path)
    return path


def class_areas(label: np.ndarray, names: list[str]) -> list[dict]:
    """Per-class pixel counts and fractions, largest first (classes absent from the image omitted)."""
    ids, counts = np.unique(label, return_counts=True)
    total = label.size
    rows = [{"id": int(i), "name": names[i], "pixels": int(c), "fraction": round(float(c) / total, 6)}
            for i, c in zip(ids, counts) if i < len(names)]
    return sorted(rows, key=lambda r: -r["pixels"])


def overlay(image: np.ndarray, label: np.ndarray, areas: list[dict], alpha: float = 0.5) -> Image.Image:
    """The image blended with class colours, plus a legend of `areas` (`class_areas` rows, in order)."""
    colour = COLOURS[label.astype(np.int64).clip(0, 255)]
    blend = (image.astype(np.float32) * (1 - alpha) + colour.astype(np.float32) * alpha).astype(np.uint8)
    font = ImageFont.load_default()
    row = 16
    lines = [f"{r['name']} {r['pixels'] / label.size * 100:.1f}%" for r in areas]
    text_w = max((int(font.getlength(t)) for t in lines), default=0)
    legend_w = text_w + 32 if lines else 0
    h, w = label.shape
    canvas = Image.new("RGB", (w + legend_w, max(h, row * len(lines) + 8)), (255, 255, 255))
    canvas.paste(Image.fromarray(blend), (0, 0))
    draw = ImageDraw.Draw(canvas)
    for n, (r, text) in enumerate(zip(areas, lines)):
        y = 4 + n * row
        draw.rectangle([w + 6, y + 2, w + 18, y + 12], fill=tuple(int(c) for c in COLOURS[r["id"]]),
                       outline=(0, 0, 0))
        draw.text((w + 24, y), text, fill=(0, 0, 0), font=font)
    return canvas
