"""`--vocab auto`: name an image's regions from a name bank, then segment it with those names.

Per image (docs/auto-vocab.md):

1. dense features: the ordinary inference pass (`Predictor.logits`, same resize and windows) through
   a model wrapper that keeps each window's features, so the final segmentation reuses them instead
   of running the image encoder twice;
2. regions: online feature k-means (`feature-kmeans`: spherical k-means over the patch grid of those
   features, `zss.utils.kmeans.kmeans_label_grid`; `k` regions), or `dino`: Euclidean k-means of a
   frozen DINO backbone's patch tokens (a timm name + local checkpoint, as PixelCLIP's online masks),
   the label grid resampled onto the model's; either way a region's embedding is the model's own;
3. each region's embedding (mean of its unit patch features, renormalised) -> the nearest names of
   the bank's faiss index in the model's text space (`zss.eval.name_index`): top_k + RETRIEVE_EXTRA
   entries, plus every bank phrase the model was trained on (scored exactly for every region: on
   the demo model the trained name missed the 50-entry shortlist in a third of the regions),
   re-ranked after step 4, the best top_k kept;
4. calibration against unseen names: a model that records the concepts it was trained on
   (`MODEL_DIR/concepts.json`, SimZSS) gives every other phrase (the name or synonym that matched)
   a penalty on its cosine: a text tower trained on few words scores names it never saw at random,
   and with tens of thousands of them some random score wins. The penalty is `auto.unseen_penalty`,
   or by default a prior (`prior_penalty`: the trained entries share mass `auto.seen_prior`, the
   log prior ratio over the model's logit scale). The bank is not restricted (a clearly better
   unseen name still wins). Models without a record (CLIP, PixelCLIP: web-scale text) get no penalty;
5. pick / merge synonyms and near-duplicates / unknown (`zss.eval.auto_names`);
6. the ordinary segmentation with the chosen names as the vocabulary, every inference setting
   unchanged except the templates: `auto.templates` (default `photo`, the index's own single
   template, so a new name costs one prompt; `inference` = the protocol's set, e.g. ImageNet-80,
   80 prompts the first time a name appears); pixels of unknown regions get the class `unknown`,
   the last id.

Settings: `--set auto.KEY=VALUE` for the AutoVocabConfig fields below.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from zss.errors import ZssError
from zss.eval.auto_names import UNKNOWN, Candidate, ChosenName, Region, choose_names
from zss.eval.inference import InferenceConfig, Predictor, window_starts
from zss.eval.name_index import NameIndex, embed_phrases, load_name_index
from zss.eval.sam_regions import paint_largest_first, require_sam_spec, sam_generator
from zss.formats.name_bank import NameBank
from zss.formats.vocab import Vocabulary
from zss.utils.config import apply_overrides, from_dict, setting
from zss.utils.kmeans import kmeans_label_grid, upsample_labels


RETRIEVE_EXTRA = 45  # entries retrieved per region beyond top_k, re-ranked after the unseen penalty


@dataclass
class AutoVocabConfig:
    """`--set auto.KEY=VALUE`."""

    regions: str = setting("feature-kmeans", choices=("feature-kmeans", "dino", "sam"))
    dino_model: str = "vit_small_patch16_224.dino"   # regions=dino: timm name of the mask backbone
    dino_checkpoint: str | None = None                # regions=dino: its local weights (no downloads)
    dino_img_size: int = setting(448, ge=16)          # regions=dino: square input side (448: a 28x28 grid)
    sam_checkpoint: str | None = None                 # regions=sam: KIND:PATH (vit_b|vit_l|vit_h|test_tiny)
    sam_points_per_side: int = setting(16, ge=1)      # regions=sam: point grid (segment-anything's default 32)
    sam_pred_iou_thresh: float = setting(0.88, ge=0.0, le=1.0)
    sam_stability_thresh: float = setting(0.95, ge=0.0, le=1.0)
    k: int = setting(6, ge=1, le=64)                 # regions per image
    top_k: int = setting(5, ge=1, le=100)            # names retrieved per region
    min_score: float = setting(0.05, ge=-1.0, le=1.0)  # calibrated score under which a region is unknown
    unseen_penalty: float | None = setting(None, ge=0.0)  # subtracted from untrained names; None: from seen_prior
    seen_prior: float = setting(0.5, gt=0.0, lt=1.0)  # prior mass of the trained names (derives the penalty)
    max_names: int = setting(12, ge=1)               # names per image at most
    iters: int = setting(30, ge=1)                   # k-means steps
    templates: str = "photo"                          # chosen names' templates; "inference": the protocol's
    seed: int = 0


def split_auto_overrides(overrides: list[str] | None) -> tuple[AutoVocabConfig, list[str]]:
    """`auto.*` overrides -> AutoVocabConfig; the rest are left for the inference config."""
    mine = [o[len("auto."):] for o in overrides or [] if o.strip().startswith("auto.")]
    rest = [o for o in overrides or [] if not o.strip().startswith("auto.")]
    return from_dict(AutoVocabConfig, apply_overrides({}, mine), prefix="auto."), rest


def training_names(model_spec: str | Path) -> set[str] | None:
    """Lower-cased names and synonyms of the concepts a model directory records it was trained on
    (`concepts.json`), or None when it records none."""
    path = Path(str(model_spec))
    if not path.is_dir():
        return None
    from zss.formats.model_dir import resolve_model_dir

    bank = resolve_model_dir(path) / "concepts.json"
    if not bank.is_file():
        return None
    try:
        concepts = json.loads(bank.read_text()).get("concepts") or []
    except (json.JSONDecodeError, AttributeError) as exc:
        raise ZssError(f"{bank} is not a concept bank ({exc})") from exc
    names = {str(n).lower() for c in concepts for n in [c.get("name", "")] + list(c.get("synonyms") or [])}
    return {n for n in names if n} or None


def trained_logit_scale(model_spec: str | Path) -> float | None:
    """The logit scale a model directory's config.json records (the temperature it was trained with)."""
    path = Path(str(model_spec))
    if not path.is_dir():
        return None
    from zss.formats.model_dir import resolve_model_dir

    try:
        value = json.loads((resolve_model_dir(path) / "config.json").read_text()).get("logit_scale")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def prior_penalty(seen_prior: float, n_seen: int, n_unseen: int, logit_scale: float) -> float:
    """The cosine penalty equivalent to a prior giving the trained names mass `seen_prior` and the
    rest of the bank 1 - seen_prior, each spread evenly over its entries: the log prior ratio of one
    trained entry to one untrained entry, ln(seen_prior / (1 - seen_prior) * n_unseen / n_seen),
    divided by the logit scale that turns cosines into log-probabilities. 0 when either side is empty."""
    if n_seen <= 0 or n_unseen <= 0:
        return 0.0
    return max(0.0, math.log(seen_prior / (1.0 - seen_prior) * n_unseen / n_seen)) / logit_scale


