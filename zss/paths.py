"""Where zss's shipped data files live: presets, class lists, benchmark protocols, model configs.

They ship inside the package (`zss/manifests/`, package data), found through `importlib.resources`,
so a wheel install works from any folder just like the editable install `make` does; users can read
and copy them, and every command also takes their own files by path.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

MANIFESTS = Path(str(files("zss") / "manifests"))
