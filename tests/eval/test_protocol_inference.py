"""The protocols' post-processing rules on hand-made scores: SCLIP's area_thd, Talk2DINO's constant
background score, PAMR at the label size, PixelCLIP's squash + feature upsampling."""

import numpy as np
import pytest
import torch

from zss.errors import ZssError
from zss.eval.inference import InferenceConfig, Predictor
from zss.formats.vocab import Vocabulary


def _predictor(model, vocab: str, **cfg) -> Predictor:
    return Predictor(model, Vocabulary.from_string(vocab), InferenceConfig(templates="photo", **cfg))


def _probs(fg_pixels_of_b: int) -> torch.Tensor:
    """[3,10,10] probabilities: background(0) / a(1) / b(2). `b` wins on its first pixels (row-major)
    with 0.5 and has background second (0.3); `a` wins everywhere else."""
    p = torch.zeros(3, 100)
    p[:, :] = torch.tensor([0.1, 0.8, 0.1]).view(3, 1)
    p[:, :fg_pixels_of_b] = torch.tensor([0.3, 0.2, 0.5]).view(3, 1)
    return p.view(3, 10, 10)


@pytest.mark.parametrize("b_pixels,dropped", [(5, True), (10, True), (11, False)])
def test_area_thd_drops_foreground_classes_at_most_a_tenth_of_the_foreground(colour_model, b_pixels, dropped):
    pred = _predictor(colour_model, "background,red,blue", area_thd=0.1, prob_thd=0.1)
    pred.probabilities = lambda image, out_size=None: _probs(b_pixels)
    labels = pred.predict(np.zeros((10, 10, 3), np.uint8)).flatten()
    # 100 foreground pixels in all; b covers b_pixels of them: <= 10 % -> b's probabilities become 0
    # and its pixels go to the next best class (background, 0.3 > a's 0.2)
    assert (labels[:b_pixels] == (0 if dropped else 2)).all()
    assert (labels[b_pixels:] == 1).all()
    off = _predictor(colour_model, "background,red,blue", prob_thd=0.1)
    off.probabilities = lambda image, out_size=None: _probs(b_pixels)
    assert (off.predict(np.zeros((10, 10, 3), np.uint8)).flatten()[:b_pixels] == 2).all()


def test_constant_background_score_in_score_space(colour_model):
    pred = _predictor(colour_model, "background,red,blue", background_words=False, bg_score=0.55, score="sigmoid")
    assert pred.vocab.queries(False)[0] == ["red", "blue"]
    sig = torch.tensor([[0.60, 0.50, 0.20], [0.30, 0.54, 0.56]]).view(2, 1, 3)  # sigmoid scores red, blue
    pred.label_logits = lambda image, out_size=None: sig
    # pixel 0: red 0.60 beats 0.55; pixel 1: best 0.54 < 0.55 -> background; pixel 2: blue 0.56
    assert pred.predict(np.zeros((1, 3, 3), np.uint8)).tolist() == [[1, 0, 2]]
    pred.label_logits = lambda image, out_size=None: torch.tensor([0.55, 0.10]).view(2, 1, 1)
    assert pred.predict(np.zeros((1, 1, 3), np.uint8)).tolist() == [[0]]  # a tie goes to background
    with pytest.raises(ZssError, match="bg_score"):
        _predictor(colour_model, "background,red", background_words=False)


def test_pamr_at_label_size_refines_at_the_label_resolution(colour_model, make_colour_image):
    img = make_colour_image(16, 40, 17)        # edge inside a 4-px patch: coarse scores straddle it
    truth = np.zeros((32, 80), np.int64)
    truth[:, 34:] = 1                          # the same edge at twice the resolution
    common = dict(short_side=0, mode="whole", pamr_steps=10, pamr_dilations=[1, 2])
    at_label = _predictor(colour_model, "red,blue", pamr_at="label", **common)
    at_input = _predictor(colour_model, "red,blue", pamr_at="input", **common)
    assert at_label.label_logits(img, (32, 80)).shape == (2, 32, 80)
    assert (at_label.predict(img, (32, 80)) != truth).sum() <= 32   # at most one column off
    assert (at_input.predict(img, (32, 80)) != truth).sum() <= 32
    # the refinement runs at a different resolution: same where label and inference sizes agree only
    torch.testing.assert_close(at_label.label_logits(img, (16, 40)), at_input.label_logits(img, (16, 40)))
    assert not torch.allclose(at_label.label_logits(img, (32, 80)), at_input.label_logits(img, (32, 80)))
    with pytest.raises(ZssError, match="pamr_at"):
        _predictor(colour_model, "red,blue", pamr_at="somewhere")


def test_squash_and_feature_upsampling(colour_model, make_colour_image):
    img = make_colour_image(30, 60, 20, "green", "blue")
    pred = _predictor(colour_model, "red,green,blue", short_side=40, max_long_side=2560, mode="whole",
                      squash=32, feature_size=16)
    assert tuple(pred.prepare(img).shape) == (3, 32, 32)       # 40x80 first, then squashed to 32x32
    assert tuple(pred.logits(pred.prepare(img)).shape) == (3, 32, 32)
    labels = pred.predict(img)
    assert labels.shape == (30, 60)
    assert (labels[:, :18] == 1).all() and (labels[:, 23:] == 2).all()
