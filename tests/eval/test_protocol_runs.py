"""End to end: the user's own labelled folder, and every protocol on tiny VOC2012/ADE20K trees."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from zss.cli import main
from zss.errors import ZssError
from zss.eval.evaluate import run_eval
from zss.eval.protocols import resolve

FAST = ["templates=word", "short_side=32"]


def _as_folder(world, dest):
    """The synthetic world's val split laid out as an mmseg-style custom folder."""
    shutil.copytree(world / "val" / "images", dest / "images")
    shutil.copytree(world / "val" / "annotations", dest / "annotations")
    shutil.copy(world / "classes.txt", dest / "classes.txt")
    return dest


def test_folder_gives_the_same_miou_as_synth(world, tiny_clip_ckpt, tmp_path):
    folder = _as_folder(world, tmp_path / "mydata")
    run_eval(tiny_clip_ckpt, "synth", world, out=tmp_path / "a", limit=4, overrides=["templates=photo"])
    text = run_eval(tiny_clip_ckpt, "folder", folder, out=tmp_path / "b", limit=4, overrides=["templates=photo"],
                    save_predictions=True)
    a = json.loads((tmp_path / "a" / "results.json").read_text())
    b = json.loads((tmp_path / "b" / "results.json").read_text())
    assert a["protocol"] == b["protocol"] == "zss" and b["protocol_info"]["name"] == "zss"
    ra, rb = a["benchmarks"]["synth"], b["benchmarks"]["folder"]
    assert rb["mIoU"] == ra["mIoU"] and rb["aAcc"] == ra["aAcc"] and rb["n_images"] == 4
    assert [c["IoU"] for c in rb["per_class"]] == [c["IoU"] for c in ra["per_class"]]
    assert "[zss] folder: mIoU" in text
    assert len(list((tmp_path / "b" / "predictions" / "folder").glob("*.png"))) == 4
    md = (tmp_path / "b" / "results.md").read_text()
    assert "| id | class | queries | IoU | Acc |" in md and "| 0 | grass | grass; lawn |" in md


def test_folder_reports_bad_label_maps_and_goes_on(tmp_path, colour_model, tiny_clip_ckpt, write_png):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "classes.txt").write_text("background;sky\nred thing\nblue thing\n")
    (root / "dataset.yaml").write_text("ignore_index: 254\nbackground: background\n")
    img = np.zeros((16, 20, 3), np.uint8)
    good = np.zeros((16, 20), np.uint8)
    good[:, 10:] = 1
    good[0, 0] = 254                                        # the ignore index of dataset.yaml
    for name, label in [("good", good), ("small", good[:8]), ("big_value", np.full((16, 20), 7, np.uint8))]:
        Image.fromarray(img).save(root / "images" / f"{name}.jpg")
        write_png(label, root / "annotations" / f"{name}.png")
    run_eval(tiny_clip_ckpt, "folder", root, out=tmp_path / "out", overrides=FAST)
    res = json.loads((tmp_path / "out" / "results.json").read_text())["benchmarks"]["folder"]
    assert res["n_images"] == 1 and res["ignore_index"] == 254 and res["background"] == 0
    problems = {s["id"]: s["problem"] for s in res["skipped"]}
    assert problems["small"] == "label map is 20x8 but its image is 20x16 (width x height)"
    assert problems["big_value"].startswith("label values 7 exceed the 3 classes of classes.txt")
    assert "Skipped 2 image(s)" in (tmp_path / "out" / "results.md").read_text()
    (root / "dataset.yaml").write_text("background: 5\n")
    with pytest.raises(ZssError, match="background index 5"):
        run_eval(tiny_clip_ckpt, "folder", root, out=tmp_path / "out", overrides=FAST)
    (root / "dataset.yaml").write_text("ignore: 3\n")
    with pytest.raises(ZssError, match="unknown key"):
        run_eval(tiny_clip_ckpt, "folder", root, out=tmp_path / "out", overrides=FAST)


@pytest.fixture(scope="module")
def voc_ade_root(bench_root, tmp_path_factory):
    """Only the VOC2012 and ADE20K trees of `bench_root` (mmseg layouts)."""
    root = tmp_path_factory.mktemp("voc_ade")
    (root / "VOCdevkit").mkdir()
    (root / "VOCdevkit" / "VOC2012").symlink_to(bench_root / "VOCdevkit" / "VOC2012")
    (root / "ADEChallengeData2016").symlink_to(bench_root / "ADEChallengeData2016")
    return root


@pytest.mark.slow
def test_protocol_all_scores_the_baseline_under_every_protocol(voc_ade_root, tiny_clip, tmp_path, capsys):
    model = f"openclip:zss-tiny-vit:{tiny_clip}"
    code = main(["eval", model, "--benchmark", "all", "--data-root", str(voc_ade_root), "--protocol", "all",
                 "--limit", "1", "--out", str(tmp_path), "--set", "templates=word", "--set", "short_side=32"])
    assert code in (0, None)
    out = capsys.readouterr().out
    protocols = ["sclip", "clearclip", "proxyclip", "naclip", "talk2dino", "pixelclip", "zss"]
    summary = [line.split()[0] for line in out.splitlines() if line.split() and line.split()[0] in protocols
               and not line.startswith("[")]
    assert summary == protocols                                   # one summary row per protocol
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["protocol"] == "all" and list(payload["protocols"]) == protocols
    for proto, run in payload["protocols"].items():
        expected = ["voc20", "ade20k"] if proto == "pixelclip" else ["voc21", "voc20", "ade20k"]
        assert list(run["benchmarks"]) == expected
        assert run["protocol_info"]["repository"]
        for name, r in run["benchmarks"].items():
            want = resolve(proto, name, ["templates=word", "short_side=32"], model=model)
            assert r["inference"] == json.loads(json.dumps(want.record()["inference"]))
            assert r["classes"] == want.classes and r["source"] == want.source and r["n_images"] == 1
            assert 0 <= r["mIoU"] <= 100
    assert payload["protocols"]["sclip"]["benchmarks"]["voc21"]["inference"]["area_thd"] == 0.1
    assert payload["protocols"]["naclip"]["benchmarks"]["voc21"]["inference"]["pamr_steps"] == 10
    pix = payload["protocols"]["pixelclip"]["benchmarks"]["ade20k"]
    assert (pix["inference"]["squash"], pix["squash_from"]) == (320, "zss-tiny-vit -> vit")
    md = (tmp_path / "results.md").read_text()
    assert "## Summary per protocol" in md and "| talk2dino |" in md
