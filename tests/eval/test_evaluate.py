"""`zss eval` / `zss segment` end to end on a random-init tiny OpenCLIP loaded from a local file."""

import json

import numpy as np
import pytest
from PIL import Image

from zss.cli import main
from zss.errors import ZssError
from zss.eval.evaluate import evaluate_benchmark, protocol_config, run_eval, select_benchmarks
from zss.eval.benchmarks import get_benchmark
from zss.eval.segment import run_segment
from zss.recipes import load_segmenter


def test_protocol_presets_carry_the_papers_settings():
    v21 = protocol_config("voc21", "sclip")
    assert (v21.short_side, v21.mode, v21.crop, v21.stride, v21.prob_thd) == (336, "slide", 224, 112, 0.1)
    assert protocol_config("cityscapes", "sclip").short_side == 560
    ade = protocol_config("ade20k", "pixelclip", ["templates=photo"], model="openclip:ViT-B-16")
    assert (ade.short_side, ade.mode, ade.templates) == (640, "whole", "photo")
    with pytest.raises(ZssError, match="does not define benchmark 'voc21'"):
        protocol_config("voc21", "pixelclip")
    with pytest.raises(ZssError, match="unknown config key"):
        protocol_config("voc21", "sclip", ["windw=3"])


def test_eval_synth_writes_results_and_predictions(world, tiny_clip_ckpt, tmp_path):
    text = run_eval(tiny_clip_ckpt, "synth", world, out=tmp_path, save_predictions=True, limit=3,
                    overrides=["templates=photo"])
    assert "synth: mIoU" in text
    res = json.loads((tmp_path / "results.json").read_text())["benchmarks"]["synth"]
    assert res["n_images"] == 3 and res["num_classes"] == 10 and 0 <= res["mIoU"] <= 100
    assert [c["name"] for c in res["per_class"]][:2] == ["grass", "water"]
    preds = sorted((tmp_path / "predictions" / "synth").glob("*.png"))
    assert len(preds) == 3
    sample = get_benchmark("synth").samples(world)[0]
    assert np.asarray(Image.open(preds[0])).shape == np.asarray(Image.open(sample.label)).shape
    assert "| 0 | grass |" in (tmp_path / "results.md").read_text()


def test_eval_all_prints_the_paper_row(bench_root, tiny_clip_ckpt, tmp_path):
    text = run_eval(tiny_clip_ckpt, "all", bench_root, out=tmp_path, limit=1,
                    overrides=["templates=photo", "short_side=16", "crop=16", "stride=8"])
    header = text.splitlines()[-3].split()
    assert header == ["V21", "C60", "Obj", "V20", "C59", "Stuff", "City", "ADE", "Avg"]
    payload = json.loads((tmp_path / "results.json").read_text())
    assert set(payload["summary"]) == set(header)
    assert payload["benchmarks"]["ade20k"]["reduce_zero_label"] is True
    # the pixelclip protocol covers the five sets without background
    assert [b.name for b in select_benchmarks("all", bench_root, "pixelclip")] == \
        ["voc20", "context59", "coco_stuff", "cityscapes", "ade20k"]
    with pytest.raises(ZssError, match="no benchmark"):
        select_benchmarks("all", tmp_path, "sclip")


def test_colour_model_scores_perfectly_on_a_colour_benchmark(tmp_path, colour_model, write_png):
    # a synth-layout tree whose classes are colours: an exact model must reach 100 mIoU
    (tmp_path / "classes.txt").write_text("red\ngreen;lime\nblue\n")
    rng = np.random.default_rng(0)
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    for i in range(2):
        label = np.repeat(np.repeat(rng.integers(0, 3, (4, 5)), 8, 0), 8, 1).astype(np.uint8)
        label[:8, :8] = 255
        Image.fromarray(colours[np.where(label == 255, 0, label)]).save(_mk(tmp_path / "val/images" / f"{i}.png"))
        write_png(label, tmp_path / "val/annotations" / f"{i}.png")
    for path in (tmp_path / "val/images").glob("*.png"):   # the synth reader reads .jpg images
        Image.open(path).save(path.with_suffix(".jpg"), quality=100)
        path.unlink()
    cfg = protocol_config("synth", "zss", ["templates=photo"])
    res = evaluate_benchmark(colour_model, get_benchmark("synth"), tmp_path, cfg, "cpu")
    assert res["mIoU"] > 99.0


def _mk(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_segment_one_image_and_a_folder(world, tiny_clip_ckpt, tmp_path):
    images = sorted((world / "val" / "images").glob("*.jpg"))[:2]
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for i, p in enumerate(images):
        (folder / ("sub" if i else "") / p.name).write_bytes(p.read_bytes())
    run_segment(tiny_clip_ckpt, images[0], vocab="grass;lawn,water,ball", out=tmp_path / "one",
                overrides=["templates=photo"])
    stem = images[0].stem
    for suffix in (".png", "_overlay.png", ".json"):
        assert (tmp_path / "one" / f"{stem}{suffix}").is_file()
    label = np.asarray(Image.open(tmp_path / "one" / f"{stem}.png"))
    assert label.shape == np.asarray(Image.open(images[0])).shape[:2] and label.max() <= 2
    areas = json.loads((tmp_path / "one" / f"{stem}.json").read_text())
    assert sum(c["pixels"] for c in areas["classes"]) == label.size
    assert {c["name"] for c in areas["classes"]} <= {"grass", "water", "ball"}
    overlay = Image.open(tmp_path / "one" / f"{stem}_overlay.png")
    assert overlay.width > label.shape[1]                      # legend to the right
    vocab_file = tmp_path / "v.txt"
    vocab_file.write_text("grass\nsky\n")
    text = run_segment(tiny_clip_ckpt, folder, vocab_file=vocab_file, out=tmp_path / "many",
                       overrides=["templates=photo"])
    assert "2 image(s)" in text
    assert (tmp_path / "many" / "sub" / f"{images[1].stem}_overlay.png").is_file()
    assert (tmp_path / "many" / f"{images[0].stem}.json").is_file()
    with pytest.raises(ZssError, match="exactly one"):
        run_segment(tiny_clip_ckpt, folder, out=tmp_path / "x")


def test_model_spec_errors_and_cli_exit_codes(tmp_path, world, tiny_clip_ckpt, capsys):
    with pytest.raises(ZssError, match="neither a directory"):
        load_segmenter(str(tmp_path / "missing"))
    with pytest.raises(ZssError, match="not a zss model directory"):
        load_segmenter(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"kind": "mystery"}))
    with pytest.raises(ZssError, match="unknown model kind"):
        load_segmenter(str(tmp_path))
    assert main(["eval", tiny_clip_ckpt, "--benchmark", "nope", "--data-root", str(world)]) == 2
    assert "unknown benchmark" in capsys.readouterr().err
    out = tmp_path / "cli"
    assert main(["eval", tiny_clip_ckpt, "--benchmark", "synth", "--data-root", str(world), "--out", str(out),
                 "--limit", "1", "--set", "templates=photo"]) == 0
    assert (out / "results.md").is_file()
