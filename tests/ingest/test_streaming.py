"""The streaming plan (issue 13 item 2): sources enumerate lazily in one fixed order, shard i is
items [i*S, (i+1)*S) of it, and the driver builds a shard's refs only when it submits the shard."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any, Iterator

import pytest

from zss.errors import ZssError
from zss.ingest.plan import ShardRefs, plan_shards
from zss.ingest.sources import load_ref, open_source
from zss.ingest.sources.base import Source
from zss.ingest.sources.folder import IMAGE_EXTS


class Counting(Source):
    """n items made on demand; records how far the enumeration was pulled and how often opened."""

    kind = "counting"

    def __init__(self, n: int):
        super().__init__(".")
        self.total, self.pulled, self.opened = n, 0, []

    def _count(self) -> int:
        return self.total

    def iter_refs(self, start: int = 0) -> Iterator[dict[str, Any]]:
        self.opened.append(start)
        for i in range(start, self.total):
            self.pulled = max(self.pulled, i + 1)
            yield {"index": i}

    @staticmethod
    def load(ref: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError


def test_shard_refs_are_fixed_slices_built_on_demand():
    src = Counting(1000)
    walk = ShardRefs(src, len(src), 10)
    assert [r["index"] for r in walk(0)] == list(range(10))
    assert src.pulled == 10  # nothing beyond the shard asked for
    assert [r["index"] for r in walk(2)] == list(range(20, 30))  # a short gap is walked over
    assert [r["index"] for r in walk(9)] == list(range(90, 100))  # a long one is re-opened
    assert [r["index"] for r in walk(99)] == list(range(990, 1000))
    assert src.opened == [0, 90, 990]
    short = Counting(25)
    assert [r["index"] for r in ShardRefs(short, 25, 10)(2)] == [20, 21, 22, 23, 24]
    shrunk = Counting(25)
    with pytest.raises(ZssError, match="fewer than"):
        ShardRefs(shrunk, 30, 10)(2)


def test_plan_skips_finished_shards_and_clears_partial_ones(ingested_shards, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for p in ingested_shards.iterdir():
        (out / p.name).write_bytes(p.read_bytes())
    (out / "00001_stats.json").unlink()  # shard 1: tar + parquet without stats = partial
    (out / "00002.tar.tmp").write_bytes(b"x")
    names = {p.name for p in out.iterdir()}
    pending, entries, by_status = plan_shards(out, names, 24, 8)
    assert list(pending) == [1] and sorted(entries) == [0, 2] and sum(by_status.values()) == 16
    assert not (out / "00001.tar").exists() and (out / "00002.tar").exists()
    assert list(plan_shards(tmp_path / "empty", set(), 1_000_000, 256)[0]) == list(range(3907))


def _same_enumeration(src: Source) -> None:
    refs = list(src.iter_refs())
    assert len(refs) == len(src) and [r["index"] for r in refs] == list(range(len(src)))
    for start in (0, 1, len(src) // 2, len(src) - 1):
        assert list(src.iter_refs(start)) == refs[start:]
        assert src.refs(start, start + 3) == refs[start:start + 3]
    assert list(src.iter_refs(len(src))) == []
    json.dumps(refs)  # refs travel to the workers as plain JSON


def test_every_reader_enumerates_lazily_in_one_order(world, tmp_path):
    coco = open_source(world)
    _same_enumeration(coco)
    rows = [load_ref(r) for r in coco.iter_refs()]
    doc = json.loads((world / "train/captions.json").read_text())
    ids = sorted(im["id"] for im in doc["images"])
    assert [r["source_id"] for r in rows] == [str(i) for i in ids]
    for r in rows[:3]:
        assert json.loads(r["captions"]) == [a["caption"] for a in doc["annotations"]
                                             if str(a["image_id"]) == r["source_id"]]
    _same_enumeration(open_source(world / "train/sa1b"))
    _same_enumeration(open_source(f"folder:{world}/val/images"))

    # webdataset across several tars: numbering runs on over tar boundaries
    one = open_source(f"webdataset:{world}/train/wds")
    members = []
    with tarfile.open(next((world / "train/wds").glob("*.tar"))) as tar:
        for info in tar:
            members.append((info.name, tar.extractfile(info).read()))
    wds = tmp_path / "wds"
    wds.mkdir()
    per = {}
    for name, data in members:
        per.setdefault(name.split(".", 1)[0], []).append((name, data))
    keys = list(per)
    for t, chunk in enumerate((keys[:5], keys[5:6], keys[6:])):
        with tarfile.open(wds / f"{t:05d}.tar", "w") as tar:
            for key in chunk:
                for name, data in per[key]:
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    many = open_source(f"webdataset:{wds}")
    _same_enumeration(many)
    assert [r["source_id"] for r in many.iter_refs()] == [r["source_id"] for r in one.iter_refs()]
    assert [load_ref(r)["image_bytes"] for r in many.iter_refs(4)][:3] == \
        [load_ref(r)["image_bytes"] for r in one.iter_refs(4)][:3]


def test_folder_walk_is_the_sorted_path_order(tmp_path):
    # names around '/' and '.' in byte order: a.jpg < a/ (dir) < a-b < a_b < ab
    for rel in ["a.jpg", "a/x.png", "a/b/c.jpg", "a-b/y.jpg", "a_b.jpg", "ab/z.JPG", "Z.jpg",
                "é/q.jpg", "a/b.jpg", "a/b.txt", "d.jpg/not-an-image.txt"]:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    expected = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")
                      if p.suffix.lower() in IMAGE_EXTS and not p.is_dir())
    src = open_source(f"folder:{tmp_path}")
    assert [Path(r["path"]).relative_to(tmp_path).as_posix() for r in src.iter_refs()] == expected
    _same_enumeration(src)
