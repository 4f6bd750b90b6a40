"""`zss import simzss`: a release-shaped checkpoint (the key names and layout of
github.com/tileb1/simzss, random values, a ViT-S/14 reg4 standing in for the ViT-B) becomes a model
directory that `zss segment` runs on, with every tensor where it belongs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from open_clip.transformer import TextTransformer
from PIL import Image
from safetensors.torch import load_file

from zss.cli import main
from zss.errors import ZssError
from zss.models.backbone import create_timm_vit
from zss.models.denoiser import PatchDenoiser
from zss.models.tokenizer import tokenize
from zss.recipes import load_segmenter
from zss.recipes.simzss.release import import_simzss

BACKBONE = "vit_small_patch14_reg4_dinov2"   # same key layout as the release's ViT-B, 384 wide


@pytest.fixture(scope="module")
def release_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    text = TextTransformer(context_length=77, vocab_size=49408, width=128, heads=2, layers=2, output_dim=384)
    vit = create_timm_vit(BACKBONE, 518, checkpoint=None, pretrained=False)   # 37x37 grid, as released
    den = PatchDenoiser(384)
    state: dict[str, torch.Tensor] = {}
    for prefix, module in (("text.", text), ("visual.vit.model.", vit), ("visual.", den)):
        for k, v in module.state_dict().items():
            state[f"module.{prefix}{k}"] = torch.randn_like(v) * 0.05 if v.is_floating_point() else v
    assert state["module.visual.pos_embed"].shape == (1, 1369, 384)
    state.update({"module.logit_scale": torch.tensor(4.2), "module.logit_scale_local": torch.tensor([2.66]),
                  "module.classification_weights_ema": torch.zeros(575, 384), "module.beta_ema": torch.tensor(0.0)})
    return state


@pytest.mark.slow
def test_import_round_trip_and_segment(tmp_path, release_state):
    state = release_state
    ckpt = tmp_path / "simzss_coco.pt"
    torch.save({"epoch": 10, "name": "simzss", "state_dict": state}, ckpt)
    out = tmp_path / "imported"
    assert main(["import", "simzss", str(ckpt), str(out), "--backbone", BACKBONE]) == 0

    landed = {}
    for file, prefix in (("model.safetensors", "module."), ("backbone.safetensors", "module.visual.vit.model."),
                         ("denoiser.safetensors", "module.visual.")):
        for k, v in load_file(str(out / file)).items():
            landed[prefix + k] = v
    expected = {k: v for k, v in state.items()
                if not k.endswith(("logit_scale", "logit_scale_local", "classification_weights_ema", "beta_ema"))}
    assert set(landed) == set(expected)
    for k, v in expected.items():
        assert torch.equal(landed[k], v), k

    config = json.loads((out / "config.json").read_text())
    assert config["logit_scale"] == pytest.approx(float(np.exp(4.2)), rel=1e-5)
    assert config["text"]["width"] == 128 and config["text"]["layers"] == 2 and config["text"]["heads"] == 2
    assert config["backbone"]["normalize"]["name"] == "clip" and config["backbone"]["img_size"] == 224
    assert config["text_pooling"] == "eot-name" and len(config["backbone"]["denoiser"]["sha256"]) == 64

    # Same text embeddings as an open_clip TextTransformer holding the given tensors.
    ref = TextTransformer(context_length=77, vocab_size=49408, width=128, heads=2, layers=2, output_dim=384).eval()
    ref.load_state_dict({k[len("module.text."):]: v for k, v in state.items() if k.startswith("module.text.")})
    names = ["dog", "traffic light", "sky"]
    with torch.no_grad():
        want = F.normalize(ref(tokenize(names, 77)), dim=-1)
    seg = load_segmenter(out, "cpu")
    assert torch.allclose(seg.encode_text(names), want, atol=1e-5)
    assert seg.backbone.denoiser is not None and seg.default_size == 224

    img = tmp_path / "im.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (56, 70, 3), dtype=np.uint8)).save(img)
    assert main(["segment", str(out), str(img), "--vocab", "dog,sky", "--out", str(tmp_path / "seg")]) == 0
    assert any((tmp_path / "seg").iterdir())
    # the imported directory names its files relative to itself: moved, it segments the same (issue 23)
    assert config["backbone"]["checkpoint"] == "backbone.safetensors"
    assert config["backbone"]["denoiser"]["file"] == "denoiser.safetensors"
    moved = tmp_path / "moved" / "imported"
    moved.parent.mkdir()
    out.rename(moved)
    assert main(["segment", str(moved), str(img), "--vocab", "dog,sky", "--out", str(tmp_path / "seg2")]) == 0
    assert (tmp_path / "seg" / "im.png").read_bytes() == (tmp_path / "seg2" / "im.png").read_bytes()


def test_import_errors_name_the_key(tmp_path, capsys, release_state):
    # These errors come before the ViT is built: one ViT tensor keeps the files small.
    state = {k: v for k, v in release_state.items()
             if not k.startswith("module.visual.vit.model.") or k == "module.visual.vit.model.cls_token"}
    bad = dict(state, **{"module.visual.extra_head.weight": torch.zeros(2)})
    torch.save(bad, tmp_path / "extra.pt")
    with pytest.raises(ZssError, match="visual.extra_head.weight"):
        import_simzss(tmp_path / "extra.pt", tmp_path / "o1", BACKBONE)
    short = {k: v for k, v in state.items() if k != "module.text.ln_final.bias"}
    torch.save(short, tmp_path / "short.pt")
    with pytest.raises(ZssError, match="text.ln_final.bias"):
        import_simzss(tmp_path / "short.pt", tmp_path / "o2", BACKBONE)
    no_den = {k: v for k, v in state.items() if not k.startswith("module.visual.denoiser.")}
    torch.save(no_den, tmp_path / "noden.pt")
    with pytest.raises(ZssError, match="visual.denoiser"):
        import_simzss(tmp_path / "noden.pt", tmp_path / "o3", BACKBONE)

    torch.save({"state_dict": {"module.text.x": torch.zeros(1)}, "args": object()}, tmp_path / "pickled.pt")
    assert main(["import", "simzss", str(tmp_path / "pickled.pt"), str(tmp_path / "o4")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pickle" in err and "weights_only" in err
