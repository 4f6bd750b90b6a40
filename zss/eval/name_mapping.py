"""Map names chosen by `--vocab auto` to a dataset's classes, for `zss eval --vocab auto`.

A dataset class is found in the bank by its words (every synonym of the class line) and their simple
variants: case-insensitive, singular of a plural (`leaves` -> `leaf`, `boxes` -> `box`, `skis` ->
`ski`), and compounds written with or without their space (`wine glass` / `wineglass`). The entries
whose names include one of those are the class's synsets. A chosen bank entry then maps to:

1. `synset`: it is one of a class's synsets (this is also the exact lemma match: the entry has the
   class's word among its names);
2. `hyponym`: a class synset is among the entry's WordNet hypernyms at depth <= MAX_DEPTH (default 3),
   the depth counted as 1 + the bank entries strictly between the two (puppy -> dog and poodle ->
   dog are 1, beagle -> hound -> hunting dog -> dog is 3, golden retriever -> retriever -> sporting
   dog -> hunting dog -> dog is 4 and not mapped at the default);
3. `phrase`: the phrase that matched the region is a class word (user banks, whose entries carry
   no hypernyms, map only so);

first rule that applies, then the shallowest, then the first class in the dataset's order. A name
that maps to no class is *unmatched* and its pixels count as wrong (never as a class).
"""

from __future__ import annotations

from zss.formats.name_bank import NameBank

MAX_DEPTH = 3


def variants(word: str) -> set[str]:
    """Lower-cased spellings a class word may have in the bank (module doc)."""
    w = " ".join(word.lower().replace("_", " ").split())
    out = {w, w.replace(" ", ""), w.replace(" ", "-"), w.replace("-", " ")}
    last = w.split(" ")[-1] if w else ""
    stems = []
    if last.endswith("ies") and len(last) > 4:
        stems.append(last[:-3] + "y")
    if last.endswith("ves") and len(last) > 4:
        stems += [last[:-3] + "f", last[:-3] + "fe"]
    if last.endswith("es") and len(last) > 3:
        stems.append(last[:-2])
    if last.endswith("s") and not last.endswith("ss") and len(last) > 2:
        stems.append(last[:-1])
    head = w[: len(w) - len(last)]
    for s in stems:
        out |= {head + s, (head + s).replace(" ", "")}
    return {v for v in out if v}


class NameMapper:
    """bank entry -> (class id, relation, depth) or None; memoised per entry."""

    def __init__(self, bank: NameBank, classes: list[list[str]], skip: set[int] | None = None,
                 max_depth: int = MAX_DEPTH):
        self.bank, self.max_depth = bank, max_depth
        self.word_class: dict[str, int] = {}
        for c, words in enumerate(classes):
            if c in (skip or set()):
                continue
            for word in words:
                for v in variants(word):
                    self.word_class.setdefault(v, c)
        self.synset_class: dict[str, int] = {}
        for e in bank.entries:
            cs = [self.word_class[n.lower()] for n in e.names if n.lower() in self.word_class]
            if cs:
                self.synset_class.setdefault(e.id, min(cs))
        self.by_id = bank.by_id()
        self._memo: dict[tuple[int, str], tuple[int, str, int] | None] = {}

    def depth(self, entry: int, ancestor: str) -> int:
        """1 + the bank entries strictly between `entry` and its hypernym `ancestor`."""
        between = 0
        for h in self.bank.entries[entry].hypernyms:
            if h == ancestor:
                continue
            j = self.by_id.get(h)
            if j is not None and ancestor in self.bank.entries[j].hypernyms:
                between += 1
        return 1 + between

    def map(self, entry: int, phrase: str = "") -> tuple[int, str, int] | None:
        key = (entry, phrase.lower())
        if key not in self._memo:
            self._memo[key] = self._map(entry, phrase)
        return self._memo[key]

    def _map(self, entry: int, phrase: str) -> tuple[int, str, int] | None:
        e = self.bank.entries[entry]
        if e.id in self.synset_class:
            return self.synset_class[e.id], "synset", 0
        best: tuple[int, int] | None = None
        for h in e.hypernyms:
            if h in self.synset_class:
                d = self.depth(entry, h)
                if d <= self.max_depth and (best is None or (d, self.synset_class[h]) < best):
                    best = (d, self.synset_class[h])
        if best is not None:
            return best[1], "hyponym", best[0]
        if phrase.lower() in self.word_class:
            return self.word_class[phrase.lower()], "phrase", 0
        return None
