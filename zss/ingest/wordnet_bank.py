"""Build the `--vocab auto` name bank from a WordNet 3.0 database folder (`zss concepts build --from wordnet`).

Reads the database with `zss.ingest.wordnet_db` (a small parser of `data.noun` and `cntlist.rev`,
no nltk) and writes through `zss.formats.name_bank`.

The rule (summarised in the bank's header, `RULE`; the lists below are the rule's data):

1. Candidates: noun synsets below `physical_entity` (WordNet 3.0 n00001930) by hypernym (`@`)
   links, never entering PRUNE (technical subtrees nothing in a photo shows: molecules, compounds,
   drugs, cells, blood vessels, imaginary lines); a synset also reachable along another path stays
   (water is a compound *and* a liquid). Instances (`@i`: named people, cities, rivers) are never
   reached, so proper nouns are out. Also candidates: synsets of ANYWHERE_LEXNAMES that WordNet hung
   outside physical_entity (grandstand under "position", conveyor belt under "shape") and the ALLOW
   subtrees of noun.communication (traffic lights, flags, street signs).
2. Lexicographer file: KEEP_LEXNAMES (artifacts, animals, plants, food, substances, body, natural
   objects, locations) are kept whole. From noun.person, noun.phenomenon, noun.process and
   noun.communication only what is below ALLOW (people by occupation, sport, performance, travel,
   combat, guarding; weather, light, visible clouds; fire; signs) and the single ALLOW_SYNSETS
   (person, animal, plant, food; man, woman, child, baby ...): the rest of those files names roles,
   beliefs, judgements, physics and messages, not things one sees.
3. Dropped: below EXCLUDE on any path (person categories nobody should put on a face: ethnicity,
   nationality, religion, sexuality, health, character judgements, insults); noun.person synsets
   whose names are all capitalised (names, peoples and historical groups WordNet did not mark as
   instances); senses whose gloss carries a usage label: offensive, derogatory, disparaging,
   uncomplimentary, obscene, vulgar, ethnic slur (OFFENSIVE_GLOSS); slang, archaic, obsolete, dated
   (INFORMAL_GLOSS). WordNet has no offensive flag; these labels in the glosses are what it has.
4. Names dropped (the synset stays if a name is left): Latin genus and binomial names (first word is
   the X of a `genus X` synset, capitalised), chemical symbols, formulas and `element 112`-style
   names, and LEMMA_DENY: words WordNet marks as slurs or obscene in another sense that name
   something here with a plainer name (`cock` -> rooster, `pussy` -> cat). `offensive_clashes`
   lists the candidates; words whose other sense is the ordinary one (boy, bull, tool, screw) stay.
5. The display name is the first remaining lemma (WordNet's order, most familiar first); `count` is
   the synset's SemCor tag count from `cntlist.rev` (0 when unattested or the file is absent): the
   frequency signal for priors and for ranking equal scores.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path

from zss.errors import ZssError

from zss.formats.name_bank import NameEntry, clean_name, name_problem, write_name_bank
from zss.ingest.wordnet_db import WORDNET_LICENSE, Synset, WordNet, read_wordnet


# Synsets are named by a sense key of one of their lemmas (lemma%1:lexfile:lexid::): sense keys are
# WordNet's version-stable names, readable, and the same in a test fixture that uses other offsets.
ROOT = "physical_entity%1:03:00::"

KEEP_LEXNAMES = frozenset({"noun.artifact", "noun.animal", "noun.plant", "noun.food", "noun.substance",
                           "noun.body", "noun.object", "noun.location"})

ALLOW = {  # lexname -> subtrees kept from it (the synset and everything below it)
    "noun.person": (
        "worker%1:18:00::",       # occupations: firefighter, chef, farmer, police officer ...
        "contestant%1:18:00::",   # athletes and players
        "entertainer%1:18:00::",  # performers, musicians, clowns
        "traveler%1:18:00::",     # passengers, pedestrians, hikers, riders
        "combatant%1:18:00::", "warrior%1:18:00::",
        "preserver%1:18:01::"),   # guards, police, firefighters, lifeguards, nannies
    "noun.phenomenon": ("atmospheric_phenomenon%1:19:00::", "light%1:19:00::",  # weather, sky, light
                        "cloud%1:19:01::"),  # visible clouds of particles: fog, smoke, haze, dust
    "noun.process": ("fire%1:22:00::",),  # fire, flame
    "noun.communication": ("visual_signal%1:10:00::", "sign%1:10:00::"),  # traffic lights, flags, signs
}

# Concrete lexnames whose synsets count wherever WordNet hung them (grandstand sits under "position",
# conveyor belt under "shape"). Not noun.animal/noun.plant: outside physical_entity those are
# taxonomic groups (genus Canis, family Felidae), not organisms.
ANYWHERE_LEXNAMES = frozenset({"noun.artifact", "noun.food", "noun.substance", "noun.body", "noun.object",
                               "noun.location"})

ALLOW_SYNSETS = (  # single synsets kept from those lexnames (nothing below them unless ALLOW says so)
    "person%1:03:00::", "animal%1:03:00::", "plant%1:03:00::", "food%1:03:00::",  # noun.Tops
    # people by age and sex only: the words below these (hunk, spinster, ...) judge, not describe
    "adult%1:18:00::", "man%1:18:00::", "woman%1:18:00::", "juvenile%1:18:00::", "child%1:18:00::",
    "male_child%1:18:00::", "female_child%1:18:00::", "girl%1:18:00::", "baby%1:18:00::",
    "toddler%1:18:00::", "adolescent%1:18:00::", "old_person%1:18:00::",
)

PRUNE = (  # subtrees nothing in an ordinary photo shows (all paths must pass here to drop a synset)
    "molecule%1:27:00::", "atom%1:27:00::", "chemical_group%1:27:00::",
    "subatomic_particle%1:17:00::",
    "compound%1:27:00::",            # chemical compounds (water, salt, sugar stay via liquid/food)
    "drug%1:06:00::",                # medicines by name (beer and wine stay via beverage)
    "activator%1:27:00::", "antigen%1:27:00::", "toxin%1:27:00::", "steroid_hormone%1:27:00::",
    "vitamin%1:27:00::",
    "infectious_agent%1:17:00::",    # viruses, bacteria as pathogens
    "somatic_cell%1:08:00::", "reproductive_cell%1:08:00::", "chromosome%1:08:00::",
    "tube%1:08:00::",                # blood vessels, ducts
    "neural_structure%1:08:00::", "gland%1:08:00::", "landmark%1:08:00::",
    "line%1:15:00::",                # equator, meridians, imaginary lines
)

EXCLUDE = (  # any path through these drops the synset: labels nobody should put on a person in a photo
    "bad_person%1:18:00::", "unwelcome_person%1:18:00::", "disreputable_person%1:18:00::",
    "unfortunate%1:18:00::", "simpleton%1:18:00::", "weakling%1:18:00::", "coward%1:18:00::",
    "anomaly%1:18:00::", "unskilled_person%1:18:00::", "clumsy_person%1:18:01::",
    "person_of_color%1:18:00::", "white_person%1:18:00::", "black_person%1:18:00::",
    "amerindian%1:18:00::", "african%1:18:00::", "slav%1:18:00::", "jew%1:18:00::",
    "mixed-blood%1:18:00::", "native%1:18:00::", "native%1:18:01::", "primitive%1:18:00::", "inhabitant%1:18:00::",
    "religious_person%1:18:00::", "nonreligious_person%1:18:00::", "homosexual%1:18:00::",
    "heterosexual%1:18:00::", "bisexual%1:18:00::", "transsexual%1:18:00::",
    "sensualist%1:18:00::", "lover%1:18:00::", "sex_object%1:18:00::",
    "handicapped_person%1:18:00::", "sick_person%1:18:00::", "drug_user%1:18:00::",
    "alcoholic%1:18:00::",
    "prostitute%1:18:00::", "criminal%1:18:00::", "wrongdoer%1:18:00::", "slave%1:18:00::",
    "slave%1:18:01::", "scab%1:18:00::",
)

OFFENSIVE_GLOSS = re.compile(r"""
      \bethnic\ slur\b
    | \boffensive\ (?:and\ \w+\ )?(?:term|name|word|slang)s?\b
    | \b(?:derogatory|disparaging|pejorative|insulting|contemptuous|uncomplimentary|obscene|vulgar)\ (?:\w+\ )?
        (?:term|name|word|expression|reference|slang)s?\b
    | \((?:disparaging|derogatory|offensive|vulgar|obscene|sometimes\ offensive)\b[^)]*\)
    | \b(?:is|was|now)\ (?:considered|regarded\ as)\ offensive
    | \bterms?\ of\ (?:contempt|abuse)\b
