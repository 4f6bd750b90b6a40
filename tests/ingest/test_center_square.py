"""SimZSS's training images (README L43-47: img2dataset --image_size 512 --resize_mode center_crop, then
RandomResizedCrop(224, 0.9-1) of that square) and PixelCLIP's SA-1B size rule (detectron2
ResizeShortestEdge(1024, max 1333)), pinned with hand-computed values."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from zss.errors import ZssError
from zss.ingest.config import build_config, fingerprint, views_record
from zss.ingest.stages.decode import DecodeConfig, DecodeStage, decode_image, target_size, view_region


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _striped(h: int, w: int, left: int, right: int) -> np.ndarray:
    """Red in columns < left, blue in [left, right), green from right on."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, :left, 0] = 255
    arr[:, left:right, 2] = 255
    arr[:, right:, 1] = 255
    return arr


def _batch(blobs):
    n = len(blobs)
    col = lambda xs: np.array(list(xs), dtype=object)  # noqa: E731
    return {"index": np.arange(n, dtype=np.int64), "source_id": col(str(i) for i in range(n)),
            "status": col(["ok"] * n), "error": col([""] * n), "image_bytes": col(blobs),
            "captions": col(["[]"] * n), "src_masks": col([""] * n)}


def test_region_is_the_centred_square():
    cfg = DecodeConfig(center_square=512)
    assert view_region((480, 640), cfg) == (0, 80, 480, 480)     # COCO 480x640: 80 px cut each side
    assert view_region((640, 480), cfg) == (80, 0, 480, 480)
    assert view_region((480, 640), DecodeConfig()) == (0, 0, 480, 640)
    # the squash of `resize: square` was (640/224) / (480/224) = 1.333 across; on the square it is 1.0


def test_views_come_from_the_centred_square_only():
    """512x768: red < 128, blue 128..639, green >= 640; the centred square is exactly the blue part."""
    data = _png(_striped(512, 768, 128, 640))
    cfg = DecodeConfig(img_size=224, resize="square", patch_size=14, store_jpg=False, views=3, center_square=512)
    out = DecodeStage(cfg)(_batch([data]))
    view0 = out["image"][0]
    assert view0.shape == (224, 224, 3)
    assert (view0 == np.array([0, 0, 255], np.uint8)).all()     # pure blue: bicubic of a constant
    boxes = out["view_boxes"][0]
    assert boxes[0] == [0, 128, 512, 512]
    for (top, left, bh, bw), crop in zip(boxes[1:], out["view_images"][0]):
        assert 128 <= left and left + bw <= 640 and 0 <= top and top + bh <= 512
        assert 0.9 * 512 * 512 * 0.99 <= bh * bw <= 512 * 512
        assert 3 / 4 - 0.01 <= bw / bh <= 4 / 3 + 0.01
        assert crop.shape == (224, 224, 3) and (crop == np.array([0, 0, 255], np.uint8)).all()
    assert views_record(build_config(None, ["decode.views=2", "decode.center_square=512"]))["view0"].startswith("the centred")
    old = decode_image(data, DecodeConfig(img_size=224, patch_size=14, store_jpg=False))[0]
    assert old[:, :20, 0].min() == 255 and old[:, -20:, 1].min() == 255   # squashed: red and green kept


def test_center_square_scales_crop_boxes_to_original_pixels():
    """A 1024x1536 JPEG (decoded in draft): the square is 1024 px, boxes drawn on 512 and doubled."""
    buf = io.BytesIO()
    Image.fromarray(_striped(1024, 1536, 256, 1280)).save(buf, format="JPEG", quality=95)
    cfg = DecodeConfig(img_size=224, patch_size=14, store_jpg=False, views=3, center_square=512)
    out = DecodeStage(cfg)(_batch([buf.getvalue()]))
    assert out["view_boxes"][0][0] == [0, 256, 1024, 1024]
    for top, left, bh, bw in out["view_boxes"][0][1:]:
        assert 256 <= left and left + bw <= 1280 and 0.9 * 1024 ** 2 * 0.99 <= bh * bw
    assert np.abs(out["image"][0].astype(int) - [0, 0, 255]).max() <= 3   # JPEG: nearly pure blue


def test_center_square_refuses_masks_and_keeps_old_fingerprints():
    batch = _batch([_png(_striped(32, 48, 8, 40))])
    batch["src_masks"] = np.array(["[]"], dtype=object)
    batch["src_masks"][0] = '[{"segmentation": {"size": [32, 48], "counts": "0"}}]'
    with pytest.raises(ZssError, match="center_square"):
        DecodeStage(DecodeConfig(img_size=28, center_square=512))(batch)
    with pytest.raises(ZssError, match="center_square"):
        build_config(None, ["decode.center_square=512", "masks.mode=sa1b"])
    src = {"kind": "x"}
    base = build_config(None, ["batch_size=4"])
    assert fingerprint(base, src) == fingerprint(build_config(None, ["batch_size=4", "decode.center_square=0"]), src)
    assert fingerprint(base, src) != fingerprint(build_config(None, ["batch_size=4", "decode.center_square=512"]), src)


def test_official_presets():
    sim = build_config("simzss-official").decode
    assert (sim.center_square, sim.resize, sim.img_size, sim.views) == (512, "square", 224, 2)
    for name in ("sa1b-official-vitb16", "sa1b-official-convnext-b"):
        d = build_config(name).decode
        assert (d.img_size, d.resize, d.max_long_side, d.center_square) == (1024, "short_side", 1333, 0)


def _detectron2_shortest_edge(h: int, w: int, short: int, max_size: int) -> tuple[int, int]:
    """detectron2 ResizeShortestEdge.get_output_shape, written out by hand."""
    scale = short / min(h, w)
    nh, nw = h * scale, w * scale
    if max(nh, nw) > max_size:
        nh, nw = nh * max_size / max(nh, nw), nw * max_size / max(nh, nw)
    return int(nh + 0.5), int(nw + 0.5)


def test_sa1b_long_side_cap_is_detectrons():
    """1500x2250 (3:2) -> x1024/1500 = 1024x1536 > 1333 -> 888.67x1333 (the release: 889x1333, from the
    halved 750x1125 the same); zss rounds each side to the 16-px grid: 56*16 = 896, 83*16 = 1328."""
    cfg = DecodeConfig(img_size=1024, resize="short_side", max_long_side=1333, patch_size=16)
    assert _detectron2_shortest_edge(1500, 2250, 1024, 1333) == (889, 1333)
    assert _detectron2_shortest_edge(750, 1125, 1024, 1333) == (889, 1333)   # pre-halving: same size
    assert target_size(1500, 2250, cfg) == (896, 1328)
    assert target_size(2250, 1500, cfg) == (1328, 896)
    assert target_size(1500, 1500, cfg) == (1024, 1024)                       # the cap does not bind
    old = DecodeConfig(img_size=1024, resize="short_side", max_long_side=4096, patch_size=16)
    assert target_size(1500, 2250, old) == (1024, 1536)
    for got, ref in zip(target_size(1500, 2250, cfg), (889, 1333)):
        assert abs(got - ref) < 16


def test_cli_refuses_center_square_with_sa1b_masks(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).with_name("zss")
    r = subprocess.run([str(exe), "ingest", f"folder:{tmp_path}", str(tmp_path / "out"), "--masks", "sa1b",
                        "--set", "decode.center_square=512"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "zss: error: decode.center_square cuts the image; it cannot carry SA-1B masks "
        "(use --masks none, or decode.center_square=0)"]
