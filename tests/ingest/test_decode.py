"""Decode/resize: every Pillow mode to RGB, EXIF orientation, header-checked pixel cap, grid-aligned
sizes, mask rescaling, and failures as row statuses."""

from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from zss.ingest.stages.decode import DecodeConfig, DecodeStage, decode_image, target_size


def _bytes(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _batch(blobs: list[bytes], masks: list[str] | None = None) -> dict[str, np.ndarray]:
    n = len(blobs)
    col = lambda values: np.array(values + [None], dtype=object)[:-1]  # noqa: E731 - keep bytes as objects
    return {"index": np.arange(n, dtype=np.int64), "source_id": col([str(i) for i in range(n)]),
            "status": col(["ok"] * n), "error": col([""] * n), "image_bytes": col(blobs),
            "captions": col(["[]"] * n), "src_masks": col(masks or [""] * n)}


def test_modes_to_rgb():
    cfg = DecodeConfig(img_size=28, patch_size=14, store_jpg=False)
    cmyk = _bytes(Image.new("CMYK", (20, 10), (0, 255, 255, 0)), "JPEG")  # pure red in CMYK
    img, orig = decode_image(cmyk, cfg)
    assert img.shape == (28, 28, 3) and orig == (10, 20)
    assert img[..., 0].mean() > 200 and img[..., 1].mean() < 60
    sixteen = Image.fromarray(np.full((8, 8), 32768, np.uint16))
    assert sixteen.mode.startswith("I;16")
    img, _ = decode_image(_bytes(sixteen, "PNG"), cfg)
    assert abs(int(img[4, 4, 0]) - 128) <= 1  # scaled, not clipped to white
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[:4] = (0, 0, 255, 255)  # top half opaque blue, bottom half fully transparent
    img, _ = decode_image(_bytes(Image.fromarray(rgba, "RGBA"), "PNG"), cfg)
    assert tuple(img[2, 10]) == (0, 0, 255) and tuple(img[25, 10]) == (255, 255, 255)
    pal = Image.new("P", (8, 8), 1)
    pal.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    img, _ = decode_image(_bytes(pal, "PNG"), cfg)
    assert tuple(img[0, 0]) == (10, 200, 30)
    pal.info["transparency"] = 1
    img, _ = decode_image(_bytes(pal, "PNG", transparency=1), cfg)
    assert tuple(img[0, 0]) == (255, 255, 255)


def test_exif_orientation_and_sizes():
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display: the white half ends up on top
    data = _bytes(Image.fromarray(arr), "JPEG", exif=exif.tobytes(), quality=95)
    cfg = DecodeConfig(img_size=28, resize="short_side", patch_size=14)
    img, orig = decode_image(data, cfg)
    assert orig == (40, 20)  # displayed H, W
    assert img.shape == (56, 28, 3) and img[:20].mean() > 200 and img[-20:].mean() < 50
    assert target_size(300, 500, DecodeConfig(img_size=224, resize="short_side", patch_size=14)) == (224, 378)
    assert target_size(100, 1000, DecodeConfig(img_size=224, resize="short_side", patch_size=14)) == (42, 448)
    assert target_size(5, 5, DecodeConfig(img_size=100, patch_size=16)) == (96, 96)


def test_bad_images_become_statuses_and_masks_follow_the_resize(bomb_png):
    good = _bytes(Image.fromarray(np.full((16, 24, 3), 90, np.uint8)), "PNG")
    mask = np.zeros((16, 24), np.uint8)
    mask[:8, :12] = 1  # top-left quarter
    rle = mask_utils.encode(np.asfortranarray(mask))
    ann = {"id": 3, "segmentation": {"size": [16, 24], "counts": rle["counts"].decode()},
           "area": 96, "bbox": [0, 0, 12, 8], "predicted_iou": 0.9, "stability_score": 0.95}
    wrong = dict(ann, segmentation={"size": [10, 10], "counts": mask_utils.encode(
        np.asfortranarray(np.ones((10, 10), np.uint8)))["counts"].decode()})
    blobs = [good, b"", b"not an image at all", good[: len(good) // 2], bomb_png, good, good]
    masks = [json.dumps([ann]), "", "", "", "", json.dumps([wrong]), ""]
    out = DecodeStage(DecodeConfig(img_size=28, patch_size=14))(_batch(blobs, masks))
    assert list(out["status"]) == ["ok", "decode_error", "decode_error", "decode_error", "too_large",
                                   "bad_masks", "ok"]
    assert "0 bytes" in out["error"][1] and "900000000 pixels" in out["error"][4]
    assert "image_bytes" not in out and out["image"].shape == (7, 28, 28, 3)
    assert out["image"].dtype == np.uint8 and out["image"][1].max() == 0
    assert out["size"][0].tolist() == [28, 28] and out["orig_size"][0].tolist() == [16, 24]
    assert out["size"][1].tolist() == [0, 0]
    assert out["jpg"][0][:2] == b"\xff\xd8" and out["jpg"][1] == b""
    resized = json.loads(out["src_masks"][0])
    assert len(resized) == 1 and resized[0]["segmentation"]["size"] == [28, 28]
    assert resized[0]["area"] == 14 * 14 and resized[0]["bbox"] == [0.0, 0.0, 14.0, 14.0]
    assert resized[0]["predicted_iou"] == 0.9 and resized[0]["id"] == 3


def test_short_side_gives_per_image_arrays():
    wide = _bytes(Image.fromarray(np.zeros((20, 40, 3), np.uint8)), "PNG")
    tall = _bytes(Image.fromarray(np.zeros((50, 25, 3), np.uint8)), "PNG")
    out = DecodeStage(DecodeConfig(img_size=28, resize="short_side", patch_size=14))(_batch([wide, tall, b""]))
    assert out["image"].dtype == object
    assert [im.shape for im in out["image"]] == [(28, 56, 3), (56, 28, 3), (28, 28, 3)]
    assert out["size"].tolist() == [[28, 56], [56, 28], [0, 0]]
