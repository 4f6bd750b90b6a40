"""User errors of `zss ingest` / `zss inspect`: one line on stderr, exit code 2, no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from zss.cli import main

pytestmark = pytest.mark.usefixtures("ray_2cpu")  # ingested_shards, if first built here


def _err(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zss: error: ") and "Traceback" not in err
    return lines[0]


def test_ingest_user_errors(capsys, world, ingest_kwargs, ingested_shards, tmp_path):
    src, ckpt = str(world), ingest_kwargs["features"].split(":", 1)[1]
    out = str(tmp_path / "out")
    assert "config mode must be incremental or overwrite" in _err(capsys, ["ingest", src, out, "--mode", "sideways"])
    assert "unknown config key" in _err(capsys, ["ingest", src, out, "--set", "decode.colour=1"])
    assert "source not found" in _err(capsys, ["ingest", str(tmp_path / "nowhere"), out])
    assert "unknown source kind" in _err(capsys, ["ingest", "ftp:/x", out])
    assert "preset not found" in _err(capsys, ["ingest", src, out, "--preset", "no-such-preset"])
    assert "unknown backbone" in _err(capsys, ["ingest", src, out, "--features", f"vit_tiny_banana:{ckpt}"])
    assert "masks mode" in _err(capsys, ["ingest", src, out, "--features", f"vit_small_patch14_dinov2:{ckpt}",
                                         "--img-size", "112", "--masks", "crayons"])
    assert "another source or config" in _err(capsys, ["ingest", src, str(ingested_shards), "--img-size", "56"])
    assert "not a zss shard folder" in _err(capsys, ["inspect", str(tmp_path)])
    (tmp_path / "afile").write_text("x")
    assert "cannot create the output folder" in _err(capsys, ["ingest", src, str(tmp_path / "afile")])


def test_bad_option_value(capsys, tmp_path):
    """A value typer itself rejects (typer >= 0.29 vendors click as typer._click)."""
    assert "1" in _err(capsys, ["ingest", str(tmp_path), str(tmp_path / "o"), "--workers", "0"])


def test_missing_checkpoint_in_a_real_process(world, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "zss.cli", "ingest", str(world), str(tmp_path / "o"),
                           "--features", f"vit_small_patch14_dinov2:{tmp_path / 'missing.safetensors'}"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"zss: error: checkpoint file not found: {tmp_path / 'missing.safetensors'}"]
