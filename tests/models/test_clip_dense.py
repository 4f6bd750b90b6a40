"""Dense OpenCLIP: loading, MaskCLIP-style value path, text side, Segmenter wrapper, learned prompts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from zss.errors import ZssError
from zss.formats.specs import parse_model_spec
from zss.models.clip_dense import (OpenCLIPBackbone, OpenCLIPSegmenter, load_clip_dense, save_random_openclip,
                                   visual_dense)
from zss.recipes.pixelclip.prompts import LearnablePrompts


@pytest.fixture(scope="module")
def clip(tiny_clip):
    return load_clip_dense("zss-tiny-vit", str(tiny_clip))


def test_random_checkpoint_roundtrip_is_seeded(tiny_clip, tmp_path, clip):
    again = save_random_openclip("zss-tiny-vit", tmp_path / "again.safetensors", seed=0)
    other = save_random_openclip("zss-tiny-vit", tmp_path / "other.safetensors", seed=1)
    a, b, c = load_file(str(tiny_clip)), load_file(str(again)), load_file(str(other))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["visual.proj"], c["visual.proj"])
    loaded = clip.model.state_dict()
    assert all(torch.equal(loaded[k], a[k]) for k in a)


@pytest.mark.parametrize("arch, ckpt", [("no-such-arch", None), ("zss-tiny-vit", None),
                                        ("zss-tiny-vit", "/nonexistent/clip.safetensors")])
def test_loading_failures_are_user_errors(arch, ckpt):
    with pytest.raises(ZssError):
        load_clip_dense(arch, ckpt)


def test_dense_vit_is_the_value_path_plus_cls_residual(clip):
    x = torch.rand(2, 3, 64, 64)
    patch, glob = clip.dense(x)
    assert patch.shape == (2, 8, 8, 64) and glob.shape == (2, 64)
    assert torch.allclose(glob, clip.model.encode_image(clip.normalize(x)), atol=1e-5)
    # By hand: the last block's attention restricted to the diagonal is each token's own value path.
    visual = clip.model.visual
    seen = {}
    last = visual.transformer.resblocks[-1]
    handle = last.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    clip.model.encode_image(clip.normalize(x))
    handle.remove()
    tokens = seen["x"]
    n = tokens.shape[1]
    eye = torch.full((n, n), float("-inf")).fill_diagonal_(0.0)
    y = last.ln_1(tokens)
    own = last.attn(y, y, y, need_weights=False, attn_mask=eye)[0]
    v = own + tokens[:, :1]
    v = v + last.mlp(last.ln_2(v))
    expected = (visual.ln_post(v[:, 1:]) @ visual.proj).reshape(2, 8, 8, -1)
    assert torch.allclose(patch, expected, atol=1e-5)
    teacher_patch, _ = visual_dense(visual, clip.normalize(x), with_global=False)
    assert torch.allclose(teacher_patch, patch)


def test_dense_any_input_size(clip):
    patch, _ = clip.dense(torch.rand(1, 3, 96, 128), with_global=False)
    assert patch.shape == (1, 12, 16, 64)


def test_convnext_dense_head_without_pooling(tmp_path):
    ckpt = save_random_openclip("zss-tiny-convnext", tmp_path / "cnx.safetensors", seed=0)
    clip = load_clip_dense("zss-tiny-convnext", str(ckpt))
    x = torch.rand(2, 3, 128, 128)
    patch, glob = clip.dense(x)
    assert patch.shape == (2, 4, 4, 64) and clip.patch_size == 32
    assert torch.allclose(glob, clip.model.encode_image(clip.normalize(x)), atol=1e-5)
    # Pooling then projecting equals projecting then pooling when the head is linear after the norm.
    visual = clip.model.visual
    normed = visual.trunk.head.norm(visual.trunk.forward_features(clip.normalize(x)))
    assert torch.allclose(patch.mean((1, 2)), visual.head(normed.mean((2, 3))), atol=1e-5)


def test_segmenter_and_backbone_wrappers(clip):
    seg = OpenCLIPSegmenter(clip)
    assert seg.patch_size == 8 and seg.default_size == 64
    dense = seg.encode_dense(torch.rand(2, 3, 64, 64))
    assert dense.shape == (2, 64, 8, 8)
    assert torch.allclose(dense.norm(dim=1), torch.ones(2, 8, 8), atol=1e-5)
    text = seg.encode_text(["grass", "a red ball"])
    assert text.shape == (2, 64) and torch.allclose(text.norm(dim=1), torch.ones(2), atol=1e-5)
    bb = OpenCLIPBackbone(clip)
    patch, glob = bb(torch.rand(1, 3, 64, 64))
    assert patch.shape == (1, 8, 8, 64) and glob.shape == (1, 64)
    assert bb.spec["name"] == "open_clip/zss-tiny-vit" and not any(p.requires_grad for p in bb.parameters())


def test_every_spelling_of_a_spec_loads_the_same_model(tiny_clip, clip):
    for text in (f"openclip:zss-tiny-vit:{tiny_clip}", f"open_clip/zss-tiny-vit:{tiny_clip}",
                 f"zss-tiny-vit:{tiny_clip}"):
        seg = OpenCLIPSegmenter.from_spec(parse_model_spec(text, "openclip"))
        assert seg.clip.spec() == clip.spec() == OpenCLIPSegmenter.from_spec(text).clip.spec()
        assert all(torch.equal(a, b) for a, b in zip(seg.clip.state_dict().values(), clip.state_dict().values()))


def test_prompts_read_like_sentences_and_only_context_learns(clip):
    prompts = LearnablePrompts(clip, k=4, seed=0)
    assert prompts.ctx.shape == (4, 4, 64)
    assert torch.equal(prompts.ctx, LearnablePrompts(clip, k=4, seed=0).ctx)
    assert not torch.equal(prompts.ctx, LearnablePrompts(clip, k=4, seed=1).ctx)
    sentence = "A photo of a red big striped ball in the scene"
    ids = clip.tokenize([sentence])[0]
    with torch.no_grad():
        prompts.ctx[0] = clip.token_embedding.weight[ids[prompts.positions]]
    emb = prompts(clip)
    assert torch.allclose(emb[0], clip.encode_text([sentence])[0], atol=1e-5)
    for p in clip.parameters():
        p.requires_grad_(False)
    F.normalize(emb, dim=-1)[:, 0].sum().backward()
    assert prompts.ctx.grad is not None and prompts.ctx.grad.abs().sum() > 0


def test_prompt_template_must_have_slots(clip):
    with pytest.raises(ZssError):
        LearnablePrompts(clip, k=2, template="A photo of a thing")
