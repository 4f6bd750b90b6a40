"""Named evaluation protocols: one data file per peer (zss/manifests/protocols/NAME.yaml).

A protocol file records, for every benchmark it defines, the class-name file and every inference
setting, with the repository and file each value was read from, plus the peer's published scores.
`resolve(protocol, benchmark)` merges the protocol's `defaults`, the benchmark entry and `--set`
overrides into an `InferenceConfig`; results.json stores the result next to the scores. A protocol whose
input size depends on the model (PixelCLIP: `squash_by_arch: {vit: 320, convnext: 640}`) takes it from the
evaluated model's architecture (`resolve(..., model=...)`), recorded as `squash_from`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from zss.errors import ZssError
from zss.eval.inference import InferenceConfig
from zss.formats.model_dir import read_model_config, resolve_model_dir
from zss.formats.specs import is_openclip_spec, parse_model_spec
from zss.paths import MANIFESTS
from zss.utils.config import apply_overrides, from_dict, to_dict

PROTOCOLS_DIR = MANIFESTS / "protocols"
# The order `--protocol all` runs them in (peers first, zss's own vocabularies last).
PROTOCOL_ORDER = ["sclip", "clearclip", "proxyclip", "naclip", "talk2dino", "pixelclip", "zss"]
USER_DATA = ("synth", "folder")  # benchmarks whose classes come from the data itself
_META_KEYS = ("classes", "source")


@dataclass(frozen=True)
class Resolved:
    """One benchmark under one protocol: the inference config, its class file and where it came from."""

    protocol: str
    benchmark: str
    config: InferenceConfig
    classes: str | None          # class-list name under zss/manifests/classes; None = the data's own
    source: str                  # "repository: file"
    overrides: list[str] = field(default_factory=list)
    squash_from: str | None = None  # "ARCH -> FAMILY" when the squash size came from the model

    def record(self) -> dict[str, Any]:
        out = {"protocol": self.protocol, "classes": self.classes, "source": self.source,
               "overrides": list(self.overrides), "inference": to_dict(self.config)}
        if self.squash_from:
            out["squash_from"] = self.squash_from
        return out


@lru_cache(maxsize=None)
def _load(name: str) -> dict[str, Any]:
    path = PROTOCOLS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ZssError(f"unknown protocol {name!r}; choose from {', '.join(protocol_names())} or 'all'")
    data = yaml.safe_load(path.read_text()) or {}
    if data.get("name") != name or not isinstance(data.get("benchmarks"), dict):
        raise ZssError(f"protocol file {path} must have `name: {name}` and a `benchmarks` mapping")
    return data


def protocol_names() -> list[str]:
    found = sorted(p.stem for p in PROTOCOLS_DIR.glob("*.yaml"))
    return [n for n in PROTOCOL_ORDER if n in found] + [n for n in found if n not in PROTOCOL_ORDER]


def protocol_info(name: str) -> dict[str, Any]:
    """Name, title, repository, files and backbone of a protocol (what results.json records)."""
    data = _load(name)
    return {k: data.get(k) for k in ("name", "title", "repository", "files", "backbone")}


def benchmarks_of(name: str) -> list[str]:
    return list(_load(name)["benchmarks"])


def has_protocol(benchmark: str, protocol: str) -> bool:
    return benchmark in _load(protocol)["benchmarks"]


def default_protocol(benchmark: str) -> str:
    """`zss` for the user's own data (its own class names), `sclip` for the standard benchmarks."""
    return "zss" if benchmark in USER_DATA else "sclip"


def arch_family(arch: str | None) -> str | None:
    """'convnext' or 'vit' from an architecture name (substring, so `zss-tiny-convnext` counts), else None."""
    low = (arch or "").lower()
    return "convnext" if "convnext" in low else "vit" if "vit" in low else None


def _squash_by_arch(protocol: str, table: dict[str, int], model: str | None) -> tuple[int, str]:
    arch = model_arch(model) if model else None
    family = arch_family(arch)
    if family not in table:
        sizes = ", ".join(f"{k} {v}" for k, v in table.items())
        raise ZssError(f"protocol {protocol} sizes the image by the model's architecture ({sizes}); cannot "
                       f"tell this model's ({arch or 'unknown'}): pass --set squash=N")
    return int(table[family]), f"{arch} -> {family}"


def resolve(protocol: str, benchmark: str, overrides: list[str] | None = None,
            model: str | None = None) -> Resolved:
    """The protocol's defaults, then its benchmark entry, then `key=value` overrides; `model` gives the
    architecture for a protocol with `squash_by_arch`."""
    data = _load(protocol)
    entries = data["benchmarks"]
    if benchmark not in entries:
        raise ZssError(f"protocol {protocol} does not define benchmark {benchmark!r} "
                       f"(it has: {', '.join(entries)})")
    entry = dict(entries[benchmark] or {})
    meta = {k: entry.pop(k, None) for k in _META_KEYS}
    settings = {**(data.get("defaults") or {}), **entry}
    overrides = list(overrides or [])
    by_arch, squash_from = settings.pop("squash_by_arch", None), None
    if by_arch and not any(o.split("=", 1)[0].strip() == "squash" for o in overrides):
        settings["squash"], squash_from = _squash_by_arch(protocol, by_arch, model)
    cfg = from_dict(InferenceConfig, apply_overrides(settings, overrides))
    cfg.validate()
    source = f"{data.get('repository')}: {meta['source']}" if meta["source"] else str(data.get("repository"))
    return Resolved(protocol, benchmark, cfg, meta["classes"], source, overrides, squash_from)


def published_rows(protocol: str) -> list[dict[str, Any]]:
    """The peer's published scores recorded in the protocol file (method, backbone, source, mIoU)."""
    return list(_load(protocol).get("published") or [])


_TIMM_VIT = re.compile(r"vit_(small|base|large|huge|giant)_patch(\d+)")


def backbone_key(text: str) -> str:
    """'ViT-B/16', 'ViT-B-16', 'vit_b_16', 'ViT-B-16-quickgelu', timm's 'vit_base_patch16_224'
    -> 'vitb16' (to match a model with a published row)."""
    text = text.lower().replace("quickgelu", "")
    m = _TIMM_VIT.search(text)
    if m:
        text = f"vit{m.group(1)[0]}{m.group(2)}"
    return re.sub(r"[^a-z0-9]", "", text)


def model_arch(model: str) -> str | None:
    """The backbone architecture of an eval model: `openclip:ARCH[:CKPT]`, or a zss model directory
    (PixelCLIP: its CLIP arch; SimZSS: its frozen vision backbone); None when it cannot be told."""
    if is_openclip_spec(model):
        return parse_model_spec(model, "openclip").arch

    try:
        config = read_model_config(resolve_model_dir(Path(model)))
    except ZssError:
        return None
    clip, backbone = config.get("clip"), config.get("backbone")
    if isinstance(clip, dict) and clip.get("arch"):
        return str(clip["arch"])
    if isinstance(backbone, dict) and backbone.get("name"):
        return str(backbone["name"])
    return None


def matching_published(protocol: str, model: str) -> list[dict[str, Any]]:
    """Published rows of `protocol` whose backbone is the model's (an `openclip:ARCH[:CKPT]` model or a
    model directory whose config names its backbone)."""
    arch = model_arch(model)
    if arch is None:
        return []
    key = backbone_key(arch)
    return [row for row in published_rows(protocol) if backbone_key(str(row.get("backbone", ""))) == key]
