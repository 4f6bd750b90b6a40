"""Configs are dataclasses; YAML files and `key=value` overrides fill them."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from zss.errors import ZssError

T = TypeVar("T")


def _coerce(value: Any, kind: Any) -> Any:
    """Turn a YAML/CLI value into the field's declared type (int, float, bool, str, tuples)."""
    origin = typing.get_origin(kind)
    if kind in (int, float, str) and value is not None:
        try:
            return kind(value)
        except (TypeError, ValueError) as exc:
            raise ZssError(f"expected {kind.__name__}, got {value!r}") from exc
    if kind is bool and isinstance(value, str):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ZssError(f"expected a boolean, got {value!r}")
    if origin in (list, tuple) and isinstance(value, str):
        return [v for v in value.split(",") if v]
    return value


def from_dict(cls: type[T], data: dict[str, Any] | None) -> T:
    """Build dataclass `cls` from a (possibly nested) dict, rejecting unknown keys."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ZssError(f"unknown config key(s) for {cls.__name__}: {', '.join(unknown)}")
    kwargs = {}
    for name, value in data.items():
        kind = hints[name]
        if dataclasses.is_dataclass(kind) and isinstance(value, dict):
            kwargs[name] = from_dict(kind, value)
        else:
            kwargs[name] = _coerce(value, kind)
    return cls(**kwargs)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b=value` strings (values parsed as YAML scalars) to a nested dict."""
    for item in overrides:
        if "=" not in item:
            raise ZssError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(raw)
    return data


def merge_into(dst: dict[str, Any], src: dict[str, Any]) -> dict[str, Any]:
    """Merge `src` into `dst` recursively; `None` values mean "not given" and leave `dst` alone."""
    for key, value in src.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            merge_into(dst[key], value)
        else:
            dst[key] = value
    return dst


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict[str, Any] | None = None) -> T:
    """Load `cls` from an optional YAML file, then `base` (merged into it, nested keys kept),
    then `key=value` overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ZssError(f"config file not found: {p}")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ZssError(f"config file {p} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ZssError(f"config file {p} must hold a mapping")
    merge_into(data, base or {})
    apply_overrides(data, overrides or [])
    return from_dict(cls, data)


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass as plain data for YAML/JSON."""
    return dataclasses.asdict(obj)


def dump_yaml(obj: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(obj) if dataclasses.is_dataclass(obj) else obj,
                                         sort_keys=False))
