"""Through the real command line: PixelCLIP's protocol sizes the image by the model's architecture
(configs/pixelclip_convnext_base.yaml L4: 640 for ConvNeXt-B; pixelclip/config.py L36: 320 for ViT-B),
and NACLIP's whole-image sets keep the floored grid; results.json records both."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from zss.models.clip_dense import save_random_openclip


def _zss(*args) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("zss")
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=300)


def test_eval_records_the_resolved_sizes(bench_root, tmp_path):
    ckpt = save_random_openclip("zss-tiny-convnext", tmp_path / "cnx.safetensors", seed=0)
    out = tmp_path / "out"
    r = _zss("eval", f"openclip:zss-tiny-convnext:{ckpt}", "--benchmark", "ade20k", "--protocol", "pixelclip",
             "--data-root", bench_root, "--limit", "1", "--out", out, "--set", "templates=word")
    assert r.returncode == 0, r.stderr
    bench = json.loads((out / "results.json").read_text())["benchmarks"]["ade20k"]
    assert (bench["inference"]["squash"], bench["squash_from"]) == (640, "zss-tiny-convnext -> convnext")
    assert bench["inference"]["feature_size"] == 64
    # a model whose architecture cannot be told: one line, exit 2
    bad = _zss("eval", str(tmp_path / "no-model"), "--benchmark", "ade20k", "--protocol", "pixelclip",
               "--data-root", bench_root, "--limit", "1", "--out", tmp_path / "bad")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "architecture" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
