"""`zss segment` over a folder holding bad files (empty, text named .jpg, truncated JPEG, a PNG whose
header claims 30000×30000): every file is tried, each bad one is named with its reason on stderr and
in OUT/summary.json, the good ones are written, and the exit code is 3."""

from __future__ import annotations

import json
import struct
import zlib

import pytest
from PIL import Image

from zss.cli import main


def _bomb_png(path, side: int = 30000) -> None:
    """A real 8×8 PNG whose IHDR is patched to claim side×side pixels (CRC fixed up)."""
    Image.new("RGB", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = 8 + 8  # signature, then length + type of the first chunk
    data[ihdr:ihdr + 8] = struct.pack(">II", side, side)
    crc = zlib.crc32(bytes(data[ihdr - 4:ihdr + 13]))
    data[ihdr + 13:ihdr + 17] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))


@pytest.fixture
def bad_folder(world, tmp_path):
    good = sorted((world / "val" / "images").glob("*.jpg"))[:2]
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a_good.jpg").write_bytes(good[0].read_bytes())
    (folder / "b_empty.jpg").write_bytes(b"")
    (folder / "c_text.jpg").write_text("not an image at all\n")
    (folder / "d_truncated.jpg").write_bytes(good[1].read_bytes()[:300])
    _bomb_png(folder / "e_bomb.png")
    (folder / "z_good.jpg").write_bytes(good[1].read_bytes())  # sorted after every bad one
    return folder


def test_every_file_is_tried_and_each_failure_named(bad_folder, tiny_clip, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["segment", f"openclip:zss-tiny-vit:{tiny_clip}", str(bad_folder), "--vocab", "grass,sky",
                 "--out", str(out), "--set", "templates=photo"])
    err = capsys.readouterr().err
    assert code == 3, err
    assert (out / "a_good.png").is_file() and (out / "z_good_overlay.png").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 6 and len(summary["segmented"]) == 2
    kinds = {f["image"].rsplit("/", 1)[1]: f["kind"] for f in summary["failed"]}
    assert kinds == {"b_empty.jpg": "empty", "c_text.jpg": "not_an_image", "d_truncated.jpg": "unreadable",
                     "e_bomb.png": "too_large"}
    for name in kinds:
        assert sum(1 for ln in err.splitlines() if ln.startswith("zss: skipped") and name in ln) == 1
    assert "30000x30000" in err and "Traceback" not in err
    assert "4 failed" in err.splitlines()[-1]

    # the cap is configurable: a 12-pixel cap refuses the good images too, with the same line
    code = main(["segment", f"openclip:zss-tiny-vit:{tiny_clip}", str(bad_folder / "a_good.jpg"), "--vocab",
                 "grass", "--out", str(tmp_path / "cap"), "--set", "max_pixels=12"])
    assert code == 3 and "over the cap of 12" in capsys.readouterr().err


def test_eval_skips_an_unreadable_image_and_label_and_says_so(world, tiny_clip, tmp_path, capsys):
    import shutil

    from zss.eval.evaluate import run_eval

    root = tmp_path / "world"
    shutil.copytree(world / "val", root / "val")
    shutil.copy(world / "classes.txt", root / "classes.txt")
    images = sorted((root / "val" / "images").iterdir())
    labels = sorted((root / "val" / "annotations").iterdir())
    images[0].write_text("not an image")
    labels[1].write_bytes(b"")
    text = run_eval(f"openclip:zss-tiny-vit:{tiny_clip}", "synth", root, out=tmp_path / "out", limit=4,
                    overrides=["templates=photo"])
    assert "(2 images; computed without 2 skipped" in text
    res = json.loads((tmp_path / "out" / "results.json").read_text())["benchmarks"]["synth"]
    assert res["n_images"] == 2 and res["n_skipped"] == 2
    assert {s["id"] for s in res["skipped"]} == {images[0].stem, labels[1].stem}
    err = capsys.readouterr().err
    assert err.count("zss: skipped") == 2 and "Traceback" not in err


@pytest.mark.slow
def test_ctrl_c_in_segment_is_one_line_and_exit_130(world, tiny_clip, tmp_path):
    import os
    import signal
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from fault_helpers import finish, slow_patch, start_zss, wait_for

    folder = tmp_path / "in"
    folder.mkdir()
    for i, p in enumerate(sorted((world / "val" / "images").glob("*.jpg"))):
        (folder / f"{i:02d}.jpg").write_bytes(p.read_bytes())
    out, log = tmp_path / "out", tmp_path / "seg.log"
    proc = start_zss(["segment", f"openclip:zss-tiny-vit:{tiny_clip}", str(folder), "--vocab", "grass,sky",
                      "--out", str(out), "--set", "templates=photo"], log,
                     slow_patch("zss.eval.segment:segment_image", 1.5))
    wait_for(lambda: (out / "00.json").is_file(), proc, log)
    os.killpg(proc.pid, signal.SIGINT)
    assert finish(proc) == 130
    text = log.read_text()
    lines = [ln for ln in text.splitlines() if ln.startswith("zss: interrupted after")]
    assert len(lines) == 1 and "Traceback" not in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] and 1 <= len(summary["segmented"]) < 8
