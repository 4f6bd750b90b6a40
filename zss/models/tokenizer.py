"""CLIP BPE tokenisation that also reports where each character span landed in the token sequence.

SimZSS pools the text tower's outputs over the tokens of each concept ("a traffic cone" -> the tokens
of "traffic cone"). Ingest finds concepts as character spans of the caption; the trainer needs them
as token positions. Both sides call `tokenize_with_spans`, so the token ids the text tower sees and the
spans recorded in the shards can never disagree.

Tokens equal open_clip's `SimpleTokenizer` output (lower-cased CLIP BPE, `<start_of_text>` at position
0, `<end_of_text>` after the last word, zero padding, truncation keeping `<end_of_text>` last) for
ordinary text. The one deliberate difference: open_clip's ftfy/HTML clean-up runs on the whole string
and can move characters, so here each word is only lower-cased — the price of exact char offsets.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np
import torch

CONTEXT_LENGTH = 77


@lru_cache(maxsize=1)
def _tokenizer():
    """One shared open_clip SimpleTokenizer (its BPE cache makes repeated words cheap)."""
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer()


# word (as matched) -> its BPE ids: a corpus has far fewer distinct words than captions, so this
# makes tokenising a caption (once per sample per epoch in the trainer's data workers) cheap.
_WORD_IDS: dict[str, list[int]] = {}


def _word_ids(word: str) -> list[int]:
    tok = _tokenizer()
    ids = _WORD_IDS.get(word)
    if ids is None:
        enc = "".join(tok.byte_encoder[b] for b in word.lower().encode("utf-8"))
        ids = [tok.encoder[p] for p in tok.bpe(enc).split(" ")]
        if len(_WORD_IDS) >= 1 << 18:
            _WORD_IDS.clear()
        _WORD_IDS[word] = ids
    return ids


def _word_pieces(text: str) -> list[tuple[int, int, list[int]]]:
    """(char start, char end, BPE ids) of every word the CLIP regex finds in `text`."""
    return [(m.start(), m.end(), _word_ids(m.group(0))) for m in _tokenizer().pat.finditer(text)]


@lru_cache(maxsize=1 << 14)
def _caption_ids(text: str, context_length: int) -> np.ndarray:
    """`tokenize_with_spans(text)` ids, cached (read-only) for texts seen again, e.g. next epoch."""
    ids = tokenize_with_spans(text, (), context_length)[0]
    ids.flags.writeable = False
    return ids


def tokenize_with_spans(text: str, char_spans: Sequence[tuple[int, int] | None] = (),
                        context_length: int = CONTEXT_LENGTH
                        ) -> tuple[np.ndarray, list[tuple[int, int] | None]]:
    """Token ids [context_length] (int64) and, per char span [s, e), the token span [ts, te).

    A token span covers every token of every word overlapping the char span. It is `None` when the
    char span covers no word or when truncation cut any of its tokens (positions must lie before the
    final `<end_of_text>`), so a recorded span always points at tokens the model actually sees.
    """
    if context_length < 2:
        raise ValueError("context_length must leave room for <start_of_text> and <end_of_text>")
    tok = _tokenizer()
    pieces = _word_pieces(text)
    ids = [tok.sot_token_id]
    starts = []  # token position of each word's first token
    for _, _, word_ids in pieces:
        starts.append(len(ids))
        ids.extend(word_ids)
    ids.append(tok.eot_token_id)
    ids = _cut(ids, context_length)
    last_content = len(ids) - 1  # exclusive bound: the <end_of_text> position
    tokens = np.zeros(context_length, dtype=np.int64)
    tokens[: len(ids)] = ids

    spans: list[tuple[int, int] | None] = []
    for span in char_spans:
        if span is None:
            spans.append(None)
            continue
        s, e = int(span[0]), int(span[1])
        hit = [i for i, (ws, we, _) in enumerate(pieces) if ws < e and we > s]
        if not hit:
            spans.append(None)
            continue
        ts = starts[hit[0]]
        te = starts[hit[-1]] + len(pieces[hit[-1]][2])
        spans.append((ts, te) if te <= last_content else None)
    return tokens, spans


def whole_sequence(ids: np.ndarray) -> list[int] | None:
    """The ids of one `tokenize_with_spans` row without padding (<start_of_text> .. <end_of_text>),
    or None when the row may have been cut (its <end_of_text> takes the last position)."""
    end = np.flatnonzero(ids == _tokenizer().eot_token_id)
    if not len(end) or end[0] >= len(ids) - 1:
        return None
    return [int(v) for v in ids[: end[0] + 1]]


def fit_ids(ids: Sequence[int], context_length: int = CONTEXT_LENGTH) -> torch.Tensor:
    """A whole id sequence (`whole_sequence`) as the LongTensor [context_length] `tokenize` gives
    for the same text: cut with <end_of_text> kept last, or zero-padded."""
    if context_length < 2:
        raise ValueError("context_length must leave room for <start_of_text> and <end_of_text>")
    ids = _cut(list(ids), context_length)
    out = torch.zeros(context_length, dtype=torch.long)
    out[: len(ids)] = torch.as_tensor(ids, dtype=torch.long)
    return out


def _cut(ids: list[int], context_length: int) -> list[int]:
    """A whole id sequence cut to `context_length`, <end_of_text> kept last (the one rule both
    `tokenize_with_spans` and `fit_ids` follow)."""
    if len(ids) <= context_length:
        return ids
    return ids[: context_length - 1] + [_tokenizer().eot_token_id]


def tokenize(texts: str | Sequence[str], context_length: int = CONTEXT_LENGTH) -> torch.Tensor:
    """LongTensor [N, context_length] of `texts` — the same ids `tokenize_with_spans` produces."""
    if isinstance(texts, str):
        texts = [texts]
    if context_length < 2:
        raise ValueError("context_length must leave room for <start_of_text> and <end_of_text>")
    rows = [_caption_ids(t, context_length) for t in texts]
    return torch.from_numpy(np.stack(rows)) if rows else torch.zeros(0, context_length, dtype=torch.long)
