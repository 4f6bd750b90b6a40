"""A WordNet 3.0 database folder read without nltk: noun synsets from `data.noun` (wndb(5WN)) and
SemCor counts from `cntlist.rev`.

Used by `zss.ingest.wordnet_bank` (the `--vocab auto` name bank's build) and, for name -> class
mapping, nothing else at run time (the built bank carries the hypernym chains). nltk's reader is not
used: Debian's `wordnet-base` ships no `lexnames` file (nltk's reader needs it), nltk 3.10's path
sandbox refuses folders outside its data path, and its constructor looks for nltk's own downloaded
`wordnet` corpus. Checked against nltk over all 82,115 noun synsets of WordNet 3.0 (lemmas, sense
keys, lexnames, hypernyms, instance hypernyms: no difference).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from zss.errors import ZssError

# Lexicographer files, in WordNet's numbering (lexnames(5WN)); data.noun gives the number only.
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
    "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
    "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
    "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
    "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
    "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather "
    "adj.ppl").split()
_LEXNUM = {name: i for i, name in enumerate(LEXNAMES)}

WORDNET_LICENSE = """\
WordNet Release 3.0 -- licence (reproduced as its terms require)

This software and database is being provided to you, the LICENSEE, by
Princeton University under the following license.  By obtaining, using
and/or copying this software and database, you agree that you have
read, understood, and will comply with these terms and conditions.:

Permission to use, copy, modify and distribute this software and
database and its documentation for any purpose and without fee or
royalty is hereby granted, provided that you agree to comply with
the following copyright notice and statements, including the disclaimer,
and that the same appear on ALL copies of the software, database and
documentation, including modifications that you make for internal
use or for distribution.

WordNet 3.0 Copyright 2006 by Princeton University.  All rights reserved.

THIS SOFTWARE AND DATABASE IS PROVIDED "AS IS" AND PRINCETON
UNIVERSITY MAKES NO REPRESENTATIONS OR WARRANTIES, EXPRESS OR
IMPLIED.  BY WAY OF EXAMPLE, BUT NOT LIMITATION, PRINCETON
UNIVERSITY MAKES NO REPRESENTATIONS OR WARRANTIES OF MERCHANT-
ABILITY OR FITNESS FOR ANY PARTICULAR PURPOSE OR THAT THE USE
OF THE LICENSED SOFTWARE, DATABASE OR DOCUMENTATION WILL NOT
INFRINGE ANY THIRD PARTY PATENTS, COPYRIGHTS, TRADEMARKS OR
OTHER RIGHTS.

The name of Princeton University or Princeton may not be used in
advertising or publicity pertaining to distribution of the software
and/or database.  Title to copyright in this software, database and
any associated documentation shall at all times remain with
Princeton University and LICENSEE agrees to preserve same."""

@dataclass
class Synset:
    offset: str          # 8 digits
    lexname: str
    words: list[tuple[str, int]]  # (lemma as written, lex_id)
    hypernyms: list[str]          # '@' targets (nouns)
    instance_of: list[str]        # '@i' targets
    gloss: str

    @property
    def id(self) -> str:
        return "n" + self.offset

    def keys(self) -> list[str]:
        """The sense keys of its lemmas (lemma%1:lexfile:lexid::)."""
        lex = _LEXNUM[self.lexname]
        return [f"{w.lower()}%1:{lex:02d}:{lid:02d}::" for w, lid in self.words]


@dataclass
class WordNet:
    synsets: dict[str, Synset]
    counts: dict[str, int] | None  # sense key -> SemCor tag count; None without cntlist.rev
    version: str

    def by_key(self) -> dict[str, str]:
        return {k: o for o, s in self.synsets.items() for k in s.keys()}

    def count(self, s: Synset) -> int:
        return sum(self.counts.get(k, 0) for k in s.keys()) if self.counts else 0


def read_wordnet(dict_dir: str | Path) -> WordNet:
    """Parse `data.noun` (and `cntlist.rev` when present) of a WordNet database folder."""
    folder = Path(dict_dir).expanduser()
    data = folder / "data.noun"
    if not data.is_file():
        hint = " (Debian/Ubuntu: apt-get install wordnet-base)" if str(folder).startswith("/usr/share") else ""
        raise ZssError(f"no WordNet database in {folder}: data.noun not found{hint}")
    synsets: dict[str, Synset] = {}
    header: list[str] = []
    with open(data, encoding="utf-8", errors="strict") as f:
        for no, line in enumerate(f, 1):
            if line.startswith("  "):  # the licence header: "  N text"
                header.append(line.strip())
                continue
            try:
                s = _parse_data_line(line)
            except (ValueError, IndexError) as exc:
                raise ZssError(f"{data} line {no}: not a WordNet data line ({exc})") from exc
            if s is not None:
                synsets[s.offset] = s
    version = _version(header)
    if version != "3.0":
        raise ZssError(f"{data} is WordNet {version or '(no licence header)'}; the rule's lists and the "
                       "licence in the bank header are WordNet 3.0's")
    counts = None
    cnt = folder / "cntlist.rev"
    if cnt.is_file():
        counts = {}
        with open(cnt, encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[2].isdigit():
                    counts[parts[0]] = counts.get(parts[0], 0) + int(parts[2])
    return WordNet(synsets, counts, version)


def _version(header: list[str]) -> str | None:
    for line in header:
        m = re.search(r"WordNet (\d+\.\d+) Copyright", line)
        if m:
            return m.group(1)
    return None


def _parse_data_line(line: str) -> Synset | None:
    """synset_offset lex_filenum ss_type w_cnt (word lex_id)* p_cnt (ptr)* | gloss  (wndb(5WN))."""
    body, _, gloss = line.rstrip("\n").partition(" | ")
    t = body.split()
    if not t:
        return None
    offset, lexfile, ss_type = t[0], int(t[1]), t[2]
    if ss_type != "n" or not offset.isdigit() or len(offset) != 8:
        raise ValueError(f"synset type {ss_type!r} / offset {offset!r}")
    w_cnt = int(t[3], 16)
    words = [(t[4 + 2 * i], int(t[5 + 2 * i], 16)) for i in range(w_cnt)]
    i = 4 + 2 * w_cnt
    p_cnt = int(t[i])
    hyper, inst = [], []
    for k in range(p_cnt):
        sym, target, pos = t[i + 1 + 4 * k], t[i + 2 + 4 * k], t[i + 3 + 4 * k]
        if pos == "n" and sym == "@":
            hyper.append(target)
        elif pos == "n" and sym == "@i":
            inst.append(target)
    return Synset(offset, LEXNAMES[lexfile], words, hyper, inst, gloss.strip())
