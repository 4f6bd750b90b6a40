"""Concept bank: stable ids from class lists, synonyms, save/load, faiss index, CLI helpers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from zss.errors import ZssError
from zss.ingest.concept_bank import (ConceptBank, build_bank, build_bank_cli, load_text_encoder,
                                       lookup_cli, resolve_bank)


def test_ids_follow_first_appearance_and_lists_merge(tmp_path):
    a = tmp_path / "a.txt"
    b = tmp_path / "b.txt"
    a.write_text("background\nDog;puppy\ncat\n", encoding="utf-8")
    b.write_text("cat;kitty\ntraffic_cone\ndog;hound\n", encoding="utf-8")
    bank = build_bank([a, b])
    assert [(c["id"], c["name"]) for c in bank.concepts] == [(0, "dog"), (1, "cat"), (2, "traffic cone")]
    assert bank.concepts[0]["synonyms"] == ["puppy", "hound"] and bank.concepts[0]["sources"] == ["a", "b"]
    assert bank.exact("Puppy") == 0 and bank.exact("kitty ") == 1 and bank.exact("traffic  cone") == 2
    assert bank.exact("background") is None and bank.exact("bird") is None
    assert [c["name"] for c in build_bank([b, a]).concepts] == ["cat", "traffic cone", "dog"]

    path = bank.save(tmp_path / "out" / "concepts.json")
    loaded = ConceptBank.load(path)
    assert loaded.concepts == bank.concepts and loaded.index is None
    assert json.loads(path.read_text())["schema"] == 1


def test_named_lists_resolve():
    bank = resolve_bank("voc")
    assert len(bank) == 20 and bank.name(0) == "aeroplane" and bank.exact("airplane") == 0
    assert len(resolve_bank("voc,cityscapes")) > 20


def test_faiss_index_round_trip_and_lookup(tmp_path, class_file, clip_ckpt):
    spec = f"zss-tiny-vit:{clip_ckpt}"
    out = tmp_path / "bank" / "concepts.json"
    msg = build_bank_cli(out, [str(class_file)], spec)
    assert "5 concepts" in msg and "faiss index of 8 phrases" in msg  # 5 names + 3 synonyms
    bank = ConceptBank.load(out)
    assert bank.index.ntotal == 8 and (tmp_path / "bank" / "concepts.faiss").is_file()
    encode, info = load_text_encoder(spec)
    assert bank.text_encoder == info
    scores, ids = bank.nearest(encode(["sphere", "wall"]), k=2)
    assert ids[:, 0].tolist() == [1, 3] and np.allclose(scores[:, 0], 1.0, atol=1e-4)
    assert ids[0, 1] != ids[0, 0]  # k distinct concepts, not the same concept twice
    text = lookup_cli(out, ["automobile", "wall"], 2, None)  # the bank's own encoder
    assert "'automobile': exact=car  nearest: car (1.000)" in text
    assert "'wall': exact=wall" in text


def test_bank_errors(tmp_path):
    with pytest.raises(ZssError, match="not found"):
        ConceptBank.load(tmp_path / "missing.json")
    with pytest.raises(ZssError, match="unknown class list"):
        build_bank(["no_such_list"])
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ZssError, match="concepts.json"):
        ConceptBank.load(bad)
    build_bank_cli(tmp_path / "c.json", ["voc"], None)
    assert lookup_cli(tmp_path / "c.json", ["puppy", "Dog"], 3, None) == "'puppy': exact=-\n'Dog': exact=dog"