def sample_grid(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A label map resampled (nearest, at cell centres) to a grid of `shape` covering the same extent."""
    ys = ((np.arange(shape[0]) + 0.5) * labels.shape[0] / shape[0]).astype(int)
    xs = ((np.arange(shape[1]) + 0.5) * labels.shape[1] / shape[1]).astype(int)
    return labels[ys][:, xs]


def paint_masks(masks: list[np.ndarray], size: tuple[int, int], k: int) -> np.ndarray:
    """Overlapping binary masks (SAM's) -> a partition of the image into at most `k` regions: masks
    painted largest first (a smaller mask inside a larger one keeps its pixels), the k - 1 largest
    visible segments kept as ids 0.., every other pixel (uncovered, or of a smaller segment) one
    last region."""
    canvas = paint_largest_first(masks, size)
    ids, counts = np.unique(canvas[canvas >= 0], return_counts=True)
    keep = ids[np.argsort(-counts, kind="stable")][:max(k - 1, 0) if (canvas < 0).any() or len(ids) > k else k]
    out = np.full(size, len(keep), dtype=np.int64)
    for new, old in enumerate(keep):
        out[canvas == old] = new
    return out


class FeatureTap(torch.nn.Module):
    """A Segmenter wrapper: `encode_dense` keeps its outputs (by the input's bytes) until `clear()`,
    so a second inference pass over the same windows costs nothing; text embeddings are kept per
    prompt for the whole run (the same names recur across images)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.inner = model
        self.patch_size = model.patch_size
        self.default_size = model.default_size
        self.calls: list[torch.Tensor] = []       # this image's window features, in call order
        self._dense: dict[bytes, torch.Tensor] = {}
        self._text: dict[Any, torch.Tensor] = {}
        if hasattr(model, "text_pooling"):
            self.text_pooling = model.text_pooling
        if callable(getattr(model, "encode_text_spans", None)):
            self.encode_text_spans = self._encode_text_spans

    def clear(self) -> None:
        self.calls, self._dense = [], {}

    def encode_dense(self, images: torch.Tensor) -> torch.Tensor:
        key = hashlib.blake2b(images.detach().float().cpu().numpy().tobytes(), digest_size=16).digest()
        key += str(tuple(images.shape)).encode()
        if key not in self._dense:
            self._dense[key] = self.inner.encode_dense(images)
            self.calls.append(self._dense[key])
        return self._dense[key]

    def _cached(self, keys: list[Any], compute) -> torch.Tensor:
        todo = [i for i, k in enumerate(keys) if k not in self._text]
        if todo:
            for i, row in zip(todo, compute(todo)):
                self._text[keys[i]] = row
        return torch.stack([self._text[k] for k in keys])

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        return self._cached(list(texts), lambda idx: self.inner.encode_text([texts[i] for i in idx]))

    def _encode_text_spans(self, texts: list[str], spans: list[tuple[int, int]]) -> torch.Tensor:
        keys = [(t, tuple(s)) for t, s in zip(texts, spans)]
        return self._cached(keys, lambda idx: self.inner.encode_text_spans([texts[i] for i in idx],
                                                                           [spans[i] for i in idx]))


@dataclass
class AutoResult:
    label: np.ndarray              # int64 ids into `names`
    names: list[str]               # the per-image vocabulary, then "unknown" (last)
    chosen: list[ChosenName]
    regions: np.ndarray            # region id per patch cell
    unknown_area: float

    def records(self, bank: NameBank, label_area: dict[str, float] | None = None) -> list[dict[str, Any]]:
        """The chosen names for the per-image JSON and the page: name, synset, score, areas."""
        out = []
        for n in self.chosen:
            e = bank.entries[n.entry]
            out.append({"name": n.name, "id": e.id, "synonyms": list(e.synonyms), "queries": n.phrases,
                        "score": round(n.score, 4), "cosine": round(n.cosine, 4),
                        "region_area": round(n.area, 4),
                        **({"area": round(label_area.get(n.name, 0.0), 4)} if label_area is not None else {})})
        return out


class AutoNamer:
    """A model + a name bank + protocol: `predict(image)` names the image and segments it."""

    def __init__(self, model: torch.nn.Module, model_spec: str | Path, bank: NameBank, cfg: InferenceConfig,
                 auto: AutoVocabConfig | None = None, device: str | torch.device = "cpu",
                 index: NameIndex | None = None):
        self.tap = FeatureTap(model)
        self.cfg, self.auto, self.device, self.bank = cfg, auto or AutoVocabConfig(), torch.device(device), bank
        self.index = index if index is not None else load_name_index(model, model_spec, bank)
        self.seen = training_names(model_spec)   # None: no record, no penalty
        self.prior = self._prior_rows(model)
        self.logit_scale = trained_logit_scale(model_spec)
        self.base = Predictor(self.tap, Vocabulary([["object"]]), cfg, self.device)
        self.name_cfg = cfg if self.auto.templates == "inference" else replace(cfg, templates=self.auto.templates)
        self.name_cfg.validate()
        if self.auto.regions == "dino":             # a missing checkpoint is one line now, not at the first image
            self._dino()
        elif self.auto.regions == "sam":
            self._sam()

    @property
    def penalty(self) -> float:
        """The cosine penalty of untrained names: `auto.unseen_penalty`, or derived from
        `auto.seen_prior` (prior_penalty) with the model's trained logit scale (else the protocol's);
        0 for a model that records no training concepts."""
        if self.seen is None:
            return 0.0
        if self.auto.unseen_penalty is not None:
            return self.auto.unseen_penalty
        n_seen = len(set(self.prior[1])) if self.prior is not None else 0
        scale = self.logit_scale or self.cfg.logit_scale
        return prior_penalty(self.auto.seen_prior, n_seen, len(self.bank) - n_seen, scale)

    def unseen(self, phrase: str) -> bool:
        """Whether the model records its training concepts and `phrase` is not among them."""
        return self.seen is not None and phrase.lower() not in self.seen

    def _prior_rows(self, model: torch.nn.Module) -> tuple[np.ndarray, list[int], list[str]] | None:
        """The bank phrases the model was trained on, embedded like the index's: (vectors, entries,
        phrases). Every region scores all of them exactly, so a trained name is a candidate even when
        thousands of untrained names out-rank it in the shortlist."""
        if not self.seen:
            return None
        rows = [(e, p) for p, e in zip(self.index.phrases, self.index.owners) if p.lower() in self.seen]
        if not rows:
            return None
        distinct = list(dict.fromkeys(p for _, p in rows))
        vecs = embed_phrases(model, distinct, "trained names")
        where = {p: i for i, p in enumerate(distinct)}
        return vecs[[where[p] for _, p in rows]], [int(e) for e, _ in rows], [p for _, p in rows]

    def _candidates(self, emb: np.ndarray) -> list[list[tuple[int, float, str]]]:
        """Per region embedding: the index's shortlist merged with every trained phrase (best cosine
        per entry)."""
        hits = self.index.search(emb, self.auto.top_k + RETRIEVE_EXTRA)
        if self.prior is None:
            return hits
        vecs, entries, phrases = self.prior
        cos = emb @ vecs.T / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        out = []
        for cands, row in zip(hits, cos):
            best = {e: (e, s, ph) for e, s, ph in cands}
            for e, s, ph in zip(entries, row, phrases):
                if e not in best or s > best[e][1]:
                    best[e] = (e, float(s), ph)
            out.append(list(best.values()))
        return out

    def _feature_grid(self, x: torch.Tensor) -> np.ndarray:
        """The window features of the last pass laid on one patch grid [hp, wp, C] (overlaps averaged)."""
        _, h, w = x.shape
        p = self.base.patch
        feats = [f.float() for f in self.tap.calls]
        if self.cfg.mode == "whole":
            boxes = [(0, 0)]
        else:
            ch, cw = min(self.base.crop, h), min(self.base.crop, w)
            boxes = [(y, xx) for y in window_starts(h, ch, self.base.stride)
                     for xx in window_starts(w, cw, self.base.stride)]
        feats = torch.cat(feats) if feats else torch.empty(0)
        if len(feats) != len(boxes):
            raise RuntimeError(f"feature tap saw {len(feats)} windows, expected {len(boxes)}")
        c, fh, fw = feats.shape[1:]
        gh, gw = -(-h // p) + fh, -(-w // p) + fw
        acc = torch.zeros(c, gh, gw)
        cnt = torch.zeros(1, gh, gw)
        for (y, xx), f in zip(boxes, feats.cpu()):
            acc[:, y // p:y // p + fh, xx // p:xx // p + fw] += f
            cnt[:, y // p:y // p + fh, xx // p:xx // p + fw] += 1
        hp, wp = max(1, min(gh, round(h / p))), max(1, min(gw, round(w / p)))
        grid = acc[:, :hp, :wp] / cnt[:, :hp, :wp].clamp(min=1)
        return F.normalize(grid, dim=0).permute(1, 2, 0).numpy()

    def _dino(self) -> torch.nn.Module:
        """The frozen DINO backbone of `auto.regions=dino` (loaded once per checkpoint and size)."""
        a = self.auto
        key = (a.dino_model, a.dino_checkpoint, a.dino_img_size)
        if getattr(self, "_dino_net", (None,))[0] != key:
            if not a.dino_checkpoint or not Path(a.dino_checkpoint).expanduser().is_file():
                raise ZssError(f"auto.regions=dino needs auto.dino_checkpoint=PATH, the local weights of "
                               f"{a.dino_model} (got {a.dino_checkpoint!r})")
            from zss.models.backbone import load_backbone

            self._dino_net = (key, load_backbone(a.dino_model, a.dino_checkpoint, a.dino_img_size).to(self.device))
        return self._dino_net[1]

    def _sam(self) -> Any:
        """segment-anything's automatic mask generator of `auto.regions=sam` (zss's batched one, shared
        with refine=masks through zss.eval.sam_regions)."""
        a = self.auto
        spec = require_sam_spec(a.sam_checkpoint, "auto.regions=sam needs auto.sam_checkpoint")
        return sam_generator(spec, a.sam_points_per_side, a.sam_pred_iou_thresh, a.sam_stability_thresh,
                             str(self.device))

    def _region_labels(self, grid: np.ndarray, image: np.ndarray) -> np.ndarray:
        """Region id per cell of the model's patch grid: spherical k-means of the model's own features
        (`feature-kmeans`), or Euclidean k-means of a DINO backbone's patch tokens of the whole image
        at dino_img_size² (`dino`, as PixelCLIP's online masks), resampled (nearest) onto the grid."""
        a = self.auto
        if a.regions == "feature-kmeans":
            return kmeans_label_grid(grid, a.k, a.seed, a.iters, spherical=True)
        if a.regions == "sam":
            masks = [m["segmentation"] for m in self._sam().generate_batch([np.ascontiguousarray(image[..., :3])])[0]]
            return sample_grid(paint_masks(masks, image.shape[:2], a.k), grid.shape[:2])
        x = torch.from_numpy(np.ascontiguousarray(image[..., :3])).permute(2, 0, 1)[None].float().div(255.0)
        x = F.interpolate(x.to(self.device), size=(a.dino_img_size,) * 2, mode="bilinear", align_corners=False)
        patch, _ = self._dino()(x)
        dino = kmeans_label_grid(patch[0].float().cpu().numpy().astype(np.float64), a.k, a.seed, a.iters,
                                 spherical=False)
        return sample_grid(dino, grid.shape[:2])

    def _regions(self, grid: np.ndarray, image: np.ndarray) -> tuple[np.ndarray, list[Region]]:
        a, penalty = self.auto, self.penalty
        labels = self._region_labels(grid, image)
        ids = np.unique(labels)
        emb = np.stack([grid[labels == i].mean(0) for i in ids])
        # retrieve deeper than top_k (the penalty may reorder), plus every trained name (_candidates)
        hits = self._candidates(emb)
        regions = []
        for i, cands in zip(ids, hits):
            scored = [Candidate(e, s - penalty * float(self.unseen(ph)), s, ph) for e, s, ph in cands]
            # equal scores (one phrase, several synsets: water, urine's synonym "water"): the synset
            # whose display name it is, then the more frequent one (SemCor count)
            scored.sort(key=lambda c: (-round(c.score, 5), self.bank.entries[c.entry].name.lower() != c.phrase.lower(),
                                       -self.bank.entries[c.entry].count))
            regions.append(Region(float((labels == i).mean()), scored[:a.top_k]))
        return labels, regions

    @torch.no_grad()
    def predict(self, image: np.ndarray, out_size: tuple[int, int] | None = None) -> AutoResult:
        self.tap.clear()
        size = tuple(out_size or image.shape[:2])
        x = self.base.prepare(image)
        self.base.logits(x)                        # pass 1: the windows' features, kept by the tap
        labels, regions = self._regions(self._feature_grid(x), image)
        chosen, owner = choose_names(regions, self.bank, self.auto.min_score, self.auto.max_names)
        names = [n.name for n in chosen] + [UNKNOWN]
        if chosen:
            vocab = Vocabulary([list(n.phrases) for n in chosen])
            label = Predictor(self.tap, vocab, self.name_cfg, self.device).predict(image, size)
        else:
            label = np.zeros(size, dtype=np.int64)
        cell_unknown = np.array([o is None for o in owner])[labels]
        unknown = upsample_labels(cell_unknown.astype(np.int64), size).astype(bool)
        label[unknown] = len(chosen)
        self.tap.clear()
        return AutoResult(label, names, chosen, labels, float(unknown.mean()))
