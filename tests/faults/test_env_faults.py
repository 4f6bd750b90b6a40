"""Environment faults as one line: a pickle where a model directory's safetensors should be, and a
real ENOSPC (writes to /dev/full) while training, with the checkpoints already written kept."""

from __future__ import annotations

import os
import pickle

import pytest

from zss.cli import main
from zss.commands.train import run_training
from zss.errors import ZssError
from zss.recipes.simzss.segmenter import load_text_tower


@pytest.fixture(scope="module")
def trained(feature_world, tmp_path_factory):
    from conftest import TINY

    run = tmp_path_factory.mktemp("run")
    run_training("simzss", feature_world.shards, run, steps=2, overrides=TINY + ["batch_size=8"])
    return run / "model"


@pytest.mark.parametrize("content,kind", [
    (pickle.dumps({"weight": [1.0, 2.0]}), "a Python pickle"),
    (b"PK\x03\x04" + b"\0" * 64, "a zip archive"),
    (b"", "an empty file"),
])
def test_non_safetensors_weights_are_one_line_naming_the_file(trained, tmp_path, content, kind):
    model = tmp_path / "model"
    model.mkdir()
    for p in trained.iterdir():
        if p.is_file():
            (model / p.name).write_bytes(p.read_bytes())
    (model / "model.safetensors").write_bytes(content)
    with pytest.raises(ZssError, match=rf"{model / 'model.safetensors'} is not a safetensors file \({kind}"):
        load_text_tower(model)
    assert load_text_tower(trained) is not None


def test_truncated_safetensors_is_named(trained, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    for p in trained.iterdir():
        if p.is_file():
            (model / p.name).write_bytes(p.read_bytes())
    data = (trained / "model.safetensors").read_bytes()
    (model / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ZssError, match="model.safetensors"):
        load_text_tower(model)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_disk_full_while_training_is_one_line_and_keeps_checkpoints(feature_world, tiny_overrides, tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    # every checkpoint is written; then the run summary hits a full disk
    args = ["train", "simzss", str(feature_world.shards), str(run), "--steps", "4"] + \
        [a for o in tiny_overrides + ["batch_size=8", "ckpt_every=2", "log_every=3"] for a in ("--set", o)]
    (run / "summary.json").symlink_to("/dev/full")
    assert main(args) == 2
    # log records aside (progress; the export's warning that a hub backbone is not bundled): one error line
    err = [ln for ln in capsys.readouterr().err.strip().splitlines()
           if " INFO zss." not in ln and " WARNING zss." not in ln]
    assert len(err) == 1 and err[0].startswith(f"zss: error: no space left on the device: {run}") and "free space" in err[0]
    assert (run / "checkpoints" / "step_000004.pt").is_file() and (run / "checkpoints" / "step_000002.pt").is_file()
    assert not (run / ".zss.lock").exists()
