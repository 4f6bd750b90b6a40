"""Where zss's shipped data files live: presets, class lists, benchmark protocols, model configs.

They ship inside the package (`zss/manifests/`, package data), found through `importlib.resources`,
so a wheel install works from any folder just like the editable install `make` does; users can read
and copy them, and every command also takes their own files by path.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

MANIFESTS = Path(str(files("zss") / "manifests"))


def shipped_file(kind: str, name: str | Path, what: str, suffix: str = ".yaml") -> Path:
    """A user's file by path, else a shipped one by bare name (`pixelclip-cached-demo` ->
    zss/manifests/train/pixelclip-cached-demo.yaml); works from any folder, installed or not."""
    from zss.errors import ZssError

    path = Path(name).expanduser()
    if path.is_file():
        return path
    folder = MANIFESTS / kind
    for candidate in (folder / str(name), folder / f"{name}{suffix}"):
        if candidate.is_file() and candidate.parent == folder:
            return candidate
    known = ", ".join(sorted(p.stem for p in folder.glob(f"*{suffix}")))
    raise ZssError(f"{what} not found: {name} (give a file path or one of: {known})")
