"""The `Segmenter` interface every model kind implements, and where a model directory is.

A `Segmenter` (docs/contracts.md) is an nn.Module with `patch_size`, `default_size`,
`encode_text(list[str]) -> [N,C]` and `encode_dense(images [B,3,H,W] in [0,1]) -> [B,C,h,w]`, both
L2-normalised, so inference never needs to know which recipe produced the model.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Segmenter(Protocol):
    patch_size: int
    default_size: int

    def encode_text(self, texts: list[str]) -> torch.Tensor: ...

    def encode_dense(self, images: torch.Tensor) -> torch.Tensor: ...
