"""The written layer order (docs/architecture.md, zss/__init__.py) holds: read every import with ast,
fail on an import of a higher layer, on an import between sibling packages of one layer (each recipe
package is a sibling of the others), and on any import cycle between modules. Lazy imports inside
functions count the same as top-level ones."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

import zss

# lowest first; a module may import its own package and anything in a lower layer
LAYERS: list[tuple[str, ...]] = [
    ("zss", "zss.errors", "zss.paths", "zss.utils"),
    ("zss.formats",),
    ("zss.models",),
    ("zss.ingest", "zss.trainer", "zss.synth"),
    ("zss.recipes",),
    ("zss.eval",),
    ("zss.commands", "zss.serve"),
    ("zss.cli",),
]
# packages whose members (zss.recipes.simzss, zss.recipes.pixelclip, any future zss.recipes.X) are
# siblings of each other; only the package's own __init__ (the registry) may import them all
FAMILIES = ("zss.recipes",)
# The declared exceptions: a recipe that builds on others' tested pieces (docs/architecture.md).
# joint reuses SimZSS's text tower, losses and recipe and PixelCLIP's Sinkhorn and mask pooling by
# importing them; they may never import joint, and the declared edges may form no cycle.
RECIPE_DEPENDS: dict[str, set[str]] = {"zss.recipes.joint": {"zss.recipes.simzss", "zss.recipes.pixelclip"}}
PACKAGE_ROOT = Path(zss.__file__).resolve().parent


def module_names(root: Path) -> dict[str, Path]:
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """zss modules `name` imports (relative imports resolved; `from pkg import mod` -> pkg.mod)."""
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "zss")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "zss":
                continue
            for alias in node.names:
                sub = f"{mod}.{alias.name}"
                found.add(sub if sub in known else mod)
    return found


def layer_of(module: str) -> tuple[int, str]:
    """(layer index, the layer entry `module` belongs to): the longest matching prefix."""
    best = None
    for i, entries in enumerate(LAYERS):
        for entry in entries:
            if module == entry or module.startswith(entry + "."):
                if best is None or len(entry) > len(best[1]):
                    best = (i, entry)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add its package to LAYERS and docs/architecture.md")
    layer, entry = best
    if entry in FAMILIES and module != entry:  # zss.recipes.simzss.recipe -> zss.recipes.simzss
        entry = ".".join(module.split(".")[:entry.count(".") + 2])
    return layer, entry


def layer_violations(root: Path) -> list[str]:
    mods = module_names(root)
    graph = {m: imports_of(m, p, set(mods)) for m, p in mods.items()}
    problems = []
    for src, targets in graph.items():
        s_layer, s_entry = layer_of(src)
        for dst in sorted(targets):
            if dst not in mods:
                problems.append(f"{src} imports {dst}, which does not exist")
                continue
            d_layer, d_entry = layer_of(dst)
            if d_layer > s_layer:
                problems.append(f"upward import: {src} (layer {s_layer}) imports {dst} (layer {d_layer})")
            elif (d_layer == s_layer and d_entry != s_entry and s_layer > 0
                  and not _registry_import(s_entry, d_entry)
                  and d_entry not in RECIPE_DEPENDS.get(s_entry, ())):
                problems.append(f"sibling import: {src} ({s_entry}) imports {dst} ({d_entry})")
    problems += [f"import cycle: {' -> '.join(c)}" for c in cycles(graph)]
    return problems


def _registry_import(src_entry: str, dst_entry: str) -> bool:
    """A family's registry (`zss.recipes`) importing one of its members (`zss.recipes.simzss`)."""
    return src_entry in FAMILIES and dst_entry.startswith(src_entry + ".")


