"""The recipe registry (`zss.recipes.RECIPES`): each entry's name is its recipe's, the kind its segmenter
reads and its `zss import` command's; the registry and the recipes' plugs load without torch, so
`zss --help` lists the recipes' commands without importing a model."""

from __future__ import annotations

import subprocess
import sys

from zss.recipes import RECIPES


def test_each_entry_names_its_recipe_segmenter_and_importer():
    assert list(RECIPES) == ["simzss", "pixelclip", "joint"]
    for name, entry in RECIPES.items():
        assert entry.recipe().name == name
        assert callable(entry.segmenter().from_dir)
        if name != "joint":  # joint has no authors' release to import
            assert entry.importer is not None and entry.importer.name == name
    assert RECIPES["joint"].importer is None


def test_the_cli_and_the_registry_import_no_torch():
    code = "import sys, zss.cli; assert 'torch' not in sys.modules, 'zss.cli imports torch'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
