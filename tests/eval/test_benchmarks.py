"""Readers on small trees in each standard layout: ids, label values, ignore and reduce-zero-label."""

import numpy as np
import pytest

from zss.errors import ZssError
from zss.eval.benchmarks import BENCHMARKS, PAPER_ORDER, find_benchmarks, get_benchmark
from zss.eval.metrics import SegMetric, reduce_zero_label

CASES = {  # benchmark -> (raw key, classes, reduce_zero_label)
    "voc21": ("voc", 21, False), "voc20": ("voc", 20, True),
    "context60": ("context", 60, False), "context59": ("context", 59, True),
    "coco_stuff": ("stuff", 171, False), "coco_object": ("object", 81, False),
    "cityscapes": ("city", 19, False), "ade20k": ("ade", 150, True),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_reader_ids_labels_and_oracle_score(bench_root, raw_labels, name):
    RAW = raw_labels
    key, n_classes, rzl = CASES[name]
    bench = get_benchmark(name)
    assert bench.reduce_zero_label is rzl
    assert bench.num_classes(bench_root) == n_classes
    data = list(bench.iter_data(bench_root))
    assert [s.id for s, _, _ in data] == [sid for sid, _ in RAW[key]]
    metric = SegMetric(n_classes, reduce_zero=rzl)
    for (sample, image, label), (_, values) in zip(data, RAW[key]):
        assert image.dtype == np.uint8 and image.shape == (12, 16, 3)
        assert sorted(np.unique(label)) == sorted(set(values))       # stored ids, palette indices
        target = reduce_zero_label(label) if rzl else label.astype(np.int64)
        oracle = np.where(target == 255, 0, target)                 # anything at ignored pixels
        metric.update(oracle, label)
    res = metric.results()
    assert res["mIoU"] == 1.0 and res["aAcc"] == 1.0
    present = {v - 1 if rzl else v for _, vals in RAW[key] for v in vals if v != 255 and not (rzl and v == 0)}
    assert set(np.flatnonzero(np.isfinite(res["IoU"]))) == present


def test_voc20_ignores_background_and_voc21_scores_it(bench_root):
    _, _, label = next(get_benchmark("voc21").iter_data(bench_root))   # stripes 0 | 1 | 15 | 255
    pred = np.zeros_like(label, dtype=np.int64)                         # everything "background"
    m21, m20 = SegMetric(21), SegMetric(20, reduce_zero=True)
    m21.update(pred, label)
    m20.update(pred, label)                                             # class 0 of voc20 = aeroplane
    assert m21.results()["aAcc"] == pytest.approx(1 / 3)
    assert m20.results()["aAcc"] == pytest.approx(1 / 2)                # only 1 and 15 count; 1 -> 0 right


def test_find_all_in_paper_order_and_missing_layouts(bench_root, tmp_path):
    assert [b.name for b in find_benchmarks(bench_root)] == PAPER_ORDER
    assert [BENCHMARKS[n].column for n in PAPER_ORDER] == ["V21", "C60", "Obj", "V20", "C59", "Stuff", "City", "ADE"]
    assert find_benchmarks(tmp_path) == []
    with pytest.raises(ZssError, match="expected"):
        get_benchmark("ade20k").samples(tmp_path)
    with pytest.raises(ZssError, match="unknown benchmark"):
        get_benchmark("imagenet")
    assert len(get_benchmark("cityscapes").samples(bench_root, limit=1)) == 1


def test_synth_reader_uses_the_world_classes(world):
    bench = get_benchmark("synth")
    vocab = bench.vocabulary(world)
    assert vocab.names[0] == "grass" and vocab.background is None
    samples = bench.samples(world)
    assert len(samples) == 8
    _, image, label = next(bench.iter_data(world))
    assert image.shape[:2] == label.shape
    assert set(np.unique(label)) <= set(range(len(vocab))) | {255}


def test_images_are_read_upright_as_mmcv_does(tmp_path):
    from PIL import Image

    from zss.eval.benchmarks import load_image

    im = Image.fromarray(np.zeros((10, 20, 3), np.uint8))
    exif = im.getexif()
    exif[0x0112] = 6                                   # "rotate 90° CW to display"
    im.save(tmp_path / "phone.jpg", exif=exif)
    assert load_image(tmp_path / "phone.jpg").shape == (20, 10, 3)
