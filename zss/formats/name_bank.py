"""Name banks for `--vocab auto`: many candidate names, each with synonyms, read from one file.

Layer 1 (formats): several layers read it (the index builder, segment,
serve, eval). Two kinds of file, told apart by their first line:

* the shipped bank (`zss/manifests/names/wordnet-3.0-visual.tsv.gz`, built by
  `zss.ingest.wordnet_bank`) and any bank that command writes: gzip'ed UTF-8 TSV whose first line is
  `# zss name bank 1`, then `#` header lines (source, build rule, columns, WordNet's licence), then one
  synset per line: `synset  lexname  count  names  hypernyms` (names `;`-separated, display name first;
  hypernyms `,`-separated ancestor synset ids, nearest first);
* a user bank (`--vocab auto:FILE`): one name per line, `;` between synonyms (`car;automobile`),
  `#` comment lines, as zss's class files; plain text or `.gz`.

Every problem with a bank the user named is one `ZssError` line (the CLI exits 2): missing, a folder,
unreadable, not UTF-8 or not gzip, empty, or no usable names. Lines that are not usable (no letter,
longer than MAX_NAME_CHARS, a background word) are skipped and reported in `NameBank.skipped`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from zss.errors import ZssError

MAGIC = "# zss name bank 1"
COLUMNS = ("synset", "lexname", "count", "names", "hypernyms")
MAX_NAME_CHARS = 100  # a prompt template must fit CLIP's 77 tokens; no real object name is longer
MAX_BANK_BYTES = 512 << 20  # refuse to slurp anything bigger than this into memory
BACKGROUND_NAMES = ("background", "bg", "other", "others")  # as zss.formats.vocab: not object names


def clean_name(text: str) -> str:
    """WordNet lemma or user text -> a display name: underscores as spaces, single spaces (case kept)."""
    return " ".join(text.replace("_", " ").split())


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a bank name (None when it can)."""
    if not name:
        return "empty"
    if not any(ch.isalpha() for ch in name):
        return "no letter"
    if len(name) > MAX_NAME_CHARS:
        return f"longer than {MAX_NAME_CHARS} characters"
    if name.lower() in BACKGROUND_NAMES:
        return "background word"
    return None


@dataclass(frozen=True)
class NameEntry:
    """One candidate: its id (WordNet `n02084071`, or `line:12` in a user bank), display name first
    in `names` then synonyms, ancestor ids nearest first, SemCor count (0 = unattested or unknown)."""

    id: str
    names: tuple[str, ...]
    hypernyms: tuple[str, ...] = ()
    count: int = 0
    lexname: str = ""

    @property
    def name(self) -> str:
        return self.names[0]

    @property
    def synonyms(self) -> tuple[str, ...]:
        return self.names[1:]


@dataclass
class NameBank:
    entries: list[NameEntry]
    source: str = ""  # the file it was read from
    kind: str = "user"  # "wordnet" (a built bank) | "user"
    header: list[str] = field(default_factory=list)  # the '#' lines of a built bank, without '# '
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)

    def __len__(self) -> int:
        return len(self.entries)

    def phrases(self) -> tuple[list[str], list[int]]:
        """Every name and synonym with the index of its entry (the rows a text index embeds)."""
        texts, owners = [], []
        for i, e in enumerate(self.entries):
            for n in e.names:
                texts.append(n)
                owners.append(i)
        return texts, owners

    def content_hash(self) -> str:
        """sha256 of what an index of this bank embeds (ids and names, in order): the cache key part
        that changes only when the embedded text does, not with comments or the file's compression."""
        h = hashlib.sha256()
        for e in self.entries:
            h.update(f"{e.id}\t{';'.join(e.names)}\n".encode("utf-8"))
        return h.hexdigest()

    def by_id(self) -> dict[str, int]:
        return {e.id: i for i, e in enumerate(self.entries)}

    def concept_dicts(self) -> list[dict]:
        """The entries in zss.ingest.concept_bank's concept schema (id = position; `sources` holds
        the synset id), so ConceptBank's faiss index and k-distinct search can be reused as-is."""
        return [{"id": i, "name": e.name, "synonyms": list(e.synonyms), "sources": [e.id]}
                for i, e in enumerate(self.entries)]

    def summary(self) -> str:
        n_syn = sum(len(e.synonyms) for e in self.entries)
        skipped = f", {len(self.skipped)} lines skipped" if self.skipped else ""
        return f"name bank {self.source or '(memory)'}: {len(self)} names, {n_syn} synonyms{skipped}"


# --------------------------------------------------------------------------- writing (built banks)

def format_row(e: NameEntry) -> str:
    for n in e.names:
        if "\t" in n or ";" in n or "\n" in n:
            raise ValueError(f"name {n!r} of {e.id} holds a tab, ';' or newline")
    return "\t".join((e.id, e.lexname, str(int(e.count)), ";".join(e.names), ",".join(e.hypernyms)))


