"""PixelCLIP on shards with unlabeled masks (`zss train pixelclip SHARDS RUN`).

Two modes (see zss.recipes.pixelclip.model):
- `cached` (default): a residual adapter on the cached dense OpenCLIP features of the shards
  (ingested with `--features open_clip/ARCH:CKPT`); the text tower comes from the same checkpoint,
  recorded in the manifest. Fast: no image encoder runs during training.
- `full`: the OpenCLIP image tower itself learns on the shards' stored images (`KEY.jpg`); ViT trains
  attention and positional parameters only, ConvNeXt everything; `clip: ARCH:CKPT` names the model.

Learning-rate multipliers travel in each AdamW group as `lr_scale` (encoder ×0.01, prompts ×10 by
default); gradient clipping at 0.01 comes from the training config (zss/manifests/train/pixelclip-*.yaml).
"""

from __future__ import annotations

import io
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from zss.errors import ZssError
from zss.formats.specs import LEGACY_OPENCLIP
from zss.models.clip_dense import load_clip_dense, parse_clip_spec
from zss.trainer.data import load_npy
from zss.recipes.pixelclip.augment import StrongAug, crop_image, crop_masks, draw_crop, strong_features, strong_view
from zss.recipes.pixelclip.model import MODES, PixelCLIPNet
from zss.recipes.pixelclip.prompts import DEFAULT_TEMPLATE
from zss.recipes.pixelclip.targets import decode_rle_masks
from zss.trainer.recipe import Recipe, default_no_decay
from zss.utils.config import setting

OPEN_CLIP_PREFIX = LEGACY_OPENCLIP  # how shard manifests name an OpenCLIP feature backbone


@dataclass
class PixelCLIPConfig:
    """PixelCLIP settings (paper defaults unless noted)."""

    mode: str = "cached"                 # cached | full
    clip: str = ""                       # ARCH[:CKPT]; full mode needs it, cached defaults to the manifest's
    k: int = setting(64, ge=1)           # learnable prompts = clusters
    template: str = DEFAULT_TEMPLATE     # each "{}" is one learned context token
    prompt_seed: int = 0
    cluster_scale: float = setting(20.0, gt=0)  # cosine × scale before Sinkhorn (1 / SwAV's epsilon)
    sinkhorn_iters: int = setting(3, ge=1)
    momentum: float = setting(0.999, ge=0, le=1)  # EMA teacher
    mask_size: int = setting(256, ge=1)  # target / logit resolution
    img_size: int = setting(224, ge=1)   # full mode: student input side
    crop_min_scale: float = setting(0.5, gt=0, le=1)  # full mode: shared random-resized crop
    max_masks: int = setting(32, ge=1)   # per image, largest first
    min_mask_frac: float = setting(0.001, ge=0, le=1)  # drop masks smaller than this fraction of the image
    lr_encoder: float = setting(0.01, ge=0)  # lr multiplier of the image tower (full mode)
    lr_prompts: float = setting(10.0, ge=0)  # lr multiplier of the prompt context vectors
    lr_head: float = setting(1.0, ge=0)  # lr multiplier of the decoder and (cached) adapter
    adapter_hidden: int = setting(256, ge=1)  # cached mode
    feature_drop: float = setting(0.2, ge=0, lt=1)  # cached mode strong view: dropped tokens
    feature_noise: float = setting(0.1, ge=0)  # cached mode strong view: noise relative to feature RMS
    decoder_hidden: int = setting(32, ge=1)
    decoder_guide: int = setting(16, ge=1)


def _same_grid(grids: list[torch.Tensor]) -> list[torch.Tensor]:
    """Cached grids [h, w, C] resized (bilinear) to the first one's grid when their sizes differ —
    shards ingested with aspect-keeping resizes hold several grid sizes."""
    size = grids[0].shape[:2]
    return [g if g.shape[:2] == size else
            F.interpolate(g.float().permute(2, 0, 1)[None], size=tuple(size), mode="bilinear",
                          align_corners=False)[0].permute(1, 2, 0).to(g.dtype) for g in grids]


def _strip_prefix(name: str) -> str:
    return name[len(OPEN_CLIP_PREFIX):] if name.startswith(OPEN_CLIP_PREFIX) else name


