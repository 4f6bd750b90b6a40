"""Concept occurrences per caption: recorded per shard at ingest, summed by `zss inspect` and the
ingest summary (how `concepts.match: strict` and `zss` are compared on a corpus)."""

from __future__ import annotations

import json
import shutil

import pytest

from zss.formats import shards as sh
from zss.ingest.inspect import concept_line, inspect_shards
from zss.ingest.runner import run_ingest

pytestmark = [pytest.mark.timeout(240)]


def test_concept_line_by_hand():
    totals = {"captions": 8, "occurrences": 10, "with_concept": 6, "shards": 2}
    assert concept_line(totals, "strict", 2) == (
        "concepts (match strict): 1.250 occurrences per caption, 75.0 % of 8 captions name at least one "
        "(10 occurrences)")
    assert concept_line(totals, "zss", 3).endswith("(counted in 2 of 3 shards)")
    assert concept_line(None, "zss", 3) is None
    assert sh.concept_totals([{"n": 1}, {"concepts": {"captions": 3, "occurrences": 4, "with_concept": 2}},
                              {"concepts": {"captions": 5, "occurrences": 6, "with_concept": 4}}]) == totals


def test_counts_match_the_shards_and_reach_inspect_and_the_summary(ingested_shards, ingest_kwargs, tmp_path):
    captions = occurrences = with_concept = 0
    for tar in sh.shard_tars(ingested_shards):
        for sample in sh.iter_samples(tar):
            for per_caption in sample["meta"]["concepts"]:
                captions += 1
                occurrences += len(per_caption)
                with_concept += bool(per_caption)
    manifest = sh.read_manifest(ingested_shards)
    assert sh.concept_totals(manifest["shards"]) == {"captions": captions, "occurrences": occurrences,
                                                      "with_concept": with_concept, "shards": 3}
    line = (f"concepts (match zss): {occurrences / captions:.3f} occurrences per caption, "
            f"{100 * with_concept / captions:.1f} % of {captions} captions name at least one "
            f"({occurrences} occurrences)")
    assert line in inspect_shards(ingested_shards)

    # a resumed run with nothing left to do still reports the counts of the shards already written
    out = tmp_path / "shards"
    shutil.copytree(ingested_shards, out)
    assert line in run_ingest(out=out, **ingest_kwargs)

    # shards written before the counts existed: inspect says so instead of guessing
    manifest["shards"] = [{k: v for k, v in e.items() if k != "concepts"} for e in manifest["shards"]]
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert "occurrences per caption not recorded" in inspect_shards(out)
