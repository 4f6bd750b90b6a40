"""`zss import simzss CKPT OUT`: the authors' released SimZSS checkpoint as a zss model directory.

The release (github.com/tileb1/simzss) saves its open_clip-style model as one flat tensor dict,
keys prefixed `module.` when trained under DDP, possibly inside open_clip's `{"state_dict": ...}`:
`text.*` its causal text transformer (same layout as open_clip's `TextTransformer`, which zss's
text tower wraps), `visual.vit.model.*` the frozen timm DINOv2 ViT (built at its default 518 px,
so a 37×37 position grid), `visual.denoiser.*` + `visual.pos_embed` the DVT denoiser, `logit_scale`,
and training-only buffers. Every tensor must be accounted for: a key the import does not know, or
one a component needs and the file lacks, is an error naming it.

OUT gets `model.safetensors` (text tower), `backbone.safetensors`, `denoiser.safetensors` and a
`config.json` recording the backbone (CLIP normalisation, 224 px as the release trained, denoiser
sha256), read by `zss eval` / `zss segment` like any trained SimZSS model.
"""

from __future__ import annotations

import json
import pickle
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from zss.errors import ZssError
from zss.models.backbone import NORMALIZATIONS, create_timm_vit
from zss.models.denoiser import PatchDenoiser, save_denoiser
from zss.recipes.simzss.text_tower import TextConfig, TextTower
from zss.utils.hashing import sha256_file

RELEASE_BACKBONE = "vit_base_patch14_reg4_dinov2"
RELEASE_IMG_SIZE = 224          # the release trains and evaluates at 224 px
# timm builds the release's ViT at its pretrained_cfg size (vit_wrapper.py L106-113 passes no img_size;
# timm 0.9.16 _cfg fixed_input_size, input_size 518): a 37x37 position table, resampled on every call.
RELEASE_BUILD_SIZE = 518
IGNORED = ("classification_weights_ema", "beta_ema", "logit_scale_local", "logit_bias_local")


def read_release_state(path: Path) -> dict[str, torch.Tensor]:
    """The checkpoint's flat tensor dict (`module.` stripped), loaded with weights_only=True."""
    if not path.is_file():
        raise ZssError(f"checkpoint not found: {path}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError) as exc:
        raise ZssError(f"{path} cannot be read with torch.load(weights_only=True): it needs pickle "
                       f"(objects beyond tensors); re-save it as a plain tensor dict") from exc
    if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict) or not raw:
        raise ZssError(f"{path} holds no state dict")
    out: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        if not isinstance(value, torch.Tensor):
            raise ZssError(f"{path}: entry {key!r} is not a tensor")
        out[key[len("module."):] if key.startswith("module.") else key] = value
    return out