class PixelCLIPRecipe(Recipe):
    name = "pixelclip"
    config_cls = PixelCLIPConfig
    loop_defaults = {"grad_clip": 0.01}

    def __init__(self, cfg: PixelCLIPConfig, shards: Path, train_cfg: Any) -> None:
        super().__init__(cfg, shards, train_cfg)
        if cfg.mode not in MODES:
            raise ZssError(f"pixelclip mode must be one of {', '.join(MODES)}, got {cfg.mode!r}")
        masks = (self.manifest.get("models", {}).get("masks") or {}).get("mode", "none")
        if masks == "none":
            raise ZssError(f"{shards} has no masks: ingest with --masks sam|sa1b|dino-kmeans for pixelclip")
        self.arch, self.checkpoint = self._clip_source()
        if cfg.mode == "cached":
            self.members = ("json", "patch.npy", "masks.json")
        else:
            self.members = ("json", "jpg", "masks.json")
        self.strong = StrongAug()

    def _clip_source(self) -> tuple[str, str | None]:
        """(arch, checkpoint): the config's `clip`, else (cached) the manifest's feature backbone."""
        if self.cfg.clip:
            return parse_clip_spec(self.cfg.clip)
        if self.cfg.mode == "full":
            raise ZssError("pixelclip full mode needs the model to train: set recipe.clip=ARCH:CKPT")
        feats = self.manifest.get("models", {}).get("features") or {}
        name = str(feats.get("name", ""))
        if not name.startswith(OPEN_CLIP_PREFIX):
            raise ZssError(f"cached pixelclip needs shards ingested with --features open_clip/ARCH:CKPT "
                           f"(this manifest records {name or 'no feature backbone'!r})")
        ckpt = feats.get("checkpoint")
        if ckpt and not Path(ckpt).is_file() and (self.shards / ckpt).is_file():
            ckpt = self.shards / ckpt  # a relative path recorded at ingest time
        if ckpt and not Path(ckpt).is_file() and Path(ckpt).suffix in (".safetensors", ".bin", ".pt", ".pth"):
            raise ZssError(f"the shards' OpenCLIP checkpoint {ckpt} is not there; "
                           f"point to it with --set recipe.clip={_strip_prefix(name)}:PATH")
        return _strip_prefix(name), (str(ckpt) if ckpt else None)

    # -- model ----------------------------------------------------------------------------------
    def build_model(self) -> PixelCLIPNet:
        cfg = self.cfg
        clip = load_clip_dense(self.arch, self.checkpoint)
        if cfg.mode == "cached":
            dim = self.manifest.get("feature", {}).get("dim")
            if dim is not None and int(dim) != clip.embed_dim:
                raise ZssError(f"cached features have dim {dim} but {self.arch} embeds in {clip.embed_dim}: "
                               f"ingest with --features open_clip/{self.arch}:CKPT")
        return PixelCLIPNet(clip, cfg.mode, k=cfg.k, template=cfg.template, prompt_seed=cfg.prompt_seed,
                            mask_size=cfg.mask_size, cluster_scale=cfg.cluster_scale,
                            sinkhorn_iters=cfg.sinkhorn_iters, momentum=cfg.momentum,
                            adapter_hidden=cfg.adapter_hidden, decoder_hidden=cfg.decoder_hidden,
                            decoder_guide=cfg.decoder_guide)

    def param_groups(self, model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
        """Groups per part with `lr_scale`; the prompt context gets no weight decay (CoOp keeps
        it near the token-embedding manifold rather than shrinking it)."""
        assert isinstance(model, PixelCLIPNet)
        parts: list[tuple[str, nn.Module, float]] = [("prompts", model.prompts, self.cfg.lr_prompts),
                                                      ("decoder", model.decoder, self.cfg.lr_head)]
        if model.mode == "cached":
            parts.append(("adapter", model.adapter, self.cfg.lr_head))
        else:
            parts.append(("encoder", model.clip.model.visual, self.cfg.lr_encoder))
        groups = []
        for name, module, scale in parts:
            decay, no_decay = [], []
            for pname, p in module.named_parameters():
                if not p.requires_grad:
                    continue
                (no_decay if name == "prompts" or default_no_decay(pname, p) else decay).append(p)
            for params, wd, suffix in ((decay, weight_decay, ""), (no_decay, 0.0, "_no_decay")):
                if params:
                    groups.append({"params": params, "weight_decay": wd, "lr_scale": scale,
                                   "name": name + suffix})
        return groups

    # -- data -----------------------------------------------------------------------------------
    def _masks(self, raw: dict[str, Any], size: tuple[int, int]) -> np.ndarray | None:
        """Decoded masks [M, h, w] (largest first, tiny ones dropped), or None when there are none."""
        if "masks.json" not in raw:
            return None
        anns = json.loads(raw["masks.json"])
        masks = decode_rle_masks(anns)
        if len(masks) == 0:
            return None
        if masks.shape[1:] != tuple(size):
            raise ZssError(f"sample {raw['__key__']}: masks are {masks.shape[1:]} but the image is {size}")
        areas = masks.reshape(len(masks), -1).sum(1)
        keep = [i for i in np.argsort(-areas, kind="stable")
                if areas[i] >= self.cfg.min_mask_frac * size[0] * size[1]][: self.cfg.max_masks]
        return masks[keep] if keep else None

    def decode_sample(self, raw: dict[str, Any], rng: random.Random) -> dict[str, Any] | None:
        meta = json.loads(raw["json"])
        size = (int(meta["size"][0]), int(meta["size"][1]))
        masks_np = self._masks(raw, size)
        if masks_np is None:
            return None
        masks = torch.from_numpy(masks_np)
        r = self.cfg.mask_size
        if self.cfg.mode == "full":
            if "jpg" not in raw:
                raise ZssError(f"sample {raw['__key__']} has no stored image: full-mode pixelclip needs "
                               f"shards ingested without --no-images")
            img = np.array(Image.open(io.BytesIO(raw["jpg"])).convert("RGB"))
            img_t = torch.from_numpy(img).permute(2, 0, 1).float() / 255.0
            crop = draw_crop(rng, size[0], size[1], self.cfg.crop_min_scale)
            weak = crop_image(img_t, crop, self.cfg.img_size)
            masks = crop_masks(masks, crop, r)
            masks = masks[masks.flatten(1).any(1)]
            if len(masks) == 0:
                return None
            return {"weak": weak, "strong": strong_view(weak, rng, self.strong), "masks": masks}
        patch = load_npy(raw["patch.npy"])
        masks = F.interpolate(masks[None].float(), size=(r, r), mode="nearest")[0] > 0.5
        if rng.random() < 0.5:  # the one geometric augmentation cached grids allow, shared by both views
            patch, masks = patch[:, ::-1], masks.flip(-1)
        masks = masks[masks.flatten(1).any(1)]
        if len(masks) == 0:
            return None
        strong = strong_features(patch, rng, self.cfg.feature_drop, self.cfg.feature_noise)
        return {"patch": torch.from_numpy(np.ascontiguousarray(patch)),
                "patch_strong": torch.from_numpy(strong), "masks": masks}

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        if not samples:
            raise ZssError("a whole batch of samples had no usable mask; check the shards' masks "
                           "(zss inspect) or lower recipe.min_mask_frac")
        views = ("weak", "strong") if self.cfg.mode == "full" else ("patch", "patch_strong")
        batch: dict[str, Any] = {v: torch.stack(_same_grid([s[v] for s in samples])) for v in views}
        batch["masks"] = torch.cat([s["masks"] for s in samples])
        batch["owner"] = torch.cat([torch.full((len(s["masks"]),), i, dtype=torch.long)
                                    for i, s in enumerate(samples)])
        batch["n_images"] = torch.tensor(len(samples))
        return batch

    # -- loss & hooks ---------------------------------------------------------------------------
    def loss(self, model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        return model(batch)

    def after_step(self, model: nn.Module, step: int) -> None:
        assert isinstance(model, PixelCLIPNet)
        model.update_teacher()

    # -- export ---------------------------------------------------------------------------------
    def default_size(self) -> int:
        if self.cfg.mode == "full":
            return self.cfg.img_size
        models = self.manifest.get("models", {}).get("features") or {}
        return int(models.get("img_size") or 224)

    def export(self, model: nn.Module, out_dir: Path) -> None:
        """model.safetensors (the open_clip state dict: loadable as `openclip:ARCH:model.safetensors`),
        adapter.safetensors (cached mode), prompts.safetensors (learned context + embeddings),
        concepts.json (the shards' bank, for `zss prompts explain`), config.json."""
        from zss.recipes.pixelclip.segmenter import write_model_dir

        assert isinstance(model, PixelCLIPNet)
        write_model_dir(model, out_dir, default_size=self.default_size(),
                        source={"arch": self.arch, "checkpoint": self.checkpoint},
                        extra={"train": asdict(self.cfg), "trained_on": str(self.shards.resolve())},
                        concept_bank=self.concept_bank_file())
