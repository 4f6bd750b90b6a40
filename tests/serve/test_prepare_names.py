"""`zss serve --prepare-names`: each model's name index is loaded or built at start in a background
thread, and the first "name it for me" request uses that namer instead of building its own."""

from __future__ import annotations

import time

import numpy as np


def test_prepare_names_builds_the_namer_in_the_background_once(tiny_clip, tmp_path, monkeypatch):
    import zss.eval.auto_segment as auto_segment
    from zss.serve.app import Service

    monkeypatch.setenv("ZSS_CACHE", str(tmp_path / "cache"))
    built = []
    real = auto_segment.make_namer

    def counting(*args, **kwargs):
        built.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(auto_segment, "make_namer", counting)
    bank = tmp_path / "names.txt"
    bank.write_text("grass;lawn\nwater;sea\nsky\nsand\n")
    spec = f"openclip:zss-tiny-vit:{tiny_clip}"
    service = Service([spec], name_bank=str(bank), prepare_names=True)
    deadline = time.time() + 120
    while spec not in service._namers and time.time() < deadline:
        time.sleep(0.2)
    assert spec in service._namers and built == [spec]
    image = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)
    from io import BytesIO

    from PIL import Image

    buf = BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    out = service.segment(buf.getvalue(), "", [spec], auto=True)
    assert out["classes"] == "auto" and out["results"][0]["names"] is not None
    assert built == [spec]                       # the request reused the prepared namer
