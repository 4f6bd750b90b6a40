"""Words as typed: one separator convention, and what a vocabulary was understood as, printed."""

from __future__ import annotations

import logging

import pytest

from zss.errors import ZssError
from zss.formats.vocab import Vocabulary, describe, parse_vocab, read_class_file


def test_describe_spells_classes_and_synonyms():
    assert Vocabulary.from_string("zebra, traffic cone, wet asphalt;road").describe() == \
        "3 classes: zebra | traffic cone | wet asphalt (= road)"
    # the README's old example: two classes, the first with three words
    assert Vocabulary.from_string("zebra; traffic cone; wet asphalt,road").describe() == \
        "2 classes: zebra (= traffic cone; wet asphalt) | road"
    assert describe([["sky"]]) == "1 class: sky"
    assert Vocabulary.from_string("background;wall, cat").describe() == \
        "2 classes: background (= wall) [background] | cat"
    assert describe([["a", "b", "c", "d", "e", "f", "g"]]) == "1 class: a (= b; c; d; e; +2)"
    many = [[f"c{i}"] for i in range(30)]
    assert describe(many, at_most=3) == "30 classes: c0 | c1 | c2 | ... 27 more"


def test_one_class_of_synonyms_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="zss"):
        assert parse_vocab("zebra; traffic cone; wet asphalt") == [["zebra", "traffic cone", "wet asphalt"]]
    assert "ONE class with 3 synonyms" in caplog.text and "'zebra, traffic cone, wet asphalt'" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="zss"):
        parse_vocab("zebra, traffic cone")
        parse_vocab("sky")
    assert caplog.text == ""


def test_class_file_line_with_a_comma_is_one_line_error(tmp_path):
    f = tmp_path / "classes.txt"
    f.write_text("# mine\nsky;heaven\nperson, person in shirt\n")
    with pytest.raises(ZssError) as err:
        read_class_file(f)
    assert str(err.value).startswith(f"{f}:3: 'person, person in shirt' holds ','")
    f.write_text("# comments may, of course, hold commas\nsky;heaven\nperson;person in shirt\n")
    assert read_class_file(f) == [["sky", "heaven"], ["person", "person in shirt"]]

# `zss segment` printing what it understood, through a real process: tests/utils/test_progress_logs.py
# (test_cli_segment_logs_first_and_last_only), one segment run for both.
