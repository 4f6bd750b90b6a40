"""Augmented views (`zss ingest --views V`): crop boxes hand-checked and within the scale range,
seeded per (seed, row, view), the crops' own features, the shard members, and a V = 2 ingest that
resumes byte-identically. V = 1 writing exactly what zss wrote before views existed is pinned by
golden hashes."""

from __future__ import annotations

import hashlib
import io
import math
import random

import numpy as np
import pytest
import torch
from PIL import Image

from zss.errors import ZssError
from zss.formats import shards as sh
from zss.ingest.config import build_config, fingerprint
from zss.ingest.stages.decode import (VIEW_RATIO, DecodeConfig, DecodeStage, crop_box, decode_image,
                                      view_rng)


class _Script(random.Random):
    """An RNG returning scripted uniforms (in order) and the low end of every randint."""

    def __init__(self, uniforms):
        super().__init__(0)
        self.values = list(uniforms)

    def uniform(self, a, b):
        return self.values.pop(0)

    def randint(self, a, b):
        return a


def test_crop_box_hand_checked_cases():
    # scale 0.9, aspect 1 on 100x100: side sqrt(9000) = 94.87 -> 95, area 9025 = 0.9025 of the image
    assert crop_box(100, 100, _Script([0.9, 0.0]), (0.9, 1.0)) == (0, 0, 95, 95)
    # scale 1, aspect 4/3: width sqrt(10000 * 4/3) = 115.5 > 100, redrawn; then scale 0.95, aspect 3/4:
    # w = sqrt(9500 * 0.75) = 84.4 -> 84, h = sqrt(9500 / 0.75) = 112.5 -> 113 > 100, redrawn; then
    # scale 0.92, aspect 1: 95.9 -> 96, area 9216
    script = [1.0, math.log(4 / 3), 0.95, math.log(3 / 4), 0.92, 0.0]
    assert crop_box(100, 100, _Script(script), (0.9, 1.0)) == (0, 0, 96, 96)
    # a rounded box below the range is redrawn: scale 0.9 on 10x10 -> side 9.49 -> 9, area 81 < 90
    assert crop_box(10, 10, _Script([0.9, 0.0] + [1.0, 0.0]), (0.9, 1.0)) == (0, 0, 10, 10)
    # ten misses: the largest centred box with an aspect inside [3/4, 4/3]; 100 x 300 -> 100 x 133
    never = [1.0, math.log(4 / 3)] * 10  # 100x300 at aspect 4/3, area 30000: 200 x 150 > 100 high
    assert crop_box(100, 300, _Script(never), (0.9, 1.0)) == (0, 83, 100, 133)
    assert crop_box(100, 100, _Script([1.0, math.log(4 / 3)] * 10), (0.9, 1.0)) == (0, 0, 100, 100)


@pytest.mark.parametrize("h,w", [(100, 100), (60, 80), (480, 640), (37, 29)])  # aspects within VIEW_RATIO
def test_crop_boxes_stay_in_the_image_and_the_scale_range(h, w):
    for index in range(200):
        top, left, bh, bw = crop_box(h, w, view_rng(0, index, 1), (0.9, 1.0))
        assert 0 <= top and top + bh <= h and 0 <= left and left + bw <= w
        assert 0.9 * h * w <= bh * bw <= h * w, (index, bh, bw)
        assert VIEW_RATIO[0] - 0.05 <= bw / bh <= VIEW_RATIO[1] + 0.05


def test_view_rng_is_a_function_of_seed_row_and_view():
    boxes = lambda seed, index, view: crop_box(480, 640, view_rng(seed, index, view), (0.9, 1.0))  # noqa: E731
    assert boxes(0, 5, 1) == boxes(0, 5, 1)
    others = {boxes(1, 5, 1), boxes(0, 6, 1), boxes(0, 5, 2)}
    assert boxes(0, 5, 1) not in others and len(others) == 3


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _batch(blobs, status=None):
    n = len(blobs)
    col = lambda values: np.array(list(values) + [None], dtype=object)[:-1]  # noqa: E731
    return {"index": np.arange(10, 10 + n, dtype=np.int64), "source_id": col(str(i) for i in range(n)),
            "status": col(status or ["ok"] * n), "error": col([""] * n), "image_bytes": col(blobs),
            "captions": col(["[]"] * n), "src_masks": col([""] * n)}


