"""`zss data prepare` (issue 23): tiny replicas of each official download, written here in the
official format, go through the real command line; the label maps it writes are compared with maps
computed by hand from the published tables, and `zss eval`'s readers find them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from zss.cli import main
from zss.eval.benchmarks import get_benchmark


def _zss(*args: str) -> subprocess.CompletedProcess:
    exe = os.path.join(os.path.dirname(sys.executable), "zss")
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=180)


def _img(path: Path, h: int, w: int, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)


def _png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(arr, dtype=np.uint8), mode="L").save(path)


def _read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def _one_line_error(capsys, *argv: str) -> str:
    assert main(["data", "prepare", *map(str, argv)]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if " INFO " not in line]   # progress lines may come first
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("zss: "), err
    return lines[0]


# -- COCO-Stuff: stuffthingmaps (category id - 1; 255 unlabelled) -> 171 train ids ----------------------
STUFF_RAW = np.array([[0, 10, 11, 12], [26, 90, 91, 181], [255, 24, 45, 182]])
#                 0->0 10->10 11 unused->255 12->11 | 26->24 90 unused->255 91->80 181->170 | 255 24->23 45->40 182->255
STUFF_WANT = np.array([[0, 10, 255, 11], [24, 255, 80, 170], [255, 23, 40, 255]])


def test_coco_stuff_from_stuffthingmaps_and_resume(tmp_path, capsys):
    raw, out = tmp_path / "raw", tmp_path / "data"
    for i, sid in enumerate(("000000000139", "000000000285")):
        _img(raw / "coco_stuff164k/images/val2017" / f"{sid}.jpg", 3, 4, i)
        _png(raw / "coco_stuff164k/annotations/val2017" / f"{sid}.png", np.roll(STUFF_RAW, i, axis=1))
    done = _zss("data", "prepare", "coco_stuff", raw, out)
    assert done.returncode == 0, done.stderr
    assert "2 val images" in done.stdout and "2 converted" in done.stdout
    assert "--benchmark coco_stuff --data-root" in done.stdout
    assert "coco_stuff: 2/2 images" in done.stderr                      # progress, off a terminal
    labels = out / "coco_stuff164k/annotations/val2017"
    assert np.array_equal(_read(labels / "000000000139_labelTrainIds.png"), STUFF_WANT)
    assert np.array_equal(_read(labels / "000000000285_labelTrainIds.png"), np.roll(STUFF_WANT, 1, axis=1))
    image = out / "coco_stuff164k/images/val2017/000000000139.jpg"
    assert os.path.samefile(image, raw / "coco_stuff164k/images/val2017/000000000139.jpg")   # hard link
    samples = get_benchmark("coco_stuff").samples(out)
    assert [s.id for s in samples] == ["000000000139", "000000000285"]

    # resumable: what is there is skipped; a lost file (or a stale temporary one) is made again
    (labels / "000000000285_labelTrainIds.png").unlink()
    (labels / ".000000000285_labelTrainIds.png.tmp").write_bytes(b"half")
    assert main(["data", "prepare", "coco_stuff", str(raw), str(out)]) == 0
    assert "1 converted, 1 already there" in capsys.readouterr().out
    assert np.array_equal(_read(labels / "000000000285_labelTrainIds.png"), np.roll(STUFF_WANT, 1, axis=1))

    # half-extracted: a label map without its image, an image without its label map, a truncated PNG
    os.remove(raw / "coco_stuff164k/images/val2017/000000000285.jpg")
    err = _one_line_error(capsys, "coco_stuff", raw, tmp_path / "o2")
    assert "missing" in err and "000000000285.jpg" in err
    _img(raw / "coco_stuff164k/images/val2017/000000000285.jpg", 3, 4)
    _img(raw / "coco_stuff164k/images/val2017/000000000632.jpg", 3, 4)
    assert "000000000632.png" in _one_line_error(capsys, "coco_stuff", raw, tmp_path / "o3")
    _png(raw / "coco_stuff164k/annotations/val2017/000000000632.png", STUFF_RAW)
    path = raw / "coco_stuff164k/annotations/val2017/000000000632.png"
    path.write_bytes(path.read_bytes()[:30])
    assert "000000000632.png" in _one_line_error(capsys, "coco_stuff", raw, tmp_path / "o4")
    (tmp_path / "empty").mkdir()
    assert "images/val2017" in _one_line_error(capsys, "coco_stuff", tmp_path / "empty", tmp_path / "o5")


# -- COCO-Object: instances_val2017.json -> 0 background, 1..80 things --------------------------------
def _rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(rle["size"]), "counts": rle["counts"].decode()}


def test_coco_object_from_instances(tmp_path, capsys):
    raw, out = tmp_path / "coco", tmp_path / "data"
    h, w = 6, 8
    _img(raw / "val2017/000000000724.jpg", h, w)
    person = np.zeros((h, w), bool)
    person[0:4, 0:4] = True
    brush = np.zeros((h, w), bool)
    brush[2:6, 2:6] = True           # over the person: the later annotation wins
    sign = np.zeros((h, w), bool)
    sign[0:2, 6:8] = True
    crowd = np.zeros((h, w), bool)
    crowd[4:6, 6:8] = True
    anns = [{"id": 1, "image_id": 724, "category_id": 1, "iscrowd": 0, "segmentation": _rle(person)},
            {"id": 2, "image_id": 724, "category_id": 90, "iscrowd": 0, "segmentation": _rle(brush)},
            {"id": 3, "image_id": 724, "category_id": 13, "iscrowd": 0, "segmentation": _rle(sign)},
            {"id": 4, "image_id": 724, "category_id": 3, "iscrowd": 1, "segmentation": _rle(crowd)}]
    for a in anns:
        a.update(area=float(a["segmentation"]["size"][0]), bbox=[0, 0, 1, 1])
    data = {"images": [{"id": 724, "file_name": "000000000724.jpg", "height": h, "width": w}],
            "annotations": anns, "categories": [{"id": c, "name": str(c)} for c in (1, 3, 13, 90)]}
    (raw / "annotations").mkdir(parents=True)
    (raw / "annotations/instances_val2017.json").write_text(json.dumps(data))
    done = _zss("data", "prepare", "coco_object", raw, out)
    assert done.returncode == 0, done.stderr
    want = np.zeros((h, w), np.uint8)
    want[person] = 1          # person: category 1 -> 1
    want[brush] = 80          # toothbrush: category 90, the 80th thing -> 80
    want[sign] = 12           # stop sign: category 13 (12 is unused) -> 12; the crowd car stays 0
    got = _read(out / "coco_object/annotations/val2017/000000000724_instanceTrainIds.png")
    assert np.array_equal(got, want)
    assert [s.id for s in get_benchmark("coco_object").samples(out)] == ["000000000724"]

    os.remove(raw / "val2017/000000000724.jpg")
    assert "000000000724.jpg" in _one_line_error(capsys, "coco_object", raw, tmp_path / "o2")
    os.remove(raw / "annotations/instances_val2017.json")
    assert "instances_val2017.json" in _one_line_error(capsys, "coco_object", raw, tmp_path / "o3")


# -- PASCAL-Context: the release's 459-class LabelMap .mat files -> 60 classes --------------------------
def test_context_from_the_release_mat_files(tmp_path, capsys):
    from scipy.io import savemat

    raw, out = tmp_path / "raw", tmp_path / "data"
    voc = raw / "VOCdevkit/VOC2010"
    label = np.array([[0, 2, 9, 22], [100, 458, 457, 115]], dtype=np.uint16)
    want = np.array([[0, 1, 2, 5], [0, 59, 0, 24]], dtype=np.uint8)
    # 0 bg; 2 ->1; 9 ->2; 22 ->5 (0,2,9,18,19,22); 100 and 457 (not among the 59) -> 0; 458 -> 59; 115 -> 24
    for i, sid in enumerate(("2008_000002", "2008_000008", "2008_000009")):
        _img(voc / "JPEGImages" / f"{sid}.jpg", 2, 4, i)
        (raw / "trainval").mkdir(parents=True, exist_ok=True)
        savemat(str(raw / "trainval" / f"{sid}.mat"), {"LabelMap": label})
    (voc / "ImageSets/Main").mkdir(parents=True)
    (voc / "ImageSets/Main/val.txt").write_text("2008_000009\n2008_000002\n")   # 2008_000008 is train
    done = _zss("data", "prepare", "context", raw, out)
    assert done.returncode == 0, done.stderr
    base = out / "VOCdevkit/VOC2010"
    assert np.array_equal(_read(base / "SegmentationClassContext/2008_000002.png"), want)
    assert not (base / "SegmentationClassContext/2008_000008.png").exists()
    assert (base / "ImageSets/SegmentationContext/val.txt").read_text() == "2008_000002\n2008_000009\n"
    for name in ("context59", "context60"):
        assert [s.id for s in get_benchmark(name).samples(out)] == ["2008_000002", "2008_000009"]

    os.remove(raw / "trainval/2008_000009.mat")
    assert "2008_000009.mat" in _one_line_error(capsys, "context", raw, tmp_path / "o2")
    os.remove(voc / "ImageSets/Main/val.txt")
    assert "val.txt" in _one_line_error(capsys, "context", raw, tmp_path / "o3")


# -- Cityscapes: *_gtFine_labelIds.png -> 19 train ids ------------------------------------------------
def test_cityscapes_from_label_ids(tmp_path, capsys, tiny_clip):
    raw, out = tmp_path / "raw", tmp_path / "data"
    ids = np.array([[0, 7, 8, 26], [33, 9, 1, 24], [31, 23, 18, 17]])
    want = np.array([[255, 0, 1, 13], [18, 255, 255, 11], [16, 10, 255, 5]])
    for city, name in (("frankfurt", "frankfurt_000000_000294"), ("lindau", "lindau_000001_000019")):
        _img(raw / "cityscapes/leftImg8bit/val" / city / f"{name}_leftImg8bit.png", 3, 4)
        _png(raw / "cityscapes/gtFine/val" / city / f"{name}_gtFine_labelIds.png", ids)
        _png(raw / "cityscapes/gtFine/val" / city / f"{name}_gtFine_instanceIds.png", ids * 0)
    done = _zss("data", "prepare", "cityscapes", raw, out)
    assert done.returncode == 0, done.stderr
    got = _read(out / "cityscapes/gtFine/val/lindau/lindau_000001_000019_gtFine_labelTrainIds.png")
    assert np.array_equal(got, want)
    samples = get_benchmark("cityscapes").samples(out)
    assert [s.id for s in samples] == ["frankfurt/frankfurt_000000_000294", "lindau/lindau_000001_000019"]
    # official download -> zss data prepare -> zss eval --protocol (a tiny random CLIP, small inputs)
    assert main(["eval", f"openclip:zss-tiny-vit:{tiny_clip}", "--benchmark", "cityscapes", "--data-root",
                 str(out), "--protocol", "sclip", "--set", "short_side=32", "--out", str(tmp_path / "ev")]) == 0
    scored = json.loads((tmp_path / "ev/results.json").read_text())["benchmarks"]["cityscapes"]
    assert scored["n_images"] == 2 and scored["num_classes"] == 19

    os.remove(raw / "cityscapes/gtFine/val/lindau/lindau_000001_000019_gtFine_labelIds.png")
    assert "lindau_000001_000019_gtFine_labelIds.png" in _one_line_error(capsys, "cityscapes", raw, tmp_path / "o2")
    (tmp_path / "empty").mkdir()
    err = _one_line_error(capsys, "cityscapes", tmp_path / "empty", tmp_path / "o3")
    assert "leftImg8bit" in err


# -- VOC 2012 and ADE20K: no conversion, the layout is checked ----------------------------------------
def test_voc_and_ade_need_no_conversion(tmp_path, capsys):
    voc = tmp_path / "raw/VOCdevkit/VOC2012"
    _img(voc / "JPEGImages/2007_000033.jpg", 3, 4)
    _png(voc / "SegmentationClass/2007_000033.png", np.zeros((3, 4)))
    (voc / "ImageSets/Segmentation").mkdir(parents=True)
    (voc / "ImageSets/Segmentation/val.txt").write_text("2007_000033\n")
    assert main(["data", "prepare", "voc", str(tmp_path / "raw")]) == 0
    said = capsys.readouterr().out
    assert "needs no conversion" in said and "1 val images (the official val split has 1449)" in said
    ade = tmp_path / "ade/ADEChallengeData2016"
    _img(ade / "images/validation/ADE_val_00000001.jpg", 3, 4)
    _png(ade / "annotations/validation/ADE_val_00000001.png", np.ones((3, 4)))
    assert main(["data", "prepare", "ade20k", str(tmp_path / "ade"), str(tmp_path / "unused")]) == 0
    said = capsys.readouterr().out
    assert "needs no conversion" in said and "nothing was written" in said and not (tmp_path / "unused").exists()
    os.remove(voc / "SegmentationClass/2007_000033.png")
    assert "2007_000033" in _one_line_error(capsys, "voc", tmp_path / "raw")
    assert "unknown dataset" in _one_line_error(capsys, "nyu", tmp_path / "raw", tmp_path / "o")
    assert "needs an OUT" in _one_line_error(capsys, "cityscapes", tmp_path / "raw")
