"""A trained SimZSS model as a Segmenter: the frozen backbone that made the training features plus
the trained text tower.

The model directory records the backbone exactly as the shard manifest did (name, checkpoint,
sha256, img_size), so inference recomputes the very features the tower was aligned to; a
checkpoint whose hash differs is refused rather than silently producing meaningless maps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zss.errors import ZssError
from zss.formats.model_dir import read_model_config, read_weights, weights_file
from zss.recipes.simzss.text_tower import TextConfig, TextTower
from zss.utils.hashing import sha256_file


def load_text_tower(model_dir: str | Path, device: str | torch.device = "cpu",
                    config: dict[str, Any] | None = None) -> TextTower:
    """The trained text tower of a SimZSS model directory (eval mode)."""
    config = config if config is not None else read_model_config(model_dir, "simzss")
    text = {k: v for k, v in config["text"].items() if k != "init"}
    tower = TextTower(TextConfig(**text), int(config["embed_dim"]))
    weights = Path(model_dir) / "model.safetensors"
    if not weights.is_file():
        raise ZssError(f"{model_dir}: model.safetensors is missing")
    tower.load_state_dict(read_weights(weights), strict=True)
    return tower.to(device).eval()


TEXT_POOLINGS = ("concept", "eot", "eot-name")


class SimZSSSegmenter(nn.Module):
    """Segmenter (docs/contracts.md): dense = the frozen backbone's normalised patch grid, text =
    the tower's normalised end-of-text embedding; both live in the backbone's feature space."""

    def __init__(self, backbone: nn.Module, tower: TextTower, config: dict[str, Any]) -> None:
        super().__init__()
        self.backbone = backbone
        self.tower = tower
        self.config = config
        self.patch_size = int(backbone.patch_size)
        self.default_size = int(config["backbone"].get("img_size") or backbone.img_size)
        # "concept": class names are read like caption concepts (their own tokens, as the local
        # loss trains them); "eot": the templated prompt's end-of-text token, as the global loss
        # trains it; "eot-name": the end-of-text token of the bare class name, no template (what
        # the authors' release does at inference).
        self.pooling = str(config.get("text_pooling", "concept"))
        if self.pooling not in TEXT_POOLINGS:
            raise ZssError(f"text_pooling must be one of {', '.join(TEXT_POOLINGS)}, got {self.pooling!r}")
        # The predictor hands class-name spans inside each prompt when `text_pooling` is "concept";
        # eot-name needs those spans too (to cut the bare name out of the prompt).
        self.text_pooling = "concept" if self.pooling in ("concept", "eot-name") else "eot"

    @classmethod
    def from_dir(cls, model_dir: str | Path, device: str | torch.device = "cpu",
                 config: dict[str, Any] | None = None) -> "SimZSSSegmenter":
        from zss.models.backbone import load_backbone

        config = config if config is not None else read_model_config(model_dir, "simzss")
        rec = config.get("backbone") or {}
        if not rec.get("name"):
            raise ZssError(f"{model_dir}/config.json records no backbone name")
        # files inside the folder are named relative to it; older directories hold absolute paths
        ckpt = weights_file(model_dir, rec.get("checkpoint"))
        den = dict(rec.get("denoiser") or {})
        if den.get("file"):
            den["file"] = weights_file(model_dir, den["file"], "denoiser weights")
        if ckpt and rec.get("sha256") and Path(ckpt).is_file() and sha256_file(ckpt) != rec["sha256"]:
            raise ZssError(f"backbone checkpoint {ckpt} differs from the one the model was trained on "
                           f"(sha256 mismatch)")
        norm = rec.get("normalize") or {}
        name = norm.get("name", "auto")
        if den.get("file") and den.get("sha256") and Path(den["file"]).is_file() \
                and sha256_file(den["file"]) != den["sha256"]:
            raise ZssError(f"denoiser weights {den['file']} differ from the ones the model was trained on "
                           f"(sha256 mismatch)")
        if den and not den.get("file"):
            raise ZssError(f"{model_dir}/config.json records a denoiser without a weights file")
        backbone = load_backbone(rec["name"], ckpt, int(rec.get("img_size") or 224),
                                 normalize="auto" if name == "auto" else "custom",
                                 mean=norm.get("mean"), std=norm.get("std"), denoiser=den.get("file"),
                                 build_size=rec.get("build_size"))  # imported: the release's 518-px table
        return cls(backbone, load_text_tower(model_dir, device, config), config).to(device).eval()

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """[N, C] L2-normalised end-of-text embeddings."""
        return self.tower.encode(list(texts))

    @torch.no_grad()
    def encode_text_raw(self, texts: list[str]) -> torch.Tensor:
        """[N, C] end-of-text embeddings before the L2 normalisation."""
        return self.tower.encode_raw(list(texts))

    @torch.no_grad()
    def encode_text_spans(self, texts: list[str], char_spans: list[tuple[int, int]]) -> torch.Tensor:
        """[N, C] L2-normalised embeddings of the marked class-name spans of `texts` (eot-name: the
        end-of-text embedding of the span's text alone, so every template gives the same vector)."""
        if self.pooling == "eot-name":
            return self.tower.encode([t[s:e] for t, (s, e) in zip(texts, char_spans)])
        return self.tower.encode_spans(list(texts), list(char_spans))

    @torch.no_grad()
    def encode_dense(self, images: torch.Tensor) -> torch.Tensor:
        """images [B,3,H,W] in [0,1] -> [B,C,h,w] L2-normalised frozen patch features."""
        patch, _ = self.backbone(images)
        return F.normalize(patch.float(), dim=-1).permute(0, 3, 1, 2).contiguous()
