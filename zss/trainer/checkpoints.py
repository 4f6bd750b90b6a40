"""Checkpoints: weights in safetensors, training state in a `weights_only=True`-loadable file.

`checkpoints/step_000100.safetensors` holds the model's state dict; `step_000100.pt` holds the
optimizer state, loop step, data position, AMP scaler and RNG states — tensors, numbers and
strings only, so `torch.load(..., weights_only=True)` reads it (no pickled objects). Both are written
to a temporary name and renamed, so a killed run never leaves a half-written checkpoint; the
`.pt` is written last and its presence marks the checkpoint complete.

A checkpoint damaged later on disk (a bad sector, a copy cut short) is skipped on resume: the newest
one that reads back is used, with a warning naming the skipped files, and the damaged one is renamed
aside (`step_N.pt.damaged`, `step_N.safetensors.damaged`: kept for a look, no longer a checkpoint).
Pruning to the newest `keep` counts only intact checkpoints: before an older one is deleted, each
newer one is checked (the safetensors header against the file size, the `.pt` zip directory) and a
damaged one is renamed aside with a warning instead of being counted as kept.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import struct
import zipfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, load_model, save_model
from torch import nn

from zss.errors import ZssError

log = logging.getLogger(__name__)

_NAME = re.compile(r"^step_(\d{6,})\.pt$")


def checkpoint_paths(ckpt_dir: Path, step: int) -> tuple[Path, Path]:
    stem = ckpt_dir / f"step_{step:06d}"
    return stem.with_suffix(".safetensors"), stem.with_suffix(".pt")


def list_checkpoints(ckpt_dir: Path) -> list[int]:
    """Steps of the complete checkpoints in `ckpt_dir`, ascending."""
    if not ckpt_dir.is_dir():
        return []
    steps = []
    for p in ckpt_dir.iterdir():
        m = _NAME.match(p.name)
        if m and p.with_suffix(".safetensors").is_file():
            steps.append(int(m.group(1)))
    return sorted(steps)


def rng_state() -> dict[str, Any]:
    """torch (CPU, CUDA) and Python RNG states as tensors/lists."""
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {"torch": torch.get_rng_state(),
                             "python": [version, list(internal), gauss]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(ckpt_dir: Path, step: int, model: nn.Module, state: dict[str, Any],
                    keep: int = 0) -> Path:
    """Write weights then state (atomic renames); prune to the newest `keep` (0 = all)."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    weights, meta = checkpoint_paths(ckpt_dir, step)
    tmp_w = weights.with_name(weights.name + ".tmp")
    tmp_m = meta.with_name(meta.name + ".tmp")
    save_model(model, str(tmp_w))
    os.replace(tmp_w, weights)
    torch.save(state, tmp_m)
    os.replace(tmp_m, meta)
    if keep > 0:
        prune_checkpoints(ckpt_dir, keep)
    return meta


def checkpoint_damage(ckpt_dir: Path, step: int) -> str | None:
    """Why a checkpoint's files cannot be a whole checkpoint, without reading their tensors (None when
    they look whole): the safetensors header must parse and its tensors end exactly at the end of the
    file; the `.pt` (a zip, as torch.save writes it) must have its central directory."""
    weights, meta = checkpoint_paths(ckpt_dir, step)
    try:
        size = weights.stat().st_size
        with open(weights, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > size - 8:
                return f"{weights.name}: header of {n} bytes in a file of {size}"
            header = json.loads(f.read(n))
        end = max((int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"), default=0)
        if 8 + n + end != size:
            return f"{weights.name}: {size} bytes, the header says {8 + n + end}"
        with zipfile.ZipFile(meta) as z:
            z.infolist()
    except (OSError, ValueError, KeyError, TypeError, struct.error, zipfile.BadZipFile) as exc:
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    return None


def set_aside(ckpt_dir: Path, step: int, why: str) -> None:
    """Rename a damaged checkpoint's files to `NAME.damaged` (no longer listed), with a warning."""
    moved = []
    for p in checkpoint_paths(ckpt_dir, step):
        try:
            os.replace(p, p.with_name(p.name + ".damaged"))
            moved.append(p.name)
        except FileNotFoundError:  # already moved (another process of the run) or never written
            pass
    if moved:
        log.warning(f"zss: warning: checkpoint {ckpt_dir / f'step_{step:06d}'} is damaged ({why}); renamed "
                    f"to {' and '.join(n + '.damaged' for n in moved)}, not counted as a checkpoint")


def prune_checkpoints(ckpt_dir: Path, keep: int) -> list[int]:
    """Keep the newest `keep` intact checkpoints, delete the older ones; a damaged one met on the way
    (newest first) is set aside, never counted as kept. Returns the kept steps."""
    kept: list[int] = []
    for step in reversed(list_checkpoints(ckpt_dir)):
        if len(kept) < keep:
            why = checkpoint_damage(ckpt_dir, step)
            if why is None:
                kept.append(step)
            else:
                set_aside(ckpt_dir, step, why)
            continue
        for p in checkpoint_paths(ckpt_dir, step):
            p.unlink(missing_ok=True)
    return sorted(kept)


def load_checkpoint(ckpt_dir: Path, step: int, model: nn.Module,
                    device: torch.device | str = "cpu") -> dict[str, Any]:
    """Load weights into `model` (strict) and return the state dict (weights_only)."""
    weights, meta = checkpoint_paths(ckpt_dir, step)
    load_model(model, str(weights), strict=True, device=str(device))
    return torch.load(meta, map_location="cpu", weights_only=True)


def read_checkpoint(ckpt_dir: Path, step: int) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(weights, state) of one checkpoint, read fully into CPU memory; raises on unreadable files."""
    weights, meta = checkpoint_paths(ckpt_dir, step)
    tensors = load_file(str(weights), device="cpu")
    state = torch.load(meta, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "step" not in state:
        raise ValueError(f"{meta} holds no training state")
    return tensors, state


def load_newest_readable(ckpt_dir: Path, steps: list[int], model: nn.Module,
                         device: torch.device | str = "cpu") -> tuple[int, dict[str, Any]]:
    """Load the newest of `steps` whose files read back into `model`; returns (step, state).

    A checkpoint whose files cannot be read (truncated, overwritten with garbage) is skipped with
    a warning naming it; weights that read but do not fit the model raise (strict load)."""
    skipped = []
    for step in reversed(steps):
        try:
            tensors, state = read_checkpoint(ckpt_dir, step)
        except Exception as exc:  # noqa: BLE001 - any reader failure means "damaged"; it is named below
            log.warning(f"zss: warning: checkpoint {ckpt_dir / f'step_{step:06d}'} (.safetensors/.pt) is damaged "
                        f"({type(exc).__name__}: {str(exc)[:200]}); trying an older one")
            set_aside(ckpt_dir, step, f"{type(exc).__name__} on resume")
            skipped.append(step)
            continue
        del tensors
        load_model(model, str(checkpoint_paths(ckpt_dir, step)[0]), strict=True, device=str(device))
        if skipped:
            log.warning(f"zss: warning: resuming from step {step}, the newest readable checkpoint "
                        f"(skipped damaged step(s) {', '.join(map(str, skipped))})")
        return step, state
    raise ZssError(f"--resume: none of the {len(steps)} checkpoint(s) in {ckpt_dir} can be read; "
                   "start a new run")
