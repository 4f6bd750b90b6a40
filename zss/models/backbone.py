"""Frozen vision backbones behind one interface: images in [0, 1] -> (patch grid, global token).

Ingest caches these outputs once, so everything downstream (trainers, eval, segment) only ever sees
`[B, Hp, Wp, D]` grids without prefix tokens; which family produced them (timm ViT, DINOv2 with or
without registers, dense OpenCLIP) is recorded in `spec` and nowhere else.

Models: a `zss.formats.specs.ModelSpec` (or a spec string) of any timm ViT
(`vit_small_patch14_dinov2`, `vit_base_patch14_reg4_dinov2`, ...) or OpenCLIP model (`openclip:ARCH`,
recorded as `open_clip/ARCH`; delegated to `zss.models.clip_dense`). Checkpoint: a local file, or
`None` for the hub's pretrained weights (which needs network access or a warm cache).
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zss.errors import ZssError
from zss.utils.hub import fetch_hint, hub_offline
from zss.formats.specs import ModelSpec, to_model_spec
from zss.utils.hashing import sha256_file



# Input normalisations by name: `imagenet` (timm's DINOv2 default) and `clip` (OpenAI CLIP's, which
# SimZSS's release uses in front of DINOv2). `auto` = the model's own pretrained config.
NORMALIZATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
}


def resolve_normalization(normalize: str = "auto", mean: Any = None, std: Any = None,
                          ) -> tuple[str, tuple[float, ...] | None, tuple[float, ...] | None]:
    """`auto` | `imagenet` | `clip` | `custom` (with `mean` and `std`, 3 floats each) ->
    (name, mean, std); mean/std None for `auto` (the model decides)."""
    if normalize in NORMALIZATIONS:
        m, s = NORMALIZATIONS[normalize]
        return normalize, m, s
    if normalize == "auto":
        return "auto", None, None
    if normalize == "custom":
        try:
            m, s = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        except (TypeError, ValueError) as exc:
            raise ZssError(f"normalize: custom needs mean and std (3 numbers each), got {mean!r} / {std!r}") from exc
        if len(m) != 3 or len(s) != 3 or min(s) <= 0:
            raise ZssError(f"normalize: custom needs 3 means and 3 positive stds, got {m} / {s}")
        return "custom", m, s
    raise ZssError(f"normalize must be auto, imagenet, clip or custom, got {normalize!r}")


class Backbone(nn.Module):
    """A frozen encoder with normalisation inside, so callers only ever pass [0, 1] images.

    Subclasses implement `_tokens(x_normalised) -> (patch [B,Hp,Wp,D], global [B,D])`.
    """

    patch_size: int
    embed_dim: int
    img_size: int
    spec: dict[str, Any]

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.register_buffer("_mean", torch.tensor(self.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(self.std).view(1, 3, 1, 1), persistent=False)

    def set_normalization(self, name: str, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        """Replace the input normalisation (recorded in `spec["normalize"]`)."""
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(v) for v in std)
        self._mean.copy_(torch.tensor(self.mean).view(1, 3, 1, 1))
        self._std.copy_(torch.tensor(self.std).view(1, 3, 1, 1))
        self.spec = {**self.spec, "normalize": {"name": name, "mean": list(self.mean), "std": list(self.std)}}

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """Patch grid of an input of this size (partial border patches are dropped)."""
        return height // self.patch_size, width // self.patch_size

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images [B,3,H,W], got {tuple(images.shape)}")
        x = (images.to(self._mean.dtype) - self._mean) / self._std
        patch, glob = self._tokens(x)
        denoiser = getattr(self, "denoiser", None)
        if denoiser is not None:  # patch tokens only; the global token is untouched
            patch = denoiser(patch)
        return patch, glob

    def _tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def train(self, mode: bool = True) -> "Backbone":
        """Always eval: the backbone is frozen, dropout/drop-path must never switch on."""
        return super().train(False)


class TimmBackbone(Backbone):
    """A timm ViT; prefix tokens (CLS + registers) are cut from the grid with `num_prefix_tokens`."""

    def __init__(self, model: nn.Module, spec: dict[str, Any]) -> None:
        cfg = getattr(model, "pretrained_cfg", {}) or {}
        super().__init__(cfg.get("mean", (0.485, 0.456, 0.406)), cfg.get("std", (0.229, 0.224, 0.225)))
        self.model = model
        patch = model.patch_embed.patch_size
        self.patch_size = int(patch[0] if isinstance(patch, (tuple, list)) else patch)
        self.embed_dim = int(model.embed_dim)
        self.img_size = int(spec["img_size"])
        self.num_prefix_tokens = int(model.num_prefix_tokens)
        self.has_cls = getattr(model, "cls_token", None) is not None
        self.spec = {**spec, "patch_size": self.patch_size, "embed_dim": self.embed_dim,
                     "num_prefix_tokens": self.num_prefix_tokens,
                     "global": "cls" if self.has_cls else "mean"}

    def _tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hp, wp = self.grid_size(x.shape[-2], x.shape[-1])
        if hp == 0 or wp == 0:
            raise ValueError(f"image {tuple(x.shape[-2:])} is smaller than one {self.patch_size}px patch")
        x = x[..., : hp * self.patch_size, : wp * self.patch_size]
        tokens = self.model.forward_features(x)  # [B, prefix + Hp*Wp, D], final norm applied
        patch = tokens[:, self.num_prefix_tokens:]
        patch = patch.reshape(patch.shape[0], hp, wp, patch.shape[-1])
        glob = tokens[:, 0] if self.has_cls else patch.mean(dim=(1, 2))
        return patch, glob


def _freeze(module: nn.Module) -> nn.Module:
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def _check_checkpoint(checkpoint: str | Path | None) -> Path | None:
    if checkpoint is None or str(checkpoint) == "":
        return None
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise ZssError(f"checkpoint file not found: {path}")
    return path.resolve()  # recorded in manifests: later readers may run from another folder


def create_timm_vit(name: str, img_size: int, checkpoint: Path | None, pretrained: bool) -> nn.Module:
    """`timm.create_model` the way both the loader and the random-init saver need it.

    `dynamic_img_size=True` lets one model serve any input size (pos-embeds are resampled per call);
    `num_classes=0` drops the head, which a feature extractor never uses.
    """
    import timm

    if not timm.is_model(name):
        raise ZssError(f"unknown backbone {name!r}: not a timm model name (nor openclip:ARCH)")
    kwargs: dict[str, Any] = dict(img_size=img_size, dynamic_img_size=True, num_classes=0)
    if checkpoint is not None:
        # custom_load is timm's .npz path (big_vision checkpoints); anything else is a state dict
        kwargs["pretrained_cfg_overlay"] = dict(file=str(checkpoint),
                                                custom_load=checkpoint.suffix == ".npz")
    from_hub = pretrained and checkpoint is None
    try:
        with hub_offline() if from_hub else nullcontext() as offline:
            model = timm.create_model(name, pretrained=pretrained, **kwargs)
    except TypeError as exc:  # e.g. an architecture without img_size/dynamic_img_size
        raise ZssError(f"backbone {name!r} is not a supported ViT: {exc}") from exc
    except (OSError, ValueError) as exc:
        if from_hub:
            raise ZssError(fetch_hint(name, offline or str(exc).splitlines()[0][:200])) from exc
        raise ZssError(f"cannot load weights of {name!r} from checkpoint {checkpoint}: "
                       f"{str(exc).splitlines()[0]}") from exc
    except RuntimeError as exc:  # state-dict mismatch, or no hub weights for this name
        first = str(exc).splitlines()[0][:300]
        if from_hub and offline:
            raise ZssError(fetch_hint(name, offline)) from exc
        if checkpoint is None:
            raise ZssError(f"no pretrained weights for {name!r}: {first}; pass NAME:CHECKPOINT") from exc
        raise ZssError(f"checkpoint {checkpoint} does not fit {name!r}: {first}") from exc
    if not hasattr(model, "num_prefix_tokens") or not hasattr(model, "patch_embed"):
        raise ZssError(f"backbone {name!r} is not a ViT with a patch grid")
    return model


def _load_open_clip(spec: ModelSpec, img_size: int) -> nn.Module:
    """Dense OpenCLIP (zss.models.clip_dense) with the same interface; the checkpoint may also be an
    open_clip pretrained tag (e.g. `openai`), only files get a sha256."""
    from zss.models.clip_dense import load_openclip_backbone

    checkpoint = spec.checkpoint
    is_file = bool(checkpoint) and Path(checkpoint).expanduser().is_file()
    ckpt = str(Path(checkpoint).expanduser().resolve()) if is_file else checkpoint
    model = load_openclip_backbone(spec.with_checkpoint(ckpt), img_size)
    model.spec = {**model.spec, "checkpoint": ckpt, "sha256": sha256_file(ckpt) if is_file else None}
    return _freeze(model)


def load_backbone(spec: ModelSpec | str, checkpoint: str | Path | None = None, img_size: int = 224,
                  normalize: str = "auto", mean: Any = None, std: Any = None,
                  denoiser: str | Path | None = None, build_size: int | None = None) -> Backbone:
    """Load a frozen backbone from a local checkpoint file or (no checkpoint) the hub.

    `spec` is a parsed spec or a string (a spec, or the name a manifest records with the weights in
    `checkpoint`, which wins over the spec's own). An OpenCLIP model returns clip_dense's
    `OpenCLIPBackbone`, which has the same attributes and forward contract (its features live in
    CLIP's joint space). `normalize` (see `resolve_normalization`) overrides the model's own input
    normalisation; `denoiser` is a local file of DVT denoiser weights applied to the patch tokens
    (zss.models.denoiser). Both are recorded in the returned model's `spec` (the manifest's and
    model directory's backbone record). `build_size` (timm ViTs) builds the model at another size than
    `img_size`, keeping a checkpoint's position table at that size (resampled per call, never at load):
    an imported SimZSS model is built at the release's 518 px."""
    if img_size <= 0:
        raise ZssError(f"img_size must be positive, got {img_size}")
    norm_name, norm_mean, norm_std = resolve_normalization(normalize, mean, std)
    parsed = to_model_spec(spec, checkpoint)
    if parsed.kind == "openclip":
        if norm_mean is not None or denoiser:
            raise ZssError("normalize and denoiser apply to timm ViT backbones only, not openclip:")
        model: Any = _load_open_clip(parsed, img_size)
    else:
        path = _check_checkpoint(parsed.checkpoint)
        vit = create_timm_vit(parsed.arch, int(build_size or img_size), path, pretrained=True)
        info = {"name": parsed.name, "checkpoint": str(path) if path else None,
                "sha256": sha256_file(path) if path else None, "img_size": int(img_size)}
        if build_size:
            info["build_size"] = int(build_size)
        model = _freeze(TimmBackbone(vit, info))
    if norm_mean is not None and norm_std is not None:
        model.set_normalization(norm_name, norm_mean, norm_std)
    else:
        model.spec = {**model.spec, "normalize": {"name": "auto", "mean": list(model.mean), "std": list(model.std)}}
    if denoiser:
        from zss.models.denoiser import load_denoiser

        net, record = load_denoiser(denoiser)
        if record["dim"] != model.embed_dim:
            raise ZssError(f"denoiser {denoiser} is {record['dim']}-d, the backbone {model.embed_dim}-d")
        model.denoiser = net
        model.spec = {**model.spec, "denoiser": record}
    return model
