"""The faiss index of a name bank in one model's text space (`--vocab auto`), built once and cached.

Every name and synonym of the bank (`zss.formats.name_bank`, 47,952 phrases for the shipped WordNet
bank, 40,993 distinct texts, each embedded once) is embedded by the model's own text tower under ONE
template, `a photo of a {}.` (CLIP's single-prompt default; span-pooling models such as SimZSS embed
the name from its own tokens inside it, as they do class names). One template and not the 80 of the
inference ensemble: the index is a shortlist (which names to consider for an image) and 80 templates
would make its build 80x longer (hours for a ViT-B/16-size tower on a CPU). The names chosen for an
image are embedded again for its segmentation with `auto.templates` (the same single template by
default, the protocol's ensemble with `auto.templates=inference`).

The vectors are L2-normalised; the index is a flat inner-product one (`IndexFlatIP`, exact) up to
FLAT_MAX phrases and an IVF index with 8-bit scalar quantisation past it (benchmarks/auto_vocab.py
measures both: a flat search of one image's 6 region queries over the shipped bank's 48k phrases
costs ~15 ms of one core and grows linearly, so at 250k phrases it reaches ~80 ms, the cost of a
ViT-S forward pass; IVF-SQ8 was ~4x faster than flat at 8x the bank's size). Search runs on the GPU
when faiss has GPU support and a CUDA device is present, else on the CPU.

Cache: `MODEL_DIR/name-index/<key>.faiss` + `<key>.json` (written beside the model; a read-only model
folder or an `openclip:` spec falls back to `$ZSS_CACHE` or `~/.cache/zss/name-index/`). The key
hashes the model (its config.json and weight files, or the openclip spec and checkpoint), the bank's
content (ids and names, `NameBank.content_hash`), the template and the index kind, so a retrained
model or an edited bank builds a new index and an unchanged pair reuses it. The model part is its text
side only: config.json (less the backbone's checkpoint name and checksum) and every weight file but
the bundled frozen backbone, which never changes a text embedding and is the slow file to hash.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zss.errors import ZssError
from zss.eval.templates import embed_words
from zss.formats.name_bank import NameBank
from zss.models.segmenter import span_encoder
from zss.utils.hashing import sha256_file
from zss.utils.progress import progress_bar

log = logging.getLogger(__name__)

INDEX_TEMPLATE = "a photo of a {}."
FLAT_MAX = 250_000  # phrases; past this an IVF-SQ8 index (see the module doc and the benchmark)
EMBED_BATCH = 512
INDEX_VERSION = 1


def _text_config(folder: Path) -> tuple[bytes, str | None]:
    """(config.json's bytes for the key, the bundled frozen backbone's file name or None). The
    backbone's checkpoint name and checksum are left out of the key: image features do not change a
    name's text embedding."""
    raw = (folder / "config.json").read_bytes()
    try:
        config = json.loads(raw)
    except json.JSONDecodeError:
        return raw, None
    backbone = config.get("backbone") if isinstance(config, dict) else None
    if not isinstance(backbone, dict) or not isinstance(backbone.get("checkpoint"), str):
        return raw, None
    config["backbone"] = {k: v for k, v in backbone.items() if k not in ("checkpoint", "sha256")}
    return json.dumps(config, sort_keys=True).encode(), Path(backbone["checkpoint"]).name


def model_hash(spec: str | Path) -> str:
    """sha256 over what decides a model's text embeddings: a model directory's config.json and its
    weight files except the bundled frozen image backbone (`config.backbone.checkpoint`, which can be
    hundreds of MB and never embeds text), or an `openclip:ARCH[:CKPT]` spec's text and checkpoint bytes."""
    h = hashlib.sha256()
    path = Path(str(spec))
    if path.is_dir():
        from zss.formats.model_dir import resolve_model_dir

        folder = resolve_model_dir(path)
        config, backbone = _text_config(folder)
        h.update(b"config.json\0" + hashlib.sha256(config).hexdigest().encode())
        for f in sorted(folder.iterdir()):
            if f.is_file() and f.suffix == ".safetensors" and f.name != backbone:
                h.update(f.name.encode() + b"\0" + sha256_file(f).encode())
        return h.hexdigest()
    h.update(str(spec).encode())
    ckpt = str(spec).split(":", 2)[2] if str(spec).count(":") >= 2 else ""
    if ckpt and Path(ckpt).is_file():
        h.update(sha256_file(ckpt).encode())
    return h.hexdigest()


def cache_dirs(spec: str | Path) -> list[Path]:
    """Where an index may live, first choice first: beside the model, then the user cache."""
    dirs = []
    path = Path(str(spec))
    if path.is_dir():
        from zss.formats.model_dir import resolve_model_dir

        dirs.append(resolve_model_dir(path) / "name-index")
    root = os.environ.get("ZSS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "zss")
    dirs.append(Path(root) / "name-index")
    return dirs


def index_kind(n: int) -> str:
    return "flat-ip" if n <= FLAT_MAX else "ivf-sq8"


def make_index(vectors: np.ndarray) -> Any:
    """A faiss inner-product index over unit rows: exact flat, or IVF + SQ8 past FLAT_MAX rows."""
    import faiss

    n, d = vectors.shape
    if index_kind(n) == "flat-ip":
        index = faiss.IndexFlatIP(d)
    else:
        nlist = int(4 * np.sqrt(n))
        index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(d), d, nlist, faiss.ScalarQuantizer.QT_8bit,
                                              faiss.METRIC_INNER_PRODUCT)
        index.train(vectors[np.random.default_rng(0).permutation(n)[:max(nlist * 64, 100_000)]])
        index.nprobe = 16
    index.add(vectors)
    return index


