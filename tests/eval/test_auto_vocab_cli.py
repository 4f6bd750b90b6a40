"""`--vocab auto:FILE` through the real command line on the synthetic world (a random tiny OpenCLIP
saved to a local file, a user name bank): `zss segment` lists the chosen names per image, `zss eval`
reports the mapped mIoU, name recall/precision and the given-vocabulary mIoU; bad banks are one
line and exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zss.cli import main

BANK = "grass;lawn\nwater;sea\nsand\nwall\nsky\nball\ntraffic cone\nbox;crate\nflower\ntire\ndog\nbicycle\n"


def _zss(args: list[str], cache: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, ZSS_CACHE=str(cache), OMP_NUM_THREADS="2")
    return subprocess.run([sys.executable, "-m", "zss.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=env)


@pytest.fixture
def bank_file(tmp_path) -> Path:
    path = tmp_path / "names.txt"
    path.write_text(BANK)
    return path


def test_segment_auto_lists_names_per_image(world, tiny_clip, bank_file, tmp_path):
    out = tmp_path / "seg"
    images = sorted((world / "val" / "images").iterdir())[:2]
    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in images:
        (folder / p.name).write_bytes(p.read_bytes())
    proc = _zss(["segment", f"openclip:zss-tiny-vit:{tiny_clip}", folder, "--vocab", f"auto:{bank_file}",
                 "--out", out, "--set", "auto.k=4"], tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr
    assert "segmented 2 image(s)" in proc.stdout
    assert f"vocabulary: auto, chosen per image from the name bank {bank_file}: 12 names" in proc.stderr
    bank_names = {line.split(";")[0] for line in BANK.split()}
    for p in images:
        rec = json.loads((out / f"{p.stem}.json").read_text())
        chosen = [n["name"] for n in rec["auto_vocabulary"]]
        assert chosen and set(chosen) <= bank_names and len(chosen) <= 4
        assert [v[0] for v in rec["vocabulary"]] == chosen + ["unknown"]
        for n in rec["auto_vocabulary"]:
            assert {"id", "score", "cosine", "region_area", "area", "queries"} <= set(n)
            assert n["id"].startswith("line:") and 0 < n["region_area"] <= 1
        label = np.asarray(Image.open(out / f"{p.stem}.png"))
        assert label.max() < len(rec["vocabulary"])
        assert {c["name"] for c in rec["classes"]} <= set(chosen) | {"unknown"}
    assert len(list((tmp_path / "cache" / "name-index").glob("*.faiss"))) == 1   # one index, cached


def test_eval_auto_reports_mapped_miou_recall_and_given(world, tiny_clip, bank_file, tmp_path):
    out = tmp_path / "ev"
    proc = _zss(["eval", f"openclip:zss-tiny-vit:{tiny_clip}", "--benchmark", "synth", "--data-root", world,
                 "--vocab", f"auto:{bank_file}", "--limit", "3", "--out", out], tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr
    assert "--vocab auto: mIoU" in proc.stdout and "name recall" in proc.stdout and "given vocabulary" in proc.stdout
    r = json.loads((out / "results.json").read_text())["benchmarks"]["synth"]
    assert r["vocab"] == "auto" and r["n_images"] == 3 and r["mapping_max_depth"] == 3
    assert 0 <= r["name_recall"] <= 100 and 0 <= r["name_precision"] <= 100 and r["mIoU"] is not None
    assert r["given_vocab"]["mIoU"] is not None
    for name, row in r["name_map"].items():   # user-bank names map by their words only
        assert row["class"] in (None, name) and row["relation"] in (None, "synset")


def test_segment_auto_with_dino_regions(world, tiny_clip, bank_file, tmp_path):
    """`--set auto.regions=dino auto.dino_checkpoint=...`: regions from a (random-weight) DINO ViT-S/16;
    a missing checkpoint is one line, exit 2."""
    from zss.models.random_init import save_random_timm

    ckpt = save_random_timm("vit_small_patch16_224.dino", tmp_path / "dino.safetensors", img_size=64, seed=0)
    folder = tmp_path / "imgs"
    folder.mkdir()
    image = sorted((world / "val" / "images").iterdir())[0]
    (folder / image.name).write_bytes(image.read_bytes())
    base = ["segment", f"openclip:zss-tiny-vit:{tiny_clip}", folder, "--vocab", f"auto:{bank_file}", "--out",
            tmp_path / "seg", "--set", "auto.k=3", "--set", "auto.regions=dino", "--set", "auto.dino_img_size=64", "--set"]
    proc = _zss(base + [f"auto.dino_checkpoint={ckpt}"], tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr
    rec = json.loads((tmp_path / "seg" / f"{image.stem}.json").read_text())
    assert 1 <= len(rec["auto_vocabulary"]) <= 3
    assert sum(n["region_area"] for n in rec["auto_vocabulary"]) + rec["unknown_fraction"] == pytest.approx(1, abs=1e-3)
    proc = _zss(base + [f"auto.dino_checkpoint={tmp_path / 'missing.safetensors'}"], tmp_path / "cache")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if "auto.dino_checkpoint" in line]) == 1


def test_segment_auto_with_sam_regions(world, tiny_clip, bank_file, tmp_path):
    """`--set auto.regions=sam auto.sam_checkpoint=test_tiny:PATH`: regions from segment-anything's
    automatic masks (zss's batched generator; random tiny weights, thresholds 0 so masks come out)."""
    from zss.models.random_init import save_random_sam

    ckpt = save_random_sam("test_tiny", tmp_path / "sam.safetensors", seed=0)
    folder = tmp_path / "imgs"
    folder.mkdir()
    image = sorted((world / "val" / "images").iterdir())[0]
    (folder / image.name).write_bytes(image.read_bytes())
    sets = ["auto.k=3", "auto.regions=sam", "auto.sam_points_per_side=4", "auto.sam_pred_iou_thresh=0",
            "auto.sam_stability_thresh=0"]
    base = ["segment", f"openclip:zss-tiny-vit:{tiny_clip}", folder, "--vocab", f"auto:{bank_file}", "--out",
            tmp_path / "seg"] + [a for kv in sets for a in ("--set", kv)]
    proc = _zss(base + ["--set", f"auto.sam_checkpoint=test_tiny:{ckpt}"], tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr
    rec = json.loads((tmp_path / "seg" / f"{image.stem}.json").read_text())
    assert 1 <= len(rec["auto_vocabulary"]) <= 3
    assert sum(n["region_area"] for n in rec["auto_vocabulary"]) + rec["unknown_fraction"] == pytest.approx(1, abs=1e-3)
    proc = _zss(base + ["--set", "auto.sam_checkpoint=missing.pth"], tmp_path / "cache")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if "auto.sam_checkpoint" in line]) == 1


@pytest.mark.parametrize("content, message", [
    (None, "not found"), ("", "is empty"), ("123\nbackground\n", "no usable names"), ("-", "needs a file")])
def test_bad_banks_are_one_line_exit_2(tmp_path, capsys, content, message):
    bank = tmp_path / "bank.txt"
    if content not in (None, "-"):
        bank.write_text(content)
    vocab = "auto:" if content == "-" else f"auto:{bank}"
    for argv in (["segment", "no-model", str(tmp_path), "--vocab", vocab],
                 ["eval", "no-model", "--benchmark", "synth", "--data-root", str(tmp_path), "--vocab", vocab]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_eval_vocab_other_than_auto_and_stray_auto_settings(tmp_path, capsys):
    assert main(["eval", "m", "--benchmark", "synth", "--data-root", str(tmp_path), "--vocab", "cat,dog"]) == 2
    assert "auto or auto:FILE" in capsys.readouterr().err
    assert main(["segment", "m", str(tmp_path), "--vocab", "cat,dog", "--set", "auto.k=3"]) == 2
    assert "only apply with --vocab auto" in capsys.readouterr().err
