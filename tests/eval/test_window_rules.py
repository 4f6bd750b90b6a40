"""Per-window rules of the protocols, pinned with hand-computed values: Talk2DINO's sigmoid(cos) against
the constant 0.55 background, its PAMR per window, the raw template mean; the whole-image fit rules
(pad / NACLIP's floor / SimZSS's crop)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import zss.eval.inference as inference
from zss.errors import ZssError
from zss.eval.inference import InferenceConfig, Predictor, window_starts
from zss.eval.pamr import pamr
from zss.eval.templates import embed_words
from zss.eval.protocols import resolve
from zss.formats.vocab import Vocabulary


class HalvesSegmenter(torch.nn.Module):
    """Text is (1, 0) for every prompt; the left half of the patch grid has feature (0.3, sqrt 0.91)
    (cosine 0.3), the right half (0.1, sqrt 0.99) (cosine 0.1). Records the encoder's input sizes."""

    patch_size, default_size = 4, 32

    def __init__(self):
        super().__init__()
        self.seen: list[tuple[int, int]] = []

    def encode_text(self, texts):
        return torch.tensor([[1.0, 0.0]] * len(texts))

    def encode_text_raw(self, texts):
        return self.encode_text(texts) * 3.0

    def encode_dense(self, images):
        b, _, h, w = images.shape
        self.seen.append((h, w))
        gw = w // self.patch_size
        feats = torch.empty(b, 2, h // self.patch_size, gw)
        feats[:, :, :, :gw // 2] = torch.tensor([0.3, math.sqrt(0.91)]).view(1, 2, 1, 1)
        feats[:, :, :, gw // 2:] = torch.tensor([0.1, math.sqrt(0.99)]).view(1, 2, 1, 1)
        return feats


def _pred(model, vocab, **cfg):
    return Predictor(model, Vocabulary.from_string(vocab), InferenceConfig(templates="photo", **cfg))


def test_talk2dino_background_compares_sigmoid_of_cosine():
    """dinotext_seg.py L68-75 + masker.py L242: class wins iff sigmoid(cos) > 0.55, i.e. cos > 0.2007:
    sigmoid(0.3) = 0.5744 -> foreground, sigmoid(0.1) = 0.5250 -> background."""
    assert math.log(0.55 / 0.45) == pytest.approx(0.2006707, abs=1e-7)
    common = dict(background_words=False, bg_score=0.55, mode="whole", short_side=0)
    img = np.zeros((8, 16, 3), np.uint8)                      # grid 2x4: columns 0-1 cos 0.3, 2-3 cos 0.1
    labels = _pred(HalvesSegmenter(), "background,thing", score="sigmoid", **common).predict(img)
    assert (labels[:, :6] == 1).all() and (labels[:, 10:] == 0).all()
    scores = _pred(HalvesSegmenter(), "background,thing", score="sigmoid", **common).label_logits(img)
    assert scores[0, 0, 0].item() == pytest.approx(1 / (1 + math.exp(-0.3)), abs=1e-6)   # 0.574443
    assert scores[0, 0, 15].item() == pytest.approx(1 / (1 + math.exp(-0.1)), abs=1e-6)  # 0.524979
    old = _pred(HalvesSegmenter(), "background,thing", score="cosine", **common).predict(img)
    assert (old == 0).all()                                   # raw cosine vs 0.55: all background


def test_talk2dino_pamr_runs_per_window_on_the_sigmoid_masks(monkeypatch):
    """dinotext.py L362-366: every 448x448 window's sigmoid masks are refined by PAMR(10, 1..24)."""
    calls = []

    def spy(image, scores, steps, dilations):
        calls.append((tuple(image.shape), tuple(scores.shape), steps, tuple(dilations),
                      float(scores.min()), float(scores.max())))
        return scores
    monkeypatch.setattr(inference, "pamr", spy)
    cfg = resolve("talk2dino", "voc20", ["templates=word"]).config
    assert window_starts(672, 448, 224) == [0, 224]
    pred = Predictor(HalvesSegmenter(), Vocabulary.from_string("thing,other"), cfg)
    pred.label_logits(np.zeros((448, 672, 3), np.uint8))
    assert sum(c[0][0] for c in calls) == 2                  # two windows, refined one by one
    for img_shape, score_shape, steps, dil, lo, hi in calls:
        assert img_shape[1:] == (3, 448, 448) and score_shape[1:] == (2, 448, 448)
        assert (steps, dil) == (10, (1, 2, 4, 8, 12, 24))
        assert 0 < lo and hi < 1                               # sigmoids, not cosines


def test_pamr_kernel_on_a_constant_image():
    """Constant image: every affinity is equal, so each pixel becomes the mean of its 8 neighbours
    (replicate padding): the centre 1 moves to the 8 border pixels as 1/8 each."""
    scores = torch.zeros(1, 1, 3, 3)
    scores[0, 0, 1, 1] = 1.0
    out = pamr(torch.full((1, 3, 3, 3), 0.5), scores, steps=1, dilations=(1,))[0, 0]
    want = torch.full((3, 3), 1 / 8)
    want[1, 1] = 0.0
    torch.testing.assert_close(out, want)


def test_template_mean_of_raw_embeddings():
    """dinotext.py L276-281: mean of the unnormalised template embeddings, then normalise."""
    table = {"a {}": torch.tensor([3.0, 0.0]), "b {}": torch.tensor([0.0, 1.0])}

    def raw(texts):
        return torch.stack([table[t.replace("w", "{}")] for t in texts])

    def normed(texts):
        return F.normalize(raw(texts), dim=-1)
    got = embed_words(normed, ["w"], ("a {}", "b {}"))[0]
    torch.testing.assert_close(got, torch.tensor([0.70711, 0.70711]), atol=1e-5, rtol=0)
    got = embed_words(normed, ["w"], ("a {}", "b {}"), encode_raw=raw)[0]
    torch.testing.assert_close(got, torch.tensor([0.94868, 0.31623]), atol=1e-5, rtol=0)  # (1.5, 0.5)/|.|


def test_template_mean_raw_needs_a_model_that_gives_raw_embeddings(colour_model):
    with pytest.raises(ZssError, match="encode_text_raw"):
        _pred(colour_model, "red,blue", template_mean="raw")
    _pred(HalvesSegmenter(), "red,blue", template_mean="raw")


def _two_colour(h, w, split):
    img = np.zeros((h, w, 3), np.uint8)
    img[:, :split, 0] = 255
    img[:, split:, 2] = 255
    return img


@pytest.mark.parametrize("fit,seen,red_cols", [("pad", (20, 28), 12), ("floor", (16, 24), 13),
                                               ("crop", (16, 24), 12)])
def test_whole_image_fit_rules(colour_model, fit, seen, red_cols):
    """An 18x26 image, patch 4, red in columns < 12. pad: encoder sees 20x28, edge kept at 12. floor
    (NACLIP): 16x24 (grid 4x6) stretched over 26 px: the red/blue midpoint 2.5 of the grid lands at
    x = 3*26/6 - 0.5 = 12.5, so 13 red columns. crop (SimZSS loader): 16x24, edge at 12, border
    not scored."""
    seen_sizes = []
    encode = colour_model.encode_dense
    colour_model.encode_dense = lambda x: (seen_sizes.append(tuple(x.shape[-2:])), encode(x))[1]
    pred = _pred(colour_model, "red,blue", mode="whole", short_side=0, fit=fit)
    labels = pred.predict(_two_colour(18, 26, 12))
    assert seen_sizes == [seen] and labels.shape == (18, 26)
    row = labels[8]
    assert (row[:red_cols] == 0).all() and (row[red_cols:] == 1).all()
    assert pred.valid_size((18, 26), (18, 26)) == ((16, 24) if fit == "crop" else (18, 26))
    assert pred.valid_size((18, 26), (36, 52)) == ((32, 48) if fit == "crop" else (36, 52))


def test_floor_needs_one_patch(colour_model):
    pred = _pred(colour_model, "red,blue", mode="whole", short_side=0, fit="floor")
    with pytest.raises(ZssError, match="smaller than one 4px patch"):
        pred.predict(np.zeros((3, 10, 3), np.uint8))


def test_fit_crop_scores_only_the_floored_region(tmp_path, colour_model, write_png, monkeypatch):
    """SimZSS's loader (coco_segmentation_simple.py L50-55) crops image and labels to a patch multiple:
    an 18x26 image at patch 4 scores 16x24 = 384 pixels, not 468."""
    from PIL import Image

    import zss.eval.metrics as metrics
    from zss.eval.benchmarks import get_benchmark
    from zss.eval.evaluate import evaluate_benchmark

    (tmp_path / "images").mkdir()
    (tmp_path / "classes.txt").write_text("red\nblue\n")
    Image.fromarray(_two_colour(18, 26, 12)).save(tmp_path / "images" / "a.png")
    label = np.zeros((18, 26), np.uint8)
    label[:, 12:] = 1
    write_png(label, tmp_path / "annotations" / "a.png")
    seen = []
    update = metrics.SegMetric.update
    monkeypatch.setattr(metrics.SegMetric, "update", lambda self, pred, lab: (seen.append(lab.shape), update(self, pred, lab))[1])
    for fit, shape in (("crop", (16, 24)), ("pad", (18, 26))):
        seen.clear()
        cfg = InferenceConfig(templates="photo", mode="whole", short_side=0, fit=fit)
        res = evaluate_benchmark(colour_model, get_benchmark("folder"), tmp_path, cfg, "cpu")
        assert seen == [shape] and res["mIoU"] == 100.0, fit


def test_openclip_raw_text_is_the_unnormalised_embedding(tiny_clip_ckpt):
    from zss.models.clip_dense import OpenCLIPSegmenter

    seg = OpenCLIPSegmenter.from_spec(tiny_clip_ckpt)
    raw = seg.encode_text_raw(["a red thing", "a blue thing"])
    torch.testing.assert_close(F.normalize(raw, dim=-1), seg.encode_text(["a red thing", "a blue thing"]))
    assert not torch.allclose(raw.norm(dim=-1), torch.ones(2))
