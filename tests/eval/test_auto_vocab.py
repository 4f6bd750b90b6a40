"""`--vocab auto` pieces with hand-computed values: the name choice and merge rule, the WordNet
name -> class mapping, the faiss name index and its cache, the feature tap, and a whole AutoNamer
over the colour Segmenter (whose text and dense features are known exactly)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from zss.errors import ZssError
from zss.eval.auto_names import Candidate, Region, choose_names
from zss.eval.auto_vocab import (AutoNamer, AutoVocabConfig, FeatureTap, prior_penalty, split_auto_overrides,
                                 training_names)
from zss.eval.inference import InferenceConfig
from zss.eval.name_index import NameIndex, embed_phrases, load_name_index, make_index
from zss.eval.name_mapping import NameMapper, variants
from zss.formats.name_bank import NameBank, NameEntry

# a miniature WordNet-style bank: ids, names, ancestors nearest first
ENTRIES = [
    NameEntry("n1", ("animal",), ()),
    NameEntry("n2", ("dog", "domestic dog"), ("n1",)),
    NameEntry("n3", ("puppy",), ("n2", "n1")),
    NameEntry("n4", ("plate",), ()),                  # two senses, one display name
    NameEntry("n5", ("plate", "scale"), ()),
    NameEntry("n6", ("hound",), ("n2", "n1")),
    NameEntry("n7", ("beagle",), ("n6", "n2", "n1")),
    NameEntry("n8", ("box", "crate"), ()),
    NameEntry("n9", ("leaf",), ()),
]
BANK = NameBank(list(ENTRIES), "test", "wordnet")


def cand(entry: int, score: float) -> Candidate:
    return Candidate(entry, score, score, ENTRIES[entry].name)


def test_choose_names_merges_synsets_duplicates_hypernyms_and_unknown():
    regions = [
        Region(0.30, [cand(1, 0.50), cand(0, 0.40)]),      # dog
        Region(0.20, [cand(0, 0.45), cand(1, 0.44)]),      # animal, but it also proposed dog (picked elsewhere)
        Region(0.10, [cand(1, 0.30)]),                     # dog again: same synset, one name
        Region(0.15, [cand(3, 0.20)]),                     # plate (sense 1)
        Region(0.05, [cand(4, 0.60)]),                     # plate (sense 2): same display name
        Region(0.20, [cand(8, 0.01)]),                     # below min_score: unknown
    ]
    names, owner = choose_names(regions, BANK, min_score=0.05, max_names=10)
    assert [n.name for n in names] == ["dog", "plate"]
    dog, plate = names
    assert dog.regions == [0, 1, 2] and dog.area == pytest.approx(0.60)
    # area-weighted mean of the regions' scores (region 1 keeps its own score, 0.45)
    assert dog.score == pytest.approx((0.3 * 0.5 + 0.2 * 0.45 + 0.1 * 0.3) / 0.6)
    assert plate.area == pytest.approx(0.20) and plate.score == pytest.approx((0.15 * 0.2 + 0.05 * 0.6) / 0.2)
    assert owner == [0, 0, 0, 1, 1, None]
    # max_names keeps the largest; the rest become unknown
    names, owner = choose_names(regions, BANK, min_score=0.05, max_names=1)
    assert [n.name for n in names] == ["dog"] and owner == [0, 0, 0, None, None, None]
    # a hypernym picked where the specific name was not proposed stays
    names, _ = choose_names([Region(0.5, [cand(1, 0.5)]), Region(0.5, [cand(0, 0.5), cand(8, 0.4)])], BANK, 0.0, 5)
    assert sorted(n.name for n in names) == ["animal", "dog"]


def test_name_mapping_relations_and_depth():
    assert {"leaf", "leaves"} <= variants("leaves") and "box" in variants("boxes")
    assert "wineglass" in variants("wine glass") and "ski" in variants("skis")
    classes = [["background"], ["dog"], ["crate"], ["leaves"], ["plate"]]
    m = NameMapper(BANK, classes, skip={0})
    assert m.map(1) == (1, "synset", 0)                    # dog
    assert m.map(7) == (2, "synset", 0)                    # box;crate: a class word is a synonym
    assert m.map(8) == (3, "synset", 0)                    # leaf <- leaves
    assert m.map(2) == (1, "hyponym", 1)                   # puppy -> dog
    assert m.map(5) == (1, "hyponym", 1)                   # hound -> dog
    assert m.depth(6, "n2") == 2 and m.map(6) == (1, "hyponym", 2)   # beagle -> hound -> dog
    assert NameMapper(BANK, classes, skip={0}, max_depth=1).map(6) is None
    assert m.map(0) is None                                # animal: a hypernym, not a hyponym
    assert m.map(3) == (4, "synset", 0) and m.map(4) == (4, "synset", 0)
    user = NameBank([NameEntry("line:1", ("doggy",))], "u", "user")
    assert NameMapper(user, classes).map(0, "dog") == (1, "phrase", 0)
    assert NameMapper(user, classes).map(0, "cat") is None


def _unit(rows):
    a = np.asarray(rows, dtype=np.float32)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def test_index_search_distinct_entries_and_kinds():
    bank = NameBank([NameEntry("a", ("x", "x2")), NameEntry("b", ("y",)), NameEntry("c", ("z",))], "t")
    vectors = _unit([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0, 0, 1]])   # phrases x, x2, y, z
    index = NameIndex(bank, make_index(vectors), np.array([0, 0, 1, 2]), ["x", "x2", "y", "z"], {})
    hits = index.search(_unit([[1, 0.05, 0]]), k=2)[0]
    assert [h[0] for h in hits] == [0, 1] and hits[0][2] == "x"   # x2 does not take a second place
    assert hits[0][1] == pytest.approx(float(_unit([[1, 0.05, 0]])[0, 0]), abs=1e-5)
    assert index.search(_unit([[0, 0, 1]]), k=5)[0][0][0] == 2


def test_embed_needs_a_text_tower():
    class FeaturesOnly(torch.nn.Module):
        patch_size, default_size = 4, 32

    with pytest.raises(ZssError, match="no text tower"):
        embed_phrases(FeaturesOnly(), ["dog"])


def test_feature_tap_reuses_windows_and_prompts(colour_model):
    calls = {"dense": 0, "text": 0}
    enc_d, enc_t = colour_model.encode_dense, colour_model.encode_text
    colour_model.encode_dense = lambda x: (calls.__setitem__("dense", calls["dense"] + 1), enc_d(x))[1]
    colour_model.encode_text = lambda t: (calls.__setitem__("text", calls["text"] + len(t)), enc_t(t))[1]
    tap = FeatureTap(colour_model)
    x = torch.rand(2, 3, 8, 8)
    a, b = tap.encode_dense(x), tap.encode_dense(x.clone())
    assert a is b and calls["dense"] == 1 and len(tap.calls) == 1
    tap.encode_dense(torch.rand(2, 3, 8, 8))
    assert calls["dense"] == 2
    tap.encode_text(["red", "blue"])
    tap.encode_text(["blue", "green"])
    assert calls["text"] == 3                             # "blue" embedded once
    tap.clear()
    assert tap.calls == [] and not hasattr(tap, "encode_text_spans")   # the colour model has no span pooling


def test_auto_overrides_split_and_checked():
    auto, rest = split_auto_overrides(["auto.k=3", "prob_thd=0.2", "auto.min_score=0.5"])
    assert auto.k == 3 and auto.min_score == 0.5 and rest == ["prob_thd=0.2"]
    with pytest.raises(ZssError, match="auto.k"):
        split_auto_overrides(["auto.k=0"])


COLOUR_BANK = ["red;crimson", "green", "blue", "yellow", "white", "black"]


def test_auto_namer_names_colour_halves(colour_model, make_colour_image, tmp_path, monkeypatch):
    monkeypatch.setenv("ZSS_CACHE", str(tmp_path / "cache"))
    bank = NameBank([NameEntry(f"line:{i + 1}", tuple(n.split(";"))) for i, n in enumerate(COLOUR_BANK)],
                    "colours", "user")
    cfg = InferenceConfig(short_side=0, mode="whole", crop=0, stride=0, templates="photo")
    namer = AutoNamer(colour_model, "colour-model", bank, cfg, AutoVocabConfig(k=2, top_k=3), "cpu")
    assert list((tmp_path / "cache" / "name-index").glob("*.faiss"))        # cached
    image = make_colour_image(32, 32, 16, "red", "blue")
    res = namer.predict(image)
    assert sorted(n.name for n in res.chosen) == ["blue", "red"] and res.names[-1] == "unknown"
    red = res.names.index("red")
    assert (res.label[:, :16] == red).all() and (res.label[:, 16:] == res.names.index("blue")).all()
    assert all(n.area == pytest.approx(0.5) for n in res.chosen) and res.unknown_area == 0.0
    # cosine of pure red with the text "red": centred colours (0.5,-0.5,-0.5,0) vs (0.5,-0.5,-0.5,0) -> 1
    assert next(n for n in res.chosen if n.name == "red").cosine == pytest.approx(1.0, abs=1e-4)
    # green is not in this bank: its best names (yellow, blue, black) reach cosine 1/3 < min_score 0.5
    no_green = NameBank([e for e in bank.entries if e.name != "green"], "colours", "user")
    namer2 = AutoNamer(colour_model, "colour-model", no_green, cfg, AutoVocabConfig(k=2, min_score=0.5), "cpu")
    res = namer2.predict(make_colour_image(32, 32, 16, "red", "green"))
    assert [n.name for n in res.chosen] == ["red"] and res.unknown_area == pytest.approx(0.5)
    assert (res.label[:, 16:] == 1).all() and res.names == ["red", "unknown"]
    namer2.auto = AutoVocabConfig(k=2, min_score=1.01)    # nothing confident: the whole image is unknown
    res = namer2.predict(image)
    assert res.chosen == [] and res.names == ["unknown"] and (res.label == 0).all()
    # a second namer over the same model spec and bank reuses the cached index (no embedding)
    monkeypatch.setattr("zss.eval.name_index.embed_phrases", lambda *a, **k: pytest.fail("rebuilt"))
    assert load_name_index(colour_model, "colour-model", bank).index.ntotal == 7


def test_unseen_names_get_the_penalty(colour_model, make_colour_image, tmp_path, monkeypatch):
    """A model directory recording its training concepts: names outside them lose `unseen_penalty`."""
    monkeypatch.setenv("ZSS_CACHE", str(tmp_path / "cache"))
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps({"kind": "simzss", "schema": 1}))
    (model_dir / "concepts.json").write_text(json.dumps({"concepts": [
        {"id": 0, "name": "Blue", "synonyms": ["azure"]}, {"id": 1, "name": "sky", "synonyms": []}]}))
    assert training_names(model_dir) == {"blue", "azure", "sky"}
    assert training_names(tmp_path / "nothing") is None
    bank = NameBank([NameEntry("line:1", ("red",)), NameEntry("line:2", ("blue",))], "c", "user")
    cfg = InferenceConfig(short_side=0, mode="whole", crop=0, stride=0, templates="photo")
    namer = AutoNamer(colour_model, model_dir, bank, cfg, AutoVocabConfig(k=2, unseen_penalty=0.3), "cpu")
    assert [namer.unseen(p) for p in ("red", "BLUE", "azure")] == [True, False, False]
    assert list((model_dir / "name-index").glob("*.faiss"))                   # cached beside the model
    res = namer.predict(make_colour_image(32, 32, 16, "red", "blue"))
    red = next(n for n in res.chosen if n.name == "red")
    assert red.score == pytest.approx(red.cosine - 0.3, abs=1e-6)
    assert next(n for n in res.chosen if n.name == "blue").score == pytest.approx(1.0, abs=1e-4)
    # with a high enough penalty the unseen name is no longer confident: its region is unknown
    namer.auto = AutoVocabConfig(k=2, unseen_penalty=1.0)
    assert [n.name for n in namer.predict(make_colour_image(32, 32, 16, "red", "blue")).chosen] == ["blue"]


def test_trained_names_always_compete_and_the_prior_penalty(colour_model, make_colour_image, tmp_path, monkeypatch):
    """300 untrained 'blue ...' names tie with the trained 'blue' at cosine 1 and fill the index's
    shortlist; the trained name is still scored (the prior rows) and wins after the penalty, which by
    default comes from the prior: ln(seen_prior / (1 - seen_prior) * n_unseen / n_seen) / logit scale."""
    monkeypatch.setenv("ZSS_CACHE", str(tmp_path / "cache"))
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps({"kind": "simzss", "schema": 1, "logit_scale": 20.0}))
    (model_dir / "concepts.json").write_text(json.dumps({"concepts": [{"id": 0, "name": "blue", "synonyms": []}]}))
    entries = [NameEntry(f"line:{i}", (f"blue thing {i}",)) for i in range(300)] + [NameEntry("line:300", ("blue",)),
                                                                                     NameEntry("line:301", ("red",))]
    bank = NameBank(entries, "blues", "user")
    cfg = InferenceConfig(short_side=0, mode="whole", crop=0, stride=0, templates="photo")
    namer = AutoNamer(colour_model, model_dir, bank, cfg, AutoVocabConfig(k=2, top_k=1), "cpu")
    assert prior_penalty(0.5, 1, 301, 20.0) == pytest.approx(np.log(301) / 20.0)
    assert prior_penalty(0.9, 2, 10, 4.0) == pytest.approx(np.log(9 * 5) / 4.0)
    assert prior_penalty(0.5, 0, 10, 4.0) == 0.0 and prior_penalty(0.5, 3, 0, 4.0) == 0.0
    assert namer.penalty == pytest.approx(np.log(301) / 20.0)
    image = make_colour_image(32, 32, 16, "red", "blue")
    res = namer.predict(image)
    assert sorted(n.name for n in res.chosen) == ["blue", "red"]
    blue, red = (next(n for n in res.chosen if n.name == c) for c in ("blue", "red"))
    assert blue.score == pytest.approx(1.0, abs=1e-4) and red.score == pytest.approx(red.cosine - np.log(301) / 20, abs=1e-5)
    # without the prior rows the trained name is not in the shortlist: an untrained one is chosen
    shortlist = namer.index.search(namer.prior[0][:1], 1 + 45)[0]
    assert len(shortlist) == 46 and 300 not in [e for e, _, _ in shortlist]
    namer.prior = None
    assert "blue" not in [n.name for n in namer.predict(image).chosen]
    # an explicit penalty overrides the prior; no logit scale recorded: the protocol's is used
    namer.auto = AutoVocabConfig(k=2, top_k=1, unseen_penalty=0.25)
    assert namer.penalty == 0.25
    (model_dir / "config.json").write_text(json.dumps({"kind": "simzss", "schema": 1}))
    namer = AutoNamer(colour_model, model_dir, bank, cfg, AutoVocabConfig(k=2, top_k=1), "cpu")
    assert namer.penalty == pytest.approx(np.log(301) / cfg.logit_scale)


def test_index_key_follows_the_text_tower_not_the_bundled_backbone(tmp_path):
    """model_hash: the bundled frozen backbone (config.backbone.checkpoint) is left out; the text
    tower's weights and the rest of config.json are in."""
    from safetensors.torch import save_file

    from zss.eval.name_index import model_hash

    d = tmp_path / "model"
    d.mkdir()

    def write(backbone: float, text: float, sha: str = "aa", width: int = 8) -> str:
        save_file({"w": torch.full((4,), backbone)}, str(d / "backbone.safetensors"))
        save_file({"text.w": torch.full((4,), text)}, str(d / "model.safetensors"))
        (d / "config.json").write_text(json.dumps({"kind": "simzss", "schema": 1, "text": {"width": width},
                                                   "backbone": {"name": "vit", "checkpoint": "backbone.safetensors",
                                                                "sha256": sha}}))
        return model_hash(d)

    base = write(0.0, 0.0)
    assert write(1.0, 0.0, sha="bb") == base          # a different backbone file (and its checksum)
    assert write(1.0, 2.0, sha="bb") != base          # a different text tower
    assert write(0.0, 0.0, width=16) != base          # a different text config
    assert write(0.0, 0.0) == base
    (d / "adapter.safetensors").write_bytes((d / "model.safetensors").read_bytes())
    assert model_hash(d) != base                      # any other weight file counts


