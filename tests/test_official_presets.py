"""Every official preset (the authors' settings, docs/fidelity.md) states every config field, so the
whole recipe reads from one file and a changed code default cannot leak into it."""

from __future__ import annotations

import pytest
import yaml

from zss.ingest.config import PRESET_DIR, build_config
from zss.paths import MANIFESTS
from zss.recipes import get_recipe
from zss.trainer.config import TrainConfig
from zss.utils.config import from_dict, load_config, to_dict

INGEST = sorted(p.stem for p in PRESET_DIR.glob("*official*.yaml"))
TRAIN = sorted(p.stem for p in (MANIFESTS / "train").glob("*official*.yaml"))


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_there_are_official_presets_for_both_recipes():
    assert {"simzss-official", "sa1b-official-vitb16", "sa1b-official-convnext-b"} <= set(INGEST)
    assert {"simzss-official", "pixelclip-official-vitb16", "pixelclip-official-convnext-b"} <= set(TRAIN)


@pytest.mark.parametrize("name", INGEST)
def test_ingest_official_preset_states_every_field(name):
    resolved = _flat(to_dict(build_config(name)))
    written = _flat(yaml.safe_load((PRESET_DIR / f"{name}.yaml").read_text()))
    assert set(resolved) - set(written) == set(), "fields left to code defaults"
    assert set(written) - set(resolved) == set(), "unknown fields"


@pytest.mark.parametrize("name", TRAIN)
def test_train_official_preset_states_every_field(name):
    path = MANIFESTS / "train" / f"{name}.yaml"
    raw = yaml.safe_load(path.read_text())
    cfg = load_config(TrainConfig, path)
    recipe = get_recipe(raw["recipe_name"] if "recipe_name" in raw else name.split("-")[0])
    rcfg = from_dict(recipe.config_cls, cfg.recipe)
    resolved = _flat({**to_dict(cfg), "recipe": to_dict(rcfg)})
    written = _flat(raw)
    assert set(resolved) - set(written) == set(), "fields left to code defaults"
