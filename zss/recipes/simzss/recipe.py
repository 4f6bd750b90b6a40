"""SimZSS on cached features: only the text tower (and the logit scale) learns.

A batch carries each image's cached patch grid (and CLS token), one caption sampled per image
and that caption's concept occurrences (concept id + token span). Shards ingested with augmented
views (`--views V`) hold V feature sets per image; each epoch a sample uses one of them, drawn from
its (seed, epoch, key) RNG, so the choice is the same on every run and on resume. The loss is the global
image–caption InfoNCE plus λ times the concept-local loss of `zss.recipes.simzss.losses`. Under DDP both
terms see the whole gathered batch: the InfoNCE over every process's pairs, the concept bank over
every process's occurrences (each occurrence still attends over its own image only).
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from zss.errors import ZssError
from zss.formats.model_dir import bundle_backbone, bundle_concept_bank
from zss.formats.npy import load_npy
from zss.models.hub_weights import save_hub_backbone
from zss.formats.shards import decode_patch, view_member
from zss.recipes.simzss.text_tower import TextConfig, build_text_tower
from zss.models.tokenizer import fit_ids, tokenize
from zss.trainer import distributed as D
from zss.trainer.collate import stack
from zss.recipes.simzss.segmenter import TEXT_POOLINGS
from zss.recipes.simzss.losses import global_infonce, local_concept_loss, total_loss
from zss.trainer.recipe import Recipe
from zss.utils.config import setting


@dataclass
class SimZSSConfig:
    """SimZSS settings (paper defaults). `global_token`: `cls` (the cached CLS, for DINOv2) or
    `mean` (mean of the cached patch tokens — what learns on random-init demo backbones)."""

    text: TextConfig = field(default_factory=TextConfig)
    global_token: str = setting("cls", choices=("cls", "mean"))
    local_weight: float = setting(0.05, ge=0)
    local_temperature: float = setting(0.1, gt=0)
    local_scale: float = setting(1 / 0.07, gt=0)
    local_target: str = setting("own", choices=("own", "argmax"))  # own | argmax (the authors' released code)
    logit_scale_init: float = setting(1 / 0.07, gt=0)
    logit_scale_max: float = setting(100.0, gt=0)
    # How inference embeds class names: `concept` (their own tokens, as the local loss trains),
    # `eot` (the templated prompt's end-of-text token, as the global loss trains) or `eot-name`
    # (end-of-text of the bare class name, no templates: the authors' release). In config.json.
    text_pooling: str = setting("concept", choices=("concept", "eot", "eot-name"))


def pick_view(rng: random.Random, n_views: int) -> int:
    """Which of a sample's `n_views` cached views it uses this epoch: uniform, from the sample's
    (seed, epoch, key) RNG after its caption draw; no draw at all with one view (so V = 1 streams
    exactly as before views existed)."""
    return rng.randrange(n_views) if n_views > 1 else 0


def view_patch(raw: dict[str, Any], view: int) -> np.ndarray:
    """View `view`'s patch grid from a raw sample (int8 codes times their scale; view 0's are
    already decoded by the reader). A missing member is a KeyError: the stream counts it as damage."""
    name = view_member("patch.npy", view)
    if name not in raw:
        raise KeyError(f"sample {raw.get('__key__')} lacks {name} (view {view})")
    patch = load_npy(raw[name])
    scale = raw.get(view_member("patch_scale.npy", view))
    return decode_patch(patch, load_npy(scale)) if scale is not None else patch


class SimZSSModel(nn.Module):
    """The trainable part: the text tower and the global loss's logit scale (log-parameterised)."""

    def __init__(self, text_cfg: TextConfig, out_dim: int, logit_scale_init: float, logit_scale_max: float):
        super().__init__()
        self.tower = build_text_tower(text_cfg, out_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(logit_scale_init)))
        self.logit_scale_max = logit_scale_max

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """ids [B,L] -> (token embeddings [B,L,D], end-of-text [B,D], logit scale (capped))."""
        tokens, eot = self.tower(ids)
        return tokens, eot, self.logit_scale.exp().clamp(max=self.logit_scale_max)


class _DDPGather:
    """The local loss's gather hook under torchrun (identity without a process group)."""

    @property
    def world_size(self) -> int:
        return D.world_size()

    def rows(self, x: torch.Tensor) -> torch.Tensor:
        return D.all_gather_with_grad(x)

    def offset(self, n_local: int, device: torch.device) -> int:
        return D.gather_offset(n_local, device)


DDP_GATHER = _DDPGather()


