"""Bad config values (YAML, CLI options, --set) are one line on stderr and exit 2, before any work."""

from __future__ import annotations

import pytest

from zss.cli import main


def _one_line(capsys, argv: list[str]) -> str:
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2, captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zss: error: ") and "Traceback" not in captured.err, captured.err
    return lines[0]


@pytest.mark.parametrize("setting, expected", [
    ("limit=abc", "config limit must be an integer >= 1 or null (unset), got 'abc'"),
    ("steps=x", "config steps must be an integer >= 1 or null (unset), got 'x'"),
    ("lr=abc", "config lr must be a number > 0, got 'abc'"),
])
def test_set_values_of_every_type(capsys, tmp_path, feature_world, setting, expected):
    cmd = (["ingest", str(tmp_path / "src"), str(tmp_path / "out")] if setting.startswith("limit")
           else ["train", "simzss", str(feature_world.shards), str(tmp_path / "run")])
    assert _one_line(capsys, cmd + ["--set", setting]) == f"zss: error: {expected}"
    assert not (tmp_path / "run").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("yaml_text, expected", [
    ("steps: ten\n", "config steps must be an integer >= 1 or null (unset), got 'ten'"),
    ("steps: -1\n", "config steps must be an integer >= 1 or null (unset), got -1"),
    ("batch_size: 0\n", "config batch_size must be an integer >= 1, got 0"),
    ("lr: -1\n", "config lr must be a number > 0, got -1"),
])
def test_yaml_probes(capsys, tmp_path, feature_world, yaml_text, expected):
    config = tmp_path / "c.yaml"
    config.write_text(yaml_text)
    run = tmp_path / "run"
    line = _one_line(capsys, ["train", "simzss", str(feature_world.shards), str(run), "--config", str(config)])
    assert line == f"zss: error: {expected}"
    assert not run.exists()  # nothing trained, nothing exported


def test_cli_option_then_set_precedence(capsys, tmp_path, feature_world):
    """`--set` comes after the CLI options, so its bad value is caught even when --steps is fine."""
    line = _one_line(capsys, ["train", "simzss", str(feature_world.shards), str(tmp_path / "r"),
                              "--steps", "3", "--set", "steps=0"])
    assert "config steps must be an integer >= 1" in line and line.endswith("got 0")


def test_recipe_section_values(capsys, tmp_path, feature_world):
    line = _one_line(capsys, ["train", "simzss", str(feature_world.shards), str(tmp_path / "r"),
                              "--set", "recipe.text.width=wide"])
    assert line == "zss: error: config recipe.text.width must be an integer >= 1, got 'wide'"


def test_demo_n_images_checked_against_its_batch(capsys, tmp_path):
    out = tmp_path / "demo"
    line = _one_line(capsys, ["demo", "--out", str(out), "--n-images", "16"])
    assert "--n-images 16 is too few" in line and "64" in line
    assert not out.exists()  # checked before the synthetic world is written


def test_demo_rebuilds_its_own_folder_and_refuses_a_foreign_one(capsys, tmp_path):
    from zss.commands.demo import prepare_out

    out = tmp_path / "demo_out"  # what an earlier (here: interrupted) demo left behind
    (out / "run" / "checkpoints").mkdir(parents=True)
    (out / "run" / "checkpoints" / "step_000100.safetensors").write_bytes(b"x")
    (out / "shards").mkdir()
    (out / "shards" / "00000.tar").write_bytes(b"kept")
    prepare_out(out)
    assert not (out / "run").exists() and (out / "shards" / "00000.tar").read_bytes() == b"kept"

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("keep me")
    line = _one_line(capsys, ["demo", "--out", str(mine)])
    assert "holds files the demo did not write (thesis.tex)" in line
    assert (mine / "thesis.tex").read_text() == "keep me"


def test_eval_set_value(capsys, tmp_path):
    line = _one_line(capsys, ["eval", "openclip:ViT-B-16:/nowhere.safetensors", "--benchmark", "voc21",
                              "--data-root", str(tmp_path), "--set", "batch_size=many"])
    assert "config batch_size must be an integer" in line and "'many'" in line


def test_segment_set_value(capsys, tmp_path):
    line = _one_line(capsys, ["segment", "openclip:ViT-B-16:/nowhere.safetensors", str(tmp_path), "--vocab", "a,b",
                              "--set", "mode=tiles"])
    assert line == "zss: error: config mode must be slide or whole, got 'tiles'"
