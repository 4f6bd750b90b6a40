"""SimZSS losses against hand-computed values and a naive per-occurrence reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from zss.recipes.simzss.losses import (attention_pool, concept_bank, global_infonce, local_concept_loss,
                                occurrence_embeddings, total_loss)


def test_global_infonce_hand_computed():
    eye = torch.eye(2)
    # logits = s·I: each row's CE = log(1 + e^-s), both directions alike.
    for s in (1.0, 5.0):
        assert global_infonce(eye, eye, s).item() == pytest.approx(math.log(1 + math.exp(-s)), abs=1e-6)
    # Normalisation: scaling inputs changes nothing; swapped pairs are penalised.
    assert global_infonce(3 * eye, 0.5 * eye, 2.0).item() == pytest.approx(math.log(1 + math.exp(-2)), abs=1e-6)
    assert global_infonce(eye, eye.flip(0), 2.0).item() == pytest.approx(math.log(1 + math.exp(2)), abs=1e-6)


def test_occurrence_embeddings_sum_normalised_tokens():
    tokens = torch.tensor([[[3.0, 4.0], [1.0, 0.0], [0.0, 2.0], [5.0, 5.0]]])
    occ = occurrence_embeddings(tokens, torch.tensor([0, 0]), torch.tensor([1, 0]), torch.tensor([3, 1]))
    assert torch.allclose(occ, torch.tensor([[1.0, 1.0], [0.6, 0.8]]), atol=1e-6)


def test_concept_bank_normalised_mean_per_id():
    occ = torch.tensor([[1.0, 0.0], [0.0, 1.0], [3.0, 4.0]])
    bank, ids, index = concept_bank(occ, torch.tensor([5, 2, 5]))
    assert ids.tolist() == [2, 5] and index.tolist() == [1, 0, 1]
    r = 1 / math.sqrt(2)
    assert torch.allclose(bank, torch.tensor([[0.0, 1.0], [r, r]]), atol=1e-6)


def test_attention_pool_over_own_image_only():
    patches = torch.tensor([[[1.0, 0.0], [0.0, 2.0]],      # image 0
                            [[0.0, 1.0], [0.0, 3.0]]])     # image 1: every patch points up
    q = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    pooled = attention_pool(q, patches, torch.tensor([1, 0, 0]), temperature=1.0)
    e = math.e
    # occurrence 0 is in image 1: whatever the query, it pools [0, 1].
    assert torch.allclose(pooled[0], torch.tensor([0.0, 1.0]), atol=1e-6)
    # occurrence 1: weights softmax([1, 0]) on normalised patches [1,0], [0,1].
    assert torch.allclose(pooled[1], torch.tensor([e, 1.0]) / math.sqrt(e * e + 1), atol=1e-6)
    assert torch.allclose(pooled[2], torch.tensor([1.0, e]) / math.sqrt(e * e + 1), atol=1e-6)


def _reference_local(tokens, patches, occ, temperature, scale, target):
    """A naive loop over occurrences, written straight from the issue's description."""
    t = tokens / np.linalg.norm(tokens, axis=-1, keepdims=True)
    p = patches / np.linalg.norm(patches, axis=-1, keepdims=True)
    emb = np.stack([t[b, s:e].sum(0) for b, _, s, e in occ])
    ids = sorted({c for _, c, _, _ in occ})
    bank = np.stack([emb[[i for i, o in enumerate(occ) if o[1] == c]].mean(0) for c in ids])
    bank /= np.linalg.norm(bank, axis=-1, keepdims=True)
    losses = []
    for i, (b, c, _, _) in enumerate(occ):
        q = bank[ids.index(c)]
        w = np.exp(p[b] @ q / temperature)
        w /= w.sum()
        v = (w[:, None] * p[b]).sum(0)
        v /= np.linalg.norm(v)
        logits = scale * bank @ v
        tgt = ids.index(c) if target == "own" else int(np.argmax(logits))
        losses.append(np.log(np.exp(logits - logits.max()).sum()) + logits.max() - logits[tgt])
    return float(np.mean(losses))


@pytest.mark.parametrize("target", ["own", "argmax"])
def test_local_concept_loss_matches_reference(target):
    g = torch.Generator().manual_seed(0)
    tokens = torch.randn(3, 6, 4, generator=g, dtype=torch.float64)
    patches = torch.randn(3, 5, 4, generator=g, dtype=torch.float64)
    occ = [(0, 7, 1, 3), (0, 2, 3, 4), (1, 7, 1, 2), (2, 4, 2, 5), (2, 2, 1, 2), (2, 7, 5, 6)]
    o = torch.tensor(occ)
    got = local_concept_loss(tokens, patches, o[:, 0], o[:, 2], o[:, 3], o[:, 1],
                             temperature=0.1, scale=1 / 0.07, target=target)
    want = _reference_local(tokens.numpy(), patches.numpy(), occ, 0.1, 1 / 0.07, target)
    assert got.item() == pytest.approx(want, rel=1e-5)


def test_local_loss_hand_case_and_gradients():
    # Two images, one concept each, orthogonal tokens and patches: the pooled visual concept equals
    # its own bank vector, so logits = scale·I and CE = log(1 + e^-scale) per occurrence.
    tokens = torch.tensor([[[0.0, 0.0], [2.0, 0.0]], [[0.0, 0.0], [0.0, 3.0]]], requires_grad=True)
    patches = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    one = torch.tensor
    loss = local_concept_loss(tokens, patches, one([0, 1]), one([1, 1]), one([2, 2]), one([4, 9]),
                              temperature=0.1, scale=2.0)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-2.0)), abs=1e-6)
    loss.backward()
    assert tokens.grad is not None and torch.isfinite(tokens.grad).all()
    # No occurrences: zero, still attached to the graph.
    empty = torch.zeros(0, dtype=torch.long)
    z = local_concept_loss(tokens, patches, empty, empty, empty, empty)
    assert z.item() == 0.0 and z.requires_grad
    assert total_loss(torch.tensor(1.0), torch.tensor(2.0), 0.05).item() == pytest.approx(1.1)
