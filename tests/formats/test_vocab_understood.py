"""Words as typed: one separator convention, and what a vocabulary was understood as, printed."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from zss.errors import ZssError
from zss.formats.vocab import Vocabulary, describe, parse_vocab, read_class_file

REPO = Path(__file__).resolve().parents[2]


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


def test_segment_prints_what_it_understood(world, tiny_clip, tmp_path):
    image = sorted((world / "val" / "images").glob("*.jpg"))[0]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, "-m", "zss.cli", "segment", f"openclip:zss-tiny-vit:{tiny_clip}",
                           str(image), "--vocab", "zebra, traffic cone, wet asphalt;road", "--out",
                           str(tmp_path / "out"), "--set", "templates=photo"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    understood = "3 classes: zebra | traffic cone | wet asphalt (= road)"
    assert f"zss: vocabulary: {understood}" in done.stderr.splitlines()
    assert done.stdout.startswith(f"segmented 1 image(s) with {understood} into ")
