"""The one model-spec parser: every spelling users type, what manifests record, and the errors."""

from __future__ import annotations

import dataclasses

import pytest

from zss.errors import ZssError
from zss.formats.specs import ModelSpec, is_openclip_spec, parse_model_spec, to_model_spec


@pytest.mark.parametrize("text, expect, spec", [
    # timm backbones (--features, features.name)
    ("vit_small_patch14_dinov2", "backbone", ModelSpec("timm", "vit_small_patch14_dinov2", None)),
    ("vit_small_patch14_dinov2:/a/b.safetensors", "backbone",
     ModelSpec("timm", "vit_small_patch14_dinov2", "/a/b.safetensors")),
    ("vit_small_patch14_dinov2:", "backbone", ModelSpec("timm", "vit_small_patch14_dinov2", None)),
    ("vit_base_patch16_224:C:/w/vit.npz", "backbone", ModelSpec("timm", "vit_base_patch16_224", "C:/w/vit.npz")),
    # OpenCLIP, canonical and legacy, as a backbone
    ("openclip:ViT-B-16", "backbone", ModelSpec("openclip", "ViT-B-16", None)),
    ("openclip:ViT-B-16:openai", "backbone", ModelSpec("openclip", "ViT-B-16", "openai")),
    ("open_clip/ViT-B-16:/ckpt/b16.bin", "backbone", ModelSpec("openclip", "ViT-B-16", "/ckpt/b16.bin")),
    ("open_clip/zss-tiny-vit", "backbone", ModelSpec("openclip", "zss-tiny-vit", None)),
    # OpenCLIP where only OpenCLIP makes sense: bare ARCH[:CKPT] too
    ("ViT-B-16:openai", "openclip", ModelSpec("openclip", "ViT-B-16", "openai")),
    ("ViT-B/16", "openclip", ModelSpec("openclip", "ViT-B/16", None)),
    ("openclip:ViT-L-14:/w/a:b.pt", "openclip", ModelSpec("openclip", "ViT-L-14", "/w/a:b.pt")),
    ("open_clip/convnext_base_w_320", "openclip", ModelSpec("openclip", "convnext_base_w_320", None)),
    # SAM (--sam-checkpoint)
    ("vit_h:/ckpt/sam_vit_h.pth", "sam", ModelSpec("sam", "vit_h", "/ckpt/sam_vit_h.pth")),
    ("test_tiny:sam.safetensors", "sam", ModelSpec("sam", "test_tiny", "sam.safetensors")),
])
def test_parse_model_spec(text, expect, spec):
    assert parse_model_spec(text, expect) == spec


@pytest.mark.parametrize("text, expect, message", [
    (":x", "backbone", "bad --features value ':x': expected NAME[:CHECKPOINT]"),
    ("", "backbone", "bad --features value '': expected NAME[:CHECKPOINT]"),
    ("openclip:", "backbone", "empty OpenCLIP architecture in 'openclip:' (expected openclip:ARCH[:CKPT])"),
    ("open_clip/:openai", "openclip", "empty OpenCLIP architecture in 'open_clip/:openai'"),
    (":openai", "openclip", "empty OpenCLIP architecture in ':openai'"),
    ("vit_b", "sam", "bad SAM checkpoint 'vit_b': expected KIND:PATH with KIND in vit_b, vit_l, vit_h, test_tiny"),
    ("vit_b:", "sam", "bad SAM checkpoint 'vit_b:'"),
    ("vit_q:/x.pth", "sam", "bad SAM checkpoint 'vit_q:/x.pth'"),
])
def test_bad_specs_are_one_line_user_errors(text, expect, message):
    with pytest.raises(ZssError) as info:
        parse_model_spec(text, expect)
    assert str(info.value).startswith(message)


def test_unknown_expectation_is_a_programming_error():
    with pytest.raises(ValueError, match="expect must be one of"):
        parse_model_spec("vit_small_patch14_dinov2", "dino")


def test_recorded_name_and_frozen():
    assert ModelSpec("openclip", "ViT-B-16", "openai").name == "open_clip/ViT-B-16"
    assert ModelSpec("timm", "vit_small_patch14_dinov2", "/a.pt").name == "vit_small_patch14_dinov2"
    spec = parse_model_spec("openclip:ViT-B-16")
    assert parse_model_spec(spec.name) == spec  # what a manifest records reads back as the same model
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.arch = "ViT-L-14"  # type: ignore[misc]


def test_is_openclip_spec():
    assert is_openclip_spec("openclip:ViT-B-16") and is_openclip_spec("open_clip/ViT-B-16:openai")
    assert not is_openclip_spec("ViT-B-16") and not is_openclip_spec("runs/a/model")


def test_to_model_spec_takes_what_loaders_are_given(tmp_path):
    spec = ModelSpec("openclip", "ViT-B-16", "openai")
    assert to_model_spec(spec, expect="openclip") is spec
    assert to_model_spec(spec, tmp_path / "w.pt", "openclip") == ModelSpec("openclip", "ViT-B-16", str(tmp_path / "w.pt"))
    assert to_model_spec(spec, "") is spec and spec.with_checkpoint(None) is spec
    # a recorded name plus its checkpoint (manifests, model directories)
    assert to_model_spec("open_clip/ViT-B-16", "/w.pt") == ModelSpec("openclip", "ViT-B-16", "/w.pt")
    assert to_model_spec("vit_small_patch14_dinov2", "/w.pt") == ModelSpec("timm", "vit_small_patch14_dinov2", "/w.pt")
    assert to_model_spec("zss-tiny-vit", None, "openclip") == ModelSpec("openclip", "zss-tiny-vit", None)
    # SAM: a KIND with its checkpoint, or a KIND:PATH spec
    assert to_model_spec("vit_b", "/s.pth", "sam") == ModelSpec("sam", "vit_b", "/s.pth")
    assert to_model_spec("vit_b:/s.pth", None, "sam") == ModelSpec("sam", "vit_b", "/s.pth")
    with pytest.raises(ZssError, match="'vit_x' is a timm model; expected openclip"):
        to_model_spec(ModelSpec("timm", "vit_x"), expect="openclip")