def test_dino_regions_split_the_colour_halves(colour_model, make_colour_image, tmp_path, monkeypatch):
    """`auto.regions=dino`: k-means of a (random-weight) DINO ViT-S/16's patch tokens; the regions
    follow the two colour halves, are named by the model's own features, and match feature-kmeans."""
    from zss.models.random_init import save_random_timm

    monkeypatch.setenv("ZSS_CACHE", str(tmp_path / "cache"))
    ckpt = save_random_timm("vit_small_patch16_224.dino", tmp_path / "dino.safetensors", img_size=64, seed=0)
    bank = NameBank([NameEntry(f"line:{i + 1}", tuple(n.split(";"))) for i, n in enumerate(COLOUR_BANK)],
                    "colours", "user")
    cfg = InferenceConfig(short_side=0, mode="whole", crop=0, stride=0, templates="photo")
    image = make_colour_image(32, 32, 16, "red", "blue")
    kmeans = AutoNamer(colour_model, "colour-model", bank, cfg, AutoVocabConfig(k=2), "cpu").predict(image)
    auto = AutoVocabConfig(k=2, regions="dino", dino_checkpoint=str(ckpt), dino_img_size=64)
    namer = AutoNamer(colour_model, "colour-model", bank, cfg, auto, "cpu")
    res = namer.predict(image)
    assert sorted(n.name for n in res.chosen) == ["blue", "red"]
    assert (res.label[:, :16] == res.names.index("red")).all() and (res.label[:, 16:] == res.names.index("blue")).all()
    assert len(np.unique(res.regions[:, :4])) == 1 and len(np.unique(res.regions[:, 4:])) == 1
    assert (res.regions[:, :4] != res.regions[:, 4:][:, :4]).all()
    assert [n.name for n in res.chosen] == [n.name for n in kmeans.chosen]
    assert [n.cosine for n in res.chosen] == pytest.approx([n.cosine for n in kmeans.chosen]) == [1.0, 1.0]
    namer.auto = AutoVocabConfig(k=2, regions="dino", dino_checkpoint=str(tmp_path / "none.safetensors"))
    with pytest.raises(ZssError, match="auto.dino_checkpoint"):
        namer.predict(image)