def test_decode_stage_crops_views_from_the_original():
    yy, xx = np.mgrid[0:60, 0:80]
    arr = np.stack([xx * 3, yy * 4, (xx + yy) % 256], -1).astype(np.uint8)  # position-coded pixels
    data = _png(arr)
    one = DecodeStage(DecodeConfig(img_size=28, patch_size=14, store_jpg=False))(_batch([data]))
    assert "view_images" not in one and "view_boxes" not in one  # V = 1: the batch of before
    cfg = DecodeConfig(img_size=28, patch_size=14, store_jpg=False, views=3)
    out = DecodeStage(cfg)(_batch([data, data, b"broken"], ["ok", "ok", "ok"]))
    np.testing.assert_array_equal(out["image"][0], one["image"][0])  # view 0 = the V = 1 image
    np.testing.assert_array_equal(out["image"][0], decode_image(data, cfg)[0])
    assert out["status"][2] == "decode_error" and out["view_images"][2] == [] and out["view_boxes"][2] == []
    boxes = out["view_boxes"][0]
    assert len(boxes) == 3 and boxes[0] == [0, 0, 60, 80]
    assert boxes != out["view_boxes"][1]  # another row index, other crops
    for v in (1, 2):
        top, left, bh, bw = boxes[v]
        assert boxes[v] == list(crop_box(60, 80, view_rng(0, 10, v), (0.9, 1.0)))
        assert 0.9 * 4800 <= bh * bw <= 4800
        crop = out["view_images"][0][v - 1]
        want = np.asarray(Image.fromarray(arr[top:top + bh, left:left + bw]).resize((28, 28), Image.BICUBIC))
        assert crop.shape == (28, 28, 3) and np.abs(crop.astype(int) - want.astype(int)).mean() < 3
    again = DecodeStage(cfg)(_batch([data, data, b"broken"]))
    assert [c.tobytes() for c in again["view_images"][0]] == [c.tobytes() for c in out["view_images"][0]]
    # a JPEG decoded at reduced size (draft): boxes stay in original pixels
    buf = io.BytesIO()
    Image.fromarray(np.repeat(np.repeat(arr, 6, 0), 6, 1)).save(buf, format="JPEG", quality=95)
    big = DecodeStage(cfg)(_batch([buf.getvalue()]))
    assert big["view_boxes"][0][0] == [0, 0, 360, 480]
    assert all(0.9 * 360 * 480 <= b[2] * b[3] <= 360 * 480 for b in big["view_boxes"][0][1:])
    assert all(c.shape == (28, 28, 3) for c in big["view_images"][0])
    with pytest.raises(ZssError, match="view_scale_min"):
        DecodeStage(DecodeConfig(views=2, view_scale_min=0.8, view_scale_max=0.5))


def test_feature_stage_gives_each_view_its_own_features(vit_ckpt):
    from zss.ingest.stages.features import FeatureConfig, FeatureStage
    from zss.models.backbone import load_backbone

    stage = FeatureStage(FeatureConfig(checkpoint=str(vit_ckpt), img_size=28, batch_size=2))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 28, 28, 3), dtype=np.uint8)
    crops = np.empty(3, dtype=object)
    crops[0] = [rng.integers(0, 256, (28, 28, 3), dtype=np.uint8) for _ in range(2)]
    crops[1], crops[2] = [], [rng.integers(0, 256, (28, 28, 3), dtype=np.uint8) for _ in range(2)]
    batch = {"index": np.arange(3), "status": np.array(["ok", "decode_error", "ok"], dtype=object),
             "error": np.array([""] * 3, dtype=object), "image": images, "view_images": crops}
    out = stage(batch)
    plain = stage({k: v for k, v in batch.items() if k != "view_images"})
    assert out["patch"].tobytes() == plain["patch"].tobytes()  # view 0 computed exactly as without views
    assert "view_images" not in out and out["view_patch"][1] == [] and out["view_global"][1] == []
    bb = load_backbone("vit_small_patch14_dinov2", vit_ckpt, 28)
    for i in (0, 2):
        assert len(out["view_patch"][i]) == 2 and out["view_patch"][i][0].shape == (2, 2, 384)
        x = torch.from_numpy(np.stack(crops[i])).permute(0, 3, 1, 2).float() / 255
        with torch.inference_mode():
            patch, glob = bb(x)
        for v in range(2):
            np.testing.assert_allclose(out["view_patch"][i][v].astype(np.float32), patch[v].numpy(), atol=2e-3, rtol=2e-3)
            np.testing.assert_allclose(out["view_global"][i][v].astype(np.float32), glob[v].numpy(), atol=2e-3, rtol=2e-3)
            assert np.abs(out["view_patch"][i][v].astype(np.float32) - out["patch"][i].astype(np.float32)).mean() > 0.05


