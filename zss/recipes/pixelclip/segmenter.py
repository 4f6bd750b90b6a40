"""A trained PixelCLIP model directory, and the `Segmenter` that serves it to eval and segment.

Inference uses only CLIP's image and text encoders (the mask decoder and prompts were training
aids): dense image features — plus the learned adapter for cached-mode models — against text
embeddings of the real class names. Layout of the directory:

    config.json           {"kind": "pixelclip", "schema": 1, "mode", "clip": {...}, "adapter", ...}
    model.safetensors     the open_clip state dict (also loadable as openclip:ARCH:model.safetensors)
    adapter.safetensors   cached mode only: the residual feature adapter
    prompts.safetensors   learned prompt context vectors and their text embeddings
    decoder.safetensors   the training mask decoder (variant in config.json; not used by inference)
    concepts.json         the shards' concept bank (when there was one), for `zss prompts explain`
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from zss.errors import ZssError
from zss.models.clip_dense import DenseCLIP, OpenCLIPSegmenter, load_clip_dense
from zss.formats.model_dir import SCHEMA, bundle_concept_bank, read_model_config, read_weights



def write_model_dir(net: nn.Module, out_dir: Path, default_size: int, source: dict[str, Any],
                    extra: dict[str, Any] | None = None, concept_bank: Path | None = None) -> Path:
    """Export a `PixelCLIPNet` (student weights) to `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clip: DenseCLIP = net.clip
    state = {k: v.detach().cpu().contiguous() for k, v in clip.model.state_dict().items()}
    save_file(state, str(out_dir / "model.safetensors"), metadata={"kind": "pixelclip"})
    adapter_state, adapter_cfg = net.impl.extra_state(net)
    if adapter_state is not None:
        save_file(adapter_state, str(out_dir / "adapter.safetensors"))
    with torch.no_grad():
        embeddings = net.prompts(clip).float().cpu()
    save_file({"ctx": net.prompts.ctx.detach().float().cpu().contiguous(), "embeddings": embeddings.contiguous()},
              str(out_dir / "prompts.safetensors"))
    save_file({k: v.detach().cpu().contiguous() for k, v in net.decoder.state_dict().items()},
              str(out_dir / "decoder.safetensors"))
    bundle_concept_bank(concept_bank, out_dir)
    config = {"kind": "pixelclip", "schema": SCHEMA, "mode": net.mode,
              "clip": {**clip.spec(), "source": source, "file": "model.safetensors"},
              "adapter": adapter_cfg,
              "prompts": {"k": net.prompts.k, "n_ctx": net.prompts.n_ctx, "template": net.prompts.template,
                          "file": "prompts.safetensors"},
              "decoder": {"variant": getattr(net, "decoder_variant", "zss"), "file": "decoder.safetensors"},
              "default_size": int(default_size), "tokenizer": "clip-bpe", "global": "cls",
              **(extra or {})}
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    return out_dir


def read_config(model_dir: Path) -> dict[str, Any]:
    return read_model_config(model_dir, "pixelclip")


def load_prompts(model_dir: Path, config: dict[str, Any] | None = None) -> dict[str, torch.Tensor]:
    """The learned prompts: `ctx` [k, n_ctx, W] and normalised `embeddings` [k, C]."""
    config = config if config is not None else read_config(model_dir)
    path = Path(model_dir) / config["prompts"]["file"]
    if not path.is_file():
        raise ZssError(f"{path} is missing: not a complete PixelCLIP model directory")
    return read_weights(path)


class PixelCLIPSegmenter(OpenCLIPSegmenter):
    """The `Segmenter` of a PixelCLIP model directory (docs/contracts.md): the trained CLIP image
    encoder (plus the cached mode's adapter) against the frozen text encoder with real class names."""

    def __init__(self, clip: DenseCLIP, adapter: nn.Module | None, default_size: int):
        super().__init__(clip, default_size, adapter)

    @classmethod
    def from_dir(cls, model_dir: str | Path, device: str | torch.device = "cpu",
                 config: dict[str, Any] | None = None) -> "PixelCLIPSegmenter":
        from zss.recipes.pixelclip.adapter import FeatureAdapter

        model_dir = Path(model_dir)
        config = config if config is not None else read_config(model_dir)
        weights = model_dir / config["clip"]["file"]
        if not weights.is_file():
            raise ZssError(f"{weights} is missing: not a complete PixelCLIP model directory")
        clip = load_clip_dense(config["clip"]["arch"], str(weights), device)
        adapter = None
        if config.get("adapter"):
            adapter = FeatureAdapter(int(config["adapter"]["dim"]), int(config["adapter"]["hidden"]))
            adapter.load_state_dict(read_weights(model_dir / "adapter.safetensors"))
        return cls(clip, adapter, config.get("default_size", clip.img_size)).to(device).eval()