""", re.IGNORECASE | re.VERBOSE)

INFORMAL_GLOSS = re.compile(r"""
      \((?:[^)]*\ )?(?:slang|archaic|obsolete|dated|old-fashioned)\)
    | ^(?:british\ |cockney\ |american\ )?slang\b
    | \bslang\ (?:term\ |word\ )?for\b
    | \brhyming\ slang\b
""", re.IGNORECASE | re.VERBOSE)

# Words WordNet marks as slurs or obscene in one sense that would otherwise be a name here for
# something with a plainer name (found by `python -m wordnet_bank --clashes`, then chosen by hand).
LEMMA_DENY = frozenset("""
    ass arse bitch bunghole cock coon cuss dick dyke faggot fagot fag fanny guinea hun kaffir peewee pouf
    pussy puss tit titty twat prick pecker wog
    spic spick jap nip kike gook chink dago wop kraut boche honky whitey redskin injun squaw
    nigger nigga negro negroid darky darkie mammy pickaninny shit crap turd
""".split())

# chemical symbols (Fe, Uub), formulas (H2O, NaCl, CO2) and numbered element names
CHEMICAL_NAME = re.compile(r"[A-Z][a-z]{0,2}|(?:[A-Z][a-z]?\d*){2,}|[A-Z][a-z]?\d+|element \d+|atomic number \d+")
GENUS = re.compile(r"^genus_([A-Z][a-z-]+)$")

RULE = """\
rule (zss/ingest/wordnet_bank.py holds the lists):
  1. noun synsets below physical_entity (n00001930) by hypernym links, not entering PRUNE subtrees
     (molecules, compounds, drugs, cells, blood vessels, imaginary lines; a synset with another path
     stays); instances (proper nouns) are never reached. Also artifact/food/substance/body/object/
     location synsets WordNet hung elsewhere (grandstand, conveyor belt), and signs/visual signals.
  2. lexnames artifact, animal, plant, food, substance, body, object, location kept whole; person only
     by occupation/sport/performance/travel/combat/guarding plus age-and-sex words (man, woman, child,
     baby ...); phenomenon only weather, light and visible clouds (fog, smoke); process only fire;
     Tops only person, animal, plant, food.
  3. dropped: below EXCLUDE on any path (ethnicity, nationality, religion, sexuality, health,
     character, insults); person synsets whose names are all capitalised; senses whose gloss is
     labelled offensive/derogatory/disparaging/obscene/vulgar/ethnic slur or slang/archaic/obsolete.
  4. names dropped: Latin genus/binomial names, chemical symbols and formulas, a deny list of words
     that are slurs or obscene in another sense. Display name = first remaining lemma.
  count = SemCor tag count of the synset's lemmas (cntlist.rev), 0 when unattested."""


