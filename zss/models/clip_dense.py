"""Dense OpenCLIP: per-location image features in CLIP's joint space, plus the text tower.

CLIP is trained on one pooled token, so its last block's attention mixes every token into a global
summary and the per-token outputs are poor at localisation. MaskCLIP/CAT-Seg/PixelCLIP read the last
block differently: each token keeps only its *value* path (no query-key mixing), the CLS token's
residual stream is added back (so the token lives where the pooled embedding lived during
pre-training), the MLP runs as usual, then the post-norm and projection map it into the text space.
ConvNeXt towers need no trick: their trunk features go through the head's norm and projection
without pooling.

One loader serves every user (ingest features, the MaskCLIP baseline, PixelCLIP): an open_clip
architecture name plus a hub tag or a local checkpoint file, through
`open_clip.create_model_and_transforms`. Tiny zss architectures (zss/manifests/openclip/*.json) are
registered as ordinary open_clip configs, so tests exercise the same code path as real runs.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

import open_clip
import torch
import torch.nn as nn
import torch.nn.functional as F

from zss.errors import ZssError
from zss.utils.hub import fetch_hint, hub_offline
from zss.formats.specs import ModelSpec, to_model_spec
from zss.paths import MANIFESTS

CONFIG_DIR = MANIFESTS / "openclip"
_registered = False


def register_zss_configs() -> None:
    """Make the tiny zss architectures (`zss-tiny-vit`, `zss-tiny-convnext`) known to open_clip."""
    global _registered
    if not _registered:
        if CONFIG_DIR.is_dir():
            open_clip.add_model_config(CONFIG_DIR)
        _registered = True


def _model_name(arch: str) -> str:
    """open_clip's name of `arch` (`ViT-B/16` -> `ViT-B-16`), the zss configs registered."""
    register_zss_configs()
    name = arch.replace("/", "-")
    if name not in open_clip.list_models():
        raise ZssError(f"unknown OpenCLIP architecture {arch!r} (see open_clip.list_models())")
    return name


OPENAI_MARKERS = ("input_resolution", "context_length", "vocab_size")  # extra entries of OpenAI's state dicts


def _file_keys_and_meta(path: str) -> tuple[set[str], dict[str, str]]:
    """State-dict key names and (safetensors) metadata of a checkpoint file, without loading tensors
    (safetensors) or through a memory map (torch files, weights_only)."""
    if path.endswith(".safetensors"):
        from safetensors import safe_open

        with safe_open(path, framework="pt") as f:
            return set(f.keys()), dict(f.metadata() or {})
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not a plain state dict (e.g. a TorchScript archive): open_clip reports it
        return set(), {}
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    return (set(obj) if isinstance(obj, dict) else set()), {}


def is_openai_weights(pretrained: str) -> bool:
    """True for the `openai` tag, OpenAI's own state dicts (they carry `input_resolution` & co.) and
    safetensors files whose metadata says `weights: openai` (what `zss import pixelclip` writes)."""
    if pretrained == "openai":
        return True
    if not Path(pretrained).is_file():
        return False
    keys, meta = _file_keys_and_meta(pretrained)
    return meta.get("weights") == "openai" or any(m in keys for m in OPENAI_MARKERS)


def check_activation(arch: str, pretrained: str) -> None:
    """OpenAI's CLIP weights were trained with QuickGELU: refuse them for a GELU architecture (the
    model would load without error and compute wrong features)."""
    name = _model_name(arch)
    if not is_openai_weights(pretrained):
        return
    if (open_clip.get_model_config(name) or {}).get("quick_gelu", False):
        return
    right = f"{name}-quickgelu"
    hint = right if right in open_clip.list_models() else "an architecture with quick_gelu: true"
    raise ZssError(f"{pretrained!r} holds OpenAI CLIP weights (QuickGELU) but {arch} uses GELU: "
                   f"load them as {hint}")


