"""The joint recipe: SimZSS's text tower on cached frozen features, trained from captions AND the
class-agnostic masks of the same images in one run.

It is SimZSS (`zss.recipes.simzss.recipe.SimZSSRecipe`: same model, caption sampling, views, global
InfoNCE and concept-local loss, export) plus mask-level terms on the masks each sample carries
(`KEY.masks.json`), pooled to region features on the cached patch grid:
- region: SimZSS's concept-local loss with each caption concept attending over its image's mask
  regions instead of its patches (`local_concept_loss` on zero-padded regions: exact, see
  `zss.recipes.joint.losses.pad_regions`);
- mil: region–word multiple-instance loss across the batch's images;
- consistency: patches of one mask agree in their concept distribution;
- cluster: Sinkhorn-balanced clustering of regions onto the batch's concepts (off by default).
Every term is weighted by a config entry (0 turns it off: the ablation). Samples without masks (or
a sampled caption without concepts) still train: terms without data add 0, and metrics.csv counts
the data each term saw (`n_occ`, `n_regions`, `n_mil`, `n_consistency`, `n_cluster`).
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zss.errors import ZssError
from zss.formats.shards import read_parquet
from zss.formats.storage import join
from zss.recipes.joint.losses import mask_consistency, pad_regions, pool_regions, region_clustering, region_word_mil
from zss.recipes.joint.regions import grid_masks
from zss.recipes.simzss.losses import concept_bank, local_concept_loss, occurrence_embeddings
from zss.recipes.simzss.recipe import DDP_GATHER, SimZSSConfig, SimZSSRecipe
from zss.utils.config import setting

MASK_FLAG = "--masks sam|sa1b|dino-kmeans|feature-kmeans"


@dataclass
class JointConfig(SimZSSConfig):
    """SimZSS settings plus the mask terms' weights and shapes (zss/manifests/train/joint-*.yaml)."""

    region_weight: float = setting(1.0, ge=0)         # concept-to-region attention loss
    region_temperature: float = setting(0.1, gt=0)
    mil_weight: float = setting(0.5, ge=0)            # region–word multiple-instance loss
    mil_temperature: float = setting(0.07, gt=0)
    consistency_weight: float = setting(1.0, ge=0)    # patches of one mask agree
    consistency_scale: float = setting(10.0, gt=0)
    cluster_weight: float = setting(0.0, ge=0)        # Sinkhorn clustering of regions onto concepts
    cluster_scale: float = setting(10.0, gt=0)
    max_regions: int = setting(16, ge=0)              # per image, largest first; 0 = all
    min_region_frac: float = setting(0.01, ge=0, le=1)  # drop masks smaller than this part of the grid


def _check_data(shards: Path, manifest: dict[str, Any]) -> None:
    """Shards must hold both halves: captions (with concepts) and masks, else one line naming the
    ingest option that adds the missing one."""
    mode = ((manifest.get("models") or {}).get("masks") or {}).get("mode", "none")
    if mode == "none":
        raise ZssError(f"{shards} has no masks: the joint recipe needs them; ingest with {MASK_FLAG}")
    n_caps = n_masks = 0
    for entry in manifest.get("shards") or []:
        table = read_parquet(join(shards, entry["parquet"]))
        n_caps += int(sum(v or 0 for v in table.column("n_captions").to_pylist()))
        n_masks += int(sum(v or 0 for v in table.column("n_masks").to_pylist()))
    if n_caps == 0:
        raise ZssError(f"{shards} has no captions: the joint recipe needs them; ingest from a captioned "
                       f"source (coco, sa1b with sa_N.txt sidecars, webdataset .txt) with --concepts CLASSLIST")
    if n_masks == 0:
        raise ZssError(f"{shards} holds no mask in any sample: ingest with {MASK_FLAG}")


