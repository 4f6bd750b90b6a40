"""DVT-style feature denoiser (Yang et al., "Denoising Vision Transformers"), as SimZSS's release uses it.

A post-processor on a frozen ViT's final patch tokens (prefix tokens untouched): add a learned
absolute positional embedding, trained on a 37×37 grid and resampled to the input's grid, then run
one pre-norm transformer block (timm `Block`: heads = width / 64, MLP ratio 4, qkv bias, LayerNorm
eps 1e-6). Weights come from a local file; its sha256 is recorded wherever features are.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zss.errors import ZssError
from zss.utils.hashing import sha256_file

GRID = 37  # the positional embedding's training grid (518 px / 14 px patches)


class PatchDenoiser(nn.Module):
    """patch [B,Hp,Wp,D] -> denoised patch [B,Hp,Wp,D]. State-dict keys: `denoiser.*` (the block)
    and `pos_embed` [1, 37·37, D], as in the release."""

    def __init__(self, dim: int = 768, grid: int = GRID) -> None:
        super().__init__()
        from timm.models.vision_transformer import Block, Mlp

        if dim % 64:
            raise ZssError(f"denoiser width must be a multiple of 64, got {dim}")
        self.dim, self.grid = dim, grid
        self.denoiser = Block(dim=dim, num_heads=dim // 64, mlp_ratio=4, qkv_bias=True, qk_norm=False,
                              init_values=None, norm_layer=partial(nn.LayerNorm, eps=1e-6),
                              act_layer=nn.GELU, mlp_layer=Mlp)
        self.pos_embed = nn.Parameter(torch.randn(1, grid * grid, dim) * 0.02)

    def forward(self, patch: torch.Tensor) -> torch.Tensor:
        from timm.layers import resample_abs_pos_embed

        b, h, w, d = patch.shape
        pos = resample_abs_pos_embed(self.pos_embed, (h, w), num_prefix_tokens=0)
        x = patch.reshape(b, h * w, d) + pos.to(patch.dtype)
        return self.denoiser(x).reshape(b, h, w, d)


def denoiser_state(raw: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The denoiser's own tensors from a DVT file (`{"denoiser": {...}}` or flat), a release
    checkpoint's `visual.*` part, or a file written by `save_denoiser`: keys `denoiser.*`, `pos_embed`."""
    if isinstance(raw.get("denoiser"), dict):
        raw = raw["denoiser"]
    out: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        k = key[len("module."):] if key.startswith("module.") else key
        k = k[len("visual."):] if k.startswith("visual.") else k
        if (k.startswith("denoiser.") or k == "pos_embed") and isinstance(value, torch.Tensor):
            out[k] = value
    return out


def load_denoiser(path: str | Path) -> tuple[PatchDenoiser, dict[str, Any]]:
    """A frozen denoiser from a local file (safetensors or a weights-only torch file) and its
    record {"type", "file", "sha256", "dim"}."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ZssError(f"denoiser weights not found: {p}")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        raw: dict[str, Any] = load_file(str(p))
    else:
        try:
            raw = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle-needing or not a torch file
            raise ZssError(f"cannot read denoiser weights {p} with weights_only=True "
                           f"({type(exc).__name__}); convert it to a plain tensor dict") from exc
    state = denoiser_state(raw if isinstance(raw, dict) else {})
    if "pos_embed" not in state:
        raise ZssError(f"{p} holds no denoiser (no pos_embed / denoiser.* tensors)")
    pos = state["pos_embed"]
    grid = int(round(pos.shape[1] ** 0.5))
    if pos.ndim != 3 or grid * grid != pos.shape[1]:
        raise ZssError(f"{p}: denoiser pos_embed has shape {tuple(pos.shape)}, expected [1, G*G, D]")
    model = PatchDenoiser(int(pos.shape[2]), grid)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ZssError(f"{p} does not fit the denoiser: missing {', '.join(missing) or '-'}; "
                       f"unexpected {', '.join(unexpected) or '-'}")
    model.eval().requires_grad_(False)
    return model, {"type": "transformer", "file": str(p.resolve()), "sha256": sha256_file(p),
                   "dim": int(pos.shape[2]), "grid": grid}


def save_denoiser(model: PatchDenoiser, path: str | Path) -> None:
    """Write the denoiser's tensors as safetensors (used by `zss import` and tests)."""
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(path))
