"""Device choice: CUDA when present (the fast path), CPU otherwise, without user changes."""

from __future__ import annotations

import torch


def default_device(requested: str | None = None) -> torch.device:
    if requested and requested != "auto":
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(device: torch.device, enabled: bool = True):
    """fp16 autocast on CUDA (the fast path), a no-op on CPU."""
    return torch.autocast(device_type=device.type, dtype=torch.float16,
                          enabled=enabled and device.type == "cuda")
