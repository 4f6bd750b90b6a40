"""PixelCLIP's two training modes, each one small object behind the `TrainingMode` interface.

Everything that differs between them lives here; the network (`model.py`), the recipe
(`recipe.py`) and the model-directory writer (`segmenter.py`) ask the mode object and never branch
on a mode name.

- `CachedMode`: the student is a residual adapter on cached frozen dense features (`patch.npy`);
  the teacher is an EMA copy of the adapter on the clean features; the strong view drops tokens and
  adds noise in feature space; the only geometric augmentation is a shared flip.
- `FullMode`: the student is the OpenCLIP image tower on stored images (`jpg`); the teacher is an
  EMA copy of the tower on the weak view; views share a crop and flip, the strong one gets
  photometric distortions.
"""

from __future__ import annotations

import io
import random
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from zss.errors import ZssError
from zss.models.clip_dense import DenseCLIP, visual_dense
from zss.recipes.pixelclip.adapter import FeatureAdapter
from zss.recipes.pixelclip.augment import CropParams, color_aug_ssd, crop_image, crop_masks, draw_crop, strong_features, strong_view
from zss.recipes.pixelclip.ema import make_teacher
from zss.formats.npy import load_npy


def encoder_trainable(name: str, kind: str) -> bool:
    """Which image-tower parameters the full mode trains: ViT attention + positional; ConvNeXt all."""
    if kind == "vit":
        return ".attn." in f".{name}" or "positional_embedding" in name
    return True


