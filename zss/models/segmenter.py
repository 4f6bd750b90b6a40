"""`load_segmenter`: the one entry point from a model spec to a `Segmenter` (eval, segment, demo).

A `Segmenter` (docs/contracts.md) is an nn.Module with `patch_size`, `default_size`,
`encode_text(list[str]) -> [N,C]` and `encode_dense(images [B,3,H,W] in [0,1]) -> [B,C,h,w]`, both
L2-normalised, so inference never needs to know which recipe produced the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import torch

from zss.errors import ZssError
from zss.models.model_dir import read_model_config

OPENCLIP_PREFIX = "openclip:"


@runtime_checkable
class Segmenter(Protocol):
    patch_size: int
    default_size: int

    def encode_text(self, texts: list[str]) -> torch.Tensor: ...

    def encode_dense(self, images: torch.Tensor) -> torch.Tensor: ...


def resolve_model_dir(path: Path) -> Path:
    """A model directory, or a run directory whose `model/` is one (what `zss train` writes)."""
    if (path / "config.json").is_file():
        return path
    if (path / "model" / "config.json").is_file():
        return path / "model"
    raise ZssError(f"{path} is not a zss model directory (no config.json, nor model/config.json)")


def load_segmenter(spec: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """A model directory (`config.json` kind simzss|pixelclip, or a run dir) or `openclip:ARCH[:CKPT]`."""
    text = str(spec)
    if text.startswith(OPENCLIP_PREFIX):
        from zss.models.clip_dense import OpenCLIPSegmenter

        model = OpenCLIPSegmenter.from_spec(text[len(OPENCLIP_PREFIX):], device)
        return model.to(device).eval()
    path = Path(text)
    if not path.exists():
        raise ZssError(f"model {text!r} is neither a directory nor openclip:ARCH[:CKPT]")
    if not path.is_dir():
        raise ZssError(f"model {text!r} is a file; give its model directory or openclip:ARCH:{text}")
    model_dir = resolve_model_dir(path)
    config = read_model_config(model_dir, ("simzss", "pixelclip"))
    if config["kind"] == "simzss":
        from zss.models.simzss import SimZSSSegmenter

        model = SimZSSSegmenter.from_dir(model_dir, device, config)
    else:
        from zss.models.pixelclip import PixelCLIPSegmenter

        model = PixelCLIPSegmenter.from_dir(model_dir, device, config)
    return model.to(device).eval()
