"""Configs are dataclasses; defaults < YAML (preset or --config) < CLI options < `--set key=value`.

Every command resolves its settings through `load_config` / `from_dict` here, so a value is typed and
range-checked the same way whether it came from a YAML file, a CLI option or `--set`. Each field
declares what it allows next to its default with `setting(...)` (a `dataclasses.field` whose
metadata holds a `Check`); a value that does not fit is one `ZssError` line naming the key, the
value and what is allowed, raised before any work starts.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

from zss.errors import ZssError

T = TypeVar("T")
CHECK = "check"  # the dataclass field metadata key holding a `Check`


@dataclass(frozen=True)
class Check:
    """What a field allows beyond its type: numeric bounds and/or a set of choices."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[Any, ...] | None = None

    def ok(self, value: Any) -> bool:
        if self.choices is not None and value not in self.choices:
            return False
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, float) and math.isnan(value):
                return False
            return ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                    and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))
        return True

    def describe(self) -> str:
        if self.choices is not None:
            names = [str(c) for c in self.choices]
            return " or ".join(names) if len(names) <= 2 else "one of " + ", ".join(names)
        lo, hi = (("[", self.ge) if self.ge is not None else ("(", self.gt)), \
            (("]", self.le) if self.le is not None else (")", self.lt))
        if lo[1] is not None and hi[1] is not None:
            return f"in {lo[0]}{_num(lo[1])}, {_num(hi[1])}{hi[0]}"
        parts = [f"{op} {_num(v)}" for op, v in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
                 if v is not None]
        return " and ".join(parts)


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(v)


def setting(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING,
            ge: float | None = None, gt: float | None = None, le: float | None = None,
            lt: float | None = None, choices: typing.Iterable[Any] | None = None) -> Any:
    """A dataclass field with its allowed range: `steps: Optional[int] = setting(None, ge=1)`."""
    check = Check(ge=ge, gt=gt, le=le, lt=lt, choices=tuple(choices) if choices is not None else None)
    return dataclasses.field(default=default, default_factory=default_factory, metadata={CHECK: check})


class _Bad(Exception):
    """A value that does not fit its type; `from_dict` turns it into one ZssError line."""


def _optional_of(kind: Any) -> tuple[Any, bool]:
    """(inner type, allows None) for `X | None` / `Optional[X]`; (kind, False) otherwise."""
    origin = typing.get_origin(kind)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(args) == 1 and len(args) < len(typing.get_args(kind)):
            return args[0], True
    return kind, False


_BOOL = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def _type_name(kind: Any) -> str:
    inner, optional = _optional_of(kind)
    names = {int: "an integer", float: "a number", str: "a string", bool: "a boolean (true/false)"}
    origin = typing.get_origin(inner)
    if inner in names:
        name = names[inner]
    elif origin in (list, tuple):
        name = "a list"
    elif origin is dict or inner is dict:
        name = "a mapping"
    elif dataclasses.is_dataclass(inner):
        name = "a mapping of settings"
    else:
        name = str(inner)
    return name


def _coerce(value: Any, kind: Any) -> Any:
    """Turn a YAML/CLI value into the field's declared type; raise `_Bad` when it cannot be one."""
    inner, optional = _optional_of(kind)
    if value is None:
        if optional or inner is Any:
            return None
        raise _Bad
    kind = inner
    if kind is Any:
        return value
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _BOOL:
            return _BOOL[value.strip().lower()]
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise _Bad
    if kind is int:
        if isinstance(value, bool):
            raise _Bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                try:
                    f = float(value)
                except ValueError:
                    raise _Bad from None
                if f.is_integer():
                    return int(f)
        raise _Bad
    if kind is float:
        if isinstance(value, bool):
            raise _Bad
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())  # YAML reads `1e-4` (no dot) as a string
            except ValueError:
                raise _Bad from None
        raise _Bad
    if kind is str:
        if isinstance(value, (dict, list, tuple)):
            raise _Bad
        return str(value)
    origin = typing.get_origin(kind)
    if origin in (list, tuple):
        items = [v for v in value.split(",") if v] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise _Bad
        args = typing.get_args(kind)
        elem = args[0] if args and (origin is list or (len(args) == 2 and args[1] is Ellipsis)) else Any
        return [_coerce(v, elem) for v in items]
    if origin is dict or kind is dict:
        if not isinstance(value, dict):
            raise _Bad
        return value
    return value