class JointRecipe(SimZSSRecipe):
    name = "joint"
    config_cls = JointConfig
    members = SimZSSRecipe.members + ("masks.json",)

    def __init__(self, cfg: JointConfig, shards: Path, train_cfg: Any) -> None:
        super().__init__(cfg, shards, train_cfg)
        _check_data(self.shards, self.manifest)

    # -- data -----------------------------------------------------------------------------------
    def decode_sample(self, raw: dict[str, Any], rng: random.Random) -> dict[str, Any] | None:
        sample = super().decode_sample(raw, rng)  # the same RNG draws as SimZSS, then the masks
        if sample is None:
            return None
        grid = tuple(sample["patch"].shape[:2])
        sample["masks"] = grid_masks(raw, json.loads(raw["json"]), grid, sample["view"],
                                     self.cfg.max_regions, self.cfg.min_region_frac)
        return sample

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = super().collate(samples)
        grids = [s["masks"] for s in samples]
        batch["mask_grid"] = torch.cat(grids) if grids else torch.zeros(0)
        batch["mask_owner"] = torch.cat([torch.full((len(g),), b, dtype=torch.long) for b, g in enumerate(grids)])
        return batch

    # -- loss -----------------------------------------------------------------------------------
    def loss(self, model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        total, metrics = super().loss(model, batch)          # global InfoNCE + λ · concept-local
        tokens = self._tokens
        cfg, gather = self.cfg, DDP_GATHER
        grid = batch["patch"].float()                        # [B,h,w,D]
        b = grid.shape[0]
        patches = grid.flatten(1, 2)
        owner, masks = batch["mask_owner"], batch["mask_grid"].float()
        regions = pool_regions(patches, masks.flatten(1), owner)
        occ_b, occ_s, occ_e, occ_ids = batch["occ_batch"], batch["occ_start"], batch["occ_end"], batch["occ_ids"]
        has_region = torch.zeros(b, dtype=torch.bool, device=grid.device)
        has_region[owner] = True
        keep = has_region[occ_b]
        terms: dict[str, tuple[torch.Tensor, int]] = {}
        if cfg.region_weight > 0:
            lr = local_concept_loss(tokens, pad_regions(regions, owner, b), occ_b[keep], occ_s[keep], occ_e[keep],
                                    occ_ids[keep], cfg.region_temperature, cfg.local_scale, cfg.local_target, gather)
            terms["region"] = (lr, int(gather.rows(keep.sum().reshape(1)).sum()))
        occ = occurrence_embeddings(tokens, occ_b, occ_s, occ_e)
        ids_all = gather.rows(occ_ids)
        bank, _, index_all = (concept_bank(gather.rows(occ), ids_all) if ids_all.numel()
                              else (occ.new_zeros(0, occ.shape[1]), None, None))
        if cfg.mil_weight > 0:
            img0 = gather.offset(b, grid.device)
            start = gather.offset(len(occ_ids), grid.device)
            queries = bank[index_all[start:start + len(occ_ids)]] if ids_all.numel() else occ
            terms["mil"] = region_word_mil(queries, occ_b + img0, regions, owner + img0, b,
                                           cfg.mil_temperature, gather)
        if cfg.consistency_weight > 0:
            terms["consistency"] = mask_consistency(patches, bank, masks.flatten(1), owner,
                                                    cfg.consistency_scale, gather)
        if cfg.cluster_weight > 0:
            terms["cluster"] = region_clustering(regions, bank, cfg.cluster_scale, gather=gather)
        for name, (value, count) in terms.items():
            total = total + getattr(cfg, f"{name}_weight") * value
            metrics[f"loss_{name}"] = value.detach()
            metrics[f"n_{name}"] = float(count)
        metrics["n_occ"] = float(ids_all.numel())
        metrics["n_masks"] = float(len(owner))
        metrics["images_without_masks"] = float(b - int(has_region.sum()))
        return total, metrics

    def _local(self, tokens: torch.Tensor, patches: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        self._tokens = tokens  # the mask terms reuse this forward's token embeddings
        if self.cfg.local_weight == 0:
            return tokens.sum() * 0.0
        return super()._local(tokens, patches, batch)

    # -- export ---------------------------------------------------------------------------------
    def export(self, model: nn.Module, out_dir: Path) -> None:
        """SimZSS's model directory (text tower + the frozen backbone's record), kind "joint"."""
        super().export(model, out_dir)
        path = out_dir / "config.json"
        config = json.loads(path.read_text())
        terms = {k: v for k, v in asdict(self.cfg).items() if k not in asdict(SimZSSConfig())}
        config.update(kind="joint", joint=terms)
        path.write_text(json.dumps(config, indent=2))
