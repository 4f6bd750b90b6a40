"""Vocabularies: class-name files and `--vocab` strings -> classes with synonyms.

One convention everywhere (`--vocab`, class files, the `zss serve` page, the docs): classes are
separated by `,` (a class file: one class per line) and the synonyms of one class by `;`. A class
is a list of words (synonyms); its score is the max over its words, so a user can write
"person;man;woman" and get one class. `describe` says what was understood
(`3 classes: zebra | traffic cone | wet asphalt (= road)`), and every command that takes words
prints it. Background is an ordinary class with its own words (SCLIP's
convention: VOC21/Context60/COCO-Object list stuff words as "background") and/or the class every pixel
falls back to when no class is confident enough (`prob_thd`, applied in inference).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import yaml

from zss.errors import ZssError
from zss.paths import MANIFESTS

log = logging.getLogger(__name__)

CLASSES_DIR = MANIFESTS / "classes"
DESCRIBE_AT_MOST = 24    # classes spelled out by `describe`; the rest are counted
SYNONYMS_AT_MOST = 4     # synonyms spelled out per class
BACKGROUND_NAMES = ("background", "bg", "other", "others")


def class_list_path(name: str | Path) -> Path:
    """Resolve a class-list name (`voc`, `ade20k`, a file stem in zss/manifests/classes) or a path."""
    path = Path(name)
    if path.is_file():
        return path
    index_file = CLASSES_DIR / "index.yaml"
    index = yaml.safe_load(index_file.read_text()) if index_file.is_file() else {}
    key = str(name)
    if key in index:
        return CLASSES_DIR / index[key]
    if (CLASSES_DIR / f"{key}.txt").is_file():
        return CLASSES_DIR / f"{key}.txt"
    known = ", ".join(sorted(index))
    raise ZssError(f"unknown class list {key!r}: not a file, and not one of {known}")


def _split_words(entry: str) -> list[str]:
    return [w.strip() for w in entry.split(";") if w.strip()]


def read_class_file(path: str | Path) -> list[list[str]]:
    """One class per non-empty line (label-id order), synonyms separated by ';'; lines starting
    with '#' are comments (where a shipped list comes from)."""
    p = Path(path)
    if not p.is_file():
        raise ZssError(f"class file not found: {p}")
    classes = []
    for number, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if line.lstrip().startswith("#") or not line.strip():
            continue
        if "," in line:
            raise ZssError(f"{p}:{number}: {line.strip()!r} holds ','; a class file lists one class per "
                           "line with ';' between the synonyms of a class (as --vocab does; ',' separates "
                           "classes there)")
        classes.append(_split_words(line))
    classes = [c for c in classes if c]
    if not classes:
        raise ZssError(f"class file {p} lists no classes")
    return classes


def parse_vocab(text: str) -> list[list[str]]:
    """`"cat,dog;puppy,grass"` -> [["cat"], ["dog", "puppy"], ["grass"]]."""
    classes = [_split_words(entry) for entry in text.split(",")]
    classes = [c for c in classes if c]
    if not classes:
        raise ZssError(f"--vocab {text!r} names no classes")
    if len(classes) == 1 and len(classes[0]) > 1:
        log.warning("--vocab %r is ONE class with %d synonyms (';' joins synonyms); separate classes "
                    "with ',', e.g. %r", text, len(classes[0]), ", ".join(classes[0]))
    return classes


def describe(classes: list[list[str]], background: int | None = None, at_most: int = DESCRIBE_AT_MOST) -> str:
    """What a vocabulary was understood as, in one line: `3 classes: zebra | traffic cone | wet
    asphalt (= road)`; synonyms after `=` joined by `;` as they are typed, the background class
    marked, classes past `at_most` counted."""
    shown = []
    for i, words in enumerate(classes[:at_most]):
        synonyms = "; ".join(words[1:SYNONYMS_AT_MOST + 1]) + (
            f"; +{len(words) - 1 - SYNONYMS_AT_MOST}" if len(words) - 1 > SYNONYMS_AT_MOST else "")
        text = words[0] + (f" (= {synonyms})" if len(words) > 1 else "")
        shown.append(text + (" [background]" if i == background else ""))
    more = f" | ... {len(classes) - at_most} more" if len(classes) > at_most else ""
    return f"{len(classes)} class{'es' if len(classes) != 1 else ''}: " + " | ".join(shown) + more


@dataclass
class Vocabulary:
    """Classes in label-id order, each a list of synonyms; `background` = index of the background class."""

    classes: list[list[str]]
    background: int | None = None

    @classmethod
    def build(cls, classes: list[list[str]]) -> "Vocabulary":
        """Detect the background class by its first word (`background`), as the class files write it."""
        bg = next((i for i, words in enumerate(classes) if words[0].lower() in BACKGROUND_NAMES), None)
        return cls(classes=[list(c) for c in classes], background=bg)

    @classmethod
    def from_file(cls, name_or_path: str | Path) -> "Vocabulary":
        return cls.build(read_class_file(class_list_path(name_or_path)))

    @classmethod
    def from_string(cls, text: str) -> "Vocabulary":
        return cls.build(parse_vocab(text))

    def describe(self) -> str:
        """`3 classes: zebra | traffic cone | wet asphalt (= road)` (see `describe`)."""
        return describe(self.classes, self.background)

    @property
    def names(self) -> list[str]:
        """Display name of each class (its first word)."""
        return [words[0] for words in self.classes]

    def __len__(self) -> int:
        return len(self.classes)

    def queries(self, background_words: bool = True) -> tuple[list[str], list[int]]:
        """Flat text queries and the class each belongs to.

        With `background_words=False` the background class gets no query: it can only be reached
        through the probability threshold.
        """
        words: list[str] = []
        owners: list[int] = []
        for idx, synonyms in enumerate(self.classes):
            if idx == self.background and not background_words:
                continue
            for word in synonyms:
                words.append(word)
                owners.append(idx)
        if not words:
            raise ZssError("the vocabulary has no words to query")
        return words, owners
