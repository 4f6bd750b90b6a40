"""The `Segmenter` interface every model kind implements, with its one optional part and its default.

A `Segmenter` (docs/contracts.md) is an nn.Module with `patch_size`, `default_size`,
`encode_text(list[str]) -> [N,C]` and `encode_dense(images [B,3,H,W] in [0,1]) -> [B,C,h,w]`, both
L2-normalised, so inference never needs to know which recipe produced the model.

Optional: a `SpanSegmenter` can also embed a word from its own tokens inside a prompt
(`encode_text_spans`, SimZSS's concept pooling) and says by `text_pooling == "concept"` that a class
name should be embedded that way. `span_encoder(model)` gives that method, or None (the default:
every prompt through `encode_text`), for any Segmenter. A `RawTextSegmenter` also gives its text
embeddings before the L2 normalisation (`encode_text_raw`, for Talk2DINO's template mean of the raw
embeddings); `raw_text_encoder(model)` gives that method or None.
"""

from __future__ import annotations

from typing import Callable, Optional, Protocol, runtime_checkable

import torch

# (prompts, (start, end) character span of the class name in each prompt) -> [N,C] L2-normalised
SpanEncoder = Callable[[list[str], list[tuple[int, int]]], torch.Tensor]


@runtime_checkable
class Segmenter(Protocol):
    patch_size: int
    default_size: int

    def encode_text(self, texts: list[str]) -> torch.Tensor: ...

    def encode_dense(self, images: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class SpanSegmenter(Segmenter, Protocol):
    """A Segmenter that can embed a class name from its own tokens inside each prompt."""

    text_pooling: str  # "concept": class names are embedded by encode_text_spans; else by encode_text

    def encode_text_spans(self, texts: list[str], char_spans: list[tuple[int, int]]) -> torch.Tensor: ...


@runtime_checkable
class RawTextSegmenter(Segmenter, Protocol):
    """A Segmenter that can give its text embeddings before the final L2 normalisation."""

    def encode_text_raw(self, texts: list[str]) -> torch.Tensor: ...


def raw_text_encoder(model: Segmenter) -> Optional[Callable[[list[str]], torch.Tensor]]:
    """The model's `encode_text_raw` (unnormalised [N,C] text embeddings), or None."""
    return model.encode_text_raw if isinstance(model, RawTextSegmenter) else None


def span_encoder(model: Segmenter) -> Optional[SpanEncoder]:
    """The model's `encode_text_spans` when it embeds class names from their own tokens, else None."""
    if isinstance(model, SpanSegmenter) and model.text_pooling == "concept":
        return model.encode_text_spans
    return None
