"""The one config path: typing, ranges and precedence of `zss.utils.config`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

import pytest

from zss.errors import ZssError
from zss.ingest.config import IngestConfig, build_config
from zss.recipes.pixelclip.recipe import PixelCLIPConfig
from zss.recipes.simzss.recipe import SimZSSConfig
from zss.trainer.config import TrainConfig
from zss.utils.config import CHECK, from_dict, load_config, setting, validate


@dataclass
class Inner:
    frac: float = setting(0.5, ge=0, le=1)


@dataclass
class Outer:
    steps: Optional[int] = setting(None, ge=1)
    lr: float = setting(1e-3, gt=0)
    kind: str = setting("a", choices=("a", "b"))
    flag: bool = False
    sizes: list[int] = field(default_factory=lambda: [1, 2])
    inner: Inner = field(default_factory=Inner)


def test_optional_fields_are_coerced_and_checked():
    cfg = from_dict(Outer, {"steps": "12", "lr": "1e-4", "flag": "yes", "sizes": "3,4", "inner": {"frac": "1"}})
    assert (cfg.steps, cfg.lr, cfg.flag, cfg.sizes, cfg.inner.frac) == (12, 1e-4, True, [3, 4], 1.0)
    assert from_dict(Outer, {"steps": None}).steps is None
    assert from_dict(Outer, {"steps": 3.0}).steps == 3
    for data, msg in [({"steps": "x"}, "config steps must be an integer >= 1 or null (unset), got 'x'"),
                      ({"steps": 0}, "config steps must be an integer >= 1 or null (unset), got 0"),
                      ({"steps": 2.5}, "got 2.5"),
                      ({"steps": True}, "got True"),
                      ({"lr": "abc"}, "config lr must be a number > 0, got 'abc'"),
                      ({"lr": 0}, "config lr must be a number > 0, got 0"),
                      ({"lr": float("nan")}, "config lr must be"),
                      ({"lr": None}, "config lr must be a number > 0, got null"),
                      ({"kind": "c"}, "config kind must be a or b, got 'c'"),
                      ({"flag": "maybe"}, "config flag must be a boolean"),
                      ({"sizes": "1,x"}, "config sizes must be a list"),
                      ({"inner": {"frac": 1.5}}, "config inner.frac must be a number in [0, 1], got 1.5"),
                      ({"inner": 3}, "config inner must be a mapping")]:
        with pytest.raises(ZssError) as exc:
            from_dict(Outer, data)
        assert msg in str(exc.value), (data, str(exc.value))
        assert "\n" not in str(exc.value)


def test_precedence_defaults_yaml_cli_set(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 5\nlr: 0.1\nkind: b\n")
    cfg = load_config(Outer, path, overrides=["lr=0.3"], base={"steps": 7, "lr": 0.2, "kind": None},
                      defaults={"steps": 1, "flag": True})
    # defaults < YAML < CLI options (None = not given) < --set
    assert (cfg.steps, cfg.lr, cfg.kind, cfg.flag) == (7, 0.3, "b", True)
    path.write_text("steps: null\n")
    assert load_config(Outer, path, defaults={"steps": 4}).steps is None  # YAML null beats a default


def test_every_config_default_fits_its_own_range():
    """A declared range that its own default breaks would reject the default config."""
    from zss.ingest.stages.masks import MaskConfig

    for cls in (TrainConfig, IngestConfig, SimZSSConfig, PixelCLIPConfig, MaskConfig):
        validate(cls())
        ranged = [f.name for f in dataclasses.fields(cls) if CHECK in f.metadata]
        assert ranged, cls


@pytest.mark.parametrize("override, key", [
    ("batch_size=0", "batch_size"), ("workers=0", "workers"), ("limit=abc", "limit"),
    ("mode=sideways", "mode"), ("shard_size=20000", "shard_size"), ("decode.jpeg_quality=0", "decode.jpeg_quality"),
    ("features.batch_size=-2", "features.batch_size"), ("masks.stability_score_thresh=1.5", "masks.stability_score_thresh"),
    ("concepts.max_chars=x", "concepts.max_chars")])
def test_ingest_config_ranges(override, key):
    with pytest.raises(ZssError, match=rf"^config {key} must be .*, got "):
        build_config(None, [override])


def test_ingest_cli_option_checked_like_set():
    with pytest.raises(ZssError, match=r"config limit must be an integer >= 1 or null \(unset\), got 0"):
        build_config(None, [], limit=0)
    assert build_config(None, ["limit=3"], limit=5).limit == 3  # --set wins over the option


@pytest.mark.parametrize("cls, data, key", [
    (TrainConfig, {"warmup": 1.0}, "warmup"), (TrainConfig, {"beta2": 1}, "beta2"),
    (TrainConfig, {"accum_steps": 0}, "accum_steps"), (TrainConfig, {"epochs": 0}, "epochs"),
    (SimZSSConfig, {"local_temperature": 0}, "local_temperature"),
    (SimZSSConfig, {"text": {"layers": 0}}, "text.layers"),
    (PixelCLIPConfig, {"feature_drop": 1.0}, "feature_drop"), (PixelCLIPConfig, {"k": 0}, "k"),
    (PixelCLIPConfig, {"momentum": 2}, "momentum")])
def test_train_and_recipe_ranges(cls, data, key):
    with pytest.raises(ZssError, match=rf"^config {key} must be "):
        from_dict(cls, data)
