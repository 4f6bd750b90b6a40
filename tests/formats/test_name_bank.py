"""Name-bank files (`zss.formats.name_bank`): user banks (`--vocab auto:FILE`), their errors, the built
format's round trip and the `--vocab auto[:FILE]` spec."""

from __future__ import annotations

import gzip
import os

import pytest

from zss.errors import ZssError
from zss.formats.name_bank import MAGIC, NameEntry, parse_auto_vocab, read_name_bank, write_name_bank


def test_user_bank(tmp_path):
    f = tmp_path / "names.txt"
    f.write_text("# my objects\ncar;automobile;auto\n\n  Dog ; puppy;dog \ntraffic_cone\n"
                 "car;motorcar\n1234\nbackground\n" + "x" * 101 + "\n", encoding="utf-8")
    bank = read_name_bank(f)
    assert bank.kind == "user"
    assert [e.names for e in bank.entries] == [("car", "automobile", "auto", "motorcar"), ("Dog", "puppy"),
                                               ("traffic cone",)]
    assert [e.id for e in bank.entries] == ["line:2", "line:4", "line:5"]
    assert [no for no, _ in bank.skipped] == [6, 7, 8, 9]
    assert "no letter" in bank.skipped[1][1] and "background" in bank.skipped[2][1]
    assert "longer than 100" in bank.skipped[3][1]
    texts, owners = bank.phrases()
    assert texts[:4] == ["car", "automobile", "auto", "motorcar"] and owners[4:6] == [1, 1]
    assert bank.concept_dicts()[1] == {"id": 1, "name": "Dog", "synonyms": ["puppy"], "sources": ["line:4"]}
    g = tmp_path / "names.txt.gz"
    g.write_bytes(gzip.compress(f.read_bytes()))
    assert [e.names for e in read_name_bank(g).entries] == [e.names for e in bank.entries]
    assert read_name_bank(g).content_hash() == bank.content_hash()


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (b"  \n\n\t\n", "is empty"),
    (b"# only a comment\n# and another\n", "no usable names: only comments"),
    (b"123\n---\nbackground\n", "no usable names \\(3 lines, none usable: line 1: '123': no letter"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "unreadable: a binary file"),
    (b"caf\xe9\n", "unreadable: not UTF-8 text"),
    (b"\x1f\x8b\x08\x00garbage", "unreadable: a damaged gzip file"),
    (gzip.compress(b""), "is empty"),
    ((MAGIC + "\n# columns\nn1\tnoun.x\t0\n").encode(), "line 3: 3 tab-separated columns, expected 5"),
    ((MAGIC + "\n# just a header\n").encode(), "no usable names \\(a header but no rows\\)"),
])
def test_bad_user_banks(tmp_path, content, message):
    f = tmp_path / "bank.txt"
    f.write_bytes(content)
    with pytest.raises(ZssError, match=message):
        read_name_bank(f)


def test_bank_path_errors(tmp_path):
    with pytest.raises(ZssError, match="not found"):
        read_name_bank(tmp_path / "missing.txt")
    with pytest.raises(ZssError, match="is a folder"):
        read_name_bank(tmp_path)
    if os.geteuid() != 0:  # root reads a mode-000 file anyway
        f = tmp_path / "locked.txt"
        f.write_text("car\n")
        f.chmod(0)
        with pytest.raises(ZssError, match="unreadable"):
            read_name_bank(f)


def test_written_bank_round_trip_and_checks(tmp_path):
    entries = [NameEntry("n1", ("a thing", "thingy"), ("n2", "n3"), 4, "noun.artifact"),
               NameEntry("n2", ("stuff",), ("n3",), 0, "noun.substance")]
    p = write_name_bank(tmp_path / "b.tsv.gz", entries, ["source: test", "two\nlines"])
    bank = read_name_bank(p)
    assert bank.entries == entries and bank.header[:3] == ["source: test", "two", "lines"]
    with pytest.raises(ValueError, match="holds a tab"):
        write_name_bank(tmp_path / "x.tsv.gz", [NameEntry("n1", ("a;b",))], [])


def test_auto_vocab_spec(tmp_path):
    assert parse_auto_vocab("cat,dog") is None and parse_auto_vocab("automobile") is None
    assert parse_auto_vocab("auto").name == "wordnet-3.0-visual.tsv.gz"
    assert parse_auto_vocab(f"auto:{tmp_path}/n.txt") == tmp_path / "n.txt"
    with pytest.raises(ZssError, match="needs a file"):
        parse_auto_vocab("auto:")