def test_declared_recipe_edges_form_no_cycle():
    """RECIPE_DEPENDS names existing recipe packages and is acyclic (no recipe depends on itself
    through others)."""
    mods = module_names(PACKAGE_ROOT)
    for src, dsts in RECIPE_DEPENDS.items():
        assert src in mods and all(d in mods for d in dsts), (src, dsts)
    assert cycles({k: set(v) for k, v in RECIPE_DEPENDS.items()}) == []


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (or a module importing itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_zss_keeps_its_layer_order():
    assert layer_violations(PACKAGE_ROOT) == []


def test_every_module_has_a_layer():
    for name in module_names(PACKAGE_ROOT):
        layer_of(name)


@pytest.mark.parametrize("where, line, expected", [
    ("models/backbone.py", "from zss.eval import metrics", "upward import: zss.models.backbone"),
    ("formats/shards.py", "import zss.recipes", "upward import: zss.formats.shards"),
    ("ingest/runner.py", "from zss.trainer import loop", "sibling import: zss.ingest.runner"),
    ("utils/hashing.py", "from zss.utils import device\n", None),
    ("formats/rle.py", "def f():\n    from zss.formats import vocab\n", None),
    ("recipes/simzss/losses.py", "from zss.recipes.pixelclip import sinkhorn",
     "sibling import: zss.recipes.simzss.losses"),
    ("recipes/pixelclip/explain.py", "def f():\n    from zss.recipes.simzss import losses\n",
     "sibling import: zss.recipes.pixelclip.explain"),
    ("recipes/pixelclip/sinkhorn.py", "from zss.recipes import get_recipe",
     "sibling import: zss.recipes.pixelclip.sinkhorn"),
    ("recipes/__init__.py", "from zss.recipes.simzss import losses", None),
    # the declared edge joint -> simzss/pixelclip holds one way only
    ("recipes/joint/losses.py", "from zss.recipes.simzss import text_tower", None),
    ("recipes/simzss/losses.py", "def f():\n    from zss.recipes.joint import losses\n",
     "sibling import: zss.recipes.simzss.losses"),
    ("recipes/pixelclip/sinkhorn.py", "from zss.recipes.joint import regions",
     "sibling import: zss.recipes.pixelclip.sinkhorn"),
])
def test_the_check_catches_an_added_import(tmp_path, where, line, expected):
    copy = tmp_path / "zss"
    shutil.copytree(PACKAGE_ROOT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / where
    target.write_text(target.read_text() + "\n" + line + "\n")
    problems = layer_violations(copy)
    if expected is None:
        assert problems == []
    else:
        assert any(p.startswith(expected) for p in problems), problems


def test_the_check_catches_a_cycle(tmp_path):
    copy = tmp_path / "zss"
    shutil.copytree(PACKAGE_ROOT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "utils" / "device.py").write_text((copy / "utils" / "device.py").read_text()
                                              + "\nfrom zss.utils import hashing\n")
    (copy / "utils" / "hashing.py").write_text((copy / "utils" / "hashing.py").read_text()
                                               + "\nfrom zss.utils import device\n")
    assert any("import cycle: zss.utils.device -> zss.utils.hashing" in p for p in layer_violations(copy))


def test_the_check_treats_every_recipe_package_as_a_sibling(tmp_path):
    """A recipe (`zss.recipes.future`) importing another recipe's module without a declared edge is
    caught, and so is joint importing a recipe it does not declare; the registry importing them all,
    a recipe importing its own modules and joint's declared edge are not."""
    files = {"__init__.py": "", "recipes/__init__.py": "from zss.recipes import future, joint, simzss\n",
             "recipes/simzss/__init__.py": "", "recipes/simzss/text_tower.py": "",
             "recipes/future/__init__.py": "from zss.recipes.future import model\n",
             "recipes/future/model.py": "def f():\n    from zss.recipes.simzss.text_tower import f\n",
             "recipes/joint/__init__.py": "from zss.recipes.simzss import text_tower\n",
             "recipes/joint/model.py": "from zss.recipes.future import model\n"}
    for name, text in files.items():
        (tmp_path / "zss" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "zss" / name).write_text(text)
    assert layer_violations(tmp_path / "zss") == [
        "sibling import: zss.recipes.future.model (zss.recipes.future) imports zss.recipes.simzss.text_tower "
        "(zss.recipes.simzss)",
        "sibling import: zss.recipes.joint.model (zss.recipes.joint) imports zss.recipes.future.model "
        "(zss.recipes.future)"]
