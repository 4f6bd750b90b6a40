"""Model weights on disk: safetensors files of a module's state dict (never pickle)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file


def save_state_dict(module: torch.nn.Module, path: str | Path) -> Path:
    """`module`'s state dict as a safetensors file at `path` (parent folders made); returns `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    save_file(state, str(path))
    return path
