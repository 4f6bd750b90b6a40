"""`zss eval --protocol pixelclip --benchmark voc20` on a model imported from a release-shaped
detectron2 checkpoint (`zss import pixelclip`), over a tiny mmseg-layout VOC2012 tree."""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

from test_pixelclip_import import ARCH_Q, _release_state
from zss.cli import main


def _voc_tree(root):
    """VOCdevkit/VOC2012 with two 24x32 images in val.txt; label stripes (0 background, 255 ignore)."""
    voc = root / "VOCdevkit" / "VOC2012"
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    for d in ("JPEGImages", "SegmentationClass"):
        (voc / d).mkdir()
    ids = {"2007_000033": [0, 1, 15, 255], "2007_000042": [0, 20, 255, 7]}
    g = np.random.default_rng(0)
    for sid, values in ids.items():
        Image.fromarray(g.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(voc / "JPEGImages" / f"{sid}.jpg")
        lab = np.zeros((24, 32), np.uint8)
        for i, v in enumerate(values):
            lab[:, i * 8:(i + 1) * 8] = v
        im = Image.fromarray(lab, mode="P")
        im.putpalette([c for i in range(256) for c in (i, (i * 7) % 256, (i * 13) % 256)])
        im.save(voc / "SegmentationClass" / f"{sid}.png")
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(ids) + "\n")
    return root


def test_eval_protocol_pixelclip_voc20_on_an_imported_model(tmp_path, capsys):
    ckpt = tmp_path / "model_final.pth"
    torch.save({"model": _release_state(), "iteration": torch.tensor(9999)}, ckpt)
    model = tmp_path / "imported"
    assert main(["import", "pixelclip", str(ckpt), str(model), "--arch", ARCH_Q, "--img-size", "64"]) == 0
    root = _voc_tree(tmp_path / "data")
    code = main(["eval", str(model), "--protocol", "pixelclip", "--benchmark", "voc20",
                 "--data-root", str(root), "--out", str(tmp_path / "out")])
    assert code in (0, None), capsys.readouterr().err
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert res["protocol"] == "pixelclip"
    r = res["benchmarks"]["voc20"]
    assert r["n_images"] == 2 and r["classes"] == "pixelclip/voc20" and len(r["per_class"]) == 20
    assert 0 <= r["mIoU"] <= 100
    assert r["inference"]["squash"] == 320 and r["inference"]["feature_size"] == 64
    assert r["inference"]["templates"] == "imagenet_select"
