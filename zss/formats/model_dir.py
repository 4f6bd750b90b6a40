"""Model directories (docs/contracts.md, "Model directory"): where one is, and its `config.json`."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from zss.errors import ZssError
from zss.utils.hashing import sha256_file

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


# -- self-contained model directories ---------------------------------------------------------------
# Every file a model needs to segment lives inside its folder and config.json names it relative to
# the folder, so a model directory can be moved, copied to another machine or shared as a whole.
# Directories written before this rule record absolute paths; `model_file` still reads those.

log = logging.getLogger(__name__)


def model_file(model_dir: str | Path, recorded: str | Path) -> Path:
    """The file a config.json entry names: relative to the model directory (what zss writes), or an
    absolute path (model directories written by older zss versions)."""
    path = Path(recorded).expanduser()
    return path if path.is_absolute() else Path(model_dir) / path


def weights_file(model_dir: str | Path, recorded: str | None, what: str = "backbone weights") -> str | None:
    """A recorded weights entry as the loader takes it: a file name inside the folder becomes its path
    (one line naming it when it is missing), an absolute path (older directories) stays as it is, and
    anything else (a hub tag such as `openai`, or None) passes through."""
    if not recorded:
        return recorded
    path = Path(recorded).expanduser()
    if path.is_absolute() or not path.suffix:
        return recorded
    if not (Path(model_dir) / path).is_file():
        raise ZssError(f"{Path(model_dir) / path} is missing ({what} of the model directory {model_dir})")
    return str(Path(model_dir) / path)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def bundle_file(src: str | Path, model_dir: str | Path, name: str, sha256: str | None = None) -> dict[str, str]:
    """Place `src` in `model_dir/name` — a hard link when both are on one file system, a copy
    otherwise — and return `{"file": name, "sha256": ...}`. `sha256`, when given, is the hash recorded
    when the file was first used (e.g. by the ingest that made the features): a file that changed
    since is refused rather than bundled."""
    src, dest = Path(src), Path(model_dir) / name
    if not src.is_file():
        raise ZssError(f"{src} is missing: it cannot be put into the model directory {model_dir}")
    digest = sha256_file(src)
    if sha256 and digest != sha256:
        raise ZssError(f"{src} changed since it was recorded (sha256 {digest[:12]}… != {sha256[:12]}…); "
                       f"the model would not reproduce its features")
    if _same_file(src, dest):
        return {"file": name, "sha256": digest}
    tmp = dest.with_name(f".{name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:  # another file system, or links not allowed: copy
        shutil.copyfile(src, tmp)
    os.replace(tmp, dest)
    return {"file": name, "sha256": digest}


def bundle_backbone(record: dict[str, Any], model_dir: str | Path) -> dict[str, Any]:
    """A backbone record (as the shard manifest holds it) whose checkpoint and denoiser weights are
    files inside `model_dir` (`backbone.<ext>`, `denoiser.safetensors`), recorded by relative name
    with their sha256. Weights named by a hub tag instead of a local file cannot be bundled: the
    record keeps them and a warning says the folder needs that hub cache where it runs."""
    out = dict(record)
    ckpt = record.get("checkpoint")
    if ckpt and _inside(model_dir, ckpt):
        pass  # already inside the folder (an imported model)
    elif ckpt and Path(ckpt).expanduser().is_file():
        suffix = Path(ckpt).suffix or ".safetensors"
        got = bundle_file(Path(ckpt).expanduser(), model_dir, f"backbone{suffix}", record.get("sha256"))
        out.update(checkpoint=got["file"], sha256=got["sha256"])
    elif ckpt and Path(ckpt).expanduser().is_absolute():
        raise ZssError(f"backbone checkpoint {ckpt} (recorded by the shards) is missing: it cannot be put "
                       f"into the model directory {model_dir}")
    else:
        log.warning("backbone %s comes from %s, not a local file: the model directory needs the same "
                    "weights wherever it runs", record.get("name"), ckpt or "the hub")
    den = record.get("denoiser")
    if den and den.get("file") and not _inside(model_dir, den["file"]):
        got = bundle_file(Path(den["file"]).expanduser(), model_dir, "denoiser.safetensors", den.get("sha256"))
        out["denoiser"] = {**den, **got}
    return out


def _inside(model_dir: str | Path, recorded: str) -> bool:
    return not Path(recorded).is_absolute() and (Path(model_dir) / recorded).is_file()


def bundle_concept_bank(bank: Path | None, model_dir: str | Path) -> None:
    """Copy a concepts.json (and the faiss index it names, when present) into the model directory."""
    if bank is None:
        return
    shutil.copyfile(bank, Path(model_dir) / "concepts.json")
    try:
        index_file = (json.loads(Path(bank).read_text()).get("index") or {}).get("file")
    except json.JSONDecodeError as exc:
        raise ZssError(f"{bank} is not valid JSON: {exc}") from exc
    if index_file and (Path(bank).parent / index_file).is_file():
        shutil.copyfile(Path(bank).parent / index_file, Path(model_dir) / index_file)
