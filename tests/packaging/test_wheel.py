"""zss installed from a wheel (not the editable checkout) works from any folder: shipped presets,
train configs, class lists and OpenCLIP configs are package data found through importlib.resources.

The wheel goes into a throw-away venv that borrows this interpreter's installed dependencies through
a .pth file (nothing is downloaded or reinstalled, torch included); zss itself comes only from the
wheel, and every command runs from an empty folder with no PYTHONPATH."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run(cmd: list, cwd: Path, env: dict, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)
    if ok and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv bin folder, env): the wheel of this checkout installed into a fresh venv."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"                  # build from a copy: setuptools writes build/ and egg-info
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "zss", src / "zss", ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_NO_INPUT"] = "1"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
         tmp / "dist", src], cwd=tmp, env=env)
    wheels = list((tmp / "dist").glob("zss-*.whl"))
    assert len(wheels) == 1
    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp, env=env)
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (purelib / "_zss_borrowed_deps.pth").write_text("\n".join(deps) + "\n")
    run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--no-deps",
         "--no-index", "-q", wheels[0]], cwd=tmp, env=env)
    return venv / "bin", env


@pytest.mark.slow
def test_wheel_works_from_an_empty_folder(installed, tmp_path):
    bin_dir, env = installed
    work = tmp_path / "empty"
    work.mkdir()
    where = run([bin_dir / "python", "-c", "import zss, zss.paths; print(zss.__file__); "
                 "print(zss.paths.MANIFESTS)"], work, env).stdout.split()
    assert str(bin_dir.parent) in where[0] and str(REPO) not in where[0]   # the wheel's zss, not ours
    assert (Path(where[1]) / "presets" / "coco-dinov2-b14.yaml").is_file()
    assert (Path(where[1]) / "names" / "wordnet-3.0-visual.tsv.gz").stat().st_size > 400_000  # --vocab auto
    assert (Path(where[1]).parent / "serve" / "examples").is_dir()
    zss = bin_dir / "zss"

    out = run([zss, "synth", "world", "--n-images", "4", "--n-val", "2", "--size", "64"], work, env)
    assert "synthetic world" in out.stdout and (work / "world").is_dir()

    out = run([zss, "concepts", "build", "bank.json", "--list", "voc", "--list", "ade20k"], work, env)
    assert "concept bank" in out.stdout and (work / "bank.json").is_file()

    # ingest: the shipped preset by bare name resolves; it gets as far as the (missing) checkpoint
    missing = work / "no_such_dinov2.pth"
    bad = run([zss, "ingest", "world", "shards", "--preset", "coco-dinov2-b14", "--limit", "2",
               "--features", f"vit_base_patch14_reg4_dinov2:{missing}"], work, env, ok=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "checkpoint" in bad.stderr and str(missing) in bad.stderr, bad.stderr
    unknown = run([zss, "ingest", "world", "shards", "--preset", "no-such-preset"], work, env, ok=False)
    assert unknown.returncode == 2 and "preset not found" in unknown.stderr

    # train: the shipped config by bare name resolves (the next complaint is about the shards)
    bare = run([zss, "train", "pixelclip", "S", "R", "--config", "pixelclip-cached-demo"], work, env, ok=False)
    assert bare.returncode == 2 and "not a shard folder" in bare.stderr, bare.stderr
    unknown = run([zss, "train", "pixelclip", "S", "R", "--config", "no-such-config"], work, env, ok=False)
    assert unknown.returncode == 2 and "train config not found" in unknown.stderr
    assert "pixelclip-cached-demo" in unknown.stderr          # the shipped names are listed

    # a user's own file by path still works
    own = work / "mine.yaml"
    own.write_text((Path(where[1]) / "train" / "pixelclip-cached-demo.yaml").read_text())
    mine = run([zss, "train", "pixelclip", "S", "R", "--config", own], work, env, ok=False)
    assert mine.returncode == 2 and "not a shard folder" in mine.stderr