def _to_gpu(index: Any) -> Any:
    """The index on the GPU when faiss was built with GPU support and CUDA is available."""
    import faiss

    if hasattr(faiss, "StandardGpuResources") and torch.cuda.is_available() and faiss.get_num_gpus() > 0:
        return faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    return index


@torch.no_grad()
def embed_phrases(model: torch.nn.Module, phrases: list[str], what: str = "name index") -> np.ndarray:
    """[N, C] float32 unit rows: each phrase under INDEX_TEMPLATE, by the model's text tower (span
    pooling when the model embeds class names that way), with a progress bar."""
    if not callable(getattr(model, "encode_text", None)):
        raise ZssError("this model has no text tower (encode_text): --vocab auto needs one to name regions")
    spans = span_encoder(model)
    chunks = []
    with progress_bar() as bar:
        task = bar.add_task(what, total=len(phrases), info="", unit="names")
        for i in range(0, len(phrases), EMBED_BATCH):
            part = phrases[i:i + EMBED_BATCH]
            chunks.append(embed_words(model.encode_text, part, (INDEX_TEMPLATE,), batch_size=EMBED_BATCH,
                                      encode_spans=spans).float().cpu().numpy())
            bar.update(task, advance=len(part))
    vectors = np.ascontiguousarray(np.concatenate(chunks).astype(np.float32))
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return vectors


@dataclass
class NameIndex:
    """A bank's phrases in one model's text space: `search(queries, k)` -> entries with scores."""

    bank: NameBank
    index: Any
    owners: np.ndarray      # phrase row -> bank entry
    phrases: list[str]
    meta: dict[str, Any]

    def search(self, queries: np.ndarray, k: int) -> list[list[tuple[int, float, str]]]:
        """Unit query rows [Q, C] -> per query up to `k` distinct entries (entry, best cosine, phrase),
        best first (several phrases of one entry count once)."""
        q = np.array(queries, dtype=np.float32, order="C", copy=True)
        q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        depth = min(self.index.ntotal, 4 * k + 8)
        scores, rows = self.index.search(q, depth)
        out = []
        for srow, rrow in zip(scores, rows):
            seen: dict[int, tuple[int, float, str]] = {}
            for s, r in zip(srow, rrow):
                if r < 0:
                    continue
                e = int(self.owners[r])
                if e not in seen:
                    seen[e] = (e, float(s), self.phrases[r])
                if len(seen) == k:
                    break
            out.append(list(seen.values()))
        return out


def _key(model_spec: str | Path, bank: NameBank, kind: str) -> str:
    text = "|".join([str(INDEX_VERSION), model_hash(model_spec), bank.content_hash(), INDEX_TEMPLATE, kind])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _load(folder: Path, key: str) -> Any | None:
    import faiss

    path, meta = folder / f"{key}.faiss", folder / f"{key}.json"
    if not (path.is_file() and meta.is_file()):
        return None
    try:
        return faiss.read_index(str(path)), json.loads(meta.read_text())
    except (RuntimeError, json.JSONDecodeError, OSError) as exc:
        log.warning("name index %s is unreadable (%s); rebuilding it", path, exc)
        return None


def _save(folders: list[Path], key: str, index: Any, meta: dict[str, Any]) -> Path | None:
    import faiss

    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f"{key}.faiss.tmp"
            faiss.write_index(index, str(tmp))
            tmp.replace(folder / f"{key}.faiss")
            (folder / f"{key}.json").write_text(json.dumps(meta, indent=2) + "\n")
            return folder / f"{key}.faiss"
        except OSError as exc:  # a read-only model folder: try the next place
            log.info("cannot cache the name index in %s (%s)", folder, exc)
    log.warning("the name index could not be cached anywhere; it will be rebuilt next time")
    return None


def load_name_index(model: torch.nn.Module, model_spec: str | Path, bank: NameBank) -> NameIndex:
    """The cached index of `bank` for this model, or build it (progress bar) and cache it."""
    phrases, owners = bank.phrases()
    kind = index_kind(len(phrases))
    key = _key(model_spec, bank, kind)
    folders = cache_dirs(model_spec)
    for folder in folders:
        found = _load(folder, key)
        if found is not None and found[0].ntotal == len(phrases):
            return NameIndex(bank, _to_gpu(found[0]), np.asarray(owners), phrases, found[1])
    t0 = time.perf_counter()
    distinct = list(dict.fromkeys(phrases))  # a phrase shared by several synsets (12 "plate"s) is embedded once
    where = {p: i for i, p in enumerate(distinct)}
    vectors = embed_phrases(model, distinct)[[where[p] for p in phrases]]
    index = make_index(vectors)
    meta = {"version": INDEX_VERSION, "model": str(model_spec), "model_sha256": model_hash(model_spec),
            "bank": bank.source, "bank_sha256": bank.content_hash(), "template": INDEX_TEMPLATE, "kind": kind,
            "phrases": len(phrases), "distinct_phrases": len(distinct), "entries": len(bank),
            "dim": int(vectors.shape[1]),
            "build_seconds": round(time.perf_counter() - t0, 2)}
    where = _save(folders, key, index, meta)
    log.info("name index: %d phrases of %s embedded in %.1f s (%s)%s", len(phrases), bank.source,
             meta["build_seconds"], kind, f", cached in {where}" if where else "")
    return NameIndex(bank, _to_gpu(index), np.asarray(owners), phrases, meta)
