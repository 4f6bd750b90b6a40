"""The WordNet name-bank build (`zss concepts build --from wordnet`): the rule on a tiny WordNet-format
fixture written here (data.noun / index.noun / cntlist.rev as wndb(5WN) lays them out), the build's
bytes and header, the folder errors, through the library and through the command line."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest

from zss.errors import ZssError
from zss.formats.name_bank import MAGIC, NameEntry, read_name_bank
from zss.ingest.wordnet_bank import (INFORMAL_GLOSS, OFFENSIVE_GLOSS, build_wordnet_bank,
                                     build_wordnet_bank_cli, select_names)
from zss.ingest.wordnet_db import read_wordnet

LEXFILE = {"Tops": 3, "animal": 5, "artifact": 6, "attribute": 7, "communication": 10, "group": 14,
           "person": 18, "process": 22, "substance": 27}

# key: (lexfile, [(lemma, lex_id)], [(pointer, target key)], gloss). Hypernym '@' and instance '@i'
# pointers are given; the inverse '~' / '~i' pointers are added by write_wordnet (nltk reads those).
SYNSETS = {
    "entity": ("Tops", [("entity", 0)], [], "that which is perceived or known or inferred to exist"),
    "physical_entity": ("Tops", [("physical_entity", 0)], [("@", "entity")], "an entity that has physical existence"),
    "abstraction": ("Tops", [("abstraction", 0)], [("@", "entity")], "a general concept"),
    "object": ("Tops", [("object", 0), ("physical_object", 0)], [("@", "physical_entity")], "a tangible and visible entity"),
    "whole": ("Tops", [("whole", 0)], [("@", "object")], "an assemblage of parts regarded as a single entity"),
    "artifact": ("Tops", [("artifact", 0)], [("@", "whole")], "a man-made object"),
    "car": ("artifact", [("car", 0), ("auto", 0), ("automobile", 0)], [("@", "artifact")],
            "a motor vehicle with four wheels"),
    "hoosegow": ("artifact", [("hoosegow", 0)], [("@", "artifact")], "slang for a jail"),
    "organism": ("Tops", [("organism", 0), ("being", 0)], [("@", "whole")], "a living thing"),
    "animal": ("Tops", [("animal", 0), ("beast", 0)], [("@", "organism")], "a living organism that moves"),
    "dog": ("animal", [("dog", 0), ("domestic_dog", 0), ("Canis_familiaris", 0)], [("@", "animal")],
            "a member of the genus Canis"),
    "puppy": ("animal", [("puppy", 0)], [("@", "dog")], "a young dog"),
    "lassie": ("animal", [("Lassie", 0)], [("@i", "dog")], "a dog in films"),
    "rooster": ("animal", [("rooster", 0), ("cock", 0)], [("@", "animal")], "adult male chicken"),
    "cock": ("animal", [("cock", 1)], [("@", "animal")], "adult male bird"),
    "person": ("Tops", [("person", 0), ("individual", 0)], [("@", "organism")], "a human being"),
    "worker": ("person", [("worker", 0)], [("@", "person")], "a person who works"),
    "fireman": ("person", [("fireman", 0), ("firefighter", 0)], [("@", "worker")], "a member of a fire department"),
    "zorkle": ("person", [("zorkle", 0)], [("@", "worker")], "(ethnic slur) offensive term for a test person"),
    "zorkonian": ("person", [("Zorkonian", 0)], [("@", "worker")], "a member of a people of Zorkonia"),
    "intellectual": ("person", [("intellectual", 0)], [("@", "person")], "a person who uses the mind creatively"),
    "bad_person": ("person", [("bad_person", 0)], [("@", "person")], "a person who does harm to others"),
    "rotter": ("person", [("rotter", 0)], [("@", "bad_person"), ("@", "worker")], "a despicable worker"),
    "substance": ("substance", [("substance", 0)], [("@", "physical_entity")], "the stuff things are made of"),
    "compound": ("substance", [("compound", 0), ("chemical_compound", 0)], [("@", "substance")],
                 "(chemistry) a substance formed by chemical union"),
    "liquid": ("substance", [("liquid", 0)], [("@", "substance")], "fluid matter"),
    "water": ("substance", [("water", 0), ("H2O", 0)], [("@", "compound"), ("@", "liquid")], "a clear liquid"),
    "ethanol": ("substance", [("ethanol", 0)], [("@", "compound")], "an alcohol"),
    "iron": ("substance", [("iron", 0), ("Fe", 0), ("atomic_number_26", 0)], [("@", "substance")], "a metal"),
    "process": ("Tops", [("process", 0)], [("@", "physical_entity")], "a sustained phenomenon"),
    "fire": ("process", [("fire", 0), ("flame", 0)], [("@", "process")], "combustion with heat and light"),
    "photosynthesis": ("process", [("photosynthesis", 0)], [("@", "process")], "synthesis of compounds with light"),
    "seating": ("attribute", [("seating", 0)], [("@", "abstraction")], "an arrangement of seats"),
    "grandstand": ("artifact", [("grandstand", 0)], [("@", "seating")], "a stand at a stadium"),
    "group": ("group", [("group", 0)], [("@", "abstraction")], "any number of entities"),
    "genus_canis": ("animal", [("Canis", 0), ("genus_Canis", 0)], [("@", "group")], "type genus of the Canidae"),
    "communication": ("communication", [("communication", 0)], [("@", "abstraction")], "something communicated"),
    "visual_signal": ("communication", [("visual_signal", 0)], [("@", "communication")], "a visual signal"),
    "traffic_light": ("communication", [("traffic_light", 0), ("stoplight", 0)], [("@", "visual_signal")],
                      "a signal to control traffic"),
    "letter": ("communication", [("letter", 0)], [("@", "communication")], "a written message"),
}
COUNTS = {"dog%1:05:00::": 42, "canis_familiaris%1:05:00::": 1, "car%1:06:00::": 89, "water%1:27:00::": 136,
          "rooster%1:05:00::": 3}

HEADER_30 = ["This software and database is being provided to you, the LICENSEE, by",
             "WordNet 3.0 Copyright 2006 by Princeton University.  All rights reserved."]


def write_wordnet(folder: Path, synsets=SYNSETS, header=HEADER_30, counts=COUNTS) -> dict[str, str]:
    """data.noun / index.noun / cntlist.rev in WordNet's own format (wndb(5WN)): each data line
    starts at the byte offset it names. Returns key -> 8-digit offset."""
    folder.mkdir(parents=True, exist_ok=True)
    head = "".join(f"  {i} {line}  \n" for i, line in enumerate(header, 1))
    ptrs = {k: list(v[2]) for k, v in synsets.items()}
    for k, (_, _, out, _) in synsets.items():
        for sym, target in out:
            ptrs[target].append(("~" if sym == "@" else "~i", k))
    keys = list(synsets)

    def line(k: str, offsets: dict[str, str]) -> str:
        lex, words, _, gloss = synsets[k]
        w = " ".join(f"{lemma} {lid:x}" for lemma, lid in words)
        p = " ".join(f"{sym} {offsets[t]} n 0000" for sym, t in ptrs[k])
        return f"{offsets[k]} {LEXFILE[lex]:02d} n {len(words):02x} {w} {len(ptrs[k]):03d} {p} | {gloss}  \n"

    offsets, pos = {}, len(head.encode())
    dummy = {k: "0" * 8 for k in keys}  # every offset is 8 digits, so line lengths do not depend on them
    for k in keys:
        offsets[k] = f"{pos:08d}"
        pos += len(line(k, dummy).encode())
    (folder / "data.noun").write_text(head + "".join(line(k, offsets) for k in keys), encoding="utf-8")

    index: dict[str, list[str]] = {}
    for k in keys:
        for lemma, _ in synsets[k][1]:
            index.setdefault(lemma.lower(), []).append(k)
    rows = []
    for lemma in sorted(index):  # lemma pos synset_cnt p_cnt [ptr_symbol...] sense_cnt tagsense_cnt offsets
        syms = sorted({sym for k in index[lemma] for sym, _ in ptrs[k]})
        n = len(index[lemma])
        rows.append(" ".join([lemma, "n", str(n), str(len(syms)), *syms, str(n), "0",
                              *(offsets[k] for k in index[lemma])]) + "  \n")
    (folder / "index.noun").write_text(head + "".join(rows), encoding="utf-8")
    if counts is not None:
        (folder / "cntlist.rev").write_text("".join(f"{k} 1 {n}\n" for k, n in sorted(counts.items())),
                                           encoding="utf-8")
    return offsets


@pytest.fixture
def wordnet_dir(tmp_path):
    folder = tmp_path / "wordnet"
    offsets = write_wordnet(folder)
    return folder, offsets


def _by_name(bank):
    return {e.name: e for e in bank.entries}


def test_fixture_bank_entries_synonyms_chains(wordnet_dir, tmp_path):
    folder, off = wordnet_dir
    path, sel, _ = build_wordnet_bank(folder, tmp_path / "bank" / "names.tsv.gz")
    bank = read_name_bank(path)
    assert bank.kind == "wordnet" and len(bank) == len(sel.entries)
    e = _by_name(bank)
    n = {k: "n" + o for k, o in off.items()}
    # id, display name first, synonyms, ancestors nearest first up to entity, SemCor counts summed
    assert e["dog"] == NameEntry(n["dog"], ("dog", "domestic dog"),
                                 (n["animal"], n["organism"], n["whole"], n["object"], n["physical_entity"],
                                  n["entity"]), 43, "noun.animal")
    assert e["car"].synonyms == ("auto", "automobile") and e["car"].count == 89
    assert e["puppy"].hypernyms[0] == n["dog"] and e["puppy"].count == 0
    # two hypernyms: breadth-first over both paths, each ancestor once
    assert e["water"].hypernyms[:2] == (n["compound"], n["liquid"]) and e["water"].names == ("water",)
    assert len(set(e["water"].hypernyms)) == len(e["water"].hypernyms)
    # kept single synsets of noun.Tops and the ALLOW subtrees
    assert {"person", "animal", "fireman", "fire", "traffic light"} <= set(e)
    assert e["fire"].synonyms == ("flame",) and e["traffic light"].synonyms == ("stoplight",)
    # outside physical_entity: a concrete lexname and an ALLOW subtree are kept, a taxonomic genus not
    assert "grandstand" in e and "Canis" not in e and "letter" not in e
    assert sel.outside == 3  # grandstand, visual signal, traffic light


def test_fixture_drop_rule(wordnet_dir, tmp_path):
    folder, _ = wordnet_dir
    sel = select_names(read_wordnet(folder))
    names = {e.name for e in sel.entries}
    every_name = {x for e in sel.entries for x in e.names}
    assert "Lassie" not in every_name                      # instance: a proper noun
    assert "Canis familiaris" not in every_name            # Latin binomial (genus Canis exists)
    assert "ethanol" not in names and "compound" not in names  # pruned subtree (water stays: liquid)
    assert "intellectual" not in names and "worker" in names   # person outside ALLOW
    assert "rotter" not in names and "bad person" not in names  # EXCLUDE on any path
    assert "zorkle" not in names                           # gloss: ethnic slur
    assert "Zorkonian" not in names                        # capitalised person
    assert "hoosegow" not in names                         # gloss: slang
    assert "photosynthesis" not in names and "letter" not in names  # lexname not visual
    assert "entity" not in names and "object" not in names and "physical entity" not in names  # noun.Tops
    rooster = next(e for e in sel.entries if e.name == "rooster")
    assert rooster.names == ("rooster",)                   # deny-listed word dropped as a synonym
    assert "cock" not in names                             # ... and a synset left without a name goes
    iron = next(e for e in sel.entries if e.name == "iron")
    assert iron.names == ("iron",)                         # chemical symbol and atomic number dropped
    assert next(e for e in sel.entries if e.name == "water").names == ("water",)  # formula H2O dropped
    assert sel.dropped["offensive gloss"] == 1 and sel.dropped["informal gloss"] == 1
    assert sel.dropped["excluded subtree"] == 1 and sel.dropped["capitalised person"] == 1
    assert sel.dropped["lexname (noun.person)"] == 2  # intellectual, bad person
    assert sel.dropped["no name left"] == 1
    assert sel.dropped_names["latin name"] == 1 and sel.dropped_names["chemical symbol"] == 3


def test_build_is_reproducible_and_carries_licence(wordnet_dir, tmp_path):
    folder, _ = wordnet_dir
    a = build_wordnet_bank(folder, tmp_path / "a.tsv.gz")[0]
    b = build_wordnet_bank(folder, tmp_path / "b.tsv.gz")[0]
    assert a.read_bytes() == b.read_bytes()  # gzip mtime 0: same input, same bytes, same sha256
    text = gzip.decompress(a.read_bytes()).decode()
    assert text.startswith(MAGIC + "\n")
    assert "WordNet 3.0 Copyright 2006 by Princeton University." in text
    assert "THIS SOFTWARE AND DATABASE IS PROVIDED \"AS IS\"" in text and "# rule (" in text
    bank = read_name_bank(a)
    assert any("Princeton University and LICENSEE agrees to preserve same." in h for h in bank.header)
    assert bank.content_hash() == read_name_bank(b).content_hash()
    msg = build_wordnet_bank_cli(tmp_path / "c.tsv.gz", folder)
    assert msg.startswith(f"name bank {tmp_path / 'c.tsv.gz'}: {len(bank)} names")


def test_counts_are_optional(tmp_path):
    folder = tmp_path / "wn"
    write_wordnet(folder, counts=None)
    path, sel, _ = build_wordnet_bank(folder, tmp_path / "n.tsv.gz")
    assert all(e.count == 0 for e in sel.entries)
    assert any("no cntlist.rev" in h for h in read_name_bank(path).header)


def test_wordnet_folder_errors(tmp_path):
    with pytest.raises(ZssError, match="data.noun not found"):
        read_wordnet(tmp_path / "nothing")
    write_wordnet(tmp_path / "wn31", header=["WordNet 3.1 Copyright 2011 by Princeton University."])
    with pytest.raises(ZssError, match="WordNet 3.1"):
        read_wordnet(tmp_path / "wn31")
    folder = tmp_path / "broken"
    write_wordnet(folder)
    with open(folder / "data.noun", "a", encoding="utf-8") as f:
        f.write("99999999 05 n zz\n")
    with pytest.raises(ZssError, match="line .*not a WordNet data line"):
        read_wordnet(folder)


def test_gloss_labels():
    assert OFFENSIVE_GLOSS.search("(ethnic slur) offensive term for a person")
    assert OFFENSIVE_GLOSS.search("obscene terms for feces")
    assert OFFENSIVE_GLOSS.search("a Latin American (disparaging) term for foreigners")
    assert OFFENSIVE_GLOSS.search("term for Blacks that is now considered offensive")
    assert OFFENSIVE_GLOSS.search("uncomplimentary terms for a policeman")
    for fine in ("(American football) a play by the offensive team", "similar to Phaseolus vulgaris",
                 "can result in a finding of contempt of court", "given orally (as a slurry)",
                 "anything that gives off an offensive odor"):
        assert not OFFENSIVE_GLOSS.search(fine), fine
    assert INFORMAL_GLOSS.search("slang for a jail") and INFORMAL_GLOSS.search("(British slang) a prison")
    assert INFORMAL_GLOSS.search("a sword (archaic)") and not INFORMAL_GLOSS.search("a currency of a slang term")


REAL = Path(os.environ.get("ZSS_WORDNET_DIR", "/usr/share/wordnet"))


@pytest.mark.slow
@pytest.mark.skipif(not (REAL / "data.noun").is_file(), reason="WordNet 3.0 not installed (wordnet-base)")
def test_real_wordnet_lists_resolve_and_bank_is_big():
    sel = select_names(read_wordnet(REAL), strict=True)  # every sense key in the lists exists
    assert len(sel.entries) >= 20_000
    names = {n.lower() for e in sel.entries for n in e.names}
    assert {"person", "dog", "car", "tree", "sky", "road", "traffic light", "fire", "fog", "firefighter"} <= names
    assert not names & {"nigger", "cunt", "pussy", "faggot"}


def test_cli_builds_from_fixture_and_refuses_bad_folders(wordnet_dir, tmp_path):
    folder, _ = wordnet_dir
    out = tmp_path / "cli" / "names.tsv.gz"
    zss = [sys.executable, "-m", "zss.cli"]
    ok = subprocess.run([*zss, "concepts", "build", "--from", f"wordnet:{folder}", str(out)],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert f"name bank {out}:" in ok.stdout and "names" in ok.stdout
    bank = read_name_bank(out)
    assert bank.kind == "wordnet" and "dog" in {e.name for e in bank.entries}
    bad = subprocess.run([*zss, "concepts", "build", "--from", f"wordnet:{tmp_path / 'none'}", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "data.noun not found" in bad.stderr and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    odd = subprocess.run([*zss, "concepts", "build", "--from", "dbpedia", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert odd.returncode == 2 and "wordnet" in odd.stderr and "Traceback" not in odd.stderr


def test_shipped_bank_is_wordnet_and_big():
    from zss.formats.name_bank import parse_auto_vocab

    bank = read_name_bank(parse_auto_vocab("auto"))
    assert bank.kind == "wordnet" and len(bank) >= 20_000
    assert any("Princeton University and LICENSEE agrees to preserve same." in h for h in bank.header)
