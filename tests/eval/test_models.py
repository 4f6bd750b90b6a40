"""`zss eval` / `zss segment` on the zss model-directory kinds, through `load_segmenter`."""

import json

import numpy as np
import torch

from zss.eval.evaluate import run_eval
from zss.recipes import load_segmenter


def test_simzss_run_dir_evaluates(simzss_model_dir, world, tmp_path):
    model = load_segmenter(str(simzss_model_dir))               # a run dir: its model/ is used
    assert model.patch_size == 14 and model.default_size == 56
    dense = model.encode_dense(torch.rand(1, 3, 56, 84))       # any size (dynamic pos-embeds)
    assert dense.shape == (1, 384, 4, 6)
    torch.testing.assert_close(dense.norm(dim=1), torch.ones(1, 4, 6))
    text = run_eval(str(simzss_model_dir / "model"), "synth", world, out=tmp_path / "ev", limit=2,
                    overrides=["templates=photo", "short_side=56"])
    assert "synth: mIoU" in text
    res = json.loads((tmp_path / "ev" / "results.json").read_text())["benchmarks"]["synth"]
    assert res["n_images"] == 2 and res["inference"]["short_side"] == 56


def test_pixelclip_model_dir_evaluates(tiny_clip_ckpt, world, tmp_path):
    from zss.models.clip_dense import load_clip_dense
    from zss.recipes.pixelclip.segmenter import write_model_dir
    from zss.recipes.pixelclip.model import PixelCLIPNet

    arch, ckpt = tiny_clip_ckpt.split(":", 2)[1:]
    net = PixelCLIPNet(load_clip_dense(arch, ckpt), mode="full", k=4)
    model_dir = write_model_dir(net, tmp_path / "pc", default_size=64, source={"test": True})
    seg = load_segmenter(str(model_dir))
    base = load_segmenter(tiny_clip_ckpt)
    x = torch.rand(1, 3, 64, 64)
    # untrained export = the CLIP it started from: same dense features as the training-free baseline
    torch.testing.assert_close(seg.encode_dense(x), base.encode_dense(x))
    run_eval(str(model_dir), "synth", world, out=tmp_path / "ev", limit=1, overrides=["templates=photo"])
    res = json.loads((tmp_path / "ev" / "results.json").read_text())["benchmarks"]["synth"]
    assert res["n_images"] == 1 and np.isfinite(res["aAcc"])
