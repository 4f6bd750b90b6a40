"""Source readers: fixed order, all captions kept, the same sample through every layout, and
broken items as rows with a status (never an exception)."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from zss.errors import ZssError
from zss.ingest.sources import load_ref, open_source
from zss.formats.rle import _rle_counts_total
from zss.ingest.sources.base import MAX_CAPTION_CHARS


def test_world_root_resolves_to_coco_and_layouts_agree(world):
    coco = open_source(world)
    assert coco.kind == "coco" and len(coco) == 24
    doc = json.loads((world / "train/captions.json").read_text())
    first_id = min(im["id"] for im in doc["images"])
    rows = list(coco)
    assert [r["index"] for r in rows] == list(range(24))
    assert rows[0]["source_id"] == str(first_id)
    assert json.loads(rows[0]["captions"]) == [a["caption"] for a in doc["annotations"]
                                               if a["image_id"] == first_id]
    wds = open_source(f"webdataset:{world}/train/wds")
    sa1b = open_source(world / "train/sa1b")
    assert wds.kind == "webdataset" and sa1b.kind == "sa1b" and len(wds) == len(sa1b) == 24
    w0, s0 = wds.load(wds.ref(0)), load_ref(sa1b.ref(0))  # load_ref: the worker-side entry
    assert w0["image_bytes"] == rows[0]["image_bytes"] == s0["image_bytes"]
    assert w0["captions"] == rows[0]["captions"] == s0["captions"]  # sa1b: from the sa_N.txt sidecar
    anns = json.loads(s0["src_masks"])
    assert anns and all(a["segmentation"]["size"] == anns[0]["segmentation"]["size"] for a in anns)
    assert [r["source_id"] for r in open_source(world / "train/sa1b")][:2] == ["sa_1", "sa_2"]
    folder = open_source(f"folder:{world}/val/images")
    assert folder.kind == "folder" and len(folder) == 8 and all(r["status"] == "ok" for r in folder)
    assert folder.describe()["n"] == 8 and coco.describe()["kind"] == "coco"


def test_rle_check_matches_pycocotools():
    rng = np.random.default_rng(0)
    for h, w in [(5, 7), (31, 17), (64, 64)]:
        m = np.asfortranarray((rng.random((h, w)) > rng.random()).astype(np.uint8))
        counts = mask_utils.encode(m)["counts"].decode()
        assert _rle_counts_total(counts) == h * w
    assert _rle_counts_total([1, 2, 1]) == 4  # uncompressed COCO counts
    with pytest.raises(ValueError):
        _rle_counts_total("0h0X2!")  # '!' is outside the RLE alphabet
    with pytest.raises(ValueError):
        _rle_counts_total("0h0X2o")  # continuation bit set on the last char: truncated


def _rle(h, w):
    return {"size": [h, w], "counts": mask_utils.encode(np.asfortranarray(np.ones((h, w), np.uint8)))["counts"].decode()}


def test_broken_items_become_rows(tmp_path, world):
    # COCO: a listed file that is missing, a huge caption, a lone surrogate (non-UTF-8 in JSON)
    img = (world / "train/images").iterdir().__next__().read_bytes()
    (tmp_path / "images").mkdir()
    (tmp_path / "images/a.jpg").write_bytes(img)
    (tmp_path / "images/c.jpg").write_bytes(img)
    (tmp_path / "images/d.jpg").write_bytes(img)
    doc = {"images": [{"id": i, "file_name": f} for i, f in enumerate(["a.jpg", "b.jpg", "c.jpg", "d.jpg"])],
           "annotations": [{"id": 0, "image_id": 0, "caption": "  a   red ball "},
                           {"id": 1, "image_id": 1, "caption": "ok"},
                           {"id": 2, "image_id": 2, "caption": "x" * (MAX_CAPTION_CHARS + 1)},
                           {"id": 3, "image_id": 3, "caption": "bad \udc80 text"}]}
    (tmp_path / "captions.json").write_text(json.dumps(doc))
    rows = list(open_source(tmp_path))
    assert [r["status"] for r in rows] == ["ok", "missing_file", "bad_caption", "bad_caption"]
    assert json.loads(rows[0]["captions"]) == ["a red ball"]
    assert "b.jpg" in rows[1]["error"] and "exceeds" in rows[2]["error"] and "surrogate" in rows[3]["error"]

    # SA-1B: broken RLE, unparsable JSON, missing image, non-UTF-8 / empty sidecar captions
    sa = tmp_path / "sa"
    sa.mkdir()
    for i in range(1, 7):
        (sa / f"sa_{i}.jpg").write_bytes(img)
        (sa / f"sa_{i}.json").write_text(json.dumps({"annotations": [{"segmentation": _rle(4, 4)}]}))
    bad_rle = _rle(4, 4)
    bad_rle["counts"] = "5"  # 5 pixels for a 4x4 mask: would overflow pycocotools' decoder
    (sa / "sa_2.json").write_text(json.dumps({"annotations": [{"segmentation": bad_rle}]}))
    (sa / "sa_3.json").write_text("{not json")
    (sa / "sa_4.jpg").unlink()
    (sa / "sa_5.txt").write_bytes(b"caf\xe9 latin-1")
    (sa / "sa_6.txt").write_text("\n  \n")
    rows = list(open_source(f"sa1b:{sa}"))
    assert [r["status"] for r in rows] == ["ok", "bad_masks", "bad_masks", "missing_file",
                                           "bad_caption", "bad_caption"]
    assert "covers 5 pixels" in rows[1]["error"] and "not UTF-8" in rows[4]["error"]

    # webdataset: a sample without image, a broken json, a non-UTF-8 txt
    tar_path = tmp_path / "shard.tar"
    with tarfile.open(tar_path, "w") as tar:
        for name, data in [("k0.jpg", img), ("k0.txt", b"a ball"), ("k1.txt", b"no image"),
                           ("k2.jpg", img), ("k2.json", b"{oops"), ("k3.jpg", img), ("k3.txt", b"\xff\xfe")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    rows = list(open_source(tar_path))
    assert [(r["source_id"], r["status"]) for r in rows] == [
        ("k0", "ok"), ("k1", "missing_file"), ("k2", "bad_caption"), ("k3", "bad_caption")]


def test_unforeseen_reader_failure_is_a_row():
    row = load_ref({"kind": "coco", "index": 3, "source_id": "x", "path": "/nope", "captions": 5})
    assert (row["index"], row["status"], row["image_bytes"]) == (3, "read_error", b"")
    assert row["error"].startswith("TypeError")


def test_open_source_errors(tmp_path):
    with pytest.raises(ZssError, match="unknown source kind"):
        open_source("s3bucket:/x")
    with pytest.raises(ZssError, match="not found"):
        open_source(tmp_path / "nothing")
    with pytest.raises(ZssError, match="no images"):
        open_source(f"folder:{tmp_path}")
    with pytest.raises(ZssError, match="not found"):
        open_source(f"coco:{tmp_path}")
