"""The metric against hand-computed cases, including mmseg's ignore and reduce-zero-label rules."""

import math

import numpy as np

from zss.eval.metrics import SegMetric, confusion, reduce_zero_label


def test_hand_computed_iou_acc_aacc():
    label = np.array([[0, 0, 1], [1, 2, 2]])
    pred = np.array([[0, 1, 1], [1, 2, 0]])
    m = SegMetric(3)
    m.update(pred, label)
    r = m.results()
    # class 0: inter 1, pred 2, label 2 -> 1/3; class 1: inter 2, pred 3, label 2 -> 2/3; class 2: 1/2
    np.testing.assert_allclose(r["IoU"], [1 / 3, 2 / 3, 1 / 2])
    np.testing.assert_allclose(r["Acc"], [1 / 2, 1, 1 / 2])
    assert math.isclose(r["mIoU"], (1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert math.isclose(r["aAcc"], 4 / 6)


def test_ignore_index_pixels_do_not_count():
    label = np.array([[0, 255, 1, 255]])
    pred = np.array([[0, 1, 1, 0]])
    m = SegMetric(2)
    m.update(pred, label)
    r = m.results()
    np.testing.assert_allclose(r["IoU"], [1.0, 1.0])
    assert r["aAcc"] == 1.0


def test_reduce_zero_label_matches_mmseg():
    np.testing.assert_array_equal(reduce_zero_label(np.array([0, 1, 2, 255])), [255, 0, 1, 255])
    label = np.array([[0, 1, 2, 2, 255]])          # 0 is dropped, 1 -> 0, 2 -> 1
    pred = np.array([[1, 0, 1, 0, 1]])
    m = SegMetric(2, reduce_zero=True)
    m.update(pred, label)
    r = m.results()
    # class 0: label at col1, pred at cols 1,3 -> inter 1, union 2; class 1: label cols 2,3, pred col2 -> 1/2
    np.testing.assert_allclose(r["IoU"], [0.5, 0.5])
    assert math.isclose(r["aAcc"], 2 / 3)


def test_out_of_range_labels_leave_label_area_but_prediction_counts():
    # mmseg histograms over [0, K): a label of 7 in a 2-class set is no label area, yet its pred counts
    label = np.array([[0, 7]])
    pred = np.array([[0, 0]])
    m = SegMetric(2)
    m.update(pred, label)
    a = m.areas()
    np.testing.assert_array_equal(a["label"], [1, 0])
    np.testing.assert_array_equal(a["pred_label"], [2, 0])
    r = m.results()
    assert r["IoU"][0] == 0.5 and math.isnan(r["IoU"][1])
    assert r["mIoU"] == 0.5  # NaN classes (empty union) are left out


def test_streaming_equals_one_shot():
    rng = np.random.default_rng(0)
    labels = [rng.integers(0, 5, (7, 9)) for _ in range(3)]
    preds = [rng.integers(0, 5, (7, 9)) for _ in range(3)]
    labels[1][0, :4] = 255
    m = SegMetric(5)
    for p, lab in zip(preds, labels):
        m.update(p, lab)
    one = confusion(np.concatenate(preds, 1), np.concatenate(labels, 1), 5)
    np.testing.assert_array_equal(m.matrix, one)
    assert m.matrix.sum() == 3 * 63 - 4
