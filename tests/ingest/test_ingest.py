"""End to end through Ray with the real stages: the shard contract on the synthetic world (COCO
source + dino-kmeans, SAM masks, SA-1B source with masks from file and a corpus of bad inputs), and
`zss inspect` reading it back. Runs on a 2-CPU Ray: a hang fails the timeout."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from zss.cli import main
from zss.formats import shards as sh
from zss.ingest.inspect import inspect_shards
from zss.ingest.runner import run_ingest
from zss.ingest.sources import open_source
from zss.ingest.stages.decode import DecodeConfig, decode_image, resize_masks
from zss.models.tokenizer import tokenize

pytestmark = [pytest.mark.timeout(240), pytest.mark.usefixtures("ray_2cpu")]


def _tar_samples(out):
    return [s for tar in sh.shard_tars(out) for s in sh.iter_samples(tar)]


def test_coco_dino_kmeans_contract(ingested_shards, ingest_kwargs, world, capsys):
    out = ingested_shards
    assert sh.validate_shards(out) == []
    m = sh.read_manifest(out)
    feats = m["models"]["features"]
    assert feats["name"] == "vit_small_patch14_dinov2" and feats["img_size"] == 112
    assert feats["checkpoint"] == ingest_kwargs["features"].split(":", 1)[1] and len(feats["sha256"]) == 64
    assert m["feature"] == {"grid": [8, 8], "dim": 384, "dtype": "float16"}
    assert m["models"]["masks"]["mode"] == "dino-kmeans" and m["complete"]
    assert [(s["id"], s["n"], s["n_ok"]) for s in m["shards"]] == [(0, 8, 8), (1, 8, 8), (2, 8, 8)]
    assert m["source"]["kind"] == "coco" and m["source"]["n"] == 24
    bank = json.loads((out / "concepts.json").read_text())
    assert sh.sha256_file(out / "concepts.json") == m["concept_bank"]["sha256"]
    names = {c["id"]: c["name"] for c in bank["concepts"]}

    samples = _tar_samples(out)
    coco = list(open_source(world))
    assert [s["meta"]["source_id"] for s in samples] == [r["source_id"] for r in coco]
    assert [s["key"] for s in samples[:9]] == [f"0000000{i:02d}" for i in range(8)] + ["000010000"]
    n_concepts = 0
    for s, row in zip(samples, coco):
        meta = s["meta"]
        assert s["patch"].shape == (8, 8, 384) and s["patch"].dtype == np.float16
        assert s["global"].shape == (384,) and np.isfinite(s["patch"].astype(np.float32)).all()
        assert meta["captions"] == json.loads(row["captions"]) and meta["size"] == [112, 112]
        assert Image.open(io.BytesIO(s["jpg"])).size == (112, 112)
        # dino-kmeans masks partition the resized image
        assert 1 <= len(s["masks"]) <= 16
        union = sum(mask_utils.decode(a["segmentation"]).astype(int) for a in s["masks"])
        assert union.shape == (112, 112) and (union == 1).all()
        for caption, occurrences, ids in zip(meta["captions"], meta["concepts"], meta["tokens"]):
            for c in occurrences:
                a, b = c["char_span"]
                assert caption[a:b] == c["text"] and names[c["id"]] == c["name"]
                n_concepts += 1
            assert ids == tokenize([caption])[0][: len(ids)].tolist()  # the trainer's ids, made once
    assert n_concepts >= 24  # every synthetic caption names classes of the bank
    table = sh.read_parquet(out / "00001.parquet").to_pydict()
    assert table["n_masks"] == [len(s["masks"]) for s in samples[8:16]]

    text = inspect_shards(out)
    assert "status: ok=24" in text and "grid [8, 8], dim 384" in text and "caption:" in text
    assert main(["inspect", str(out)]) == 0
    assert "shards: 3 of 3 done (complete)" in capsys.readouterr().out


def test_sam_masks(world, ingest_kwargs, tiny_sam, tmp_path):
    out = tmp_path / "sam"
    kwargs = {**ingest_kwargs, "masks": "sam", "sam_checkpoint": tiny_sam, "shard_size": 2,
              "limit": 1, "workers": 1, "store_images": False,
              "overrides": ["batch_size=2", "masks.points_per_side=4", "masks.pred_iou_thresh=0",
                            "masks.stability_score_thresh=0"]}
    summary = run_ingest(out=out, **kwargs)
    assert "status: ok=1" in summary
    m = sh.read_manifest(out)
    assert m["models"]["masks"]["kind"] == "test_tiny" and m["models"]["masks"]["points_per_side"] == 4
    samples = _tar_samples(out)
    assert len(samples) == 1 and all(s["jpg"] is None for s in samples)
    for s in samples:
        assert s["masks"], "a random SAM with zero thresholds still proposes masks"
        for a in s["masks"]:
            assert a["segmentation"]["size"] == [112, 112]
            assert {"area", "bbox", "predicted_iou", "stability_score"} <= set(a)
    assert sh.validate_shards(out) == []


def _bad_sa1b_corpus(world, root, bomb_png):
    """SA-1B folder: 3 good items from the world, then one of each kind of bad input.
    Returns the expected status per item, in source order."""
    root.mkdir()
    for i in (1, 2, 3):
        for ext in ("jpg", "json"):
            shutil.copy(world / f"train/sa1b/sa_{i}.{ext}", root / f"sa_{i}.{ext}")
    good = (world / "train/sa1b/sa_1.jpg").read_bytes()
    empty = json.dumps({"annotations": []})

    def enc(im, fmt, **kw):
        buf = io.BytesIO()
        im.save(buf, format=fmt, **kw)
        return buf.getvalue()

    pal = Image.new("P", (40, 30), 2)
    pal.putpalette(list(range(256)) * 3)
    items = [  # (image bytes or None = missing, json text, sidecar caption bytes or None, status)
        (good[: len(good) // 3], empty, None, "decode_error"),                     # truncated
        (b"", empty, None, "decode_error"),                                        # zero bytes
        (b"GIF89a this is not really an image", empty, None, "decode_error"),      # undecodable
        (enc(Image.new("CMYK", (50, 40), (10, 200, 30, 0)), "JPEG"), empty, None, "ok"),
        (enc(Image.fromarray(np.arange(1200, dtype=np.uint16).reshape(30, 40) * 50), "PNG"), empty, None, "ok"),
        (enc(Image.new("RGBA", (40, 30), (200, 10, 10, 100)), "PNG"), empty, None, "ok"),
        (enc(pal, "PNG", transparency=2), empty, None, "ok"),
        (bomb_png, empty, None, "too_large"),                                    # 30000 x 30000
        (good, empty, b"   \n", "bad_caption"),                                    # empty caption
        (good, empty, b"big " * 5000, "bad_caption"),                              # huge caption
        (good, empty, b"na\xefve caf\xe9", "bad_caption"),                        # not UTF-8
        (good, json.dumps({"annotations": [{"segmentation": {"size": [9, 9], "counts": "3"}}]}),
         None, "bad_masks"),                                                       # broken RLE
        (None, empty, None, "missing_file"),                                       # missing image
        (good, json.dumps({"annotations": [{"segmentation": {"size": [7, 7], "counts": [49]}}]}),
         None, "bad_masks"),                                                       # masks of another size
    ]
    expected = ["ok", "ok", "ok"]
    for k, (img, js, txt, status) in enumerate(items, start=4):
        if img is not None:
            (root / f"sa_{k}.jpg").write_bytes(img)
        (root / f"sa_{k}.json").write_text(js)
        if txt is not None:
            (root / f"sa_{k}.txt").write_bytes(txt)
        expected.append(status)
    (root / "sa_5.txt").write_text("a caption for a zero-byte image\n")
    return expected


def test_sa1b_source_with_bad_inputs(world, ingest_kwargs, tmp_path, bomb_png):
    expected = _bad_sa1b_corpus(world, tmp_path / "sa1b", bomb_png)
    out = tmp_path / "out"
    summary = run_ingest(out=out, **{**ingest_kwargs, "source": f"sa1b:{tmp_path / 'sa1b'}",
                                     "masks": "sa1b", "shard_size": 6, "workers": 1})
    rows = [r for e in sh.read_manifest(out)["shards"] for r in sh.read_parquet(out / e["parquet"]).to_pylist()]
    assert [r["status"] for r in rows] == expected  # every input recorded, none lost, in order
    assert [r["source_id"] for r in rows] == [f"sa_{i}" for i in range(1, len(expected) + 1)]
    assert all(r["error"] for r in rows if r["status"] != "ok")
    assert all(r["error"] is None for r in rows if r["status"] == "ok")
    assert rows[4]["n_captions"] == 1  # the zero-byte image kept its caption in the record
    counts = {s: expected.count(s) for s in set(expected)}
    assert f"status: {', '.join(f'{k}={v}' for k, v in sorted(counts.items()))}" in summary
    assert sh.validate_shards(out) == [] and sh.read_manifest(out)["complete"]

    samples = {s["meta"]["source_id"]: s for s in _tar_samples(out)}
    assert len(samples) == expected.count("ok")
    # masks from file, rescaled to the backbone input: same as decode's own rescale
    src = open_source(tmp_path / "sa1b")
    row = src.load(src.ref(0))
    img, orig = decode_image(row["image_bytes"], DecodeConfig(img_size=112, patch_size=14))
    want = json.loads(resize_masks(row["src_masks"], orig, img.shape[:2]))
    got = samples["sa_1"]["masks"]
    assert [a["segmentation"] for a in got] == [a["segmentation"] for a in want] and got
    assert samples["sa_8"]["meta"]["orig_size"] == [30, 40]  # the 16-bit PNG, decoded
    rgb = np.asarray(Image.open(io.BytesIO(samples["sa_7"]["jpg"])))
    assert abs(rgb[..., 0].mean() - 245) < 8 and abs(rgb[..., 1].mean() - 55) < 8  # CMYK (10,200,30,0)
