"""Slide/whole inference, resizing, synonyms, background threshold and PAMR on a colour segmenter."""

import numpy as np
import pytest
import torch

from zss.errors import ZssError
from zss.eval.inference import InferenceConfig, Predictor, rescale_size, window_starts
from zss.eval.pamr import pamr
from zss.formats.vocab import Vocabulary


def test_window_starts_follow_mmseg_slide_inference():
    assert window_starts(10, 4, 3) == [0, 3, 6]        # last window clamped to the border
    assert window_starts(8, 4, 2) == [0, 2, 4]
    assert window_starts(3, 3, 2) == [0]               # window covers the axis
    assert rescale_size(375, 500, 336, 2048) == (336, 448)
    assert rescale_size(100, 4000, 336, 2048) == (51, 2048)  # long side capped
    assert rescale_size(40, 50, 0, 2048) == (40, 50)


def test_slide_equals_whole_when_the_window_covers_the_image(segmenter_cls, make_colour_image):
    model = segmenter_cls(bias_x=0.3)  # position-dependent features: windows would change the result
    vocab = Vocabulary.from_string("red,blue")
    img = make_colour_image(24, 40, 17)
    whole = Predictor(model, vocab, InferenceConfig(short_side=0, mode="whole", templates="photo"))
    slide = Predictor(model, vocab, InferenceConfig(short_side=0, mode="slide", crop=48, stride=16,
                                                    templates="photo"))
    torch.testing.assert_close(slide.probabilities(img), whole.probabilities(img), rtol=0, atol=0)
    small = Predictor(model, vocab, InferenceConfig(short_side=0, mode="slide", crop=16, stride=8,
                                                    templates="photo"))
    assert not torch.equal(small.probabilities(img), whole.probabilities(img))


def test_slide_prediction_is_right_and_sized_to_the_label(colour_model, make_colour_image):
    vocab = Vocabulary.from_string("red,green,blue")
    img = make_colour_image(30, 50, 24, "green", "blue")   # not a patch multiple: padded inside
    cfg = InferenceConfig(short_side=20, mode="slide", crop=16, stride=8, templates="photo")
    pred = Predictor(colour_model, vocab, cfg).predict(img, out_size=(30, 50))
    assert pred.shape == (30, 50)
    assert (pred[:, :20] == 1).all() and (pred[:, 28:] == 2).all()


def test_synonyms_take_the_max_and_background_threshold(colour_model, make_colour_image):
    img = make_colour_image(16, 16, 8, "red", "blue")
    vocab = Vocabulary.from_string("green;red,blue")        # class 0 = green or red
    pred = Predictor(colour_model, vocab, InferenceConfig(short_side=0, mode="whole", templates="photo")).predict(img)
    assert (pred[:, :6] == 0).all() and (pred[:, 10:] == 1).all()
    bg = Vocabulary.from_string("background;black,red,blue")
    cfg = InferenceConfig(short_side=0, mode="whole", templates="photo", logit_scale=1.0, prob_thd=0.9)
    assert (Predictor(colour_model, bg, cfg).predict(img) == 0).all()   # nothing is 90% sure
    cfg = InferenceConfig(short_side=0, mode="whole", templates="photo", logit_scale=100.0, prob_thd=0.5)
    pred = Predictor(colour_model, bg, cfg).predict(img)
    assert (pred[:, :6] == 1).all() and (pred[:, 10:] == 2).all()
    with pytest.raises(ZssError, match="prob_thd"):
        Predictor(colour_model, bg, InferenceConfig(background_words=False, templates="photo"))


def test_pamr_snaps_coarse_scores_to_image_edges():
    img = torch.zeros(1, 3, 32, 32)
    img[:, 0, :, :13] = 1.0                            # red | black edge at column 13
    coarse = torch.zeros(1, 2, 4, 4)
    coarse[:, 0, :, :2] = 1.0                          # coarse edge at column 16
    coarse[:, 1, :, 2:] = 1.0
    refined = pamr(img, coarse, steps=10, dilations=(1, 2))
    assert refined.shape == (1, 2, 32, 32)
    base = torch.nn.functional.interpolate(coarse, size=(32, 32), mode="bilinear", align_corners=True)
    truth = torch.zeros(32, 32, dtype=torch.long)
    truth[:, 13:] = 1
    acc = lambda s: (s[0].argmax(0) == truth).float().mean().item()
    assert acc(refined) > acc(base)
    flat = torch.ones(1, 2, 4, 4)
    torch.testing.assert_close(pamr(img, flat, 3, (1,)), torch.ones(1, 2, 32, 32))


def test_null_short_side_means_the_models_input_size(colour_model, make_colour_image):
    vocab = Vocabulary.from_string("red,blue")
    img = make_colour_image(16, 24, 8)
    assert Predictor(colour_model, vocab, InferenceConfig(short_side=None, templates="photo")).prepare(img).shape \
        == (3, 32, 48)                                 # colour_model.default_size = 32
    assert Predictor(colour_model, vocab, InferenceConfig(short_side=0, templates="photo")).prepare(img).shape \
        == (3, 16, 24)
    with pytest.raises(ZssError, match="short_side"):
        InferenceConfig(short_side=-1).validate()