def write_name_bank(path: str | Path, entries: Sequence[NameEntry], header: Iterable[str]) -> Path:
    """Write a built bank: gzip'ed TSV, byte-for-byte reproducible (gzip mtime 0, no file name), so
    the same database and rule always give the same file and the same sha256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [MAGIC]
    lines += [f"# {h}".rstrip() for text in header for h in text.splitlines()]
    lines.append("# columns: " + "\t".join(COLUMNS))
    lines += [format_row(e) for e in entries]
    data = ("\n".join(lines) + "\n").encode("utf-8")
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                                                compresslevel=9) as gz:
        gz.write(data)
    tmp.replace(path)
    return path


# --------------------------------------------------------------------------- reading

def _read_text(path: Path) -> str:
    """The file's text (gunzipped when it is gzip), or one ZssError naming the problem."""
    what = f"name bank {path}"
    if not path.exists():
        raise ZssError(f"{what} not found")
    if path.is_dir():
        raise ZssError(f"{what} is a folder, not a file")
    try:
        size = path.stat().st_size
        if size > MAX_BANK_BYTES:
            raise ZssError(f"{what} is {size >> 20} MiB; a name bank must be under {MAX_BANK_BYTES >> 20} MiB")
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ZssError(f"{what} is unreadable: {exc.strerror or exc}") from exc
    if data[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as gz:
                data = gz.read(MAX_BANK_BYTES + 1)
        except (OSError, EOFError, zlib.error) as exc:
            raise ZssError(f"{what} is unreadable: a damaged gzip file ({exc})") from exc
        if len(data) > MAX_BANK_BYTES:
            raise ZssError(f"{what} unpacks to over {MAX_BANK_BYTES >> 20} MiB")
    if b"\x00" in data[:8192]:
        raise ZssError(f"{what} is unreadable: a binary file, not text with one name per line")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ZssError(f"{what} is unreadable: not UTF-8 text (byte {exc.start})") from exc
    if not text.strip():
        raise ZssError(f"{what} is empty")
    return text


def read_name_bank(path: str | Path) -> NameBank:
    """A built bank or a user bank (told apart by the first line), checked; see the module doc."""
    path = Path(path).expanduser()
    text = _read_text(path)
    if text.startswith(MAGIC):
        return _parse_built(text, path)
    return _parse_user(text, path)


def _parse_built(text: str, path: Path) -> NameBank:
    header, entries, seen = [], [], set()
    for no, line in enumerate(text.splitlines(), 1):
        if line.startswith("#"):
            if no > 1:
                header.append(line[2:] if line.startswith("# ") else line[1:])
            continue
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) != len(COLUMNS):
            raise ZssError(f"name bank {path} line {no}: {len(cols)} tab-separated columns, expected "
                           f"{len(COLUMNS)} ({' '.join(COLUMNS)})")
        sid, lexname, count, names, hypernyms = cols
        names_t = tuple(names.split(";"))  # written clean by write_name_bank; checked, not rewritten
        if not sid or not all(names_t) or not count.isdigit():
            raise ZssError(f"name bank {path} line {no}: needs an id, a count and at least one name")
        if sid in seen:
            raise ZssError(f"name bank {path} line {no}: id {sid} appears twice")
        seen.add(sid)
        entries.append(NameEntry(sid, names_t, tuple(hypernyms.split(",")) if hypernyms else (), int(count),
                                 lexname))
    if not entries:
        raise ZssError(f"name bank {path} has no usable names (a header but no rows)")
    return NameBank(entries, str(path), "wordnet", header)


def _parse_user(text: str, path: Path) -> NameBank:
    """One name per line, ';' between synonyms; '#' comments and blank lines ignored. A name given
    twice (case-insensitive) is one entry with the union of synonyms; a synonym that is already
    another entry's display name stays on both (they may be different senses)."""
    entries: list[NameEntry] = []
    where: dict[str, int] = {}
    skipped: list[tuple[int, str]] = []
    n_lines = 0
    for no, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        n_lines += 1
        if "\t" in line:
            skipped.append((no, "holds a tab (one name per line, ';' between synonyms)"))
            continue
        words, problems = [], []
        for raw in line.split(";"):
            name = clean_name(raw)
            why = name_problem(name)
            if why is None:
                if name.lower() not in (w.lower() for w in words):
                    words.append(name)
            elif why != "empty":
                problems.append(f"{name[:40]!r}: {why}")
        if not words:
            skipped.append((no, "; ".join(problems) or "no name"))
            continue
        key = words[0].lower()
        if key in where:
            i = where[key]
            old = entries[i]
            extra = tuple(w for w in words[1:] if w.lower() not in {n.lower() for n in old.names})
            entries[i] = NameEntry(old.id, old.names + extra)
            skipped.append((no, f"{words[0]!r} repeats line {old.id.split(':')[1]} (synonyms merged)"))
            continue
        where[key] = len(entries)
        entries.append(NameEntry(f"line:{no}", tuple(words)))
    if not entries:
        if n_lines == 0:
            raise ZssError(f"name bank {path} has no usable names: only comments and blank lines")
        first = "; ".join(f"line {no}: {why}" for no, why in skipped[:3])
        raise ZssError(f"name bank {path} has no usable names ({n_lines} lines, none usable: {first})")
    return NameBank(entries, str(path), "user", [], skipped)


# --------------------------------------------------------------------------- `--vocab auto[:FILE]`

SHIPPED_NAME = "wordnet-3.0-visual.tsv.gz"


def shipped_bank_path() -> Path:
    """The bank that ships with zss (zss/manifests/names/, package data)."""
    from zss.paths import MANIFESTS

    return MANIFESTS / "names" / SHIPPED_NAME


def parse_auto_vocab(text: str) -> Path | None:
    """`auto` -> the shipped bank; `auto:FILE` -> FILE; anything else -> None (an ordinary --vocab)."""
    if text == "auto":
        return shipped_bank_path()
    if text.startswith("auto:"):
        rest = text[len("auto:"):].strip()
        if not rest:
            raise ZssError("--vocab auto:FILE needs a file after 'auto:'")
        return Path(rest).expanduser()
    return None
