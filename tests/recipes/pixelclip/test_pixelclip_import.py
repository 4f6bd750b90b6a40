"""OpenAI weights need QuickGELU; `zss import pixelclip` maps a release-shaped detectron2 checkpoint."""

from __future__ import annotations

import json

import open_clip
import pytest
import torch
from safetensors.torch import load_file

from zss.cli import main
from zss.errors import ZssError
from zss.models.clip_dense import create_openclip, load_clip_dense, register_zss_configs

ARCH_Q = "zss-tiny-vit-quickgelu"


def _openai_style_file(path, arch=ARCH_Q, seed=0):
    """A random tiny CLIP saved the way OpenAI's state dicts are (with their three extra entries)."""
    register_zss_configs()
    torch.manual_seed(seed)
    state = open_clip.create_model(arch, pretrained=None).state_dict()
    state.update({"input_resolution": torch.tensor(64), "context_length": torch.tensor(77),
                  "vocab_size": torch.tensor(49408)})
    torch.save(state, path)
    return state


def test_openai_weights_load_into_quickgelu_and_are_refused_for_gelu(tmp_path, capsys):
    ckpt = tmp_path / "openai.pt"
    state = _openai_style_file(ckpt)
    model = create_openclip(ARCH_Q, str(ckpt))
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    mlp_act = model.visual.transformer.resblocks[0].mlp.gelu
    assert type(mlp_act).__name__ == "QuickGELU"
    with pytest.raises(ZssError, match=f"load them as {ARCH_Q}"):
        create_openclip("zss-tiny-vit", str(ckpt))
    from PIL import Image

    Image.new("RGB", (32, 32)).save(tmp_path / "a.jpg")
    code = main(["segment", f"openclip:zss-tiny-vit:{ckpt}", str(tmp_path / "a.jpg"), "--vocab", "a,b",
                 "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and ARCH_Q in err[0]


def _release_state(k=6, n_ctx=4, seed=1):
    """A state dict with the release's key names and shapes (pixelclip/pixelclip.py and
    modeling/transformer/pixelclip_predictor.py): tiny QuickGELU CLIP, prompt tokens, ConvHead, an
    EMA teacher (visual + text leftovers) and DINO weights."""
    register_zss_configs()
    g = torch.Generator().manual_seed(seed)
    clip = open_clip.create_model(ARCH_Q, pretrained=None).state_dict()
    state = {f"sem_seg_head.predictor.clip_model.{n}": torch.randn(v.shape, generator=g) for n, v in clip.items()}
    width = clip["token_embedding.weight"].shape[1]
    state["sem_seg_head.predictor.prompt_tokens"] = torch.randn(k, n_ctx, width, generator=g)
    head = {"conv0.weight": (64, 1, 3, 3), "conv0.bias": (64,), "up1.weight": (64, 64, 2, 2), "up1.bias": (64,),
            "conv1.double_conv.0.weight": (64, 64, 3, 3), "conv1.double_conv.1.weight": (64,),
            "conv1.double_conv.1.bias": (64,), "conv1.double_conv.3.weight": (64, 64, 3, 3),
            "conv1.double_conv.4.weight": (64,), "conv1.double_conv.4.bias": (64,),
            "up2.weight": (64, 32, 2, 2), "up2.bias": (32,), "conv2.double_conv.0.weight": (32, 32, 3, 3),
            "conv2.double_conv.1.weight": (32,), "conv2.double_conv.1.bias": (32,),
            "conv2.double_conv.3.weight": (32, 32, 3, 3), "conv2.double_conv.4.weight": (32,),
            "conv2.double_conv.4.bias": (32,), "proj.weight": (1, 32, 3, 3), "proj.bias": (1,)}
    state.update({f"head.{n}": torch.randn(s, generator=g) for n, s in head.items()})
    state.update({f"teacher_encoder.{n}": torch.randn(v.shape, generator=g) for n, v in clip.items()
                  if not n.startswith("transformer.")})
    state["dino.cls_token"] = torch.randn(1, 1, 8, generator=g)
    return state


def test_import_round_trips_every_tensor(tmp_path):
    state = _release_state()
    ckpt = tmp_path / "model_final.pth"
    torch.save({"model": state, "iteration": torch.tensor(9999)}, ckpt)
    out = tmp_path / "imported"
    assert main(["import", "pixelclip", str(ckpt), str(out), "--arch", ARCH_Q, "--img-size", "64"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["kind"] == "pixelclip" and config["clip"]["arch"] == ARCH_Q and config["default_size"] == 64
    assert config["decoder"]["variant"] == "official" and config["prompts"]["n_ctx"] == 4
    clip_sd = load_file(str(out / "model.safetensors"))
    pre = "sem_seg_head.predictor.clip_model."
    assert set(clip_sd) == {k[len(pre):] for k in state if k.startswith(pre)}
    for k, v in clip_sd.items():
        assert torch.equal(v, state[pre + k]), k
    assert torch.equal(load_file(str(out / "prompts.safetensors"))["ctx"],
                       state["sem_seg_head.predictor.prompt_tokens"])
    dec = load_file(str(out / "decoder.safetensors"))
    assert set(dec) == {k[5:] for k in state if k.startswith("head.")}
    for k, v in dec.items():
        assert torch.equal(v, state["head." + k]), k
    # the directory serves eval/segment: dense features are those of the imported CLIP
    from zss.recipes import load_segmenter

    seg = load_segmenter(str(out))
    ref = load_clip_dense(ARCH_Q, str(out / "model.safetensors"))
    x = torch.rand(1, 3, 64, 64)
    feats, _ = ref.dense(x, with_global=False)
    dense = seg.encode_dense(x)
    assert torch.allclose(dense, torch.nn.functional.normalize(feats, dim=-1).permute(0, 3, 1, 2), atol=1e-5)
    # every file is named relative to the folder: moved elsewhere, the same features (issue 23)
    assert config["clip"]["file"] == "model.safetensors" and config["prompts"]["file"] == "prompts.safetensors"
    moved = tmp_path / "moved" / "imported"
    moved.parent.mkdir()
    out.rename(moved)
    ckpt.unlink()
    assert torch.equal(load_segmenter(str(moved)).encode_dense(x), dense)


@pytest.mark.parametrize("change, message", [
    (lambda s: s.update({"sem_seg_head.extra.weight": torch.zeros(1)}), "unknown keys.*sem_seg_head.extra.weight"),
    (lambda s: s.pop("head.proj.bias"), "missing decoder keys.*proj.bias"),
    (lambda s: s.pop("sem_seg_head.predictor.clip_model.visual.proj"), "missing CLIP keys.*visual.proj"),
    (lambda s: s.pop("sem_seg_head.predictor.prompt_tokens"), "prompt context"),
])
def test_import_names_unknown_and_missing_keys(tmp_path, capsys, change, message):
    import re

    state = _release_state()
    change(state)
    ckpt = tmp_path / "bad.pth"
    torch.save({"model": state}, ckpt)
    assert main(["import", "pixelclip", str(ckpt), str(tmp_path / "o"), "--arch", ARCH_Q]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(message, err[0]), err


def test_import_refuses_pickled_objects(tmp_path, capsys):
    ckpt = tmp_path / "evil.pth"
    import argparse

    torch.save({"model": {"x": torch.zeros(1)}, "cfg": argparse.Namespace(lr=1)}, ckpt)  # not a tensor type
    assert main(["import", "pixelclip", str(ckpt), str(tmp_path / "o")]) == 2
    assert "weights-only" in capsys.readouterr().err
