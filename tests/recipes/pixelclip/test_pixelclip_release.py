"""PixelCLIP as released (cvlab-kaist/PixelCLIP): official presets, the release's decoder, Sinkhorn
start, mask rules, QuickGELU handling and `zss import pixelclip`."""

from __future__ import annotations

import random

import pytest
import torch
import yaml

from zss.errors import ZssError
from zss.paths import MANIFESTS
from zss.trainer.config import TrainConfig
from zss.utils.config import load_config
from zss.recipes.pixelclip.recipe import PixelCLIPConfig

OFFICIAL = {
    "vitb16": {"clip_arch": "ViT-B-16-quickgelu", "cluster_scale": 100.0, "img_size": 320},
    "convnext-b": {"clip_arch": "convnext_base_w_320", "cluster_scale": 1.0, "img_size": 640},
}
# every value of the release (configs/pixelclip_*_base.yaml, pixelclip/config.py, train_net.py,
# sa1b_dataset_mapper.py, pixelclip.py), shared by both backbones
RELEASE_LOOP = {"steps": 10000, "batch_size": 48, "accum_steps": 1, "lr": 2e-4, "min_lr_ratio": 0.5,
                "warmup": 0.0, "weight_decay": 1e-4, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
                "grad_clip": 0.01, "amp": False}
RELEASE_RECIPE = {"mode": "full", "k": 64, "template": "A photo of a {} {} {} {} in the scene",
                  "sinkhorn_iters": 3, "sinkhorn_start": "softmax", "mask_pooling": "bilinear", "momentum": 0.999, "mask_size": 256,
                  "crop_size": 640, "weak_color_ssd": True, "max_masks": 0, "min_mask_frac": 0.0,
                  "min_mask_pixels": 2, "cutout_unsupervised": True, "strong_jitter_p": 0.8,
                  "strong_brightness": 0.5, "strong_contrast": 0.5, "strong_saturation": 0.5,
                  "strong_hue": 0.25, "strong_gray_p": 0.2, "strong_blur_p": 0.5,
                  "strong_blur_sigma_max": 2.0, "cutout_p": 1.0, "cutout_min_frac": 0.1,
                  "cutout_max_frac": 0.5, "cutout_fill": 0.0, "lr_encoder": 0.01, "lr_prompts": 10.0,
                  "lr_head": 1.0, "decoder": "official"}


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_official_preset_states_every_release_value(name):
    path = MANIFESTS / "train" / f"pixelclip-official-{name}.yaml"
    raw = yaml.safe_load(path.read_text())
    # explicit: every recipe field is written in the file (no reliance on code defaults)
    assert set(raw["recipe"]) == set(PixelCLIPConfig.__dataclass_fields__)
    cfg = load_config(TrainConfig, path)
    for key, value in RELEASE_LOOP.items():
        assert getattr(cfg, key) == value, key
        assert key in raw, key
    rc = PixelCLIPConfig(**cfg.recipe)
    for key, value in {**RELEASE_RECIPE, "cluster_scale": OFFICIAL[name]["cluster_scale"],
                       "img_size": OFFICIAL[name]["img_size"]}.items():
        assert getattr(rc, key) == value, key
    assert rc.clip.split(":")[0] == OFFICIAL[name]["clip_arch"]
    ingest = yaml.safe_load((MANIFESTS / "presets" / f"sa1b-official-{name}.yaml").read_text())
    assert ingest["decode"]["resize"] == "short_side" and ingest["decode"]["img_size"] >= 1024
    assert ingest["masks"]["mode"] == "sa1b" and ingest["store_images"] is True
    assert ingest["features"]["name"] == f"open_clip/{OFFICIAL[name]['clip_arch']}"


def test_official_ingest_presets_resolve():
    from zss.ingest.config import build_config

    for name in OFFICIAL:
        cfg = build_config(preset=f"sa1b-official-{name}")
        assert cfg.decode.img_size == 1024 and cfg.decode.resize == "short_side"
        # detectron2's INPUT.MAX_SIZE_TRAIN default 1333 (the release never sets it)
        assert cfg.decode.max_long_side == 1333 and cfg.masks.mode == "sa1b"


def test_official_decoder_has_the_release_shapes():
    from zss.recipes.pixelclip.decoder import build_decoder

    dec = build_decoder("official", 64, out_size=256)
    # parameter names and shapes of the release's ConvHead (pixelclip/pixelclip.py)
    expected = {"conv0.weight": (64, 1, 3, 3), "conv0.bias": (64,), "up1.weight": (64, 64, 2, 2),
                "up1.bias": (64,), "conv1.double_conv.0.weight": (64, 64, 3, 3),
                "conv1.double_conv.1.weight": (64,), "conv1.double_conv.1.bias": (64,),
                "conv1.double_conv.3.weight": (64, 64, 3, 3), "conv1.double_conv.4.weight": (64,),
                "conv1.double_conv.4.bias": (64,), "up2.weight": (64, 32, 2, 2), "up2.bias": (32,),
                "conv2.double_conv.0.weight": (32, 32, 3, 3), "conv2.double_conv.1.weight": (32,),
                "conv2.double_conv.1.bias": (32,), "conv2.double_conv.3.weight": (32, 32, 3, 3),
                "conv2.double_conv.4.weight": (32,), "conv2.double_conv.4.bias": (32,),
                "proj.weight": (1, 32, 3, 3), "proj.bias": (1,)}
    assert {k: tuple(v.shape) for k, v in dec.state_dict().items()} == expected
    assert dec.conv1.double_conv[1].num_groups == 4 and dec.conv2.double_conv[1].num_groups == 2
    out = dec(torch.rand(2, 3, 20, 20), torch.rand(2, 20, 20, 64))
    assert out.shape == (2, 3, 256, 256)
    # the cosine map alone decides: image features are ignored
    cos = torch.rand(1, 2, 5, 5)
    assert torch.equal(dec(cos, torch.rand(1, 5, 5, 64)), dec(cos, torch.zeros(1, 5, 5, 64)))
    with pytest.raises(ZssError, match="official"):
        build_decoder("fancy", 64)