def _sample(i: int, views: int = 1) -> dict:
    rng = np.random.default_rng(i)
    s = {"source_id": f"img{i}", "status": "ok", "error": "", "captions": [f"a ball number {i}"],
         "orig_size": (30, 40), "size": (28, 28), "patch": rng.normal(size=(2, 2, 6)).astype(np.float16),
         "global": rng.normal(size=6).astype(np.float16),
         "concepts": [[{"id": 7, "name": "ball", "text": "a ball", "char_span": [0, 6], "token_span": [1, 3]}]],
         "masks": None, "jpg": b"\xff\xd8jpeg"}
    if views > 1:
        s["views"] = [{"box": [1, 2, 28, 38], "patch": rng.normal(size=(2, 2, 6)).astype(np.float16),
                       "global": rng.normal(size=6).astype(np.float16)} for _ in range(views - 1)]
    return s


# sha256 of `write_shard(dir, 3, [_sample(0), _sample(1)])`'s tar as zss wrote it before views existed
GOLDEN_TAR = {"float16": "9906813462f6229bfbd5d9cd895d5a80e2ac3dad5936d7fd6818f20746e52e8c",
              "int8": "37715d3030e39e46c1eb8a0d737368fd2bbe4866e5b0c86ee5283a124dc09e07"}


@pytest.mark.parametrize("dtype", ["float16", "int8"])
def test_one_view_writes_the_bytes_of_before_and_views_add_members(tmp_path, dtype):
    stats = sh.write_shard(tmp_path / "v1", 3, [_sample(0), _sample(1)], feature_dtype=dtype)
    assert stats["sha256"]["tar"] == GOLDEN_TAR[dtype]
    assert all(s["views"] == [] for s in sh.iter_samples(tmp_path / "v1" / "00003.tar"))

    samples = [_sample(0, views=3), _sample(1, views=3)]
    sh.write_shard(tmp_path / "v3", 3, samples, feature_dtype=dtype)
    import tarfile
    names = tarfile.open(tmp_path / "v3" / "00003.tar").getnames()
    scale = ["patch_scale.npy"] if dtype == "int8" else []
    per_view = lambda v: [f"patch.{v}.npy"] + [f"patch_scale.{v}.npy"] * bool(scale) + [f"global.{v}.npy"]  # noqa: E731
    assert [n.partition(".")[2] for n in names[:names.index("000030000.jpg") + 1]] == (
        ["json", "patch.npy"] + scale + ["global.npy"] + per_view(1) + per_view(2) + ["jpg"])
    got = list(sh.iter_samples(tmp_path / "v3" / "00003.tar"))
    tol = 0.02 if dtype == "int8" else 0
    for g, s in zip(got, samples):
        assert g["meta"]["views"] == [{"box": [0, 0, 30, 40], "grid": [2, 2]}] + [{"box": [1, 2, 28, 38], "grid": [2, 2]}] * 2
        assert len(g["views"]) == 2
        for gv, sv in zip(g["views"], s["views"]):
            np.testing.assert_allclose(gv["patch"].astype(np.float32), sv["patch"].astype(np.float32), atol=tol)
            np.testing.assert_array_equal(gv["global"], sv["global"])
    entry = sh.shard_entry(tmp_path / "v3", 3)
    for n, problems in ((3, 0), (1, 2)):
        sh.write_manifest(tmp_path / "v3", {"schema_version": 1, "shards": [entry], "views": {"n": n},
                                            "feature": {"dim": 6}})
        assert len(sh.validate_shards(tmp_path / "v3")) == problems


