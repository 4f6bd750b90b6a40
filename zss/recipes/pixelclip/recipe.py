"""PixelCLIP on shards with unlabeled masks (`zss train pixelclip SHARDS RUN`).

Two modes, each one object in zss.recipes.pixelclip.modes (the recipe asks it, never branches on the name):
- `cached` (default): a residual adapter on the cached dense OpenCLIP features of the shards
  (ingested with `--features open_clip/ARCH:CKPT`); the text tower comes from the same checkpoint,
  recorded in the manifest. Fast: no image encoder runs during training.
- `full`: the OpenCLIP image tower itself learns on the shards' stored images (`KEY.jpg`); ViT trains
  attention and positional parameters only, ConvNeXt everything; `clip: ARCH:CKPT` names the model.

Learning-rate multipliers travel in each AdamW group as `lr_scale` (encoder ×0.01, prompts ×10 by
default); gradient clipping at 0.01 comes from the training config (zss/manifests/train/pixelclip-*.yaml).
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zss.errors import ZssError
from zss.formats.specs import ModelSpec, is_openclip_spec, parse_model_spec
from zss.models.clip_dense import load_clip_dense
from zss.recipes.pixelclip.augment import StrongAug
from zss.recipes.pixelclip.decoder import DECODERS
from zss.recipes.pixelclip.dino_masks import DINO_DEFAULT, DinoMaskMaker
from zss.recipes.pixelclip.model import PixelCLIPNet
from zss.recipes.pixelclip.modes import get_mode, remove_box
from zss.recipes.pixelclip.prompts import DEFAULT_TEMPLATE
from zss.recipes.pixelclip.targets import decode_rle_masks
from zss.trainer.collate import stack
from zss.trainer.recipe import Recipe, default_no_decay
from zss.utils.config import setting

MASK_SOURCES = ("shard", "dino-online")


@dataclass
class PixelCLIPConfig:
    """PixelCLIP settings. Defaults are zss's own choices; `pixelclip-official-*` presets set the
    release's values explicitly (docs/fidelity.md lists both)."""

    mode: str = "cached"                 # cached | full (zss.recipes.pixelclip.modes)
    clip: str = ""                       # ARCH[:CKPT]; full mode needs it, cached defaults to the manifest's
    k: int = setting(64, ge=1)           # learnable prompts = clusters
    template: str = DEFAULT_TEMPLATE     # each "{}" is one learned context token
    prompt_seed: int = 0
    cluster_scale: float = setting(20.0, gt=0)  # cosine × scale before Sinkhorn (release: 100 ViT, 1 ConvNeXt)
    sinkhorn_iters: int = setting(3, ge=1)
    sinkhorn_start: str = setting("exp", choices=("exp", "softmax"))  # exp (SwAV) | softmax (release: per-mask softmax first)
    mask_pooling: str = setting("area", choices=("area", "bilinear"))  # teacher features per mask: area-averaged masks on the grid (zss) | mean of bilinearly upsampled features (release)
    momentum: float = setting(0.999, ge=0, le=1)  # EMA teacher
    mask_size: int = setting(256, ge=1)  # target / logit resolution
    img_size: int = setting(224, ge=1)  # full mode: student/teacher input side
    crop_size: int = setting(0, ge=0)  # full mode: fixed square crop side (release 640); 0 = random-resized
    crop_min_scale: float = setting(0.5, gt=0, le=1)  # full mode, crop_size 0: area range of the random-resized crop
    weak_color_ssd: bool = False         # full mode: SSD colour distortion of the weak view (release: on)
    max_masks: int = setting(32, ge=0)  # per image, largest first; 0 = all (release)
    min_mask_frac: float = setting(0.001, ge=0, le=1)  # drop masks smaller than this fraction of the image (release 0)
    min_mask_pixels: int = setting(1, ge=0)  # keep masks with at least this many pixels at mask_size (release 2)
    cutout_unsupervised: bool = False    # full mode: remove the cutout box from every mask (release: on)
    strong_jitter_p: float = setting(0.8, ge=0, le=1)  # full mode strong view (release values in the official presets)
    strong_brightness: float = setting(0.4, ge=0)
    strong_contrast: float = setting(0.4, ge=0)
    strong_saturation: float = setting(0.2, ge=0)
    strong_hue: float = setting(0.1, ge=0, le=0.5)
    strong_gray_p: float = setting(0.2, ge=0, le=1)
    strong_blur_p: float = setting(0.5, ge=0, le=1)
    strong_blur_sigma_max: float = setting(2.0, gt=0)
    cutout_p: float = setting(0.5, ge=0, le=1)
    cutout_min_frac: float = setting(0.1, ge=0, le=1)
    cutout_max_frac: float = setting(0.4, ge=0, le=1)
    cutout_fill: float = setting(0.5, ge=0, le=1)  # grey (release: 0 = black)
    lr_encoder: float = setting(0.01, ge=0)  # lr multiplier of the image tower (full mode)
    lr_prompts: float = setting(10.0, ge=0)  # lr multiplier of the prompt context vectors
    lr_head: float = setting(1.0, ge=0)  # lr multiplier of the decoder and (cached) adapter
    adapter_hidden: int = setting(256, ge=1)  # cached mode
    feature_drop: float = setting(0.2, ge=0, lt=1)  # cached mode strong view: dropped tokens
    feature_noise: float = setting(0.1, ge=0)  # cached mode strong view: noise relative to feature RMS
    decoder: str = setting("zss", choices=("zss", "official"))  # zss (guided, residual on the cosine map) | official (release)
    decoder_hidden: int = setting(32, ge=1)  # zss decoder only
    decoder_guide: int = setting(16, ge=1)  # zss decoder only
    masks: str = setting("shard", choices=MASK_SOURCES)  # shard (the shards' masks) | dino-online (full mode: DINO k-means masks of each weak crop, the release's DINO variant)
    dino_model: str = DINO_DEFAULT       # dino-online: timm name of the frozen mask backbone
    dino_checkpoint: str = ""            # dino-online: its local weights (required: nothing is downloaded)
    dino_img_size: int = setting(640, ge=16)  # dino-online: the weak crop's side for DINO (release: the 640 crop -> 40x40)
    dino_k: int = setting(16, ge=1)      # dino-online: k-means clusters (= masks) per crop
    dino_iters: int = setting(100, ge=1)  # dino-online: at most this many Lloyd steps (release: fast_pytorch_kmeans max_iter 100)

    def strong_aug(self) -> StrongAug:
        return StrongAug(jitter_p=self.strong_jitter_p, brightness=self.strong_brightness,
                         contrast=self.strong_contrast, saturation=self.strong_saturation, hue=self.strong_hue,
                         gray_p=self.strong_gray_p, blur_p=self.strong_blur_p,
                         blur_sigma_max=self.strong_blur_sigma_max, cutout_p=self.cutout_p,
                         cutout_max_frac=self.cutout_max_frac, cutout_min_frac=self.cutout_min_frac,
                         cutout_fill=self.cutout_fill)


