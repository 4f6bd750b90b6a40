"""k learnable class prompts read by the frozen CLIP text tower.

Each prompt is the template ("A photo of a {} {} {} {} in the scene") whose `{}` slots are learned
context vectors in the token-embedding space (CoOp-style), so every prompt stays a sentence the
pre-trained text tower knows how to read; only the slots move. The text embedding of a prompt is the
tower's end-of-text token after the final norm and projection, exactly as for real text. Slots are
initialised from randomly drawn vocabulary embeddings (fixed seed), so a run is reproducible and the
prompts start as distinct, meaningful-looking words.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zss.errors import ZssError
from zss.models.clip_dense import DenseCLIP

DEFAULT_TEMPLATE = "A photo of a {} {} {} {} in the scene"
_PLACEHOLDER = "X"


class LearnablePrompts(nn.Module):
    """`ctx` [k, n_ctx, W] is the only parameter; `forward(clip)` -> normalised embeddings [k, C]."""

    def __init__(self, clip: DenseCLIP, k: int = 64, template: str = DEFAULT_TEMPLATE, seed: int = 0):
        super().__init__()
        n_ctx = template.count("{}")
        if n_ctx < 1:
            raise ZssError(f"prompt template {template!r} needs at least one '{{}}' context slot")
        if k < 1:
            raise ZssError(f"need at least one prompt, got k={k}")
        tokens = clip.tokenize([template.replace("{}", _PLACEHOLDER)])[0].cpu()
        slot_id = clip.tokenize([_PLACEHOLDER])[0, 1].item()
        positions = (tokens == slot_id).nonzero().flatten()
        if len(positions) != n_ctx:
            raise ZssError(f"prompt template {template!r}: found {len(positions)} context slots, expected {n_ctx}")
        if clip.causal_text:  # padding after end-of-text cannot change the end-of-text output
            tokens = tokens[: int(tokens.argmax()) + 1]
        table = clip.token_embedding.weight.detach().cpu()
        vocab = table.shape[0] - 2  # the last two ids are start/end of text
        ids = torch.randint(0, vocab, (k, n_ctx), generator=torch.Generator().manual_seed(seed))
        self.template = template
        self.k, self.n_ctx = k, n_ctx
        self.ctx = nn.Parameter(table[ids].clone())
        self.register_buffer("base", table[tokens].clone())          # [L, W] frozen template tokens
        self.register_buffer("positions", positions)                 # where the ctx slots go
        self.register_buffer("eot_index", tokens.argmax().reshape(()))  # end-of-text = highest id

    def token_embeddings(self) -> torch.Tensor:
        """[k, L, W]: the template's token embeddings with the learned slots filled in."""
        seq = self.base.unsqueeze(0).expand(self.k, -1, -1).to(self.ctx.dtype)
        return seq.index_copy(1, self.positions, self.ctx)

    def forward(self, clip: DenseCLIP) -> torch.Tensor:
        emb = clip.encode_token_embeddings(self.token_embeddings(), self.eot_index.expand(self.k))
        return F.normalize(emb, dim=-1)
