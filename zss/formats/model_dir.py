"""Model directories (docs/contracts.md, "Model directory"): where one is, and its `config.json`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zss.errors import ZssError

SCHEMA = 1


def read_model_config(model_dir: str | Path, kind: str | tuple[str, ...] | None = None) -> dict[str, Any]:
    """The parsed `config.json` of `model_dir`, checked for `kind` (one or several, when given)
    and then the schema."""
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise ZssError(f"{model_dir} is not a zss model directory (no config.json)")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ZssError(f"{path} is not valid JSON: {exc}") from exc
    kinds = (kind,) if isinstance(kind, str) else kind
    if kinds is not None and config.get("kind") not in kinds:
        raise ZssError(f"{path}: unknown model kind {config.get('kind')!r} (expected {' or '.join(kinds)})")
    if config.get("schema") != SCHEMA:
        raise ZssError(f"{path}: schema {config.get('schema')} (this zss reads {SCHEMA})")
    return config


def resolve_model_dir(path: Path) -> Path:
    """A model directory, or a run directory whose `model/` is one (what `zss train` writes)."""
    if (path / "config.json").is_file():
        return path
    if (path / "model" / "config.json").is_file():
        return path / "model"
    raise ZssError(f"{path} is not a zss model directory (no config.json, nor model/config.json)")


def _looks_like(head: bytes) -> str:
    if head[:1] == b"\x80":
        return "a Python pickle"
    if head[:2] == b"PK":
        return "a zip archive (torch.save / pickle)"
    if not head:
        return "an empty file"
    return "not safetensors"


def read_weights(path: str | Path) -> dict[str, Any]:
    """The tensors of a model directory's safetensors file, or one line naming the file when it is
    missing, not safetensors (e.g. a pickle, which zss never loads) or damaged."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ZssError(f"weights file {path} is missing")
    with open(path, "rb") as f:
        head = f.read(16)
    n = int.from_bytes(head[:8], "little") if len(head) >= 8 else 0
    if len(head) < 9 or head[8:9] != b"{" or n > path.stat().st_size:
        raise ZssError(f"{path} is not a safetensors file ({_looks_like(head)}); zss never unpickles weights: "
                       "re-export the model with `zss train` or convert it with safetensors")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ZssError(f"{path} is a damaged safetensors file ({str(exc)[:200]}); re-export the model") from exc