class SimZSSRecipe(Recipe):
    name = "simzss"
    config_cls = SimZSSConfig
    members = ("json", "patch.npy", "global.npy")

    def __init__(self, cfg: SimZSSConfig, shards: Path, train_cfg: Any) -> None:
        super().__init__(cfg, shards, train_cfg)
        if cfg.global_token not in ("cls", "mean"):
            raise ZssError(f"global_token must be cls or mean, got {cfg.global_token!r}")
        if cfg.local_target not in ("own", "argmax"):
            raise ZssError(f"local_target must be own or argmax, got {cfg.local_target!r}")
        if cfg.text_pooling not in TEXT_POOLINGS:
            raise ZssError(f"text_pooling must be one of {', '.join(TEXT_POOLINGS)}, got {cfg.text_pooling!r}")
        feats = self.manifest.get("models", {}).get("features")
        if not feats:
            raise ZssError(f"{shards}/manifest.json records no feature backbone (models.features)")
        self.backbone = feats
        self.dim = int(self.manifest.get("feature", {}).get("dim") or feats["embed_dim"])
        self.n_views = int((self.manifest.get("views") or {}).get("n", 1))
        if self.n_views > 1:  # read every view's members; decode_sample keeps one
            self.members = type(self).members + tuple(
                view_member(m, v) for v in range(1, self.n_views)
                for m in ("patch.npy", "patch_scale.npy", "global.npy"))
        self.model: SimZSSModel | None = None

    # -- model ----------------------------------------------------------------------------------
    def build_model(self) -> SimZSSModel:
        self.model = SimZSSModel(self.cfg.text, self.dim, self.cfg.logit_scale_init, self.cfg.logit_scale_max)
        self.cfg.text = self.model.tower.cfg  # sizes from an OpenCLIP init are the ones recorded
        return self.model

    # -- data -----------------------------------------------------------------------------------
    def decode_sample(self, raw: dict[str, Any], rng: random.Random) -> dict[str, Any] | None:
        meta = json.loads(raw["json"])
        captions = meta.get("captions") or []
        if not captions or "patch.npy" not in raw:
            return None
        i = rng.randrange(len(captions))
        concepts = (meta.get("concepts") or [[]] * len(captions))[i] or []
        ctx = self.cfg.text.context_length
        # The end-of-text token takes the last position when a caption is truncated.
        spans = [(int(c["id"]), int(c["token_span"][0]), int(c["token_span"][1])) for c in concepts
                 if c.get("token_span") and 1 <= c["token_span"][0] < c["token_span"][1] <= ctx - 1]
        view = pick_view(rng, len(meta.get("views") or ()))
        known = meta.get("tokens")
        ids = known[i] if isinstance(known, list) and len(known) == len(captions) else None
        sample = {"key": raw["__key__"], "view": view,
                  "ids": fit_ids(ids, ctx) if ids else tokenize([captions[i]], ctx)[0],
                  "patch": torch.from_numpy(view_patch(raw, view))}
        if self.cfg.global_token == "cls":
            name = view_member("global.npy", view)
            if name not in raw:
                raise ZssError(f"sample {raw['__key__']} has no {name}; use global_token=mean")
            sample["global"] = torch.from_numpy(load_npy(raw[name]))
        sample["spans"] = spans
        return sample

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        batch: dict[str, Any] = {"ids": stack([s["ids"] for s in samples]),
                                 "patch": stack([s["patch"] for s in samples])}
        if self.cfg.global_token == "cls":
            batch["global"] = stack([s["global"] for s in samples])
        occ = [(b, *sp) for b, s in enumerate(samples) for sp in s["spans"]]
        t = torch.tensor(occ, dtype=torch.long).reshape(-1, 4)
        batch.update(occ_batch=t[:, 0], occ_ids=t[:, 1], occ_start=t[:, 2], occ_end=t[:, 3])
        return batch

    # -- loss -----------------------------------------------------------------------------------
    def loss(self, model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        tokens, eot, scale = model(batch["ids"])
        patches = batch["patch"].flatten(1, 2)                      # [B,P,D]
        image = batch["global"] if self.cfg.global_token == "cls" else patches.mean(dim=1)
        lg = global_infonce(D.all_gather_with_grad(image), D.all_gather_with_grad(eot.float()), scale)
        ll = self._local(tokens, patches, batch)
        total = total_loss(lg, ll, self.cfg.local_weight)
        return total, {"loss_global": lg.detach(), "loss_local": ll.detach(),
                       "logit_scale": scale.detach()}

    def _local(self, tokens: torch.Tensor, patches: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """The tested `local_concept_loss`, with the concept bank over the gathered batch."""
        return local_concept_loss(tokens, patches, batch["occ_batch"], batch["occ_start"], batch["occ_end"],
                                  batch["occ_ids"], self.cfg.local_temperature, self.cfg.local_scale,
                                  self.cfg.local_target, gather=DDP_GATHER)

    # -- export ---------------------------------------------------------------------------------
    def export(self, model: nn.Module, out_dir: Path) -> None:
        assert isinstance(model, SimZSSModel)
        out_dir.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in model.tower.state_dict().items()}
        save_file(state, str(out_dir / "model.safetensors"), metadata={"kind": "simzss"})
        bundle_concept_bank(self.concept_bank_file(), out_dir)
        backbone = bundle_backbone(save_hub_backbone(self.backbone, out_dir), out_dir)
        config = {"kind": "simzss", "schema": 1, "backbone": backbone,
                  "feature": self.manifest.get("feature", {}), "text": asdict(self.cfg.text),
                  "embed_dim": self.dim, "tokenizer": "clip-bpe", "global": self.cfg.global_token,
                  "text_pooling": self.cfg.text_pooling,
                  "logit_scale": float(model.logit_scale.detach().exp().clamp(max=model.logit_scale_max)),
                  "trained_on": {"shards": self.shards_name,
                                 "concept_bank": self.manifest.get("concept_bank", {})}}
        (out_dir / "config.json").write_text(json.dumps(config, indent=2))
