"""The training path computes the loss with the tested pure functions (issue 9.3)."""

from __future__ import annotations

import pytest
import torch
from webdataset.tariterators import tarfile_samples

from zss.recipes.simzss.losses import global_infonce, local_concept_loss
from zss.recipes.simzss.recipe import SimZSSConfig, SimZSSRecipe
from zss.trainer.config import TrainConfig
from zss.trainer.data import sample_rng
from zss.utils.config import from_dict, load_config


def _recipe(shards, overrides):
    cfg = load_config(TrainConfig, overrides=overrides)
    return SimZSSRecipe(from_dict(SimZSSConfig, cfg.recipe), shards, cfg)


def _batch(recipe, n=8):
    tar = recipe.shards / recipe.manifest["shards"][0]["tar"]
    raws = [r for _, r in zip(range(n), tarfile_samples([{"url": str(tar)}]))]
    samples = [recipe.decode_sample(r, sample_rng(0, 0, r["__key__"])) for r in raws]
    return {k: (v.float() if v.is_floating_point() else v) for k, v in recipe.collate(samples).items()}


@pytest.mark.parametrize("target,weight", [("own", 0.05), ("argmax", 0.7)])
def test_recipe_loss_is_global_plus_lambda_local(feature_world, tiny_overrides, target, weight):
    recipe = _recipe(feature_world.shards, tiny_overrides + [f"recipe.local_target={target}",
                                                             f"recipe.local_weight={weight}"])
    torch.manual_seed(0)
    model = recipe.build_model()
    batch = _batch(recipe)
    assert batch["occ_ids"].numel() > 8  # a real batch with several concepts per caption
    loss, logs = recipe.loss(model, batch)

    with torch.no_grad():
        tokens, eot, scale = model(batch["ids"])
        patches = batch["patch"].flatten(1, 2)
        lg = global_infonce(patches.mean(dim=1), eot, scale)
        ll = local_concept_loss(tokens, patches, batch["occ_batch"], batch["occ_start"], batch["occ_end"],
                                batch["occ_ids"], temperature=0.1, scale=1 / 0.07, target=target)
    assert ll.item() > 0.1
    assert logs["loss_global"].item() == pytest.approx(lg.item(), rel=1e-6)
    assert logs["loss_local"].item() == pytest.approx(ll.item(), rel=1e-6)
    assert loss.item() == pytest.approx(lg.item() + weight * ll.item(), rel=1e-6)


class _TwoHalves:
    """A fake two-process gather: this 'rank' sees the other half's rows (detached) around its own."""

    world_size = 2

    def __init__(self, rank, other):
        self.rank, self.other = rank, other

    def rows(self, x):
        other = self.other[x.dtype == torch.long].detach()
        return torch.cat([x, other] if self.rank == 0 else [other, x])

    def offset(self, n_local, device):
        return 0 if self.rank == 0 else self.other[False].shape[0]


def test_gather_hook_halves_average_to_the_whole_batch():
    g = torch.Generator().manual_seed(1)
    tokens = torch.randn(4, 6, 8, generator=g)
    patches = torch.randn(4, 5, 8, generator=g)
    occ_batch = torch.tensor([0, 0, 1, 2, 3, 3, 3])
    start, end = torch.tensor([1, 3, 1, 2, 1, 2, 4]), torch.tensor([2, 5, 3, 3, 2, 4, 5])
    ids = torch.tensor([4, 1, 4, 2, 1, 7, 2])
    whole = local_concept_loss(tokens, patches, occ_batch, start, end, ids)

    from zss.recipes.simzss.losses import occurrence_embeddings
    halves = []
    for r, (imgs, occ) in enumerate([(slice(0, 2), slice(0, 3)), (slice(2, 4), slice(3, 7))]):
        o_imgs, o_occ = (slice(2, 4), slice(3, 7)) if r == 0 else (slice(0, 2), slice(0, 3))
        o_emb = occurrence_embeddings(tokens[o_imgs], occ_batch[o_occ] - o_imgs.start, start[o_occ], end[o_occ])
        hook = _TwoHalves(r, {False: o_emb, True: ids[o_occ]})
        halves.append(local_concept_loss(tokens[imgs], patches[imgs], occ_batch[occ] - imgs.start, start[occ],
                                         end[occ], ids[occ], gather=hook))
    assert ((halves[0] + halves[1]) / 2).item() == pytest.approx(whole.item(), rel=1e-6)


@pytest.mark.parametrize("ctx", [6, 77])
def test_stored_token_ids_give_the_ids_of_tokenising_the_caption(feature_world, tiny_overrides, ctx):
    """A sample whose json carries its captions' ids (what ingest writes) decodes to the same ids
    as tokenising the drawn caption, cut or padded to the tower's context length."""
    import json

    from zss.models.tokenizer import tokenize, tokenize_with_spans, whole_sequence

    recipe = _recipe(feature_world.shards, tiny_overrides + [f"recipe.text.context_length={ctx}"])
    tar = recipe.shards / recipe.manifest["shards"][0]["tar"]
    for raw in [r for _, r in zip(range(6), tarfile_samples([{"url": str(tar)}]))]:
        meta = json.loads(raw["json"])
        meta["captions"] = [c + " on a long winding road" * k for k, c in enumerate(meta["captions"])]
        with_ids = {**raw, "json": json.dumps({**meta, "tokens": [
            whole_sequence(tokenize_with_spans(c)[0]) for c in meta["captions"]]}).encode()}
        without = {**raw, "json": json.dumps(meta).encode()}
        a, b = (recipe.decode_sample(r, sample_rng(0, 0, r["__key__"])) for r in (with_ids, without))
        i = sample_rng(0, 0, raw["__key__"]).randrange(len(meta["captions"]))
        assert torch.equal(a["ids"], b["ids"]) and torch.equal(a["ids"], tokenize([meta["captions"][i]], ctx)[0])