def test_paint_masks_partitions_overlapping_masks():
    """SAM's overlapping masks -> at most k regions: largest painted first, a small mask inside a big
    one keeps its pixels, the k - 1 largest visible segments kept, the rest one region."""
    from zss.eval.auto_vocab import paint_masks, sample_grid

    big = np.zeros((4, 6), bool)
    big[:, :4] = True                      # 16 px
    small = np.zeros((4, 6), bool)
    small[1:3, 1:3] = True                 # 4 px inside big
    strip = np.zeros((4, 6), bool)
    strip[:, 4] = True                     # 4 px; column 5 is uncovered
    out = paint_masks([small, big, strip], (4, 6), k=3)
    expect = np.array([[0, 0, 0, 0, 2, 2],
                       [0, 1, 1, 0, 2, 2],
                       [0, 1, 1, 0, 2, 2],
                       [0, 0, 0, 0, 2, 2]])
    # big (12 visible px) then small (4) and strip (4; the stable order keeps the earlier mask) then the rest
    assert (out == expect).all()
    roomy = expect.copy()
    roomy[:, 5] = 3                                          # k = 8: the strip keeps its id, the rest is 3
    assert (paint_masks([small, big, strip], (4, 6), k=8) == roomy).all()
    every = paint_masks([big, ~big], (4, 6), k=2)            # fully covered, k segments: no rest region
    assert set(np.unique(every)) == {0, 1} and (every[:, :4] == 0).all()
    assert (paint_masks([], (4, 6), k=3) == 0).all()
    assert (sample_grid(expect, (2, 3)) == np.array([[1, 0, 2], [0, 0, 2]])).all()   # cells centred at rows 1, 3; cols 1, 3, 5