def _show(value: Any) -> str:
    return "null" if value is None else repr(value)


def _allowed(kind: Any, check: Check | None) -> str:
    inner, optional = _optional_of(kind)
    text = _type_name(kind)
    if check is not None and (check.choices is not None):
        text = check.describe()
    elif check is not None and check.describe():
        text += " " + check.describe()
    return text + (" or null (unset)" if optional else "")


def check_value(key: str, value: Any, kind: Any, check: Check | None) -> Any:
    """`value` coerced to `kind` and range-checked; a ZssError naming `key` when it does not fit."""
    try:
        out = _coerce(value, kind)
    except _Bad:
        out, ok = None, False
    else:
        ok = out is None or check is None or check.ok(out)
    if not ok:
        raise ZssError(f"config {key} must be {_allowed(kind, check)}, got {_show(value)}")
    return out


def from_dict(cls: type[T], data: dict[str, Any] | None, prefix: str = "") -> T:
    """Build dataclass `cls` from a (possibly nested) dict: unknown keys rejected, every given value
    coerced to its field's type and checked against its `setting(...)` range. `prefix` is where
    `cls` sits in the whole config (`recipe.`, `features.`), for the error message."""
    if data is not None and not isinstance(data, dict):
        raise ZssError(f"config {prefix.rstrip('.') or cls.__name__} must be a mapping, got {_show(data)}")
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ZssError(f"unknown config key(s) for {cls.__name__}: {', '.join(prefix + k for k in unknown)}")
    kwargs = {}
    for name, value in data.items():
        kind, key = hints[name], prefix + name
        if dataclasses.is_dataclass(kind):
            if isinstance(value, kind):
                kwargs[name] = value
            elif isinstance(value, dict):
                kwargs[name] = from_dict(kind, value, prefix=key + ".")
            else:
                raise ZssError(f"config {key} must be a mapping of {kind.__name__} settings, got {_show(value)}")
        else:
            kwargs[name] = check_value(key, value, kind, fields[name].metadata.get(CHECK))
    return cls(**kwargs)


def validate(obj: Any, prefix: str = "") -> None:
    """Check every field of a dataclass instance (nested ones too) against its type and range."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            validate(value, prefix + f.name + ".")
        else:
            check_value(prefix + f.name, value, hints[f.name], f.metadata.get(CHECK))


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b=value` strings (values parsed as YAML scalars) to a nested dict."""
    for item in overrides:
        if "=" not in item:
            raise ZssError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ZssError(f"override {item!r}: {part} is not a section of settings")
            node = child
        try:
            node[parts[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError:
            node[parts[-1]] = raw
    return data


def merge_into(dst: dict[str, Any], src: dict[str, Any], keep_none: bool = False) -> dict[str, Any]:
    """Merge `src` into `dst` recursively. Unless `keep_none`, `None` values mean "not given" (CLI
    options left out) and leave `dst` alone."""
    for key, value in src.items():
        if value is None and not keep_none:
            continue
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            merge_into(dst[key], value, keep_none)
        else:
            dst[key] = copy.deepcopy(value)
    return dst


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML config file as a mapping (one-line errors for a missing, broken or non-mapping file)."""
    p = Path(path)
    if not p.is_file():
        raise ZssError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        problem = str(exc).replace("\n", " ")
        raise ZssError(f"config file {p} is not valid YAML: {problem}") from exc
    if not isinstance(data, dict):
        raise ZssError(f"config file {p} must hold a mapping")
    return data


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict[str, Any] | None = None, defaults: dict[str, Any] | None = None,
                prefix: str = "") -> T:
    """The one config path: `cls` defaults < `defaults` (e.g. a recipe's loop defaults) < the YAML
    file `path` < `base` (CLI options; None = not given) < `overrides` (`--set key=value`), then
    typed and range-checked by `from_dict`."""
    data = merge_into({}, defaults or {}, keep_none=True)
    if path is not None:
        merge_into(data, read_yaml(path), keep_none=True)
    merge_into(data, base or {})
    apply_overrides(data, list(overrides or []))
    return from_dict(cls, data, prefix=prefix)


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass as plain data for YAML/JSON."""
    return dataclasses.asdict(obj)


def dump_yaml(obj: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(obj) if dataclasses.is_dataclass(obj) else obj,
                                         sort_keys=False))
