"""The imported SimZSS ViT keeps the release's 518-px model (37x37 position table, resampled on every
call, as timm builds it for the authors: vit_wrapper.py L106-113 passes no img_size), so it equals the
authors' construction bit for bit at every grid; a zss-trained model builds at its img_size."""

from __future__ import annotations

import json

import pytest
import timm
import torch
from open_clip.transformer import TextTransformer
from safetensors.torch import load_file, save_file

from zss.cli import main
from zss.models.backbone import create_timm_vit, load_backbone
from zss.models.denoiser import PatchDenoiser
from zss.recipes import load_segmenter

BACKBONE = "vit_small_patch14_reg4_dinov2"   # the release's ViT-B key layout, 384 wide


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    torch.manual_seed(1)
    text = TextTransformer(context_length=77, vocab_size=49408, width=64, heads=2, layers=1, output_dim=384)
    vit = create_timm_vit(BACKBONE, 518, checkpoint=None, pretrained=False)
    state = {}
    for prefix, module in (("text.", text), ("visual.vit.model.", vit), ("visual.", PatchDenoiser(384))):
        for k, v in module.state_dict().items():
            state[f"module.{prefix}{k}"] = torch.randn_like(v) * 0.05 if v.is_floating_point() else v
    state["module.logit_scale"] = torch.tensor(4.2)
    root = tmp_path_factory.mktemp("pos")
    torch.save({"state_dict": state}, root / "release.pt")
    assert main(["import", "simzss", str(root / "release.pt"), str(root / "model"), "--backbone", BACKBONE]) == 0
    return root / "model"


def test_imported_model_keeps_the_37x37_table_and_matches_the_authors_model(imported):
    config = json.loads((imported / "config.json").read_text())
    assert (config["backbone"]["build_size"], config["backbone"]["img_size"]) == (518, 224)
    seg = load_segmenter(str(imported))
    model = seg.backbone.model
    assert tuple(model.pos_embed.shape) == (1, 37 * 37, 384)
    # the authors' construction: timm at its default size (518), dynamic_img_size, the same weights
    ref = timm.create_model(BACKBONE, pretrained=False, dynamic_img_size=True, num_classes=0).eval()
    ref.load_state_dict(load_file(str(imported / "backbone.safetensors")))
    torch.manual_seed(0)
    for h, w in ((224, 224), (280, 336)):     # grids 16x16 and 20x24
        x = torch.randn(1, 3, h, w)
        with torch.no_grad():
            assert torch.equal(ref.forward_features(x), model.forward_features(x)), (h, w)
    # built at 224 instead (the table shrunk to 16x16 at load), another grid differs from the authors'
    shrunk = load_backbone(BACKBONE, imported / "backbone.safetensors", 224).model
    with torch.no_grad():
        assert not torch.equal(ref.forward_features(x), shrunk.forward_features(x))
    # Talk2DINO's template mean (template_mean: raw) needs the end-of-text before the normalisation
    texts = ["a photo of a cat.", "a photo of a dog."]
    raw = seg.encode_text_raw(texts)
    torch.testing.assert_close(torch.nn.functional.normalize(raw, dim=-1), seg.encode_text(texts))
    assert not torch.allclose(raw.norm(dim=-1), torch.ones(2))


def test_zss_trained_backbones_build_at_their_img_size(tmp_path):
    """No build_size: the checkpoint's table is resampled to img_size at load (a ViT-Ti/16 stand-in)."""
    vit = create_timm_vit("vit_tiny_patch16_224", 384, checkpoint=None, pretrained=False)   # 24x24 table
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(tmp_path / "bb.safetensors"))
    own = load_backbone("vit_tiny_patch16_224", tmp_path / "bb.safetensors", 224)
    assert tuple(own.model.pos_embed.shape[:2]) == (1, 1 + 14 * 14) and "build_size" not in own.spec
    kept = load_backbone("vit_tiny_patch16_224", tmp_path / "bb.safetensors", 224, build_size=384)
    assert tuple(kept.model.pos_embed.shape[:2]) == (1, 1 + 24 * 24)
    assert (kept.spec["img_size"], kept.spec["build_size"], kept.img_size) == (224, 384, 224)