def create_openclip(arch: str, pretrained: str | None, device: str | torch.device = "cpu") -> nn.Module:
    """An open_clip CLIP model from an architecture name and a hub tag or local checkpoint path.

    `pretrained=None` takes the architecture's first published tag whose weights fit its activation
    (OpenAI's QuickGELU weights are skipped for a GELU architecture); it is a download, which fails
    offline with a clear message. Architectures without published weights need a checkpoint file.
    """
    name = _model_name(arch)
    tags = open_clip.list_pretrained_tags_by_model(name)
    if pretrained is None:
        if not tags:
            raise ZssError(f"OpenCLIP architecture {arch!r} has no published weights; "
                           f"give a checkpoint file as {arch}:PATH")
        quick = (open_clip.get_model_config(name) or {}).get("quick_gelu", False)
        pretrained = next((t for t in tags if quick or not is_openai_weights(t)), tags[0])
    is_tag = pretrained in tags
    if not is_tag and not Path(pretrained).is_file():
        raise ZssError(f"OpenCLIP checkpoint {pretrained!r} for {arch} is neither a known tag "
                       f"({', '.join(tags) or 'none'}) nor a file")
    check_activation(arch, pretrained)
    offline = None
    try:
        if not is_tag and any(m in _file_keys_and_meta(pretrained)[0] for m in OPENAI_MARKERS):
            model = _load_openai_state_dict(name, pretrained, device)
        else:
            with hub_offline() if is_tag else nullcontext() as offline:
                model, _, _ = open_clip.create_model_and_transforms(name, pretrained=pretrained, device=device)
    except (RuntimeError, OSError, ValueError) as exc:
        if is_tag:
            raise ZssError(fetch_hint(f"openclip:{arch}", offline or str(exc).splitlines()[0][:200])) from exc
        hint = ""
        raise ZssError(f"could not load OpenCLIP {arch} weights {pretrained!r}{hint}: "
                       f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
    return model.eval()


def _load_openai_state_dict(name: str, path: str, device: str | torch.device) -> nn.Module:
    """An OpenAI state dict file: its three non-tensor-weight entries dropped, the rest loaded strictly."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    state = {k: v for k, v in state.items() if k not in OPENAI_MARKERS}
    model = open_clip.create_model(name, pretrained=None)
    model.load_state_dict(state, strict=True)
    return model.to(device)


def save_random_openclip(arch: str, path: str | Path, seed: int = 0) -> Path:
    """Build `arch` with seeded random weights and save them as safetensors (tests, demo).

    The file loads back through `create_openclip(arch, path)`, i.e. the real checkpoint path.
    """
    from zss.formats.weights import save_state_dict

    import logging

    def not_the_pretrained_warning(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No pretrained weights loaded")

    # open_clip logs that warning on the root logger; random weights are the point here. A filter on
    # the root logger sees only records logged to it directly, so nothing else is silenced.
    name = _model_name(arch)
    root = logging.getLogger()
    root.addFilter(not_the_pretrained_warning)
    try:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = open_clip.create_model(name, pretrained=None)
    finally:
        root.removeFilter(not_the_pretrained_warning)
    return save_state_dict(model, path)


def _value_path(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Each token's own value vector through the attention output projection (no token mixing)."""
    attn = block.attn
    y = block.ln_1(x)
    dim = y.shape[-1]
    w, b = attn.in_proj_weight[2 * dim:], attn.in_proj_bias
    v = F.linear(y, w, None if b is None else b[2 * dim:])
    if isinstance(attn, nn.MultiheadAttention):
        v = attn.out_proj(v)
    else:  # open_clip's custom Attention (NormFormer-style options)
        if getattr(attn, "head_scale", None) is not None:
            heads = attn.num_heads
            v = (v.unflatten(-1, (heads, -1)) * attn.head_scale.view(1, 1, heads, 1)).flatten(-2)
        v = attn.out_proj(attn.ln_inner(v))
        v = getattr(block, "ln_attn", nn.Identity())(v)
    return block.ls_1(v)


def _vit_pos_embed(visual: nn.Module, h: int, w: int) -> torch.Tensor:
    """Positional embeddings resized (bicubic) to an h×w grid, so any input size works."""
    pos = visual.positional_embedding
    gh, gw = visual.grid_size
    if (h, w) == (gh, gw):
        return pos
    grid = pos[1:].reshape(1, gh, gw, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
    return torch.cat([pos[:1], grid.permute(0, 2, 3, 1).reshape(h * w, -1)], dim=0)


def _vit_dense(visual: nn.Module, x: torch.Tensor, with_global: bool
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
    x = visual.conv1(x)
    b, _, h, w = x.shape
    x = x.flatten(2).transpose(1, 2)
    cls = visual.class_embedding.view(1, 1, -1).expand(b, -1, -1).to(x.dtype)
    x = torch.cat([cls, x], dim=1) + _vit_pos_embed(visual, h, w).to(x.dtype)
    x = visual.ln_pre(x)
    if not getattr(visual.transformer, "batch_first", True):
        raise ZssError("dense OpenCLIP: sequence-first transformers are not supported")
    blocks = visual.transformer.resblocks
    for blk in blocks[:-1]:
        x = blk(x)
    last = blocks[-1]
    v = _value_path(last, x) + x[:, :1]
    v = v + last.ls_2(last.mlp(last.ln_2(v)))
    tokens = visual.ln_post(v[:, 1:])
    glob = None
    if with_global:
        pooled, _ = visual._pool(last(x))
        glob = pooled @ visual.proj if visual.proj is not None else pooled
    if visual.proj is not None:
        tokens = tokens @ visual.proj
    return tokens.reshape(b, h, w, -1), glob


def _timm_dense(visual: nn.Module, x: torch.Tensor, with_global: bool
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
    feats = visual.trunk.forward_features(x)
    glob = visual.head(visual.trunk.forward_head(feats)) if with_global else None
    head = visual.trunk.head
    y = head.norm(feats) if hasattr(head, "norm") else feats
    y = y.permute(0, 2, 3, 1)
    if hasattr(head, "pre_logits"):
        y = head.pre_logits(y)
    return visual.head(y), glob


def visual_dense(visual: nn.Module, x: torch.Tensor, with_global: bool = True
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """An open_clip image tower on *normalised* images -> (patch [B,h,w,C], global [B,C] | None).

    A free function so a copy of the tower (PixelCLIP's EMA teacher) runs the same dense path.
    """
    if isinstance(visual, open_clip.transformer.VisionTransformer):
        return _vit_dense(visual, x, with_global)
    return _timm_dense(visual, x, with_global)


class DenseCLIP(nn.Module):
    """One open_clip model seen as a dense image encoder and a text encoder.

    `dense(images)` takes images in [0, 1] (normalisation is inside) and returns unnormalised
    `(patch [B,h,w,C], global [B,C])` in the joint embedding space; `encode_text` returns
    L2-normalised text embeddings. The wrapped model is kept whole so its state dict is the
    open_clip one (export and reload use the same keys).
    """

    def __init__(self, model: nn.Module, arch: str, checkpoint: str | None = None):
        super().__init__()
        self.model = model
        self.arch = arch
        self.checkpoint = checkpoint
        visual = model.visual
        pp = getattr(visual, "preprocess_cfg", {"mean": open_clip.OPENAI_DATASET_MEAN,
                                                 "std": open_clip.OPENAI_DATASET_STD})
        self.register_buffer("mean", torch.tensor(pp["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(pp["std"]).view(1, 3, 1, 1), persistent=False)
        if isinstance(visual, open_clip.transformer.VisionTransformer):
            self.kind = "vit"
            self.patch_size = int(visual.patch_size[0])
            self.img_size = int(visual.image_size[0])
        elif isinstance(visual, open_clip.timm_model.TimmModel):
            if "pool" in dict(visual.head.named_children()):
                raise ZssError(f"{arch}: attention-pooled timm towers have no dense head")
            self.kind = "timm"
            self.patch_size = int(visual.trunk.feature_info[-1]["reduction"])
            self.img_size = int(visual.image_size[0])
        else:
            raise ZssError(f"{arch}: dense features need a ViT or timm (ConvNeXt) image tower, "
                           f"not {type(visual).__name__}")
        self.embed_dim = int(model.text_projection.shape[-1] if isinstance(model.text_projection, torch.Tensor)
                             else model.text_projection.out_features)
        self.tokenizer = open_clip.get_tokenizer(arch.replace("/", "-"))

    # ---------------------------------------------------------------- image side
    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] images -> the tower's input normalisation."""
        return (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)

    def dense(self, images: torch.Tensor, with_global: bool = True
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Images [B,3,H,W] in [0,1] -> (patch [B,H/p,W/p,C], global [B,C] or None), unnormalised."""
        return visual_dense(self.model.visual, self.normalize(images), with_global)

    # ---------------------------------------------------------------- text side
    @property
    def context_length(self) -> int:
        return int(self.model.positional_embedding.shape[0])

    @property
    def token_embedding(self) -> nn.Embedding:
        return self.model.token_embedding

    @property
    def causal_text(self) -> bool:
        """Whether the text tower attends causally (then tokens after end-of-text never matter)."""
        return self.model.attn_mask is not None

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(texts).to(self.model.positional_embedding.device)

    def encode_token_embeddings(self, embeds: torch.Tensor, eot_index: torch.Tensor) -> torch.Tensor:
        """Run the text transformer on given token embeddings [N,L,W]; pool at `eot_index`, project.

        This is how learned prompts (whose context vectors are not vocabulary tokens) reach the
        frozen text tower; `encode_text` is the special case of real tokens. Unnormalised output.
        `L` may be shorter than the context length: with CLIP's causal mask, sequences cut right
        after the end-of-text token give exactly the same result, several times cheaper.
        """
        m = self.model
        n = embeds.shape[1]
        x = embeds + m.positional_embedding[:n].to(embeds.dtype)
        mask = m.attn_mask[:n, :n] if m.attn_mask is not None else None
        x = m.transformer(x, attn_mask=mask)
        x = m.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), eot_index]
        if isinstance(m.text_projection, nn.Linear):
            return m.text_projection(x)
        return x @ m.text_projection

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """Strings -> L2-normalised embeddings [N,C] (the model's own tokenizer and pooling)."""
        return F.normalize(self.encode_text_raw(texts), dim=-1)

    def encode_text_raw(self, texts: list[str]) -> torch.Tensor:
        """Strings -> the projected end-of-text embeddings [N,C], not normalised."""
        return self.model.encode_text(self.tokenize(texts))

    def spec(self) -> dict[str, Any]:
        """What manifests and model directories record about this encoder."""
        return {"name": ModelSpec("openclip", self.arch).name, "arch": self.arch,
                "checkpoint": self.checkpoint, "kind": self.kind, "patch_size": self.patch_size,
                "img_size": self.img_size, "embed_dim": self.embed_dim}


def load_clip_dense(spec: ModelSpec | str, checkpoint: str | None = None,
                    device: str | torch.device = "cpu") -> DenseCLIP:
    """`DenseCLIP` (eval mode, nothing frozen) for an OpenCLIP spec or architecture name, with a hub
    tag or local file (`checkpoint` wins over the spec's own; see zss.formats.specs)."""
    clip = to_model_spec(spec, checkpoint, "openclip")
    return DenseCLIP(create_openclip(clip.arch, clip.checkpoint, device), clip.arch,
                     clip.checkpoint).to(device).eval()


class OpenCLIPBackbone(nn.Module):
    """Frozen dense OpenCLIP with the `Backbone` interface of docs/contracts.md.

    `forward(images [B,3,H,W] in [0,1]) -> (patch [B,Hp,Wp,C], global [B,C])`, both in CLIP's
    joint space (so cached features can be compared with CLIP text embeddings directly — what
    PixelCLIP's cached mode and the concept bank rely on). `global` is the projected CLS token.
    """

    def __init__(self, clip: DenseCLIP, img_size: int | None = None):
        super().__init__()
        self.clip = clip.eval()
        for p in self.clip.parameters():
            p.requires_grad_(False)
        self.patch_size = clip.patch_size
        self.embed_dim = clip.embed_dim
        self.img_size = int(img_size or clip.img_size)
        self.mean = tuple(float(v) for v in clip.mean.flatten())
        self.std = tuple(float(v) for v in clip.std.flatten())
        self.spec = {**clip.spec(), "img_size": self.img_size, "global": "cls", "space": "joint"}

    def train(self, mode: bool = True) -> "OpenCLIPBackbone":
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        patch, glob = self.clip.dense(images, with_global=True)
        return patch, glob


def load_openclip_backbone(spec: ModelSpec, img_size: int | None = None,
                           device: str | torch.device = "cpu") -> OpenCLIPBackbone:
    """The `openclip:ARCH[:CKPT]` feature backbone for ingest (recorded as `open_clip/ARCH`)."""
    return OpenCLIPBackbone(load_clip_dense(spec, device=device), img_size)


class OpenCLIPSegmenter(nn.Module):
    """Training-free MaskCLIP-style segmenter: dense image tokens vs class-name text embeddings.

    Implements the `Segmenter` interface (docs/contracts.md): `encode_text(list[str]) -> [N,C]`
    and `encode_dense(images in [0,1]) -> [B,C,h,w]`, both L2-normalised.
    """

    def __init__(self, clip: DenseCLIP, default_size: int | None = None, adapter: nn.Module | None = None):
        super().__init__()
        self.clip = clip.eval()
        # a trained feature adapter on the dense tokens (PixelCLIP's cached mode), else none
        self.adapter = adapter.eval() if adapter is not None else None
        self.patch_size = clip.patch_size
        self.default_size = int(default_size or clip.img_size)

    @classmethod
    def from_spec(cls, spec: ModelSpec | str, device: str | torch.device = "cpu") -> "OpenCLIPSegmenter":
        """A parsed OpenCLIP spec, or `openclip:ARCH[:CKPT]` (or `open_clip/…`, or bare `ARCH[:CKPT]`)."""
        return cls(load_clip_dense(spec, device=device))

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        return self.clip.encode_text(list(texts))

    @torch.no_grad()
    def encode_text_raw(self, texts: list[str]) -> torch.Tensor:
        return self.clip.encode_text_raw(list(texts))

    @torch.no_grad()
    def encode_dense(self, images: torch.Tensor) -> torch.Tensor:
        patch, _ = self.clip.dense(images, with_global=False)
        if self.adapter is not None:
            patch = self.adapter(patch)
        return F.normalize(patch, dim=-1).permute(0, 3, 1, 2).contiguous()

