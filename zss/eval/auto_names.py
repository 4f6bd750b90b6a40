"""From regions' retrieved names to one image's vocabulary (`--vocab auto`): pick, merge, or "unknown".

Pure bookkeeping over the bank, no model: each region arrives with its candidate names (bank entry,
calibrated score, the phrase that matched), best first. The rule:

1. A region whose best calibrated score is under `min_score` (or that has no candidate) is *unknown*.
2. Otherwise the region's pick is its best candidate.
3. Same synset: regions that picked the same entry share one name. Near-duplicates: entries with the
   same display name (WordNet's `plate` x12, different senses) are one name too.
4. Hypernym of a chosen name covering the same pixels: a region that picked A, while another region
   picked B with A among B's hypernyms and B is also among this region's candidates, is named B (the
   more specific name, which the model also gave these pixels); A disappears if no region keeps it.
5. At most `max_names` names, the largest first; the regions of the rest become unknown.

Each name's score is the area-weighted mean of its regions' calibrated scores; its area is the sum
of its regions' areas (fractions of the image).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zss.formats.name_bank import NameBank

UNKNOWN = "unknown"


@dataclass(frozen=True)
class Candidate:
    entry: int        # bank entry index
    score: float      # calibrated score (cosine + prior)
    cosine: float     # raw cosine with the region embedding
    phrase: str       # the name or synonym that matched


@dataclass
class Region:
    area: float                    # fraction of the image
    candidates: list[Candidate]    # best first


@dataclass
class ChosenName:
    entry: int
    name: str
    phrases: list[str]             # the class's text queries (matched phrases, display name first)
    regions: list[int] = field(default_factory=list)
    score: float = 0.0
    cosine: float = 0.0
    area: float = 0.0


def _group_key(bank: NameBank, entry: int) -> str:
    return bank.entries[entry].name.lower()


def choose_names(regions: list[Region], bank: NameBank, min_score: float,
                 max_names: int) -> tuple[list[ChosenName], list[int | None]]:
    """(names largest first, region -> index into names or None for unknown); module doc."""
    picks: list[Candidate | None] = []
    for r in regions:
        best = r.candidates[0] if r.candidates else None
        picks.append(best if best is not None and best.score >= min_score else None)
    picked_entries = {p.entry for p in picks if p is not None}
    for i, p in enumerate(picks):  # rule 4: a hypernym of another pick, which this region also proposed
        if p is None:
            continue
        ancestor = bank.entries[p.entry].id
        for c in regions[i].candidates:
            if c.entry in picked_entries and c.entry != p.entry and ancestor in bank.entries[c.entry].hypernyms:
                picks[i] = Candidate(c.entry, p.score, p.cosine, c.phrase)
                break
    names: dict[str, ChosenName] = {}
    for i, p in enumerate(picks):
        if p is None:
            continue
        key = _group_key(bank, p.entry)
        if key not in names:
            entry = bank.entries[p.entry]
            names[key] = ChosenName(p.entry, entry.name, [entry.name])
        n = names[key]
        if p.phrase.lower() not in (q.lower() for q in n.phrases):
            n.phrases.append(p.phrase)
        a = regions[i].area
        total = n.area + a
        n.score = (n.score * n.area + p.score * a) / total if total > 0 else p.score
        n.cosine = (n.cosine * n.area + p.cosine * a) / total if total > 0 else p.cosine
        n.area = total
        n.regions.append(i)
    ordered = sorted(names.values(), key=lambda n: (-n.area, n.name))[:max_names]
    owner: list[int | None] = [None] * len(regions)
    for j, n in enumerate(ordered):
        for i in n.regions:
            owner[i] = j
    return ordered, owner
