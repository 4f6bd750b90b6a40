"""MaskStage: hand-checked k-means masks, SA-1B pass-through/resize/errors, a tiny SAM run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from zss.errors import ZssError
from zss.ingest.stages.masks import MaskConfig, MaskStage, kmeans, kmeans_masks, upsample_labels


def _decode(ann):
    return mask_utils.decode({"size": ann["segmentation"]["size"],
                              "counts": ann["segmentation"]["counts"].encode()}).astype(bool)


def _batch(status, size, **cols):
    n = len(status)
    out = {"index": np.arange(n), "status": np.array(status, dtype=object),
           "error": np.array([""] * n, dtype=object), "size": np.array([size] * n, dtype=np.int32)}
    out.update(cols)
    return out


def test_kmeans_two_regions_hand_checked():
    patch = np.zeros((4, 4, 3), np.float16)
    patch[:, :2] = [1, 0, 0]  # left half
    patch[:, 2:] = [0, 1, 0]  # right half
    anns = kmeans_masks(patch, (8, 8), k=16, seed=0)  # only 2 distinct directions -> 2 clusters
    assert len(anns) == 2
    left, right = _decode(anns[0]), _decode(anns[1])
    expect = np.zeros((8, 8), bool)
    expect[:, :4] = True
    assert (left == expect).all() and (right == ~expect).all()
    assert anns[0]["area"] == 32 and anns[0]["bbox"] == [0.0, 0.0, 4.0, 8.0]
    assert anns[1]["bbox"] == [4.0, 0.0, 4.0, 8.0]
    assert anns[0]["score"] == pytest.approx(1.0)


def test_upsample_labels_nearest():
    grid = np.array([[0, 1], [2, 3]])
    up = upsample_labels(grid, (4, 6))
    assert up.tolist() == [[0, 0, 0, 1, 1, 1]] * 2 + [[2, 2, 2, 3, 3, 3]] * 2


def test_dino_kmeans_stage_partitions_and_is_deterministic():
    rng = np.random.default_rng(1)
    patch = rng.normal(size=(2, 4, 4, 32)).astype(np.float16)
    batch = _batch(["ok", "decode_error"], [56, 56], patch=patch)
    out = MaskStage(MaskConfig(mode="dino-kmeans", kmeans_k=5, seed=0))(batch)
    again = MaskStage(MaskConfig(mode="dino-kmeans", kmeans_k=5, seed=0))(batch)
    assert out["masks"][0] == again["masks"][0]  # byte-identical on a re-run
    assert out["masks"][1] == "" and out["status"][1] == "decode_error"
    anns = json.loads(out["masks"][0])
    assert 1 < len(anns) <= 5
    cover = sum(_decode(a).astype(int) for a in anns)
    assert (cover == 1).all()  # every pixel in exactly one mask
    assert all(a["segmentation"]["size"] == [56, 56] and a["area"] == _decode(a).sum() for a in anns)
    with pytest.raises(ZssError, match="patch features"):
        MaskStage(MaskConfig(mode="dino-kmeans"))(_batch(["ok"], [56, 56]))


def _sa1b(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"id": 1, "segmentation": {"size": list(mask.shape), "counts": rle["counts"].decode()},
            "area": int(mask.sum()), "bbox": [float(v) for v in mask_utils.toBbox(rle)],
            "predicted_iou": 0.9, "stability_score": 0.95}


def test_sa1b_copy_resize_and_broken_rle():
    m8 = np.zeros((8, 8), bool)
    m8[2:6, 0:4] = True
    m4 = np.zeros((4, 4), bool)
    m4[1:3, 0:2] = True
    broken = _sa1b(m8)
    broken["segmentation"]["counts"] = "\x7f\x7fbroken"
    src = np.array([json.dumps([_sa1b(m8)]), json.dumps([_sa1b(m4)]), json.dumps([broken]), ""], dtype=object)
    out = MaskStage(MaskConfig(mode="sa1b"))(_batch(["ok"] * 4, [8, 8], src_masks=src))
    assert list(out["status"]) == ["ok", "ok", "bad_masks", "ok"]
    assert (_decode(json.loads(out["masks"][0])[0]) == m8).all()
    assert (_decode(json.loads(out["masks"][1])[0]) == m8).all()  # 4x4 -> 8x8 nearest
    assert "RLE" in out["error"][2]
    assert out["masks"][3] == "[]"


def test_none_mode_and_bad_config():
    out = MaskStage(MaskConfig(mode="none"))(_batch(["ok"], [8, 8]))
    assert out["masks"].tolist() == [""]
    with pytest.raises(ZssError, match="mode"):
        MaskStage(MaskConfig(mode="slic"))
    with pytest.raises(ZssError, match="sam-checkpoint"):
        MaskStage(MaskConfig(mode="sam"))


def test_tiny_sam_produces_valid_rles(sam_ckpt):
    cfg = MaskConfig(mode="sam", sam_checkpoint=f"test_tiny:{sam_ckpt}", points_per_side=2,
                     pred_iou_thresh=0.0, stability_score_thresh=0.0)
    stage = MaskStage(cfg)
    image = np.zeros((1, 48, 64, 3), np.uint8)
    image[0, :, 32:] = 255
    batch = _batch(["ok"], [48, 64], image=image)
    out = stage(batch)
    assert out["status"][0] == "ok"
    anns = json.loads(out["masks"][0])
    assert anns, "thresholds at 0 keep every predicted mask"
    for a in anns:
        m = _decode(a)
        assert m.shape == (48, 64) and a["area"] == m.sum()
        assert {"bbox", "predicted_iou", "stability_score", "point_coords", "crop_box"} <= a.keys()
    assert stage(batch)["masks"][0] == out["masks"][0]
    assert stage.describe()["kind"] == "test_tiny" and stage.describe()["mode"] == "sam"


def test_euclidean_kmeans_splits_what_spherical_merges():
    # same direction, different lengths: one cluster by angle, two by distance
    x = np.array([[1.0, 0.0], [1.1, 0.0], [10.0, 0.0], [10.5, 0.0]])
    assert len(set(kmeans(x, 2, seed=0).tolist())) == 1
    labels = kmeans(x, 2, seed=0, spherical=False)
    assert labels[0] == labels[1] and labels[2] == labels[3] and labels[0] != labels[2]


def test_feature_kmeans_is_the_old_dino_kmeans():
    rng = np.random.default_rng(2)
    batch = _batch(["ok"], [32, 32], patch=rng.normal(size=(1, 4, 4, 16)).astype(np.float16))
    new = MaskStage(MaskConfig(mode="feature-kmeans", kmeans_k=4))
    old = MaskStage(MaskConfig(mode="dino-kmeans", kmeans_k=4))
    assert new(batch)["masks"][0] == old(batch)["masks"][0]
    assert old.describe()["method"] == "feature-kmeans" and old.describe()["metric"] == "cosine"


def test_dino_masks_run_their_own_backbone(tmp_path):
    from zss.models.random_init import save_random_timm

    ckpt = save_random_timm("vit_small_patch16_224.dino", tmp_path / "dino.safetensors", img_size=64, seed=0)
    stage = MaskStage(MaskConfig(mode="dino", dino_checkpoint=str(ckpt), dino_img_size=64, kmeans_k=4))
    assert stage.dino.patch_size == 16 and stage.describe()["metric"] == "euclidean"
    rng = np.random.default_rng(0)
    image = np.zeros((2, 48, 48, 3), np.uint8)
    image[0, :, :24] = [200, 30, 30]
    image[0, :, 24:] = [20, 20, 220]
    image[1] = rng.integers(0, 255, (48, 48, 3))
    batch = _batch(["ok", "ok"], [48, 48], image=image)  # no patch column: its own features
    out = stage(batch)
    assert list(out["status"]) == ["ok", "ok"]
    again = MaskStage(MaskConfig(mode="dino", dino_checkpoint=str(ckpt), dino_img_size=64, kmeans_k=4))(
        {**batch, "patch": rng.normal(size=(2, 3, 3, 8)).astype(np.float16)})
    assert list(out["masks"]) == list(again["masks"])  # deterministic, and the feature column is not read
    for i in range(2):
        anns = json.loads(out["masks"][i])
        assert 1 <= len(anns) <= 4
        cover = sum(_decode(a).astype(int) for a in anns)
        assert cover.shape == (48, 48) and (cover == 1).all()
    assert out["masks"][0] != out["masks"][1]
    with pytest.raises(ZssError, match="dino_checkpoint"):
        MaskStage(MaskConfig(mode="dino"))
