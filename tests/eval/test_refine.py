"""Mask-consistent inference (zss.eval.refine), hand-computed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zss.errors import ZssError
from zss.eval.refine import feature_kmeans_masks, refine_logits, segment_mean, slic_masks


class TwoHalves(torch.nn.Module):
    """A dense model whose features are e1 on the left half of the image and e2 on the right."""

    patch_size = 2

    def encode_dense(self, images: torch.Tensor) -> torch.Tensor:
        b, _, h, w = images.shape
        out = torch.zeros(b, 4, h // 2, w // 2)
        out[:, 0, :, : w // 4] = 1.0
        out[:, 1, :, w // 4:] = 1.0
        return out


def test_segment_mean_hand_case():
    scores = torch.tensor([[[1.0, 2.0], [3.0, 6.0]]])   # one query, 2x2
    labels = torch.tensor([[0, 0], [1, 0]])              # segment 0 = {1, 2, 6}, segment 1 = {3}
    assert torch.equal(segment_mean(scores, labels), torch.tensor([[[3.0, 3.0], [3.0, 3.0]]]))
    labels = torch.tensor([[0, 1], [0, 1]])
    assert torch.equal(segment_mean(scores, labels), torch.tensor([[[2.0, 4.0], [2.0, 4.0]]]))


def test_feature_kmeans_masks_follow_the_model_features_and_refine_averages_them():
    image = torch.rand(3, 6, 8)                         # padded to 6x8 (already a multiple of 2)
    labels = feature_kmeans_masks(TwoHalves(), image, k=2)
    assert labels.shape == (6, 8)
    assert len(np.unique(labels[:, :4])) == 1 and len(np.unique(labels[:, 4:])) == 1
    assert labels[0, 0] != labels[0, 7]
    logits = torch.zeros(2, 3, 4)                        # a coarser logit map: labels are resampled
    logits[0, :, :2] = torch.tensor([[1.0, 3.0], [1.0, 3.0], [1.0, 3.0]])   # left half mean 2
    logits[1, 0, 3] = 6.0                                # right half mean 1
    out = refine_logits(TwoHalves(), image, logits, masks="feature-kmeans", k=2)
    assert torch.allclose(out[0, :, :2], torch.full((3, 2), 2.0)) and torch.allclose(out[0, :, 2:], torch.zeros(3, 2))
    assert torch.allclose(out[1, :, 2:], torch.full((3, 2), 1.0))
    half = refine_logits(TwoHalves(), image, logits, masks="feature-kmeans", k=2, alpha=0.5)
    assert torch.allclose(half, 0.5 * logits + 0.5 * out)
    with pytest.raises(ZssError, match="slic, feature-kmeans, sam"):
        refine_logits(TwoHalves(), image, logits, masks="dino")


def test_slic_masks_follow_colour_edges_below_the_patch_grid():
    """Two colours split at column 5 (not a multiple of the model's 2-px patch): every superpixel
    stays on one side, and the mean over them keeps the split that a patch grid would blur."""
    image = torch.zeros(3, 8, 12)
    image[0, :, :5] = 1.0                                  # red left of column 5, black right of it
    labels = slic_masks(image, size=5, compactness=0.1)   # 8·12/25 -> 4 seeds
    assert labels.shape == (8, 12)
    assert not set(np.unique(labels[:, :5])) & set(np.unique(labels[:, 5:]))
    logits = torch.zeros(1, 8, 12)
    logits[0, :, :5] = 1.0
    logits[0, :, 4:6] = 0.5                                # a blurred boundary column pair
    out = refine_logits(TwoHalves(), image, logits, masks="slic", size=5, compactness=0.1)
    left, right = out[0, :, :5], out[0, :, 5:]
    assert float(left.min()) > float(right.max())          # the edge is back at column 5
    assert torch.equal(refine_logits(TwoHalves(), image, logits, masks="slic", size=5, compactness=0.1), out)


def test_sam_masks_paint_largest_first_and_uncovered_pixels_keep_their_scores(monkeypatch):
    """A whole (left 6 columns) with a part inside it (columns 0-1), the rest uncovered: the part keeps
    its pixels, the whole gets the rest of its own, uncovered pixels are -1 and keep their scores."""
    import zss.eval.refine as refine

    whole = np.zeros((4, 8), bool)
    whole[:, :6] = True
    part = np.zeros((4, 8), bool)
    part[:, :2] = True

    class Generator:
        def generate_batch(self, images):
            assert images[0].shape == (4, 8, 3) and images[0].dtype == np.uint8
            return [[{"segmentation": part, "area": int(part.sum())}, {"segmentation": whole, "area": int(whole.sum())}]]

    monkeypatch.setattr(refine, "_sam_generator", lambda *a: Generator())
    image = torch.rand(3, 4, 8)
    labels = refine.sam_masks(image, "test_tiny:sam.pth")
    assert (labels[:, :2] == 1).all() and (labels[:, 2:6] == 0).all() and (labels[:, 6:] == -1).all()
    logits = torch.arange(32, dtype=torch.float32).reshape(1, 4, 8)
    out = refine_logits(TwoHalves(), image, logits, masks="sam", sam={"spec": "test_tiny:sam.pth"})
    assert torch.allclose(out[0, :, :2], logits[0, :, :2].mean().expand(4, 2))
    assert torch.allclose(out[0, :, 2:6], logits[0, :, 2:6].mean().expand(4, 4))
    assert torch.equal(out[0, :, 6:], logits[0, :, 6:])
    with pytest.raises(ZssError, match="sam_checkpoint=KIND:PATH"):
        refine.sam_masks(image, None)


def test_zss_segment_refines_over_sam_masks_and_a_missing_checkpoint_is_one_line(world, tiny_clip, tmp_path):
    """`zss segment ... --set refine=masks` (SLIC, the default), then with `--set masks=sam --set
    sam_checkpoint=test_tiny:PATH` (random tiny SAM, thresholds 0 so masks come out); without a
    checkpoint: one line, exit 2."""
    import subprocess
    import sys

    from zss.models.random_init import save_random_sam

    ckpt = save_random_sam("test_tiny", tmp_path / "sam.safetensors", seed=0)
    image = sorted((world / "val" / "images").iterdir())[0]
    base = [sys.executable, "-m", "zss.cli", "segment", f"openclip:zss-tiny-vit:{tiny_clip}", str(image),
            "--vocab", "grass, water, sky", "--out", str(tmp_path / "seg")]
    slic = subprocess.run(base + ["--set", "refine=masks"], capture_output=True, text=True, timeout=600)
    assert slic.returncode == 0, slic.stderr[-2000:]                 # the default region source: SLIC
    assert (tmp_path / "seg" / f"{image.stem}.png").is_file()
    (tmp_path / "seg" / f"{image.stem}.png").unlink()               # the SAM run below writes its own
    sets = ["refine=masks", "masks=sam", "sam_points_per_side=4", "sam_pred_iou_thresh=0", "sam_stability_thresh=0"]
    args = base + [a for kv in sets for a in ("--set", kv)]
    ok = subprocess.run(args + ["--set", f"sam_checkpoint=test_tiny:{ckpt}"], capture_output=True, text=True,
                        timeout=600)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert (tmp_path / "seg" / f"{image.stem}.png").is_file()
    bad = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert [line for line in bad.stderr.splitlines() if line.strip()] == [
        line for line in bad.stderr.splitlines() if "sam_checkpoint=KIND:PATH" in line]