def test_softmax_start_weighs_every_mask_equally():
    from zss.recipes.pixelclip.sinkhorn import sinkhorn

    scores = torch.tensor([[2.0, 1.0, 0.0], [0.5, 0.4, 0.1], [0.0, 3.0, 1.0], [1.0, 1.0, 1.2]])
    shifted = scores + torch.tensor([[10.0], [0.0], [-5.0], [3.0]])  # per-mask constants
    q = sinkhorn(scores, 3, start="softmax")
    assert torch.allclose(q, sinkhorn(shifted, 3, start="softmax"), atol=1e-6)
    assert not torch.allclose(sinkhorn(scores, 3, start="exp"), sinkhorn(shifted, 3, start="exp"), atol=1e-3)
    assert torch.allclose(q.sum(1), torch.ones(4), atol=1e-6)
    # one iteration by hand: softmax rows, total 1, rows of Q^T (clusters) to 1/K, columns to 1/N
    p = torch.softmax(scores, 1).t()
    p = p / p.sum()
    p = p / p.sum(1, keepdim=True) / 3
    p = p / p.sum(0, keepdim=True) / 4
    assert torch.allclose(sinkhorn(scores, 1, start="softmax"), (p * 4).t(), atol=1e-6)


def test_cutout_leaves_masks_and_tiny_masks_drop():
    from zss.recipes.pixelclip.modes import remove_box

    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[0, :4] = True          # top half
    masks[1, 6:, 6:] = True      # 4 pixels bottom right
    # a cutout box at rows 0..1, cols 0..3 of a 16-px view = rows 0, cols 0..1 at 8 px
    out = remove_box(masks, (0, 0, 2, 4), 16)
    assert out[0].sum() == 32 - 2 and not out[0, 0, :2].any() and out[0, 0, 2:].all()
    assert torch.equal(out[1], masks[1])

    class R:  # keep_visible needs only the recipe config
        from zss.recipes.pixelclip.recipe import PixelCLIPRecipe as _R
        keep_visible = _R.keep_visible

        def __init__(self, n):
            self.cfg = PixelCLIPConfig(min_mask_pixels=n)

    one = torch.zeros(3, 8, 8, dtype=torch.bool)
    one[0, 0, 0] = True
    one[1, 1, 1:3] = True
    assert len(R(2).keep_visible(one)) == 1          # release: <= 1 px at mask_size dropped
    assert len(R(1).keep_visible(one)) == 2          # zss: empty ones only
    assert R(5).keep_visible(one) is None


def test_max_masks_zero_keeps_all(sa1b_shards, tiny_clip):
    import json
    import tarfile

    from zss.formats import shards as sh
    from zss.recipes.pixelclip.recipe import PixelCLIPRecipe

    cfg = load_config(TrainConfig, MANIFESTS / "train" / "pixelclip-cached-demo.yaml")
    members: dict[str, dict] = {}  # raw members of one shard, as the training stream hands them over
    with tarfile.open(sh.shard_tars(sa1b_shards)[0]) as tar:
        for m in tar.getmembers():
            key, ext = m.name.split(".", 1)
            members.setdefault(key, {"__key__": key})[ext] = tar.extractfile(m).read()
    raw = max(members.values(), key=lambda r: len(json.loads(r["masks.json"])))
    n = len(json.loads(raw["masks.json"]))
    assert n > 2
    size = tuple(json.loads(raw["json"])["size"])
    for cap, want in ((0, n), (2, 2)):
        rc = PixelCLIPConfig(**{**cfg.recipe, "max_masks": cap, "min_mask_frac": 0.0})
        masks = PixelCLIPRecipe(rc, sa1b_shards, cfg)._masks(raw, size)
        assert len(masks) == want
        areas = masks.reshape(len(masks), -1).sum(1)
        assert (areas[:-1] >= areas[1:]).all()  # largest first, as the release sorts


def test_strong_view_reports_its_cutout():
    from zss.recipes.pixelclip.augment import StrongAug, strong_view

    aug = PixelCLIPConfig(cutout_p=1.0, cutout_fill=0.0, cutout_max_frac=0.5, strong_jitter_p=0.0,
                          strong_gray_p=0.0, strong_blur_p=0.0).strong_aug()
    assert isinstance(aug, StrongAug)
    img = torch.full((3, 40, 40), 0.7)
    view, box = strong_view(img, random.Random(3), aug, return_cutout=True)
    top, left, h, w = box
    assert 4 <= h <= 20 and 4 <= w <= 20
    assert (view[:, top:top + h, left:left + w] == 0).all()
    outside = torch.ones(40, 40, dtype=torch.bool)
    outside[top:top + h, left:left + w] = False
    assert torch.allclose(view[:, outside], torch.tensor(0.7))