def _text_config(text: dict[str, torch.Tensor]) -> TextConfig:
    """Text-tower sizes from the tensor shapes (heads = width / 64, open_clip's head width)."""
    for need in ("positional_embedding", "token_embedding.weight", "text_projection"):
        if need not in text:
            raise ZssError(f"checkpoint lacks text.{need}")
    ctx, width = text["positional_embedding"].shape
    layers = len({m.group(1) for k in text if (m := re.match(r"transformer\.resblocks\.(\d+)\.", k))})
    fc = text.get("transformer.resblocks.0.mlp.c_fc.weight")
    mlp_ratio = float(fc.shape[0] / width) if fc is not None else 4.0
    return TextConfig(width=int(width), heads=max(1, int(width) // 64), layers=layers,
                      context_length=int(ctx), vocab_size=int(text["token_embedding.weight"].shape[0]),
                      mlp_ratio=mlp_ratio)


def _load_exact(module: torch.nn.Module, state: dict[str, torch.Tensor], prefix: str) -> None:
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing:
        raise ZssError(f"checkpoint lacks {prefix}{missing[0]}" + (f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""))
    if unexpected:
        raise ZssError(f"unexpected key {prefix}{unexpected[0]}" + (f" (+{len(unexpected) - 1} more)" if len(unexpected) > 1 else ""))
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise ZssError(f"{prefix}{k} has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}")
    module.load_state_dict(state, strict=True)


def import_simzss(ckpt: Path, out: Path, backbone: str = RELEASE_BACKBONE) -> Path:
    """Write the model directory OUT from the release checkpoint `ckpt`; returns OUT."""
    state = read_release_state(Path(ckpt))
    parts: dict[str, dict[str, torch.Tensor]] = {"text": {}, "vit": {}, "denoiser": {}}
    logit_scale = None
    for key, value in state.items():
        if key.startswith("text."):
            parts["text"][key[len("text."):]] = value
        elif key.startswith("visual.vit.model."):
            parts["vit"][key[len("visual.vit.model."):]] = value
        elif key.startswith("visual.denoiser.") or key == "visual.pos_embed":
            parts["denoiser"][key[len("visual."):]] = value
        elif key == "logit_scale":
            logit_scale = float(value.float().exp().clamp(max=100.0))
        elif key not in IGNORED:
            raise ZssError(f"unexpected key {key} in {ckpt} (not part of a SimZSS release checkpoint)")
    for name, prefix in (("text", "text."), ("vit", "visual.vit.model."), ("denoiser", "visual.denoiser.")):
        if not parts[name]:
            raise ZssError(f"{ckpt} has no {prefix}* tensors: not a SimZSS release checkpoint")

    tcfg = _text_config(parts["text"])
    tower = TextTower(tcfg, int(parts["text"]["text_projection"].shape[1]))
    _load_exact(tower.text, parts["text"], "text.")
    # The denoiser is checked before the ViT is built (cheap first); its width must match the ViT's.
    pos = parts["denoiser"].get("pos_embed")
    if pos is None:
        raise ZssError("checkpoint lacks visual.pos_embed")
    grid, den_dim = int(round(pos.shape[1] ** 0.5)), int(pos.shape[-1])
    den = PatchDenoiser(den_dim, grid)
    _load_exact(den, parts["denoiser"], "visual.")
    vit = create_timm_vit(backbone, RELEASE_BUILD_SIZE, checkpoint=None, pretrained=False)
    _load_exact(vit, parts["vit"], "visual.vit.model.")
    dim = int(vit.embed_dim)
    if den_dim != dim:
        raise ZssError(f"visual.pos_embed is {den_dim}-d but the backbone {backbone} is {dim}-d")
    if tower.out_dim != dim:
        raise ZssError(f"text projection is {tower.out_dim}-d but the backbone {dim}-d")

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in tower.state_dict().items()}, str(out / "model.safetensors"),
              metadata={"kind": "simzss"})
    save_file({k: v.detach().contiguous() for k, v in vit.state_dict().items()}, str(out / "backbone.safetensors"))
    save_denoiser(den, out / "denoiser.safetensors")
    mean, std = NORMALIZATIONS["clip"]
    bb_file, den_file = out / "backbone.safetensors", out / "denoiser.safetensors"  # named relative to OUT
    record: dict[str, Any] = {
        "name": backbone, "checkpoint": bb_file.name, "sha256": sha256_file(bb_file),
        "img_size": RELEASE_IMG_SIZE, "build_size": RELEASE_BUILD_SIZE,
        "patch_size": int(vit.patch_embed.patch_size[0]), "embed_dim": dim,
        "num_prefix_tokens": int(vit.num_prefix_tokens), "global": "cls",
        "normalize": {"name": "clip", "mean": list(mean), "std": list(std)},
        "denoiser": {"type": "transformer", "file": den_file.name, "sha256": sha256_file(den_file),
                     "dim": dim, "grid": grid}}
    config = {"kind": "simzss", "schema": 1, "backbone": record, "feature": {"dim": dim},
              "text": asdict(tcfg), "embed_dim": dim, "tokenizer": "clip-bpe", "global": "cls",
              "text_pooling": "eot-name", "logit_scale": logit_scale,
              "imported_from": {"file": str(Path(ckpt).resolve()), "sha256": sha256_file(ckpt),
                                "release": "github.com/tileb1/simzss"}}
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out
