"""Config assembly (preset < CLI < --set, derived fields) and the runner's Ray-free parts: chunk
planning aligned to shards, model-stage failure handling, batch -> shard samples."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from zss.errors import ZssError
from zss.ingest.config import PRESET_DIR, build_config, fingerprint
from zss.ingest.plan import plan_chunks
from zss.ingest.sources import open_source
from zss.ingest.workers import batch_to_samples, read_decode_chunk, run_model_stages


def test_presets_load_and_cli_and_set_override(tmp_path):
    names = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
    assert {"coco-dinov2-b14", "sa1b-masks", "wds-sam-vith-gpu", "synth-demo"} <= set(names)
    for name in names:
        build_config(name)
    coco = build_config("coco-dinov2-b14")
    assert coco.features.name == "vit_base_patch14_reg4_dinov2" and coco.decode.img_size == 448
    assert build_config("sa1b-masks").decode.patch_size == 16  # open_clip/ViT-B-16
    cfg = build_config("coco-dinov2-b14", ["decode.img_size=224", "masks.kmeans_k=8"],
                       img_size=336, features="vit_small_patch14_dinov2:/x.pt", masks="dino-kmeans",
                       workers=3, store_images=True)
    assert cfg.decode.img_size == cfg.features.img_size == 224  # --set beats the CLI option
    assert (cfg.features.name, cfg.features.checkpoint) == ("vit_small_patch14_dinov2", "/x.pt")
    assert cfg.masks.mode == "dino-kmeans" and cfg.masks.kmeans_k == 8 and cfg.workers == 3
    assert cfg.decode.store_jpg and cfg.shard_size == 500
    src = {"kind": "coco", "path": "/a", "n": 5}
    other = build_config("coco-dinov2-b14", ["decode.img_size=224", "masks.kmeans_k=8"], img_size=336,
                         features="vit_small_patch14_dinov2:/x.pt", masks="dino-kmeans", workers=1,
                         store_images=True)
    assert fingerprint(cfg, src) == fingerprint(other, {**src, "n": 9})  # workers, n: run-time only
    assert fingerprint(cfg, src) != fingerprint(other, {**src, "path": "/b"})
    with pytest.raises(ZssError, match="shard_size"):
        build_config(None, ["shard_size=0"])


def test_chunks_never_straddle_shards(world):
    src = open_source(world)
    chunks = plan_chunks(src, 22, shard_size=8, batch_size=3, shards=[0, 2])
    spans = [(c["shard"], c["start"], len(json.loads(c["refs"])), c["n_chunks"]) for c in chunks]
    assert spans == [(0, 0, 3, 3), (0, 3, 3, 3), (0, 6, 2, 3), (2, 16, 3, 2), (2, 19, 3, 2)]
    assert [r["index"] for r in json.loads(chunks[-1]["refs"])] == [19, 20, 21]


def test_model_stage_failure_costs_rows_not_the_job(world):
    src = open_source(world)
    payload = read_decode_chunk(src.refs(0, 3), build_config(None, ["decode.img_size=28"]).decode)
    payload["batch"]["status"][1] = "decode_error"

    def features(batch):
        n = len(batch["index"])
        return {**batch, "patch": np.ones((n, 2, 2, 4), np.float16), "global": np.ones((n, 4), np.float16)}

    def broken(batch):
        raise torch.OutOfMemoryError("CUDA out of memory")

    never = pytest.fail
    out = run_model_stages([("features", features), ("masks", broken), ("concepts", never)], payload)
    assert list(out["batch"]["status"]) == ["model_error", "decode_error", "model_error"]
    assert out["batch"]["error"][0] == "masks: OutOfMemoryError: CUDA out of memory"
    assert set(out["seconds"]) == {"read", "decode", "features", "masks"}
    samples = batch_to_samples(out["batch"])
    assert [s["status"] for s in samples] == ["model_error", "decode_error", "model_error"]
    assert samples[0]["captions"] and "patch" not in samples[0]


def test_overwrite_removes_only_our_files_and_incremental_checks_the_fingerprint(tmp_path):
    from zss.ingest.runner import _prepare_out

    cfg = build_config(None, ["mode=overwrite"])
    for name in ["00000.tar", "00000.parquet", "00000_stats.json", "00001.tar.tmp", "manifest.json",
                 "concepts.json", "notes.txt", "my_data"]:
        (tmp_path / name).write_text("x")
    _prepare_out(tmp_path, cfg, "fp")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my_data", "notes.txt"]
    (tmp_path / "manifest.json").write_text(json.dumps({"fingerprint": "fp"}))
    _prepare_out(tmp_path, build_config(None), "fp")  # same run: fine
    with pytest.raises(ZssError, match="another source or config"):
        _prepare_out(tmp_path, build_config(None), "other")


def test_steady_rate_counts_only_the_window_where_every_worker_is_warm():
    from zss.ingest.report import steady_rate

    one = [(float(t), 8, 1) for t in range(1, 11)]  # worker 1: 8 images/s from t=0
    late = [(float(t + 3), 8, 2) for t in range(1, 8)]  # worker 2 starts 3 s late, same speed
    assert steady_rate(one) == pytest.approx(8.0)
    assert steady_rate(one + late) == pytest.approx(16.0)
    assert steady_rate([(1.0, 8, 1)]) != steady_rate([(1.0, 8, 1)])  # NaN: no steady window


def test_boundary_gaps_compare_batch_spacing_inside_and_across_shards():
    from zss.ingest.report import boundary_gaps

    # worker 7: shards listed out of order; batches 1 s apart inside, 2 s from one shard's last to
    # the next one's first (its models waited 1 s); worker 9: one shard only (nothing across)
    chunks = [(7, [5.0, 6.0]), (7, [1.0, 2.0, 3.0]), (9, [0.5, 2.5])]
    inside, across = boundary_gaps(chunks)
    assert inside == pytest.approx((1 + 1 + 1 + 2) / 4) and across == pytest.approx(2.0)
    assert boundary_gaps([(1, [1.0])]) != boundary_gaps([(1, [1.0])])  # NaN: nothing to compare