def test_views_config_cli_and_fingerprint():
    base = build_config(None, ["batch_size=4"])
    assert base.decode.views == 1 and (base.decode.view_scale_min, base.decode.view_scale_max) == (0.9, 1.0)
    assert build_config(None, [], views=3).decode.views == 3
    assert build_config(None, ["decode.views=3"]).decode.views == 3
    with pytest.raises(ZssError, match="decode.views"):
        build_config(None, ["decode.views=0"])
    with pytest.raises(ZssError, match="view_scale_min"):
        build_config(None, ["decode.views=2", "decode.view_scale_min=0.95", "decode.view_scale_max=0.9"])
    src = {"kind": "x"}
    # one view: the crop settings change nothing written, so they do not change the fingerprint
    assert fingerprint(base, src) == fingerprint(build_config(None, ["batch_size=4", "decode.view_seed=5"]), src)
    two = build_config(None, ["batch_size=4", "decode.views=2"])
    assert fingerprint(two, src) != fingerprint(base, src)
    assert fingerprint(two, src) != fingerprint(build_config(None, ["batch_size=4", "decode.views=2",
                                                                    "decode.view_seed=5"]), src)


@pytest.mark.timeout(300)
@pytest.mark.usefixtures("ray_2cpu")
def test_ingest_two_views_resumes_byte_identically_and_trains(ingest_kwargs, tmp_path):
    from zss.commands.train import run_training
    from zss.ingest.inspect import inspect_shards
    from zss.ingest.runner import run_ingest

    kw = {**ingest_kwargs, "masks": "none", "shard_size": 4, "workers": 1, "limit": 8, "views": 2}
    out = tmp_path / "v2"
    assert "status: ok=8" in run_ingest(out=out, **kw)
    manifest = sh.read_manifest(out)
    assert manifest["views"]["n"] == 2 and manifest["views"]["scale"] == [0.9, 1.0]
    assert manifest["views"]["seed"] == 0 and sh.validate_shards(out) == []
    samples = list(sh.iter_all_samples(out))
    assert len(samples) == 8
    differ = 0
    for s in samples:
        h, w = s["meta"]["orig_size"]
        (b0, b1) = [v["box"] for v in s["meta"]["views"]]
        assert b0 == [0, 0, h, w] and 0.9 * h * w <= b1[2] * b1[3] <= h * w
        assert len(s["views"]) == 1 and s["views"][0]["patch"].shape == s["patch"].shape == (8, 8, 384)
        diff = np.abs(s["views"][0]["patch"].astype(np.float32) - s["patch"].astype(np.float32)).mean()
        if b1 == b0:  # a crop may draw the whole image (scale 1, the image's own aspect): same input
            assert diff == 0
        else:
            assert diff > 0.01 and not np.array_equal(s["views"][0]["global"], s["global"])
            differ += 1
    assert differ >= 6
    assert "views: V=2" in inspect_shards(out)

    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.glob("0000*.*")
              if p.suffix in (".tar", ".parquet")}
    (out / "00001_stats.json").unlink()
    (out / "00001.tar").write_bytes(b"torn")
    assert "1 already done" in run_ingest(out=out, **kw)
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.glob("0000*.*")
             if p.suffix in (".tar", ".parquet")}
    assert after == before and len(after) == 4

    run = tmp_path / "run"
    run_training("simzss", out, run, steps=2,
                 overrides=["recipe.text.width=64", "recipe.text.heads=2", "recipe.text.layers=2",
                            "recipe.text.context_length=16", "recipe.global_token=cls", "batch_size=4",
                            "tensorboard=false"])
    assert (run / "model" / "model.safetensors").is_file()
