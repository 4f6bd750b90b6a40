"""The concept bank: the closed set of concepts SimZSS's local loss classifies into.

Built from class-name lists (benchmark vocabularies, a synthetic world's classes.txt), so the concepts
a model learns from captions are the ones it will be asked to segment. Ids are stable: the order of
first appearance in the lists given, so the same lists always yield the same ids and shards written
on different days stay comparable.

Optionally a faiss `IndexFlatIP` over L2-normalised text embeddings of every name and synonym
(`<bank>.faiss`, ids = concept ids) lets caption phrases that are not an exact name still map to
their nearest concept ("puppy" -> "dog") when the similarity clears a threshold. The bank records
which text encoder made the index, so a lookup never mixes embedding spaces.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from zss.errors import ZssError
from zss.utils.hashing import sha256_file

SCHEMA = 1
BACKGROUND_NAMES = ("background", "bg", "other", "others")

TextEncoder = Callable[[list[str]], np.ndarray]  # phrases -> float32 [N, C], L2-normalised


def normalise_phrase(text: str) -> str:
    """Lower-case, single spaces: how names, synonyms and caption phrases are compared."""
    return " ".join(text.lower().replace("_", " ").split())


@dataclass
class ConceptBank:
    """Concepts (id, name, synonyms, sources) + the optional faiss index of their text embeddings."""

    concepts: list[dict[str, Any]]
    index: Any = None  # faiss.IndexIDMap over IndexFlatIP, ids = concept ids
    text_encoder: dict[str, Any] | None = None  # spec of the encoder that built `index`
    _lookup: dict[str, int] = field(default_factory=dict, repr=False)
    _names: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        """Exact-match table: names first (they win over another concept's synonym), then synonyms."""
        table: dict[str, int] = {}
        for c in self.concepts:
            table.setdefault(normalise_phrase(c["name"]), c["id"])
        self._names = dict(table)
        for c in self.concepts:
            for s in c["synonyms"]:
                table.setdefault(normalise_phrase(s), c["id"])
        self._lookup = table

    def __len__(self) -> int:
        return len(self.concepts)

    def name(self, concept_id: int) -> str:
        return self.concepts[concept_id]["name"]

    def exact(self, phrase: str) -> int | None:
        """The id of the concept whose name or synonym is `phrase` (case/space-insensitive)."""
        return self._lookup.get(normalise_phrase(phrase))

    def exact_name(self, phrase: str) -> int | None:
        """The id of the concept named `phrase`, synonyms ignored (strict matching)."""
        return self._names.get(normalise_phrase(phrase))

    def phrases(self) -> tuple[list[str], np.ndarray]:
        """Every name and synonym with its concept id (the rows the faiss index holds)."""
        texts, ids = [], []
        for c in self.concepts:
            for p in [c["name"], *c["synonyms"]]:
                texts.append(p)
                ids.append(c["id"])
        return texts, np.asarray(ids, dtype=np.int64)

    def with_index(self, encode: TextEncoder, encoder_spec: dict[str, Any]) -> "ConceptBank":
        """A copy whose faiss index holds `encode`'s embeddings of every name and synonym."""
        import faiss

        texts, ids = self.phrases()
        vectors = np.ascontiguousarray(encode(texts), dtype=np.float32)
        faiss.normalize_L2(vectors)
        index = faiss.IndexIDMap(faiss.IndexFlatIP(vectors.shape[1]))
        index.add_with_ids(vectors, ids)
        return ConceptBank(self.concepts, index, dict(encoder_spec))

    def nearest(self, vectors: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """(cosine similarities, concept ids) [N, k'] of the bank rows nearest to `vectors`.

        Names and synonyms are separate rows, so the same concept may appear more than once; callers
        asking for k concepts get k distinct ones (`k'` ≤ k only when the bank is smaller).
        """
        if self.index is None:
            raise ZssError("this concept bank has no faiss index: build it with --text-encoder")
        import faiss

        q = np.ascontiguousarray(vectors, dtype=np.float32)
        faiss.normalize_L2(q)
        rows = min(self.index.ntotal, k * 8)
        scores, ids = self.index.search(q, rows)
        out_s = np.full((len(q), k), -np.inf, np.float32)
        out_i = np.full((len(q), k), -1, np.int64)
        for r in range(len(q)):
            seen: list[int] = []
            for s, i in zip(scores[r], ids[r]):
                if i >= 0 and i not in seen and len(seen) < k:
                    out_s[r, len(seen)], out_i[r, len(seen)] = s, i
                    seen.append(int(i))
        return out_s, out_i

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"schema": SCHEMA, "concepts": self.concepts}
        if self.index is not None:
            data["index"] = {"text_encoder": self.text_encoder, "dim": int(self.index.d),
                             "rows": int(self.index.ntotal)}
        return data

    def dumps(self, index_file: str | None = None) -> str:
        """The concepts.json text (canonical: sorted keys), naming `index_file` when indexed."""
        data = self.to_json()
        if self.index is not None:
            data["index"]["file"] = index_file or "concepts.faiss"
        return json.dumps(data, indent=1, sort_keys=True) + "\n"

    def save(self, path: str | Path) -> Path:
        """Write `path` (concepts.json) and, with an index, `path` with suffix .faiss beside it."""
        import faiss

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        index_path = path.with_suffix(".faiss")
        if self.index is not None:
            faiss.write_index(self.index, str(index_path))
        else:
            index_path.unlink(missing_ok=True)
        path.write_text(self.dumps(index_path.name), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "ConceptBank":
        path = Path(path)
        if not path.is_file():
            raise ZssError(f"concept bank not found: {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            concepts = data["concepts"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ZssError(f"{path} is not a concepts.json (schema {SCHEMA})") from exc
        if data.get("schema") != SCHEMA:
            raise ZssError(f"{path}: concept bank schema {data.get('schema')!r}, expected {SCHEMA}")
        if [c["id"] for c in concepts] != list(range(len(concepts))):
            raise ZssError(f"{path}: concept ids must be 0..N-1 in order")
        index, encoder = None, None
        meta = data.get("index")
        if meta:
            import faiss

            index_path = path.parent / meta.get("file", path.with_suffix(".faiss").name)
            if not index_path.is_file():
                raise ZssError(f"{path} names a faiss index {index_path.name} that is missing")
            index, encoder = faiss.read_index(str(index_path)), meta.get("text_encoder")
        return cls(concepts, index, encoder)


def build_bank(lists: Sequence[str | Path]) -> ConceptBank:
    """Merge class lists (names from zss/manifests/classes/index.yaml, or file paths) into one bank.

    A class appearing in several lists (same name, case-insensitive) is one concept with the union
    of synonyms and every list in `sources`; background entries are not concepts.
    """
    from zss.formats.vocab import class_list_path, read_class_file

    if not lists:
        raise ZssError("no class lists given for the concept bank")
    concepts: list[dict[str, Any]] = []
    by_name: dict[str, dict[str, Any]] = {}
    for item in lists:
        path = class_list_path(item)
        source = str(item) if not Path(str(item)).is_file() else path.stem
        for words in read_class_file(path):
            name = normalise_phrase(words[0])
            if name in BACKGROUND_NAMES:
                continue
            entry = by_name.get(name)
            if entry is None:
                entry = {"id": len(concepts), "name": name, "synonyms": [], "sources": []}
                concepts.append(entry)
                by_name[name] = entry
            for syn in (normalise_phrase(w) for w in words[1:]):
                if syn != name and syn not in entry["synonyms"]:
                    entry["synonyms"].append(syn)
            if source not in entry["sources"]:
                entry["sources"].append(source)
    if not concepts:
        raise ZssError(f"class lists {', '.join(map(str, lists))} name no concepts")
    return ConceptBank(concepts)


def resolve_bank(spec: str | Path) -> ConceptBank:
    """A `concepts.json` path, or comma-separated class lists to build a bank from on the fly."""
    text = str(spec)
    if text.endswith(".json"):
        return ConceptBank.load(text)
    return build_bank([s.strip() for s in text.split(",") if s.strip()])


def load_text_encoder(spec: str, device: str = "cpu") -> tuple[TextEncoder, dict[str, Any]]:
    """An OpenCLIP text tower `ARCH[:CKPT]` (zss.models.clip_dense) as phrases -> unit vectors."""
    import torch

    from zss.formats.specs import parse_model_spec
    from zss.models.clip_dense import load_clip_dense

    model = parse_model_spec(spec, "openclip")
    clip = load_clip_dense(model, device=device)
    ckpt = model.checkpoint
    info = {"name": model.name, "checkpoint": ckpt,
            "sha256": sha256_file(ckpt) if ckpt and Path(ckpt).is_file() else None}

    def encode(texts: list[str]) -> np.ndarray:
        chunks = []
        with torch.inference_mode():
            for i in range(0, len(texts), 256):
                chunks.append(clip.encode_text(list(texts[i:i + 256])).float().cpu().numpy())
        return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros((0, 1), np.float32)

    return encode, info


def encoder_spec_string(info: dict[str, Any]) -> str:
    """`ARCH[:CKPT]` back from a recorded encoder spec (for lookups with the bank's own encoder)."""
    arch = info["name"].split("/", 1)[1]
    return f"{arch}:{info['checkpoint']}" if info.get("checkpoint") else arch


def build_bank_cli(out: str | Path, lists: Sequence[str], text_encoder: str | None) -> str:
    """`zss concepts build`: write concepts.json (+ concepts.faiss) and describe it."""
    bank = build_bank(lists)
    if text_encoder:
        bank = bank.with_index(*load_text_encoder(text_encoder))
    path = bank.save(out)
    n_syn = sum(len(c["synonyms"]) for c in bank.concepts)
    index = f", faiss index of {bank.index.ntotal} phrases" if bank.index is not None else ""
    return (f"concept bank {path}: {len(bank)} concepts, {n_syn} synonyms from "
            f"{', '.join(map(str, lists))}{index}")


def lookup_cli(bank: str | Path, words: Sequence[str], k: int, text_encoder: str | None) -> str:
    """`zss concepts lookup`: exact match and (with an index) the k nearest concepts per phrase.

    Without `--text-encoder` the encoder recorded in the bank is used, so queries land in the same
    embedding space as the index."""
    cb = ConceptBank.load(bank)
    spec = text_encoder or (encoder_spec_string(cb.text_encoder) if cb.text_encoder else None)
    lines = []
    scores = ids = None
    if spec:
        encode, info = load_text_encoder(spec)
        if cb.index is None:
            cb = cb.with_index(encode, info)
        vectors = encode(list(words))
        if vectors.shape[1] != cb.index.d:
            raise ZssError(f"text encoder {spec} gives {vectors.shape[1]}-d vectors, the bank's index "
                           f"holds {cb.index.d}-d ones; pass the encoder the bank was built with")
        scores, ids = cb.nearest(vectors, k)
    for r, word in enumerate(words):
        hit = cb.exact(word)
        line = f"{word!r}: exact={cb.name(hit) if hit is not None else '-'}"
        if scores is not None:
            near = ", ".join(f"{cb.name(int(i))} ({s:.3f})" for s, i in zip(scores[r], ids[r]) if i >= 0)
            line += f"  nearest: {near}"
        lines.append(line)
    return "\n".join(lines)
