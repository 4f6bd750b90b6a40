"""Vocabularies: class-name files and `--vocab` strings -> classes with synonyms.

A class is a list of words (synonyms); its score is the max over its words, so a user can write
"person;man;woman" and get one class. Background is an ordinary class with its own words (SCLIP's
convention: VOC21/Context60/COCO-Object list stuff words as "background") and/or the class every pixel
falls back to when no class is confident enough (`prob_thd`, applied in inference).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from zss.errors import ZssError
from zss.paths import MANIFESTS

CLASSES_DIR = MANIFESTS / "classes"
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
    classes = [_split_words(line) for line in p.read_text(encoding="utf-8").splitlines()
               if not line.lstrip().startswith("#")]
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
    return classes


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
