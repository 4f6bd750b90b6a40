"""`IngestConfig`: one dataclass for a whole ingest run, from a YAML preset + CLI options + `--set`.

The stage configs live beside their stages (decode, features, masks, concepts); this module only
assembles them and maps the CLI's short options onto their fields, so a preset file and the
command line describe a run in the same terms (`--set features.img_size=448` == `--img-size 448`).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zss.errors import ZssError
from zss.formats.specs import parse_model_spec
from zss.paths import MANIFESTS
from zss.ingest.stages.concepts import ConceptConfig
from zss.ingest.stages.decode import DecodeConfig
from zss.ingest.stages.features import FeatureConfig
from zss.ingest.stages.masks import MaskConfig
from zss.utils.config import load_config, setting, to_dict, validate

MODES = ("incremental", "overwrite")
PRESET_DIR = MANIFESTS / "presets"


@dataclass
class IngestConfig:
    """A whole ingest run. `batch_size` is the model batch; batches never straddle shards, so a
    resumed run computes each sample in exactly the batch an uninterrupted run would."""

    decode: DecodeConfig = field(default_factory=DecodeConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    masks: MaskConfig = field(default_factory=MaskConfig)
    concepts: ConceptConfig = field(default_factory=ConceptConfig)
    shard_size: int = setting(256, ge=1, le=10_000)
    batch_size: int = setting(16, ge=1)
    workers: int = setting(2, ge=1)  # model actors (local Ray: also the CPU count given to ray.init)
    threads_per_worker: int = setting(0, ge=0)  # torch threads per model actor (0 = CPUs / workers, at least 1)
    mode: str = setting("incremental", choices=MODES)
    address: str | None = None
    store_images: bool = True
    limit: int | None = setting(None, ge=1)


def resolve_preset(preset: str | Path | None) -> Path | None:
    """A preset path, or a bare name looked up in zss/manifests/presets (`coco-dinov2-b14`)."""
    if preset is None:
        return None
    p = Path(preset)
    if p.is_file():
        return p
    named = PRESET_DIR / f"{preset}.yaml"
    if named.is_file():
        return named
    raise ZssError(f"preset not found: {preset} (give a YAML path or one of "
                   f"{', '.join(sorted(q.stem for q in PRESET_DIR.glob('*.yaml')))})")


def patch_size_of(name: str) -> int | None:
    """The patch size a model name states (`vit_small_patch14_dinov2` -> 14, `ViT-B-16` -> 16)."""
    m = re.search(r"patch(\d+)", name) or re.search(r"ViT-[A-Za-z]+-(\d+)", name)
    return int(m.group(1)) if m else None


def cli_base(features: str | None = None, img_size: int | None = None, masks: str | None = None,
             sam_checkpoint: str | None = None, concepts: str | None = None,
             shard_size: int | None = None, workers: int | None = None, address: str | None = None,
             mode: str | None = None, limit: int | None = None,
             store_images: bool | None = None, views: int | None = None) -> dict[str, Any]:
    """The CLI's options as a nested dict of config keys (None = not given, preset decides)."""
    base: dict[str, Any] = {"shard_size": shard_size, "workers": workers, "address": address,
                            "mode": mode, "limit": limit, "store_images": store_images}
    decode: dict[str, Any] = {}
    feats: dict[str, Any] = {}
    if features is not None:  # recorded as the manifest names it (open_clip/ARCH), weights apart
        spec = parse_model_spec(features)
        feats["name"], feats["checkpoint"] = spec.name, spec.checkpoint
    if img_size is not None:
        feats["img_size"] = img_size
        decode["img_size"] = img_size
    if views is not None:
        decode["views"] = views
    if decode:
        base["decode"] = decode
    if feats:
        base["features"] = feats
    mask_keys: dict[str, Any] = {}
    if masks is not None:
        mask_keys["mode"] = masks
    if sam_checkpoint is not None:
        mask_keys["sam_checkpoint"] = sam_checkpoint
    if mask_keys:
        base["masks"] = mask_keys
    if concepts is not None:
        base["concepts"] = {"bank": concepts}
    return base


def build_config(preset: str | Path | None = None, overrides: list[str] | None = None,
                 **cli: Any) -> IngestConfig:
    """Preset < CLI options < `--set key=value`; then the derived fields are filled in."""
    cfg = load_config(IngestConfig, resolve_preset(preset), overrides or [], base=cli_base(**cli))
    return finalize(cfg)


def finalize(cfg: IngestConfig) -> IngestConfig:
    """Check every field against its declared range (again: callers may build `cfg` by hand) and
    tie the stage configs together (one img_size, the backbone's patch)."""
    validate(cfg)
    if cfg.decode.view_scale_min > cfg.decode.view_scale_max:
        raise ZssError(f"config decode.view_scale_min ({cfg.decode.view_scale_min}) is above "
                       f"decode.view_scale_max ({cfg.decode.view_scale_max})")
    if cfg.decode.center_square > 0 and cfg.masks.mode == "sa1b":
        raise ZssError("decode.center_square cuts the image; it cannot carry SA-1B masks "
                       "(use --masks none, or decode.center_square=0)")
    cfg.features.img_size = cfg.decode.img_size
    cfg.decode.patch_size = patch_size_of(cfg.features.name) or cfg.decode.patch_size
    cfg.decode.store_jpg = cfg.store_images
    return cfg


# Run-time knobs: they change how fast a run goes, never what it writes.
RUNTIME_KEYS = ("workers", "threads_per_worker", "mode", "address", "limit")
VIEW_KEYS = ("views", "view_scale_min", "view_scale_max", "view_seed")


def views_record(cfg: IngestConfig) -> dict[str, Any]:
    """The manifest's `views`: how many views each sample holds and how the crops were drawn."""
    from zss.ingest.stages.decode import VIEW_RATIO

    d = cfg.decode
    if d.center_square > 0:
        return {"n": d.views, "view0": "the centred square (side = short side), resized",
                "crop": f"random-resized crop drawn on a {d.center_square}x{d.center_square} grid over the "
                        "centred square, resized bicubic to the input size",
                "scale": [d.view_scale_min, d.view_scale_max], "ratio": [VIEW_RATIO[0], VIEW_RATIO[1]],
                "seed": d.view_seed, "box": "[top, left, height, width] in original pixels",
                "rng": "(seed, row index, view index)"}
    return {"n": d.views, "view0": "whole image (the square/short-side resize)",
            "crop": "random-resized crop of the original, resized bicubic to the input size",
            "scale": [d.view_scale_min, d.view_scale_max], "ratio": [VIEW_RATIO[0], VIEW_RATIO[1]],
            "seed": d.view_seed, "box": "[top, left, height, width] in original pixels",
            "rng": "(seed, row index, view index)"}


def fingerprint(cfg: IngestConfig, source: dict[str, Any]) -> str:
    """What must match for incremental mode to add shards to an existing folder."""
    data = {k: v for k, v in to_dict(cfg).items() if k not in RUNTIME_KEYS}
    if data["decode"].get("views", 1) == 1:  # no crops: their settings change nothing written, and
        for key in VIEW_KEYS:                # folders made before views existed stay resumable
            data["decode"].pop(key, None)
    if not data["decode"].get("center_square"):  # off: folders made before the setting stay resumable
        data["decode"].pop("center_square", None)
    data["source"] = {k: v for k, v in source.items() if k != "n"}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
