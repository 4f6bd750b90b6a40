"""The joint recipe's mask terms and region helpers, with hand-computed values."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from zss.recipes.joint.losses import mask_consistency, pad_regions, region_clustering, region_word_mil
from zss.recipes.joint.regions import grid_masks
from zss.recipes.simzss.losses import attention_pool

E = torch.eye(4)


def test_zero_padded_regions_attend_exactly_like_the_real_ones():
    torch.manual_seed(0)
    regions, owner = torch.randn(5, 8), torch.tensor([1, 0, 1, 1, 1])  # image 0: 1 region, image 1: 4
    padded = pad_regions(regions, owner, 3)                              # image 2: none
    assert padded.shape == (3, 4, 8) and torch.equal(padded[0, 0], regions[1])
    assert torch.equal(padded[1], regions[[0, 2, 3, 4]]) and not padded[2].any() and not padded[0, 1:].any()
    q = F.normalize(torch.randn(3, 8), dim=-1)
    occ = torch.tensor([0, 1, 1])
    pooled = attention_pool(q, padded, occ, 0.1)
    for n, b in enumerate(occ.tolist()):  # reference: softmax over the image's real regions only
        real = F.normalize(regions[owner == b], dim=-1)
        ref = F.normalize(torch.softmax(q[n] @ real.t() / 0.1, dim=0) @ real, dim=0)
        assert torch.allclose(pooled[n], ref, atol=1e-6)


def test_mask_consistency_hand_case():
    # two patches along e1 and e2, bank {e1, e2}, scale log 3: p1 = (3/4, 1/4), p2 = (1/4, 3/4)
    patches, bank = torch.stack([E[0], E[1]])[None], E[:2].clone().requires_grad_()
    both = torch.tensor([[0.5, 0.5]])           # one mask covering both: q = (1/2, 1/2)
    value, n = mask_consistency(patches, bank, both, torch.tensor([0]), math.log(3))
    kl = math.log(0.5) - 0.5 * math.log(3 / 16)  # KL(q || p_i), the same for both patches
    assert n == 1 and value.item() == pytest.approx(kl, abs=1e-6)
    value.backward()
    assert bank.grad.abs().sum() > 0
    one, _ = mask_consistency(patches, bank, torch.tensor([[1.0, 0.0]]), torch.tensor([0]), math.log(3))
    assert one.item() == pytest.approx(0.0, abs=1e-6)  # a mask over one patch agrees with itself
    none, n0 = mask_consistency(patches, bank, torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))
    assert (none.item(), n0) == (0.0, 0)


def test_region_word_mil_hand_case():
    # image 0: region e1; image 1: regions e2, e3; image 2: no region (left out of the softmax)
    regions, owner = torch.stack([E[0], E[1], E[2]]), torch.tensor([0, 1, 1])
    q = torch.stack([E[0], E[2], E[3]]).requires_grad_()   # occurrences in images 0, 1, 2
    value, n = region_word_mil(q, torch.tensor([0, 1, 2]), regions, owner, 3, temperature=1.0)
    # occ 0: scores (1, 0) -> CE log(1 + e^-1); occ 1 (e3): scores (0, 1) -> the same; occ 2 dropped
    assert n == 2 and value.item() == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)
    value.backward()
    assert q.grad[2].abs().sum() == 0 and q.grad[0].abs().sum() > 0
    alone, n1 = region_word_mil(q, torch.tensor([0, 0, 0]), regions[:1], owner[:1], 3)
    assert (alone.item(), n1) == (0.0, 0)  # one image with regions: nothing to contrast


def test_region_clustering_balances_and_reaches_the_bank():
    torch.manual_seed(0)
    bank = F.normalize(torch.randn(3, 8), dim=-1).requires_grad_()
    value, n = region_clustering(torch.randn(12, 8), bank, scale=5.0)
    assert n == 12 and torch.isfinite(value)
    value.backward()
    assert bank.grad.abs().sum() > 0
    empty, n0 = region_clustering(torch.zeros(0, 8), bank)
    assert (empty.item(), n0) == (0.0, 0)


def _raw(masks: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    anns = []
    for m in masks:
        rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        anns.append({"segmentation": {"size": list(rle["size"]), "counts": rle["counts"].decode()}})
    return {"__key__": "k", "masks.json": json.dumps(anns).encode()}


def test_grid_masks_area_fractions_order_and_view_crop():
    full = np.zeros((3, 8, 8), bool)
    full[0, :, :2] = True          # a quarter of the image: on a 2x2 grid, half of the left cells
    full[1, :, 2:] = True          # three quarters
    full[2, 0, 0] = True           # 1/64: under min_frac
    meta = {"size": [8, 8], "orig_size": [16, 16]}
    g = grid_masks(_raw(full), meta, (2, 2), min_frac=0.05)
    assert g.shape == (2, 2, 2) and g.dtype == torch.float16           # largest first, the speck dropped
    assert torch.equal(g[0].float(), torch.tensor([[0.5, 1.0], [0.5, 1.0]]))
    assert torch.equal(g[1].float(), torch.tensor([[0.5, 0.0], [0.5, 0.0]]))
    assert grid_masks(_raw(full), meta, (2, 2), max_regions=1, min_frac=0.05).shape[0] == 1
    # view 1's box is the left half in original pixels ([top, left, height, width] = [0, 0, 16, 8])
    meta["views"] = [{"box": [0, 0, 16, 16]}, {"box": [0, 0, 16, 8]}]
    v = grid_masks(_raw(full), meta, (2, 2), view=1, min_frac=0.05)
    # the crop is resized columns 0..3: mask 0 fills its left cells, mask 1 its right ones
    assert torch.equal(v.float(), torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, 1.0]]]))
    assert grid_masks({"__key__": "k"}, meta, (2, 2)).shape == (0, 2, 2)


def test_pool_regions_equals_pixelclip_pooling_image_by_image():
    """The batched pooling gives PixelCLIP's `pool_mask_features` ("area") of each image's own masks,
    in the regions' order, including an image without masks and masks listed out of image order."""
    from zss.recipes.joint.losses import pool_regions
    from zss.recipes.pixelclip.targets import pool_mask_features

    g = torch.Generator().manual_seed(0)
    grid = torch.randn(3, 4, 5, 6, generator=g)                        # B=3, 4x5 grid, D=6
    owner = torch.tensor([2, 0, 2, 2, 0])                               # image 1 has no mask
    masks = torch.rand(5, 4, 5, generator=g) * (torch.rand(5, 4, 5, generator=g) > 0.5)
    got = pool_regions(grid.flatten(1, 2), masks.flatten(1), owner)
    want = torch.stack([pool_mask_features(grid[b:b + 1], masks[m:m + 1], torch.zeros(1, dtype=torch.long), "area")[0]
                        for m, b in enumerate(owner.tolist())])
    assert got.shape == (5, 6) and torch.allclose(got, want, atol=1e-6)
    assert pool_regions(grid.flatten(1, 2), masks[:0].flatten(1), owner[:0]).shape == (0, 6)