def _same_grid(grids: list[torch.Tensor]) -> list[torch.Tensor]:
    """Cached grids [h, w, C] resized (bilinear) to the first one's grid when their sizes differ —
    shards ingested with aspect-keeping resizes hold several grid sizes."""
    size = grids[0].shape[:2]
    return [g if g.shape[:2] == size else
            F.interpolate(g.float().permute(2, 0, 1)[None], size=tuple(size), mode="bilinear",
                          align_corners=False)[0].permute(1, 2, 0).to(g.dtype) for g in grids]


class PixelCLIPRecipe(Recipe):
    name = "pixelclip"
    config_cls = PixelCLIPConfig
    loop_defaults = {"grad_clip": 0.01}

    def __init__(self, cfg: PixelCLIPConfig, shards: Path, train_cfg: Any) -> None:
        super().__init__(cfg, shards, train_cfg)
        self.impl = get_mode(cfg.mode)
        if cfg.decoder not in DECODERS:
            raise ZssError(f"pixelclip decoder must be one of {', '.join(DECODERS)}, got {cfg.decoder!r}")
        if cfg.sinkhorn_start not in ("exp", "softmax"):
            raise ZssError(f"pixelclip sinkhorn_start must be exp or softmax, got {cfg.sinkhorn_start!r}")
        self.dino: DinoMaskMaker | None = None
        if cfg.masks not in MASK_SOURCES:
            raise ZssError(f"pixelclip masks must be one of {', '.join(MASK_SOURCES)}, got {cfg.masks!r}")
        if cfg.masks == "dino-online":
            if self.impl.name != "full":
                raise ZssError("pixelclip masks: dino-online needs mode: full (it runs DINO on the weak image crop)")
            self.dino = DinoMaskMaker(cfg.dino_model, cfg.dino_checkpoint or None, cfg.dino_img_size,
                                      cfg.dino_k, cfg.dino_iters, cfg.mask_size)
        masks = (self.manifest.get("models", {}).get("masks") or {}).get("mode", "none")
        if masks == "none" and self.dino is None:
            raise ZssError(f"{shards} has no masks: ingest with --masks sam|sa1b|dino|feature-kmeans for "
                           f"pixelclip, or train full mode with recipe.masks=dino-online")
        self.clip_spec = self._clip_source()
        self.members = tuple(m for m in self.impl.members if self.dino is None or m != "masks.json")
        self.strong = cfg.strong_aug()

    def _clip_source(self) -> ModelSpec:
        """The OpenCLIP model: the config's `clip`, else (cached) the manifest's feature backbone."""
        if self.cfg.clip:
            return parse_model_spec(self.cfg.clip, "openclip")
        if self.impl.needs_clip_spec():
            raise ZssError("pixelclip full mode needs the model to train: set recipe.clip=ARCH:CKPT")
        feats = self.manifest.get("models", {}).get("features") or {}
        name = str(feats.get("name", ""))
        if not is_openclip_spec(name):
            raise ZssError(f"cached pixelclip needs shards ingested with --features open_clip/ARCH:CKPT "
                           f"(this manifest records {name or 'no feature backbone'!r})")
        spec, ckpt = parse_model_spec(name, "openclip"), feats.get("checkpoint")
        if ckpt and not Path(ckpt).is_file() and isinstance(self.shards, Path) and (self.shards / ckpt).is_file():
            ckpt = self.shards / ckpt  # a relative path recorded at ingest time
        if ckpt and not Path(ckpt).is_file() and Path(ckpt).suffix in (".safetensors", ".bin", ".pt", ".pth"):
            raise ZssError(f"the shards' OpenCLIP checkpoint {ckpt} is not there; "
                           f"point to it with --set recipe.clip={spec.arch}:PATH")
        return spec.with_checkpoint(ckpt)

    # -- model ----------------------------------------------------------------------------------
    def build_model(self) -> PixelCLIPNet:
        cfg = self.cfg
        clip = load_clip_dense(self.clip_spec)
        self.impl.check_features(self.manifest, clip, self.clip_spec.arch)
        return PixelCLIPNet(clip, cfg.mode, k=cfg.k, template=cfg.template, prompt_seed=cfg.prompt_seed,
                            mask_size=cfg.mask_size, cluster_scale=cfg.cluster_scale,
                            sinkhorn_iters=cfg.sinkhorn_iters, momentum=cfg.momentum,
                            adapter_hidden=cfg.adapter_hidden, decoder_hidden=cfg.decoder_hidden,
                            decoder_guide=cfg.decoder_guide, decoder=cfg.decoder,
                            sinkhorn_start=cfg.sinkhorn_start, mask_pooling=cfg.mask_pooling)

    def param_groups(self, model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
        """Groups per part with `lr_scale`; the prompt context gets no weight decay (CoOp keeps
        it near the token-embedding manifold rather than shrinking it)."""
        assert isinstance(model, PixelCLIPNet)
        parts: list[tuple[str, nn.Module, float]] = [("prompts", model.prompts, self.cfg.lr_prompts),
                                                      ("decoder", model.decoder, self.cfg.lr_head)]
        part, module = model.impl.encoder_part(model)
        parts.append((part, module, self.cfg.lr_encoder if part == "encoder" else self.cfg.lr_head))
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
        """Decoded masks [M, h, w] (largest first, tiny ones dropped, at most `max_masks` unless 0),
        or None when there are none."""
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
                if areas[i] >= self.cfg.min_mask_frac * size[0] * size[1]]
        if self.cfg.max_masks > 0:
            keep = keep[: self.cfg.max_masks]
        return masks[keep] if keep else None

    def select_masks(self, masks: torch.Tensor) -> torch.Tensor | None:
        """Online masks [M, S, S]: the shard masks' rules at mask_size (largest first, tiny ones
        dropped, at most `max_masks` unless 0, at least `min_mask_pixels`), or None."""
        areas = masks.flatten(1).sum(1)
        order = torch.argsort(-areas, stable=True)
        order = order[areas[order] >= self.cfg.min_mask_frac * masks.shape[-1] * masks.shape[-2]]
        if self.cfg.max_masks > 0:
            order = order[: self.cfg.max_masks]
        return self.keep_visible(masks[order]) if len(order) else None

    def online_masks(self, batch: dict[str, Any]) -> dict[str, Any]:
        """`masks: dino-online`: the batch's masks and owners from DINO k-means of each weak crop
        (`dino`, [B, 3, S, S] uint8), the cutout box (`cutout`, [B, 4], -1 = none) cleared from
        them when `cutout_unsupervised`; images left without a mask just contribute none."""
        assert self.dino is not None
        made = self.dino.masks(batch["dino"], [int(s) for s in batch["dino_seed"]])
        kept, owner = [], []
        for i, m in enumerate(made):
            box = [int(v) for v in batch["cutout"][i]]
            if self.cfg.cutout_unsupervised and box[0] >= 0:
                m = remove_box(m, tuple(box), self.cfg.img_size)
            m = self.select_masks(m)
            if m is not None:
                kept.append(m)
                owner.append(torch.full((len(m),), i, dtype=torch.long, device=m.device))
        if not kept:
            raise ZssError("dino-online: no crop of the batch kept a mask (check min_mask_pixels / min_mask_frac)")
        out = {k: v for k, v in batch.items() if k not in ("dino", "dino_seed", "cutout")}
        out["masks"], out["owner"] = torch.cat(kept), torch.cat(owner)
        return out

    def decode_sample(self, raw: dict[str, Any], rng: random.Random) -> dict[str, Any] | None:
        meta = json.loads(raw["json"])
        size = (int(meta["size"][0]), int(meta["size"][1]))
        if self.dino is not None:  # masks come from DINO on the weak crop, in the training step
            return self.impl.decode(raw, None, size, rng, self)
        masks_np = self._masks(raw, size)
        if masks_np is None:
            return None
        return self.impl.decode(raw, torch.from_numpy(masks_np), size, rng, self)

    def keep_visible(self, masks: torch.Tensor) -> torch.Tensor | None:
        """Masks [M, S, S] at mask_size with at least `min_mask_pixels` (and ≥ 1) pixels, or None."""
        keep = masks.flatten(1).sum(1) >= max(1, self.cfg.min_mask_pixels)
        return masks[keep] if bool(keep.any()) else None

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        if not samples:
            raise ZssError("a whole batch of samples had no usable mask; check the shards' masks "
                           "(zss inspect) or lower recipe.min_mask_frac")
        views = self.impl.views
        batch: dict[str, Any] = {v: stack(_same_grid([s[v] for s in samples])) for v in views}
        if self.dino is not None:
            batch["dino"] = stack([s["dino"] for s in samples])
            batch["cutout"] = torch.tensor([s["cutout"] for s in samples], dtype=torch.long)
            batch["dino_seed"] = torch.tensor([s["dino_seed"] for s in samples], dtype=torch.long)
            batch["n_images"] = torch.tensor(len(samples))
            return batch
        batch["masks"] = torch.cat([s["masks"] for s in samples])
        batch["owner"] = torch.cat([torch.full((len(s["masks"]),), i, dtype=torch.long)
                                    for i, s in enumerate(samples)])
        batch["n_images"] = torch.tensor(len(samples))
        return batch

    # -- loss & hooks ---------------------------------------------------------------------------
    def loss(self, model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        if self.dino is not None:
            batch = self.online_masks(batch)
        return model(batch)

    def after_step(self, model: nn.Module, step: int) -> None:
        assert isinstance(model, PixelCLIPNet)
        model.update_teacher()

    # -- export ---------------------------------------------------------------------------------
    def default_size(self) -> int:
        return self.impl.default_size(self)

    def export(self, model: nn.Module, out_dir: Path) -> None:
        """model.safetensors (the open_clip state dict: loadable as `openclip:ARCH:model.safetensors`),
        adapter.safetensors (cached mode), prompts.safetensors (learned context + embeddings),
        concepts.json (the shards' bank, for `zss prompts explain`), config.json."""
        from zss.recipes.pixelclip.segmenter import write_model_dir

        assert isinstance(model, PixelCLIPNet)
        write_model_dir(model, out_dir, default_size=self.default_size(),
                        source={"arch": self.clip_spec.arch, "checkpoint": self.clip_spec.checkpoint},
                        extra={"train": asdict(self.cfg), "trained_on": self.shards_name},
                        concept_bank=self.concept_bank_file())
