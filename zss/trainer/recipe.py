"""The Recipe interface: everything recipe-specific the shared training loop needs.

`zss.trainer.loop.train` owns the optimiser, schedule, AMP, accumulation, DDP, checkpoints, metrics
and progress; a recipe only says what the model is, how one shard sample becomes tensors, what the
loss of a batch is, and how the final model directory is written. The loop knows no recipe by name:
`zss.recipes.RECIPES` maps each CLI name (`zss train NAME`) to its `RecipeEntry`.

Call order (every process under torchrun):
  recipe = Cls(cfg, shards, train_cfg)            # cfg: an instance of Cls.config_cls
  model = recipe.build_model()                    # CPU; the loop moves it and wraps it in DDP
  groups = recipe.param_groups(model, wd)         # AdamW groups
  per sample (in data workers): recipe.decode_sample(raw, rng) -> dict | None
  per batch  (in data workers): recipe.collate(samples) -> dict of tensors
  per micro-step: loss, metrics = recipe.loss(model_or_ddp, batch_on_device)
  per optimizer step: recipe.after_step(model, step)   # e.g. EMA teacher update
  at the end (rank 0): recipe.export(model, run_dir / "model")
"""

from __future__ import annotations

import abc
import random
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from zss.errors import ZssError
from zss.formats import storage
from zss.formats.shards import read_manifest

def default_no_decay(name: str, param: torch.Tensor) -> bool:
    """Gains, biases and logit scales get no weight decay (open_clip's rule)."""
    return param.ndim < 2 or name.endswith(".bias") or "logit_scale" in name


class Recipe(abc.ABC):
    """One training recipe on cached shards."""

    name: ClassVar[str] = ""
    config_cls: ClassVar[type]
    # Tar members (webdataset suffixes) decode_sample reads; others are dropped while reading.
    members: ClassVar[tuple[str, ...]] = ("json", "patch.npy", "global.npy")
    # Loop settings this recipe wants unless the YAML or --set says otherwise (PixelCLIP clips at 0.01).
    loop_defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, cfg: Any, shards: Path | str, train_cfg: Any) -> None:
        self.cfg = cfg
        self.shards: Path | str = shards if storage.is_url(shards) else Path(shards)  # a URL stays a string
        self.train_cfg = train_cfg
        self.manifest = read_manifest(self.shards)
        self._downloads: tempfile.TemporaryDirectory | None = None

    @property
    def shards_name(self) -> str:
        """Where the shards are, as a model directory records it: the URL, or the absolute path."""
        return self.shards if isinstance(self.shards, str) else str(self.shards.resolve())

    def concept_bank_file(self) -> Path | None:
        """The shards' concepts.json (named in the manifest), or None when the folder has none; from
        object storage it is read once into a local temporary file (removed with the recipe)."""
        path = storage.join(self.shards, self.manifest.get("concept_bank", {}).get("file", "concepts.json"))
        if not storage.exists(path):
            return None
        if isinstance(path, Path):
            return path
        if self._downloads is None:
            self._downloads = tempfile.TemporaryDirectory(prefix="zss-shards-")
        local = Path(self._downloads.name) / path.rsplit("/", 1)[-1]
        if not local.is_file():
            local.write_bytes(storage.read_bytes(path))
        return local

    @abc.abstractmethod
    def build_model(self) -> nn.Module:
        """The module holding every parameter to train (frozen parts may live in it too).

        Its forward must carry all trainable computation of `loss` so DDP's gradient hooks fire.
        Build it deterministically from torch's global RNG: the loop seeds it before calling.
        """

    def param_groups(self, model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
        """AdamW groups: decay on weight matrices/embeddings, none on gains, biases, logit scales.

        A group may carry `lr_scale` (default 1.0): its lr is `lr_scale ×` the scheduled lr."""
        decay, no_decay = [], []
        for name, p in model.named_parameters():
            if p.requires_grad:
                (no_decay if default_no_decay(name, p) else decay).append(p)
        return [{"params": decay, "weight_decay": weight_decay},
                {"params": no_decay, "weight_decay": 0.0}]

    @abc.abstractmethod
    def decode_sample(self, raw: dict[str, bytes], rng: random.Random) -> dict[str, Any] | None:
        """One tar sample (suffix -> bytes, plus `__key__`) to arrays; None drops it.

        `rng` is seeded by (seed, epoch, key): use it for every random choice (e.g. which caption)
        so the stream is reproducible and resumable. Runs inside data-loader workers.
        """

    @abc.abstractmethod
    def collate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        """A list of decoded samples to a batch dict (tensors; float16 features may stay float16 —
        the loop casts floating tensors to float32 on the device)."""

    @abc.abstractmethod
    def loss(self, model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """The scalar loss of one micro-batch and metrics to log (floats or 0-d tensors).

        `model` is the DDP wrapper under torchrun: call it, don't reach into `.module`, for
        trainable computation. Under DDP, metrics are averaged over processes by the loop.
        """

    def after_step(self, model: nn.Module, step: int) -> None:
        """Hook after each optimizer step (`step` = steps done), e.g. an EMA teacher update."""

    @abc.abstractmethod
    def export(self, model: nn.Module, out_dir: Path) -> None:
        """Write the final model directory (model.safetensors + config.json with "kind")."""
