"""Where the project's data files live: presets, class lists, benchmark protocols, model configs.

They are plain files under `manifests/` at the repository root (the editable install `make` does),
so users can read and copy them; one constant keeps every module pointing at the same place.
"""

from __future__ import annotations

from pathlib import Path

MANIFESTS = Path(__file__).resolve().parents[1] / "manifests"