# --------------------------------------------------------------------------- the rule

@dataclass
class Selection:
    entries: list[NameEntry]
    dropped: dict[str, int]       # reason -> synsets
    dropped_names: dict[str, int]  # reason -> lemmas removed from kept synsets
    examples: dict[str, list[str]]  # reason -> a few display names (for review)
    outside: int = 0  # kept entries that WordNet hung outside physical_entity (concrete lexnames)
    missing: list[str] = field(default_factory=list)  # the lists' sense keys this database lacks


def _reachable(syn: dict[str, Synset], root: str, prune: set[str]) -> set[str]:
    """Rule step 1: synsets below `root` by hypernym links, never entering a pruned subtree."""
    children: dict[str, list[str]] = defaultdict(list)
    for o, s in syn.items():
        for h in s.hypernyms:
            children[h].append(o)
    reached, queue = set(), deque([root])
    while queue:
        for c in children[queue.popleft()]:
            if c not in reached and c not in prune:
                reached.add(c)
                queue.append(c)
    return reached


class _Ancestors:
    """`ancestors(o)`: every synset above `o` on any hypernym path (iterative DFS, memoised)."""

    def __init__(self, syn: dict[str, Synset]):
        self.syn, self.memo = syn, {}

    def __call__(self, o: str) -> frozenset[str]:
        syn, memo, stack = self.syn, self.memo, [o]
        while stack:
            x = stack[-1]
            if x in memo:
                stack.pop()
                continue
            todo = [h for h in syn[x].hypernyms if h in syn and h not in memo]
            if todo:
                stack.extend(todo)
                continue
            acc: set[str] = set()
            for h in syn[x].hypernyms:
                if h in syn:
                    acc.add(h)
                    acc |= memo[h]
            memo[x] = frozenset(acc)
            stack.pop()
        return memo[o]


