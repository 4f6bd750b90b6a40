"""Feature options of issue 10: input normalisation by name and the DVT denoiser on patch tokens."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from timm.layers import resample_abs_pos_embed

from zss.errors import ZssError
from zss.ingest.stages.features import FeatureConfig, FeatureStage
from zss.models.backbone import NORMALIZATIONS, load_backbone
from zss.models.denoiser import PatchDenoiser, load_denoiser, save_denoiser
from zss.utils.hashing import sha256_file


def _batch(images):
    n = len(images)
    return {"index": np.arange(n), "status": np.array(["ok"] * n, dtype=object),
            "error": np.array([""] * n, dtype=object), "image": images}


def _images(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (2, 28, 42, 3), dtype=np.uint8)


def test_clip_normalisation_is_applied_and_recorded(vit_ckpt):
    images = _images()
    stage = FeatureStage(FeatureConfig(checkpoint=str(vit_ckpt), img_size=28, normalize="clip"))
    out = stage(_batch(images))
    rec = stage.describe()["normalize"]
    assert rec["name"] == "clip" and rec["mean"] == pytest.approx([0.48145466, 0.4578275, 0.40821073])

    # Hand-normalised input through the raw timm model gives the same grid.
    bb = load_backbone("vit_small_patch14_dinov2", vit_ckpt, 28)
    assert bb.spec["normalize"]["name"] == "auto" and bb.spec["normalize"]["std"] == pytest.approx([0.229, 0.224, 0.225])
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in NORMALIZATIONS["clip"])
    x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - mean) / std
    with torch.inference_mode():
        tokens = bb.model.forward_features(x)
    want = tokens[:, bb.num_prefix_tokens:].reshape(2, 2, 3, -1).numpy()
    np.testing.assert_allclose(out["patch"].astype(np.float32), want, atol=3e-3, rtol=3e-3)
    imagenet = FeatureStage(FeatureConfig(checkpoint=str(vit_ckpt), img_size=28, normalize="imagenet"))(_batch(images))
    assert np.abs(imagenet["patch"].astype(np.float32) - out["patch"].astype(np.float32)).max() > 1e-2

    custom = load_backbone("vit_small_patch14_dinov2", vit_ckpt, 28, "custom", [0.5] * 3, [0.25] * 3)
    assert custom.spec["normalize"] == {"name": "custom", "mean": [0.5] * 3, "std": [0.25] * 3}
    for bad in (dict(normalize="cilp"), dict(normalize="custom", mean=[0.5], std=[1, 1, 1])):
        with pytest.raises(ZssError):
            load_backbone("vit_small_patch14_dinov2", vit_ckpt, 28, **bad)


def test_denoiser_on_patch_tokens_only_with_sha256(vit_ckpt, tmp_path):
    torch.manual_seed(0)
    den = PatchDenoiser(384)
    path = tmp_path / "dvt.safetensors"
    save_denoiser(den, path)
    images = _images(1)
    stage = FeatureStage(FeatureConfig(checkpoint=str(vit_ckpt), img_size=28, denoiser=str(path)))
    out = stage(_batch(images))
    rec = stage.describe()["denoiser"]
    assert rec["sha256"] == sha256_file(path) and rec["grid"] == 37 and rec["dim"] == 384

    bb = load_backbone("vit_small_patch14_dinov2", vit_ckpt, 28)
    with torch.inference_mode():
        patch, glob = bb(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255)
        # By hand: the 37x37 embedding resampled to the 2x3 grid, added, one block.
        pos = resample_abs_pos_embed(den.pos_embed, (2, 3), num_prefix_tokens=0)
        want = den.denoiser(patch.reshape(2, 6, 384) + pos).reshape(2, 2, 3, 384)
    np.testing.assert_allclose(out["patch"].astype(np.float32), want.numpy(), atol=3e-3, rtol=3e-3)
    np.testing.assert_allclose(out["global"].astype(np.float32), glob.numpy(), atol=2e-3, rtol=2e-3)  # CLS untouched
    assert np.abs(want.numpy() - patch.numpy()).max() > 1e-2


def test_dvt_release_file_and_bad_files(tmp_path):
    torch.manual_seed(1)
    den = PatchDenoiser(128)
    # DVT's published layout: {"denoiser": state dict of the wrapper} (keys denoiser.*, pos_embed).
    torch.save({"denoiser": {k: v.clone() for k, v in den.state_dict().items()}}, tmp_path / "dvt.pth")
    loaded, rec = load_denoiser(tmp_path / "dvt.pth")
    for k, v in den.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    assert rec["dim"] == 128

    torch.save({"denoiser": {"pos_embed": den.pos_embed.detach(), "extra": object()}}, tmp_path / "pickled.pth")
    with pytest.raises(ZssError, match="weights_only"):
        load_denoiser(tmp_path / "pickled.pth")
    state = {k: v for k, v in den.state_dict().items() if not k.startswith("denoiser.mlp.fc2")}
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(ZssError, match="denoiser.mlp.fc2"):
        load_denoiser(tmp_path / "partial.pth")
    with pytest.raises(ZssError, match="not found"):
        load_denoiser(tmp_path / "nope.pth")
