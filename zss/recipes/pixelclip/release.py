"""`zss import pixelclip CKPT OUT`: a checkpoint released by PixelCLIP's authors -> a zss model directory.

The release (cvlab-kaist/PixelCLIP) saves detectron2 checkpoints: `{"model": state_dict, ...}`.
Its state dict holds, by prefix:

    sem_seg_head.predictor.clip_model.   the fine-tuned CLIP (OpenAI key names = open_clip's)
    sem_seg_head.predictor.prompt_tokens the learned prompt context [k, n_ctx, width]
    head.                                the mask decoder (zss's `official` variant, same names)
    teacher_encoder.                     the EMA teacher (training only: not imported)
    dino.                                the DINO mask backbone of DINO-mask runs (training only)

Anything else, and any CLIP/decoder key the zss model expects but the file lacks, is an error
naming the keys. The file is read with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from zss.errors import ZssError

CLIP_PREFIX = "sem_seg_head.predictor.clip_model."
PROMPTS_KEY = "sem_seg_head.predictor.prompt_tokens"
DECODER_PREFIX = "head."
IGNORED_PREFIXES = ("teacher_encoder.", "dino.")
OPENAI_EXTRA = ("input_resolution", "context_length", "vocab_size")
# the release's two backbones: ViT-B/16 = OpenAI weights (QuickGELU), trained and evaluated at 320²;
# ConvNeXt-B = open_clip convnext_base_w_320 (laion_aesthetic_s13b_b82k), at 640²
ARCHS = {"vit": ("ViT-B-16-quickgelu", 320, "openai"), "convnext": ("convnext_base_w_320", 640, "laion")}
TEMPLATE = "A photo of a {} in the scene"  # the release's prompt: its {} holds the n_ctx learned slots


def _fmt(keys: list[str], limit: int = 8) -> str:
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def read_release_state(path: Path) -> dict[str, torch.Tensor]:
    if not Path(path).is_file():
        raise ZssError(f"checkpoint {path} not found")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input
        raise ZssError(f"cannot read {path} as a weights-only torch checkpoint: "
                       f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
    state = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ZssError(f"{path} is not a detectron2 checkpoint ({{'model': state_dict}}) nor a state dict")
    return state


def split_release_state(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor,
                                                                  dict[str, torch.Tensor]]:
    """(clip state dict, prompt context, decoder state dict); unknown keys are an error."""
    clip, decoder, unknown = {}, {}, []
    prompts = None
    for key, value in state.items():
        if key.startswith(CLIP_PREFIX):
            name = key[len(CLIP_PREFIX):]
            if name not in OPENAI_EXTRA:
                clip[name] = value
        elif key == PROMPTS_KEY:
            prompts = value
        elif key.startswith(DECODER_PREFIX):
            decoder[key[len(DECODER_PREFIX):]] = value
        elif not key.startswith(IGNORED_PREFIXES):
            unknown.append(key)
    if unknown:
        raise ZssError(f"unknown keys in the PixelCLIP checkpoint: {_fmt(sorted(unknown))}")
    if prompts is None or prompts.dim() != 3:
        raise ZssError(f"the checkpoint has no prompt context {PROMPTS_KEY} of shape [k, n_ctx, width]")
    return clip, prompts, decoder


def _load_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing:
        raise ZssError(f"missing {what} keys in the PixelCLIP checkpoint: {_fmt(missing)}")
    if unexpected:
        raise ZssError(f"unknown {what} keys in the PixelCLIP checkpoint: {_fmt(unexpected)}")
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
             if tuple(state[k].shape) != tuple(v.shape)]
    if wrong:
        raise ZssError(f"{what} tensors of the wrong shape: {_fmt(wrong, 4)}")
    module.load_state_dict(state, strict=True)


def import_pixelclip(ckpt: Path, out: Path, arch: str | None = None, img_size: int | None = None) -> str:
    """Write the zss model directory `out` from the release checkpoint `ckpt`; returns a summary."""
    import open_clip

    from zss.models.clip_dense import DenseCLIP, _model_name
    from zss.recipes.pixelclip.model import PixelCLIPNet
    from zss.recipes.pixelclip.segmenter import write_model_dir

    state = read_release_state(Path(ckpt))
    clip_state, ctx, decoder_state = split_release_state(state)
    family = "convnext" if any(k.startswith("visual.trunk.") for k in clip_state) else "vit"
    default_arch, default_size, weights = ARCHS[family]
    arch = arch or default_arch
    model = open_clip.create_model(_model_name(arch), pretrained=None)
    _load_strict(model, clip_state, "CLIP")
    clip = DenseCLIP(model.eval(), arch)
    k, n_ctx, width = ctx.shape
    if width != clip.token_embedding.weight.shape[1]:
        raise ZssError(f"prompt context width {width} does not match {arch}'s token width "
                       f"{clip.token_embedding.weight.shape[1]}")
    template = TEMPLATE.replace("{}", " ".join(["{}"] * n_ctx))
    net = PixelCLIPNet(clip, "full", k=k, template=template, mask_size=256, decoder="official")
    with torch.no_grad():
        net.prompts.ctx.copy_(ctx.to(net.prompts.ctx.dtype))
    _load_strict(net.decoder, decoder_state, "decoder")
    size = int(img_size or default_size)
    write_model_dir(net, Path(out), default_size=size,
                    source={"release": "cvlab-kaist/PixelCLIP", "checkpoint": str(Path(ckpt).resolve()),
                            "weights": weights},
                    extra={"imported": {"from": "pixelclip-release", "family": family,
                                        "ignored": sorted({k.split(".")[0] for k in state
                                                           if k.startswith(IGNORED_PREFIXES)})}})
    return f"imported {ckpt} ({arch}, {k} prompts of {n_ctx} tokens) -> {out}"


