"""PixelCLIP building blocks against hand-computed cases."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from zss.recipes.pixelclip.augment import StrongAug, crop_image, crop_masks, draw_crop, strong_view
from zss.recipes.pixelclip.decoder import ClusterMaskDecoder
from zss.recipes.pixelclip.ema import ema_update, make_teacher
from zss.recipes.pixelclip.losses import masked_bce
from zss.recipes.pixelclip.sinkhorn import sinkhorn, sinkhorn_assign
from zss.recipes.pixelclip.targets import covered_pixels, merge_cluster_targets, pool_mask_features


# ----------------------------------------------------------------------------- Sinkhorn
def test_sinkhorn_is_a_valid_balanced_assignment():
    g = torch.Generator().manual_seed(0)
    k, per = 16, 10
    centres = F.normalize(torch.randn(k, 32, generator=g), dim=1)
    x = F.normalize(centres.repeat_interleave(per, 0) + 0.3 * torch.randn(k * per, 32, generator=g), dim=1)
    scores = x @ centres.t() * 20
    q = sinkhorn(scores, n_iters=3)
    assert q.shape == (k * per, k)
    assert (q >= 0).all()
    assert torch.allclose(q.sum(1), torch.ones(k * per), atol=1e-5)       # each mask fully assigned
    assert torch.allclose(q.sum(0), torch.full((k,), float(per)), rtol=0.2)  # near-equal after 3 its
    converged = sinkhorn(scores, n_iters=200)
    assert torch.allclose(converged.sum(0), torch.full((k,), float(per)), rtol=1e-3)
    sizes = torch.bincount(sinkhorn_assign(scores, 3), minlength=k)
    assert sizes.min() >= per - 3 and sizes.max() <= per + 3


def test_sinkhorn_spreads_a_collapsed_argmax():
    """Every sample prefers cluster 0: plain argmax collapses, the equipartition does not."""
    g = torch.Generator().manual_seed(1)
    n, k = 200, 8
    scores = torch.randn(n, k, generator=g)
    scores[:, 0] += 5.0
    assert torch.bincount(scores.argmax(1), minlength=k)[0] >= 0.95 * n
    sizes = torch.bincount(sinkhorn_assign(scores, 3), minlength=k)
    assert (sizes > 0).all() and sizes.max() <= 2 * n / k


# ----------------------------------------------------------------------------- targets
def _masks() -> tuple[torch.Tensor, torch.Tensor]:
    """Image 0: a top row and a left column; image 1: one 2x2 block. 3x3 pixels."""
    m = torch.zeros(3, 3, 3, dtype=torch.bool)
    m[0, 0, :] = True
    m[1, :, 0] = True
    m[2, 1:, 1:] = True
    return m, torch.tensor([0, 0, 1])


def test_merged_targets_and_covered_pixels_by_hand():
    masks, owner = _masks()
    targets = merge_cluster_targets(masks, owner, torch.tensor([1, 1, 0]), batch_size=2, k=2)
    expected = torch.zeros(2, 2, 3, 3)
    expected[0, 1] = torch.tensor([[1, 1, 1], [1, 0, 0], [1, 0, 0]])  # union of the two masks, no 2s
    expected[1, 0] = torch.tensor([[0, 0, 0], [0, 1, 1], [0, 1, 1]])
    assert torch.equal(targets, expected)
    covered = covered_pixels(masks, owner, 2)
    assert torch.equal(covered, expected.amax(1) > 0)


def test_masked_bce_ignores_uncovered_pixels():
    masks, owner = _masks()
    targets = merge_cluster_targets(masks, owner, torch.tensor([0, 1, 1]), 2, 2)
    covered = covered_pixels(masks, owner, 2)
    logits = torch.randn(2, 2, 3, 3, generator=torch.Generator().manual_seed(0))
    loss = masked_bce(logits, targets, covered)
    p = torch.sigmoid(logits)
    per = -(targets * p.log() + (1 - targets) * (1 - p).log())
    by_hand = (per * covered[:, None]).sum() / (covered.sum() * 2)
    assert torch.allclose(loss, by_hand, atol=1e-6)
    changed = logits.clone()
    changed[:, :, ~covered[0]] = 100.0  # only uncovered pixels of image 0 (and same positions of 1)
    changed[1] = logits[1]
    assert torch.allclose(masked_bce(changed, targets, covered), loss, atol=1e-6)


def test_pool_mask_features_averages_over_the_mask():
    feats = torch.arange(2 * 2 * 2 * 1, dtype=torch.float32).reshape(2, 2, 2, 1)  # image 1: 4..7
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[0, :2, :] = True        # top half of image 0: cells 0, 1
    masks[1, :, :2] = True        # left half of image 1: cells 4, 6
    masks[1, :2, 2:] = True       # plus top-right quarter: cell 5 (weight 1 of the 3 cells)
    pooled = pool_mask_features(feats, masks, torch.tensor([0, 1]))
    assert torch.allclose(pooled[:, 0], torch.tensor([0.5, (4 + 6 + 5) / 3]))


def test_bilinear_pooling_is_the_mean_of_upsampled_features_over_the_mask():
    """The release's pooling (upsample the teacher grid to the mask resolution, average over the
    mask), computed without the upsampled tensor, equals doing it literally."""
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 5, 7, 3, generator=gen)
    masks = torch.rand(4, 40, 56, generator=gen) > 0.6
    masks[3] = False
    masks[3, 10:20, 30:50] = True
    owner = torch.tensor([0, 1, 1, 0])
    up = torch.nn.functional.interpolate(feats.permute(0, 3, 1, 2), size=(40, 56), mode="bilinear",
                                         align_corners=False).permute(0, 2, 3, 1)       # [B, 40, 56, C]
    want = torch.stack([up[owner[i]][masks[i]].mean(0) for i in range(4)])
    got = pool_mask_features(feats, masks, owner, "bilinear")
    assert torch.allclose(got, want, atol=1e-5)
    # The zss default weighs cells by covered area instead: a different (close) number.
    assert not torch.allclose(pool_mask_features(feats, masks, owner, "area"), want, atol=1e-3)


# ----------------------------------------------------------------------------- EMA
def test_ema_update_by_hand():
    student = torch.nn.BatchNorm1d(2)
    teacher = make_teacher(student)
    assert all(not p.requires_grad for p in teacher.parameters())
    with torch.no_grad():
        teacher.weight.fill_(1.0)
        student.weight.fill_(3.0)
        student.running_mean.fill_(7.0)
    ema_update(teacher, student, momentum=0.9)
    assert torch.allclose(teacher.weight, torch.full((2,), 0.9 * 1.0 + 0.1 * 3.0))
    assert torch.equal(teacher.running_mean, student.running_mean)


# ----------------------------------------------------------------------------- decoder
def test_decoder_starts_as_scaled_upsampled_cosine():
    dec = ClusterMaskDecoder(feat_dim=8, out_size=32)
    cos = torch.rand(2, 3, 4, 4) * 2 - 1
    logits = dec(cos, torch.randn(2, 4, 4, 8))
    assert logits.shape == (2, 3, 32, 32)
    up = F.interpolate(cos, size=(32, 32), mode="bilinear", align_corners=False)
    assert torch.allclose(logits, 10.0 * up, atol=1e-5)
    logits.sum().backward()
    assert dec.head.weight.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- augmentations
def test_views_share_the_crop_and_masks_follow_it():
    img = torch.zeros(3, 40, 60)
    masks = torch.zeros(1, 40, 60, dtype=torch.bool)
    masks[0, 10:30, 5:25] = True
    img[:, masks[0]] = 1.0
    rng = random.Random(3)
    crop = draw_crop(rng, 40, 60, min_scale=0.5)
    weak = crop_image(img, crop, 32)
    m = crop_masks(masks, crop, 32)
    assert weak.shape == (3, 32, 32) and m.shape == (1, 32, 32) and m.dtype == torch.bool
    inside, outside = weak[0][m[0]], weak[0][~m[0]]
    assert inside.numel() == 0 or inside.mean() > 0.9
    assert outside.numel() == 0 or outside.mean() < 0.1
    off = StrongAug(jitter_p=0, gray_p=0, blur_p=0, cutout_p=0)
    assert torch.equal(strong_view(weak, random.Random(0), off), weak)  # geometry is never changed
    a = strong_view(weak, random.Random(5))
    b = strong_view(weak, random.Random(5))
    assert torch.equal(a, b) and a.shape == weak.shape


@pytest.mark.parametrize("seed", [0, 1])
def test_strong_view_changes_pixels(seed):
    img = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(seed))
    always = StrongAug(jitter_p=1, gray_p=1, blur_p=1, cutout_p=1)
    out = strong_view(img, random.Random(seed), always)
    assert (out[0] - out[1]).abs().max() < 1e-6  # grayscale
    assert not torch.allclose(out, img)