def _synset_problem(s: Synset, o: str, up: frozenset[str] | set[str], allow: dict[str, set[str]],
                    allow_one: set[str], exclude: set[str]) -> str | None:
    """Rule steps 2-3 for one candidate synset: why it is dropped, or None."""
    if s.lexname not in KEEP_LEXNAMES and o not in allow_one and not (up & allow.get(s.lexname, set())):
        return f"lexname ({s.lexname})" if s.lexname in ALLOW or s.lexname == "noun.Tops" else "lexname"
    if up & exclude:
        return "excluded subtree"
    if s.lexname == "noun.person" and all(w[:1].isupper() for w, _ in s.words):
        return "capitalised person"  # names, peoples, historical groups WordNet did not mark as instances
    if OFFENSIVE_GLOSS.search(s.gloss):
        return "offensive gloss"
    if INFORMAL_GLOSS.search(s.gloss):
        return "informal gloss"
    return None


def select_names(wn: WordNet, strict: bool = False) -> Selection:
    """Apply the rule (module doc) to a parsed WordNet. A sense key of the lists that the database
    lacks is skipped and recorded in `Selection.missing` (a test fixture holds only a few);
    `strict` makes it an error instead (the test over the real WordNet 3.0 catches typos so)."""
    syn = wn.synsets
    table = wn.by_key()
    if ROOT not in table:
        raise ZssError(f"WordNet has no {ROOT.split('%')[0]} synset ({ROOT}): not a noun database?")
    root = table[ROOT]
    missing: list[str] = []

    def resolve(keys) -> set[str]:
        missing.extend(k for k in keys if k not in table)
        return {table[k] for k in keys if k in table}

    prune = resolve(PRUNE)
    exclude = resolve(EXCLUDE)
    allow = {lx: resolve(keys) for lx, keys in ALLOW.items()}
    allow_one = resolve(ALLOW_SYNSETS)
    if missing and strict:
        raise ZssError(f"WordNet has no synset for the rule's sense keys {', '.join(missing)}")
    reached = _reachable(syn, root, prune)
    allowed_anywhere = set().union(*allow.values())
    ancestors = _Ancestors(syn)

    genera = {m.group(1) for s in syn.values() for w, _ in s.words if (m := GENUS.match(w))}
    dropped: dict[str, int] = defaultdict(int)
    dropped_names: dict[str, int] = defaultdict(int)
    examples: dict[str, list[str]] = defaultdict(list)

    def drop(reason: str, s: Synset) -> None:
        dropped[reason] += 1
        if len(examples[reason]) < 12:
            examples[reason].append(clean_name(s.words[0][0]))

    entries = []
    for o in sorted(syn):
        s = syn[o]
        if o in prune or s.instance_of:
            continue
        up = ancestors(o) | {o}
        if o not in reached:  # outside physical_entity: concrete lexnames and ALLOW subtrees only
            if o == root or up & prune or not (s.lexname in ANYWHERE_LEXNAMES or up & allowed_anywhere):
                continue
        reason = _synset_problem(s, o, up, allow, allow_one, exclude)
        if reason:
            drop(reason, s)
            continue
        names: list[str] = []
        for w, _ in s.words:
            name = clean_name(w)
            why = _lemma_problem(w, name, s, genera)
            if why:
                dropped_names[why] += 1
            elif name.lower() not in (n.lower() for n in names):
                names.append(name)
        if not names:
            drop("no name left", s)
            continue
        entries.append(NameEntry(s.id, tuple(names), hypernym_chain(syn, o), wn.count(s), s.lexname))
    return Selection(entries, dict(dropped), dict(dropped_names), dict(examples),
                     sum(1 for e in entries if e.id[1:] not in reached), missing)


