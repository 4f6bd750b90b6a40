"""SimZSS inference reads class names the way the local loss trained concepts: their own tokens."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from zss.eval.templates import embed_words
from zss.recipes.simzss.text_tower import TextConfig, TextTower
from zss.models.tokenizer import tokenize_with_spans


def test_embed_words_marks_each_word_inside_each_template():
    seen: list[str] = []

    def encode_spans(texts, spans):
        seen.extend(t[s:e] for t, (s, e) in zip(texts, spans))
        return torch.eye(4)[: len(texts)]

    out = embed_words(lambda t: torch.zeros(len(t), 4), ["traffic cone", "sky"],
                      ("a photo of a {}.", "{} in the scene"), encode_spans=encode_spans)
    assert seen == ["traffic cone", "traffic cone", "sky", "sky"]
    assert out.shape == (2, 4) and torch.allclose(out.norm(dim=-1), torch.ones(2))


def test_encode_spans_sums_normalised_span_tokens():
    torch.manual_seed(0)
    tower = TextTower(TextConfig(width=32, heads=2, layers=1, context_length=16), out_dim=8).eval()
    text = "a photo of a traffic cone."
    start = text.index("traffic")
    got = tower.encode_spans([text], [(start, start + len("traffic cone"))])

    ids, (span,) = tokenize_with_spans(text, [(start, start + len("traffic cone"))], 16)
    tokens, _ = tower(torch.from_numpy(ids)[None])
    want = F.normalize(F.normalize(tokens[0, span[0]:span[1]], dim=-1).sum(0), dim=0)
    assert span[1] - span[0] >= 2  # "traffic" and "cone" are both pooled
    assert torch.allclose(got[0], want, atol=1e-6)
    # not the end-of-text embedding
    assert not torch.allclose(got[0], tower.encode([text])[0], atol=1e-3)
