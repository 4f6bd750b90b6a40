"""Issue 9 item 6: a stage's *foreseen* problems (a bad item, out of memory) become row statuses, a
bug in a stage (any other exception) fails the job loudly instead of becoming `model_error` rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zss.errors import BadItem, ZssError
from zss.ingest.config import build_config
from zss.ingest.runner import ingest
from zss.ingest.sources import open_source
from zss.ingest.workers import model_stages, read_decode_chunk, run_model_stages


def _payload(world):
    return read_decode_chunk(open_source(world).refs(0, 2), build_config(None, ["decode.img_size=28"]).decode)


@pytest.mark.parametrize("exc", [BadItem("bad_masks", "masks differ"), torch.OutOfMemoryError("CUDA out of memory")])
def test_foreseen_errors_cost_rows(world, exc):
    def stage(batch):
        raise exc

    out = run_model_stages([("masks", stage)], _payload(world))
    assert list(out["batch"]["status"]) == ["model_error", "model_error"]


@pytest.mark.parametrize("exc", [TypeError("unsupported operand"), KeyError("patch"), AttributeError("x")])
def test_a_bug_in_a_stage_propagates(world, exc):
    def stage(batch):
        raise exc

    with pytest.raises(type(exc)):
        run_model_stages([("masks", stage)], _payload(world))


def _buggy_after_first_shard(cfg):
    """The real stages, with a bug that only shows on the second shard's rows (index >= 8)."""
    stages = model_stages(cfg)

    def concepts_with_a_bug(batch, _real=stages[-1][1]):
        if int(np.min(batch["index"])) >= 8:
            return batch["no_such_column"]  # KeyError: a bug, not a bad item
        return _real(batch)

    return stages[:-1] + [("concepts", concepts_with_a_bug)]


@pytest.mark.slow
@pytest.mark.timeout(400)
@pytest.mark.usefixtures("ray_2cpu")
def test_a_bug_fails_the_ingest_loudly_and_keeps_finished_shards(ingest_kwargs, tmp_path):
    kw = dict(ingest_kwargs)
    cfg = build_config(None, kw["overrides"], features=kw["features"], img_size=kw["img_size"], masks=kw["masks"],
                       concepts=kw["concepts"], shard_size=kw["shard_size"], workers=1)
    out = tmp_path / "out"
    with pytest.raises(Exception) as info:
        ingest(cfg, open_source(kw["source"]), out, factory=_buggy_after_first_shard, progress=False)
    assert not isinstance(info.value, ZssError), "a bug must not look like a user error"
    assert "no_such_column" in str(info.value)
    assert not any("model_error" in p.read_text() for p in out.glob("*_stats.json"))
    assert not (out / ".zss.lock").exists()
