"""FeatureStage: float16 grids from the real backbone path, failed rows skipped, errors per row."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zss.errors import ZssError
from zss.models.backbone import load_backbone
from zss.ingest.stages.features import FeatureConfig, FeatureStage


def _batch(images, status):
    n = len(status)
    return {"index": np.arange(n), "status": np.array(status, dtype=object),
            "error": np.array([""] * n, dtype=object), "image": images,
            "captions": np.array(["[]"] * n, dtype=object)}


def test_stacked_batch_matches_backbone_and_skips_failed_rows(vit_ckpt):
    cfg = FeatureConfig(name="vit_small_patch14_dinov2", checkpoint=str(vit_ckpt), img_size=28, batch_size=2)
    stage = FeatureStage(cfg)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 28, 42, 3), dtype=np.uint8)
    out = stage(_batch(images, ["ok", "decode_error", "ok"]))
    assert out["patch"].dtype == np.float16 and out["patch"].shape == (3, 2, 3, 384)
    assert out["global"].dtype == np.float16 and out["global"].shape == (3, 384)
    assert not out["patch"][1].any() and not out["global"][1].any()  # failed row: zero placeholder
    assert list(out["status"]) == ["ok", "decode_error", "ok"] and out["captions"] is not None

    bb = load_backbone("vit_small_patch14_dinov2", vit_ckpt, 28)
    x = torch.from_numpy(images[[0, 2]]).permute(0, 3, 1, 2).float() / 255
    with torch.inference_mode():
        patch, glob = bb(x)
    np.testing.assert_allclose(out["patch"][[0, 2]].astype(np.float32), patch.numpy(), atol=2e-3, rtol=2e-3)
    np.testing.assert_allclose(out["global"][[0, 2]].astype(np.float32), glob.numpy(), atol=2e-3, rtol=2e-3)
    assert stage.describe() == bb.spec
    again = stage(_batch(images, ["ok", "decode_error", "ok"]))
    assert again["patch"].tobytes() == out["patch"].tobytes()  # same batch, same bytes


def test_ragged_images_and_model_error_per_row(vit_ckpt):
    stage = FeatureStage(FeatureConfig(checkpoint=str(vit_ckpt), img_size=28))
    images = np.empty(3, dtype=object)
    images[0] = np.zeros((28, 56, 3), np.uint8)
    images[1] = np.zeros((10, 10, 3), np.uint8)  # smaller than one 14 px patch
    images[2] = np.full((42, 28, 3), 200, np.uint8)
    out = stage(_batch(images, ["ok", "ok", "ok"]))
    assert out["patch"].dtype == object
    assert out["patch"][0].shape == (2, 4, 384) and out["patch"][2].shape == (3, 2, 384)
    assert out["patch"][0].dtype == np.float16
    assert list(out["status"]) == ["ok", "model_error", "ok"]
    assert "patch" in out["error"][1]


def test_missing_checkpoint_is_a_user_error(tmp_path):
    with pytest.raises(ZssError, match="not found"):
        FeatureStage(FeatureConfig(checkpoint=str(tmp_path / "nope.safetensors"), img_size=28))
