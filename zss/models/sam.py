"""Segment Anything models from local checkpoint files, built with segment_anything's own builders.

Real runs use `vit_b` / `vit_l` / `vit_h` with Meta's `.pth` files (loaded with `weights_only=True`)
or safetensors. `test_tiny` is the same `Sam` assembled by `segment_anything.build_sam._build_sam`
with a 2-block, 32-wide image encoder: identical code path, mask decoder and automatic mask
generator, but fast enough for CPU tests and the demo.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from zss.errors import ZssError
from zss.formats.specs import ModelSpec, to_model_spec
from zss.utils.hashing import sha256_file


def _registry() -> dict[str, Callable[[], nn.Module]]:
    from segment_anything.build_sam import _build_sam, sam_model_registry

    kinds: dict[str, Callable[[], nn.Module]] = {k: v for k, v in sam_model_registry.items()
                                                 if k != "default"}
    kinds["test_tiny"] = partial(_build_sam, encoder_embed_dim=32, encoder_depth=2,
                                 encoder_num_heads=2, encoder_global_attn_indexes=[1])
    return kinds


def build_sam(kind: str) -> nn.Module:
    """An untrained SAM of `kind` (no weights loaded)."""
    kinds = _registry()
    if kind not in kinds:
        raise ZssError(f"unknown SAM kind {kind!r}: expected one of {', '.join(sorted(kinds))}")
    return kinds[kind]()


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # a pickle that is not a plain state dict, or not a checkpoint at all
        raise ZssError(f"cannot read SAM checkpoint {path}: {str(exc).splitlines()[0][:200]}") from exc
    if not isinstance(state, dict):
        raise ZssError(f"SAM checkpoint {path} does not hold a state dict")
    return state.get("model", state)


def load_sam(spec: ModelSpec | str, checkpoint: str | Path | None = None,
             device: str | torch.device = "cpu") -> nn.Module:
    """A frozen, eval-mode SAM with the weights of a local checkpoint file: a parsed `KIND:PATH`
    spec, or a KIND and its `checkpoint`."""
    parsed = to_model_spec(spec, checkpoint, "sam")
    path = Path(str(parsed.checkpoint)).expanduser()
    if not path.is_file():
        raise ZssError(f"SAM checkpoint file not found: {path}")
    sam = build_sam(parsed.arch)
    try:
        sam.load_state_dict(_read_state_dict(path))
    except RuntimeError as exc:
        raise ZssError(f"SAM checkpoint {path} does not fit kind {parsed.arch!r}: "
                       f"{str(exc).splitlines()[0][:200]}") from exc
    sam.eval()
    for p in sam.parameters():
        p.requires_grad_(False)
    return sam.to(device)


def sam_spec(kind: str, checkpoint: str | Path) -> dict[str, Any]:
    """What the manifest records about the SAM that made the masks."""
    return {"kind": kind, "checkpoint": str(checkpoint), "sha256": sha256_file(checkpoint)}
