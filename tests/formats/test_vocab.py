"""Class files, --vocab strings, background detection, named lists and prompt templates."""

import pytest
import torch

from zss.errors import ZssError
from zss.eval.templates import IMAGENET_TEMPLATES, embed_words, get_templates
from zss.formats.vocab import CLASSES_DIR, Vocabulary, class_list_path, parse_vocab, read_class_file

EXPECTED = {"voc20": 20, "voc21": 21, "context59": 59, "context60": 60, "coco_stuff171": 171,
            "coco_object80": 80, "coco_object81": 81, "cityscapes19": 19, "ade150": 150}


@pytest.mark.parametrize("stem,count", sorted(EXPECTED.items()))
def test_class_files_have_the_benchmark_class_count(stem, count):
    classes = read_class_file(CLASSES_DIR / f"{stem}.txt")
    assert len(classes) == count
    names = [c[0] for c in classes]
    assert len(set(names)) == count
    with_bg = stem in ("voc21", "context60", "coco_object81")
    assert (Vocabulary.build(classes).background == 0) is with_bg


def test_background_files_extend_their_foreground_lists():
    assert read_class_file(CLASSES_DIR / "voc21.txt")[1:] == read_class_file(CLASSES_DIR / "voc20.txt")
    assert read_class_file(CLASSES_DIR / "context60.txt")[1:] == read_class_file(CLASSES_DIR / "context59.txt")
    stuff = read_class_file(CLASSES_DIR / "coco_stuff171.txt")
    assert [c[0] for c in stuff[:80]] == [c[0] for c in read_class_file(CLASSES_DIR / "coco_object80.txt")]
    assert stuff[80][0] == "banner" and stuff[-1][0] == "wood"


@pytest.mark.parametrize("path", sorted(CLASSES_DIR.glob("*.txt")), ids=lambda p: p.stem)
def test_no_query_word_names_two_classes(path):
    # a word shared by two classes makes the later one unreachable (COCO-Stuff once gave "table" to
    # class 60 "dining table" and to class 153 "table"). zss's own lists only: the peers' lists
    # (sub-folders) are kept as the peers wrote them, e.g. ProxyCLIP's COCO-Object background has "bed".
    owner: dict[str, int] = {}
    for idx, words in enumerate(read_class_file(path)):
        for word in words:
            assert owner.setdefault(word, idx) == idx, f"{path.name}: {word!r} in classes {owner[word]} and {idx}"


def test_named_lists_resolve_through_the_index():
    for name in ("voc", "context", "coco_stuff", "ade20k", "cityscapes", "coco_object"):
        assert class_list_path(name).is_file()
    assert class_list_path("voc").name == "voc20.txt"
    assert class_list_path("ade20k").name == "ade150.txt"
    with pytest.raises(ZssError, match="unknown class list"):
        class_list_path("nope")


def test_vocab_string_and_file_synonyms(tmp_path):
    assert parse_vocab("cat, dog;puppy ,grass") == [["cat"], ["dog", "puppy"], ["grass"]]
    with pytest.raises(ZssError):
        parse_vocab(" , ;")
    f = tmp_path / "c.txt"
    f.write_text("background;sky\ncat\n\ndog;puppy\n")
    v = Vocabulary.from_file(f)
    assert v.names == ["background", "cat", "dog"] and v.background == 0
    words, owners = v.queries()
    assert words == ["background", "sky", "cat", "dog", "puppy"] and owners == [0, 0, 1, 2, 2]
    words, owners = v.queries(background_words=False)
    assert words == ["cat", "dog", "puppy"] and owners == [1, 2, 2]


def test_templates_and_embedding_average_after_normalisation():
    assert len(IMAGENET_TEMPLATES) == 80 and len(set(IMAGENET_TEMPLATES)) == 80
    assert all(t.count("{}") == 1 for t in IMAGENET_TEMPLATES)
    with pytest.raises(ZssError):
        get_templates("nope")
    # encoder: prompt -> un-normalised vector; "a {}." gives length 3, "the {}" length 1
    table = {"a x.": [3.0, 0.0], "the x": [0.0, 1.0]}
    emb = embed_words(lambda texts: torch.tensor([table[t] for t in texts]), ["x"], ["a {}.", "the {}"])
    expected = torch.nn.functional.normalize(torch.tensor([[0.5, 0.5]]), dim=-1)  # mean of unit vectors
    torch.testing.assert_close(emb, expected)