class TrainingMode(Protocol):
    """What a PixelCLIP training mode provides (to the network, the recipe and the exporter)."""

    name: str
    members: tuple[str, ...]       # shard members a sample needs
    views: tuple[str, str]         # batch keys of the (weak/teacher, strong/student) views

    def build(self, net: nn.Module, clip: DenseCLIP, adapter_hidden: int) -> None: ...
    def student(self, net: nn.Module) -> nn.Module: ...
    def student_features(self, net: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor: ...
    def teacher_features(self, net: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor: ...
    def freeze_clip_in_train(self) -> bool: ...
    def encoder_part(self, net: nn.Module) -> tuple[str, nn.Module]: ...
    def needs_clip_spec(self) -> bool: ...
    def decode(self, raw: dict[str, Any], masks: torch.Tensor, size: tuple[int, int],
               rng: random.Random, recipe: Any) -> dict[str, Any] | None: ...
    def default_size(self, recipe: Any) -> int: ...
    def check_features(self, manifest: dict[str, Any], clip: DenseCLIP, arch: str) -> None: ...
    def extra_state(self, net: nn.Module) -> tuple[dict[str, torch.Tensor] | None, dict[str, Any] | None]: ...


class CachedMode:
    name = "cached"
    members = ("json", "patch.npy", "masks.json")
    views = ("patch", "patch_strong")

    def build(self, net: nn.Module, clip: DenseCLIP, adapter_hidden: int) -> None:
        net.adapter = FeatureAdapter(clip.embed_dim, adapter_hidden)
        net.teacher = make_teacher(net.adapter)

    def student(self, net: nn.Module) -> nn.Module:
        return net.adapter

    def student_features(self, net: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return net.adapter(batch["patch_strong"])

    @torch.no_grad()
    def teacher_features(self, net: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return net.teacher(batch["patch"])

    def freeze_clip_in_train(self) -> bool:
        return True

    def encoder_part(self, net: nn.Module) -> tuple[str, nn.Module]:
        return "adapter", net.adapter

    def needs_clip_spec(self) -> bool:
        return False

    def decode(self, raw: dict[str, Any], masks: torch.Tensor, size: tuple[int, int],
               rng: random.Random, recipe: Any) -> dict[str, Any] | None:
        cfg = recipe.cfg
        r = cfg.mask_size
        patch = load_npy(raw["patch.npy"])
        masks = F.interpolate(masks[None].float(), size=(r, r), mode="nearest")[0] > 0.5
        if rng.random() < 0.5:  # the one geometric augmentation cached grids allow, shared by both views
            patch, masks = patch[:, ::-1], masks.flip(-1)
        masks = recipe.keep_visible(masks)
        if masks is None:
            return None
        strong = strong_features(patch, rng, cfg.feature_drop, cfg.feature_noise)
        return {"patch": torch.from_numpy(np.ascontiguousarray(patch)),
                "patch_strong": torch.from_numpy(strong), "masks": masks}

    def default_size(self, recipe: Any) -> int:
        models = recipe.manifest.get("models", {}).get("features") or {}
        return int(models.get("img_size") or 224)

    def check_features(self, manifest: dict[str, Any], clip: DenseCLIP, arch: str) -> None:
        dim = manifest.get("feature", {}).get("dim")
        if dim is not None and int(dim) != clip.embed_dim:
            raise ZssError(f"cached features have dim {dim} but {arch} embeds in {clip.embed_dim}: "
                           f"ingest with --features open_clip/{arch}:CKPT")

    def extra_state(self, net: nn.Module) -> tuple[dict[str, torch.Tensor] | None, dict[str, Any] | None]:
        state = {k: v.detach().cpu().contiguous() for k, v in net.adapter.state_dict().items()}
        return state, {"dim": net.adapter.dim, "hidden": net.adapter.hidden}


class FullMode:
    name = "full"
    members = ("json", "jpg", "masks.json")
    views = ("weak", "strong")

    def build(self, net: nn.Module, clip: DenseCLIP, adapter_hidden: int) -> None:
        for name, p in clip.model.visual.named_parameters():
            p.requires_grad_(encoder_trainable(name, clip.kind))
        net.teacher = make_teacher(clip.model.visual)

    def student(self, net: nn.Module) -> nn.Module:
        return net.clip.model.visual

    def student_features(self, net: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        feats, _ = net.clip.dense(batch["strong"], with_global=False)
        return feats

    @torch.no_grad()
    def teacher_features(self, net: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        feats, _ = visual_dense(net.teacher, net.clip.normalize(batch["weak"]), with_global=False)
        return feats

    def freeze_clip_in_train(self) -> bool:
        return False

    def encoder_part(self, net: nn.Module) -> tuple[str, nn.Module]:
        return "encoder", net.clip.model.visual

    def needs_clip_spec(self) -> bool:
        return True

    def decode(self, raw: dict[str, Any], masks: torch.Tensor | None, size: tuple[int, int],
               rng: random.Random, recipe: Any) -> dict[str, Any] | None:
        """Weak and strong views of one crop, with the crop's masks at mask_size; `masks` None
        (`masks: dino-online`) returns instead DINO's copy of the weak crop (uint8, dino_img_size²),
        the cutout box and a k-means seed, and the masks are made in the training step."""
        cfg = recipe.cfg
        if "jpg" not in raw:
            raise ZssError(f"sample {raw['__key__']} has no stored image: full-mode pixelclip needs "
                           f"shards ingested without --no-images")
        img = np.array(Image.open(io.BytesIO(raw["jpg"])).convert("RGB"))
        img_t = torch.from_numpy(img).permute(2, 0, 1).float() / 255.0
        if cfg.crop_size > 0:  # as released: a fixed-size square crop, then resize to img_size
            crop = draw_fixed_crop(rng, size[0], size[1], cfg.crop_size)
        else:
            crop = draw_crop(rng, size[0], size[1], cfg.crop_min_scale)
        weak = crop_image(img_t, crop, cfg.img_size)
        online = masks is None  # `masks: dino-online`: DINO sees the weak crop at dino_img_size
        if online:
            dino = crop_image(img_t, crop, cfg.dino_img_size)
            state = rng.getstate()
        if cfg.weak_color_ssd:  # as released: the weak view is colour-distorted, the strong one derives from it
            weak = color_aug_ssd(weak, rng)
            if online:  # the same distortion (the same draws) on DINO's copy, as the release's DINO sees the weak view
                replay = random.Random()
                replay.setstate(state)
                dino = color_aug_ssd(dino, replay)
        if online:
            strong, cut = strong_view(weak, rng, recipe.strong, return_cutout=True)
            return {"weak": weak, "strong": strong, "dino": (dino * 255).round().to(torch.uint8),
                    "cutout": list(cut) if cut is not None and cfg.cutout_unsupervised else [-1, -1, -1, -1],
                    "dino_seed": rng.getrandbits(31)}
        masks = recipe.keep_visible(crop_masks(masks, crop, cfg.mask_size))
        if masks is None:
            return None
        strong, cut = strong_view(weak, rng, recipe.strong, return_cutout=True)
        if cut is not None and cfg.cutout_unsupervised:
            # as released: cut-out pixels leave every mask, so they are neither pooled nor supervised
            masks = recipe.keep_visible(remove_box(masks, cut, cfg.img_size))
            if masks is None:
                return None
        return {"weak": weak, "strong": strong, "masks": masks}

    def default_size(self, recipe: Any) -> int:
        return recipe.cfg.img_size

    def check_features(self, manifest: dict[str, Any], clip: DenseCLIP, arch: str) -> None:
        return None

    def extra_state(self, net: nn.Module) -> tuple[dict[str, torch.Tensor] | None, dict[str, Any] | None]:
        return None, None


def draw_fixed_crop(rng: random.Random, height: int, width: int, side: int) -> CropParams:
    """A random `side`² crop (the whole image when smaller: crops never pad), and a flip coin."""
    ch, cw = min(side, height), min(side, width)
    return CropParams(rng.randint(0, height - ch), rng.randint(0, width - cw), ch, cw, rng.random() < 0.5)


def remove_box(masks: torch.Tensor, box: tuple[int, int, int, int], img_size: int) -> torch.Tensor:
    """Clear a cutout box (top, left, h, w in `img_size` pixels) from masks [M, S, S]."""
    s = masks.shape[-1]
    top, left, h, w = box
    t0, l0 = int(np.floor(top * s / img_size)), int(np.floor(left * s / img_size))
    t1, l1 = int(np.ceil((top + h) * s / img_size)), int(np.ceil((left + w) * s / img_size))
    out = masks.clone()
    out[:, t0:t1, l0:l1] = False
    return out


MODE_OBJECTS: dict[str, TrainingMode] = {"cached": CachedMode(), "full": FullMode()}
MODES = tuple(MODE_OBJECTS)


def get_mode(name: str) -> TrainingMode:
    if name not in MODE_OBJECTS:
        raise ZssError(f"pixelclip mode must be one of {', '.join(MODES)}, got {name!r}")
    return MODE_OBJECTS[name]