def _lemma_problem(lemma: str, name: str, s: Synset, genera: set[str]) -> str | None:
    if name_problem(name):
        return "unusable"
    if name.lower() in LEMMA_DENY:
        return "deny list"
    first = lemma.split("_")[0]
    if s.lexname in ("noun.animal", "noun.plant") and first[:1].isupper() and first in genera:
        return "latin name"
    if s.lexname == "noun.substance" and CHEMICAL_NAME.fullmatch(name):
        return "chemical symbol"
    return None


def hypernym_chain(syn: dict[str, Synset], o: str) -> tuple[str, ...]:
    """Every ancestor id, nearest first (breadth-first over all hypernym paths, up to entity)."""
    out, seen, queue = [], {o}, deque(syn[o].hypernyms)
    while queue:
        h = queue.popleft()
        if h in seen or h not in syn:
            continue
        seen.add(h)
        out.append("n" + h)
        queue.extend(syn[h].hypernyms)
    return tuple(out)


def offensive_clashes(wn: WordNet, sel: Selection) -> dict[str, list[str]]:
    """Lemmas of senses the gloss rule drops as offensive that still name a kept entry: the
    candidates for LEMMA_DENY (reviewed by hand; `boy`, `tool` or `bull` must stay)."""
    bad = defaultdict(list)
    for s in wn.synsets.values():
        if OFFENSIVE_GLOSS.search(s.gloss):
            for w, _ in s.words:
                bad[clean_name(w).lower()].append(s.gloss[:60])
    out: dict[str, list[str]] = defaultdict(list)
    for e in sel.entries:
        for n in e.names:
            if n.lower() in bad:
                out[n.lower()].append(f"{e.id} {';'.join(e.names)}")
    return dict(out)


# --------------------------------------------------------------------------- the command

def build_wordnet_bank(dict_dir: str | Path, out: str | Path) -> tuple[Path, Selection, float]:
    """Read WordNet at `dict_dir`, apply the rule, write the bank to `out`; (path, selection, seconds)."""
    t0 = time.perf_counter()
    wn = read_wordnet(dict_dir)
    sel = select_names(wn)
    if not sel.entries:
        raise ZssError(f"the rule kept no names from {dict_dir}")
    counts = "cntlist.rev present" if wn.counts is not None else "no cntlist.rev: every count is 0"
    header = [
        f"source: WordNet {wn.version} (Princeton University), {len(wn.synsets)} noun synsets read; "
        f"{len(sel.entries)} kept; {counts}",
        RULE,
        *([f"rule lists: {len(sel.missing)} sense keys not in this database: {' '.join(sel.missing)}"]
          if sel.missing else []),
        "names: display name first, then synonyms, ';'-separated. hypernyms: ancestor synset ids "
        "(n + WordNet 3.0 offset), nearest first, all paths, ','-separated.",
        "",
        WORDNET_LICENSE,
        "",
    ]
    path = write_name_bank(out, sel.entries, header)
    return path, sel, time.perf_counter() - t0


def build_wordnet_bank_cli(out: str | Path, dict_dir: str | Path = "/usr/share/wordnet") -> str:
    """`zss concepts build --from wordnet[:DIR] OUT`: the one-line summary."""
    path, sel, seconds = build_wordnet_bank(dict_dir, out)
    n_syn = sum(len(e.synonyms) for e in sel.entries)
    size = path.stat().st_size
    return (f"name bank {path}: {len(sel.entries)} names, {n_syn} synonyms from WordNet at {dict_dir} "
            f"({size / 1e6:.2f} MB, {seconds:.1f} s)")


DEFAULT_WORDNET_DIR = "/usr/share/wordnet"  # Debian/Ubuntu: apt-get install wordnet-base


def build_from_source_cli(source: str, out: str | Path) -> str:
    """`zss concepts build --from wordnet[:DIR] OUT` (DIR defaults to Debian's /usr/share/wordnet)."""
    kind, _, folder = source.partition(":")
    if kind != "wordnet":
        raise ZssError(f"--from {source!r}: the only source is wordnet[:DIR] (a WordNet 3.0 database folder)")
    if ":" in source and not folder:
        raise ZssError("--from wordnet:DIR needs a folder after 'wordnet:'")
    return build_wordnet_bank_cli(out, folder or DEFAULT_WORDNET_DIR)
