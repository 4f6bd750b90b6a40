"""CLIP BPE token spans, checked by hand against the vocabulary."""

from __future__ import annotations

import open_clip
import torch

from zss.models.tokenizer import tokenize, tokenize_with_spans

SOT, EOT = 49406, 49407


def test_traffic_cone_hand_checked():
    tokens, spans = tokenize_with_spans("a traffic cone", [(2, 14), (0, 1), (14, 14)])
    # "a"=320, "traffic"=3399, "cone"=10266 in CLIP's vocabulary
    assert tokens[:6].tolist() == [SOT, 320, 3399, 10266, EOT, 0]
    assert tokens.shape == (77,) and tokens.dtype.name == "int64"
    assert spans == [(2, 4), (1, 2), None]


def test_multi_piece_words_and_partial_overlap():
    # "checkered" = check+ered, "tablecloths" = table+clo+th+s (4 BPE pieces)
    tokens, spans = tokenize_with_spans("checkered tablecloths", [(10, 21), (0, 3), (0, 21)])
    assert tokens[:8].tolist() == [SOT, 1113, 26690, 2648, 944, 549, 2079, EOT]
    assert spans == [(3, 7), (1, 3), (1, 7)]  # a span inside a word takes the whole word


def test_same_ids_as_open_clip():
    texts = ["two striped balls on the grass", "A Traffic cone, next to brick walls!",
             "it's a dog's life: 3 cats", "  spaced \t out\nwords  ", ""]
    assert torch.equal(tokenize(texts), open_clip.tokenize(texts))


def test_truncation_drops_spans_that_lose_tokens():
    text = " ".join(["grass"] * 10) + " ball"
    tokens, spans = tokenize_with_spans(text, [(0, 5), (len(text) - 4, len(text))], context_length=8)
    assert tokens.tolist() == [SOT] + [5922] * 6 + [EOT]  # "grass" = 5922, end-of-text kept last
    assert spans == [(1, 2), None]
    assert torch.equal(tokenize(text, 8)[0], open_clip.tokenize(text, 8)[0])
