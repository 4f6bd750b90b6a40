"""The SimZSS text tower: an OpenCLIP causal text transformer whose every token is projected to the
frozen vision width.

open_clip's `TextTransformer` does the work (token + positional embeddings, causal blocks, final
LayerNorm, projection); the tower only also projects the per-token outputs, because SimZSS's local
loss reads concept tokens and the global loss reads the end-of-text token, both in the vision
feature space (no vision-side parameters). Tokens come from `zss.models.tokenizer` (CLIP BPE, the
function ingest computed the concept spans with), so shard `token_span`s index this tower's positions.

Initialisation: from scratch (default) or from an OpenCLIP checkpoint's text tower, named
`ARCH:FILE` (a local .pt/.bin/.safetensors) or `ARCH:TAG` (an open_clip pretrained tag, fetched
into its cache when online). The architecture then comes from open_clip's model config; the
projection is copied only when its output width equals the vision width.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.factory import load_state_dict
from open_clip.transformer import QuickGELU, TextTransformer
from torch import nn

from zss.errors import ZssError
from zss.utils.config import setting
from zss.models import tokenizer as bpe

log = logging.getLogger(__name__)

CLIP_BPE_VOCAB = 49408


@dataclass
class TextConfig:
    """Text tower sizes (paper: 512 wide, 8 heads, 12 layers, context 77) and optional init."""

    width: int = setting(512, ge=1)
    heads: int = setting(8, ge=1)
    layers: int = setting(12, ge=1)
    context_length: int = setting(77, ge=1)
    vocab_size: int = setting(CLIP_BPE_VOCAB, ge=1)
    mlp_ratio: float = setting(4.0, gt=0)
    ls_init_value: Optional[float] = None
    quick_gelu: bool = False
    init: Optional[str] = None  # "ARCH:FILE" or "ARCH:TAG" of an OpenCLIP model; None = scratch


class TextTower(nn.Module):
    """Causal text transformer -> (per-token embeddings [B,L,D], end-of-text embedding [B,D]).

    D is `out_dim`, the frozen backbone's feature width. Outputs are not normalised.
    """

    def __init__(self, cfg: TextConfig, out_dim: int) -> None:
        super().__init__()
        if cfg.vocab_size != CLIP_BPE_VOCAB:
            raise ZssError(f"text tower vocab_size {cfg.vocab_size}: only the CLIP BPE vocabulary "
                           f"({CLIP_BPE_VOCAB}) is supported")
        self.cfg = cfg
        self.out_dim = out_dim
        self.text = TextTransformer(
            context_length=cfg.context_length, vocab_size=cfg.vocab_size, width=cfg.width,
            heads=cfg.heads, layers=cfg.layers, mlp_ratio=cfg.mlp_ratio,
            ls_init_value=cfg.ls_init_value, output_dim=out_dim,
            act_layer=QuickGELU if cfg.quick_gelu else nn.GELU, output_tokens=True)

    @property
    def context_length(self) -> int:
        return self.cfg.context_length

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        eot, tokens = self.text(ids)
        return tokens @ self.text.text_projection, eot

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return bpe.tokenize(list(texts), self.context_length)

    @torch.no_grad()
    def encode(self, texts: list[str]) -> torch.Tensor:
        """L2-normalised end-of-text embeddings [N, D] of `texts` (for zero-shot classifiers)."""
        return F.normalize(self.encode_raw(texts), dim=-1)

    @torch.no_grad()
    def encode_raw(self, texts: list[str]) -> torch.Tensor:
        """End-of-text embeddings [N, D] of `texts`, before the L2 normalisation."""
        device = self.text.positional_embedding.device
        _, eot = self(self.tokenize(texts).to(device))
        return eot.float()

    @torch.no_grad()
    def encode_spans(self, texts: list[str], char_spans: list[tuple[int, int]]) -> torch.Tensor:
        """L2-normalised concept embeddings [N, D]: the normalised token embeddings of each text's
        char span, summed — the pooling the local loss trains (so a class name in a template is
        read the way concepts in captions were). A span lost to truncation falls back to the
        end-of-text embedding."""
        rows = [bpe.tokenize_with_spans(t, [span], self.context_length) for t, span in zip(texts, char_spans)]
        device = self.text.positional_embedding.device
        ids = torch.from_numpy(np.stack([r[0] for r in rows])).to(device)
        tokens, eot = self(ids)
        tokens = F.normalize(tokens.float(), dim=-1)
        out = [tokens[i, span[0]:span[1]].sum(0) if span else eot[i].float()
               for i, (_, (span,)) in enumerate(rows)]
        return F.normalize(torch.stack(out), dim=-1)


def _resolve_checkpoint(arch: str, ref: str) -> str:
    if Path(ref).is_file():
        return ref
    pretrained_cfg = open_clip.get_pretrained_cfg(arch, ref)
    if pretrained_cfg:
        try:
            return open_clip.download_pretrained(pretrained_cfg)
        except Exception as exc:  # network or hub failure: one actionable line
            raise ZssError(f"could not fetch OpenCLIP weights {arch}:{ref} ({exc}); "
                           f"give a local file as {arch}:PATH") from exc
    raise ZssError(f"OpenCLIP text init {arch}:{ref}: no such file and not a pretrained tag of {arch}")


def config_from_openclip(arch: str) -> TextConfig:
    """The text-tower sizes of OpenCLIP architecture `arch` (e.g. ViT-B-16)."""
    from zss.models.clip_dense import register_zss_configs

    register_zss_configs()
    model_cfg = open_clip.get_model_config(arch)
    if model_cfg is None:
        raise ZssError(f"unknown OpenCLIP architecture {arch!r}")
    t = model_cfg.get("text_cfg", {})
    if t.get("hf_model_name"):
        raise ZssError(f"{arch} has a Hugging Face text tower; only OpenCLIP causal text towers are supported")
    return TextConfig(width=t.get("width", 512), heads=t.get("heads", 8), layers=t.get("layers", 12),
                      context_length=t.get("context_length", 77), vocab_size=t.get("vocab_size", CLIP_BPE_VOCAB),
                      mlp_ratio=t.get("mlp_ratio", 4.0), ls_init_value=t.get("ls_init_value"),
                      quick_gelu=bool(model_cfg.get("quick_gelu", False)))


def build_text_tower(cfg: TextConfig, out_dim: int) -> TextTower:
    """A tower from scratch, or initialised from `cfg.init` = "ARCH:FILE|TAG" (sizes from ARCH)."""
    if not cfg.init:
        return TextTower(cfg, out_dim)
    if ":" not in cfg.init:
        raise ZssError(f"text init {cfg.init!r} must be ARCH:FILE or ARCH:TAG")
    arch, ref = cfg.init.split(":", 1)
    sizes = config_from_openclip(arch)
    sizes.init = cfg.init
    tower = TextTower(sizes, out_dim)
    state = load_state_dict(_resolve_checkpoint(arch, ref))
    if any(k.startswith("text.transformer.") for k in state):  # CustomTextCLIP layout
        state = {k[len("text."):]: v for k, v in state.items() if k.startswith("text.")}
    own = tower.text.state_dict()
    picked = {k: v for k, v in state.items() if k in own and k != "text_projection"}
    missing = sorted(set(own) - set(picked) - {"text_projection"})
    if missing:
        raise ZssError(f"{cfg.init}: checkpoint lacks text-tower weights (e.g. {missing[0]})")
    proj = state.get("text_projection")
    if proj is not None and tuple(proj.shape) == tuple(own["text_projection"].shape):
        picked["text_projection"] = proj
    else:
        log.info("text projection left random: checkpoint width differs from vision width %d", out_dim)
    tower.text.load_state_dict(picked, strict=False)
    return tower
