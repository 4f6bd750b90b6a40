"""The shard contract: keys, row alignment, byte-determinism, validation, failed rows."""

from __future__ import annotations

import json

import numpy as np
import pytest

from zss.errors import ZssError
from zss.formats import shards as sh


def _sample(i: int, status: str = "ok") -> dict:
    rng = np.random.default_rng(i)
    s = {"source_id": f"img{i}", "status": status, "error": "" if status == "ok" else "broken",
         "captions": [f"a ball number {i}"]}
    if status == "ok":
        s.update({"orig_size": (30, 40), "size": (28, 28),
                  "patch": rng.normal(size=(2, 2, 6)).astype(np.float16),
                  "global": rng.normal(size=6).astype(np.float16),
                  "concepts": [[{"id": 7, "name": "ball", "text": "a ball", "char_span": [0, 6],
                                 "token_span": [1, 3]}, {"id": 2, "name": "x", "text": "x",
                                                         "char_span": [0, 1], "token_span": None}]],
                  "masks": [{"segmentation": {"size": [28, 28], "counts": "0"}, "area": 1}],
                  "jpg": b"\xff\xd8jpeg"})
    return s


def test_write_read_roundtrip_and_alignment(tmp_path):
    samples = [_sample(0), _sample(1, "decode_error"), _sample(2)]
    stats = sh.write_shard(tmp_path, 12, samples, {"features": 1.5})
    assert stats["n"] == 3 and stats["by_status"] == {"decode_error": 1, "ok": 2}
    got = list(sh.iter_samples(tmp_path / "00012.tar"))
    assert [g["key"] for g in got] == ["000120000", "000120002"]  # failed rows: parquet only
    assert got[1]["meta"]["source_id"] == "img2" and got[1]["meta"]["grid"] == [2, 2]
    assert got[1]["meta"]["size"] == [28, 28] and got[1]["meta"]["orig_size"] == [30, 40]
    np.testing.assert_array_equal(got[1]["patch"], samples[2]["patch"])
    assert got[1]["patch"].dtype == np.float16 and got[1]["global"].shape == (6,)
    assert got[1]["masks"][0]["area"] == 1 and got[1]["jpg"] == b"\xff\xd8jpeg"
    rows = sh.read_parquet(tmp_path / "00012.parquet").to_pylist()
    assert [r["key"] for r in rows] == ["000120000", "000120001", "000120002"]
    assert rows[1] == {"key": "000120001", "source_id": "img1", "status": "decode_error",
                       "error": "broken", "n_captions": 1, "concept_ids": [], "n_masks": 0}
    assert rows[0]["concept_ids"] == [2, 7] and rows[0]["n_masks"] == 1 and rows[0]["error"] is None
    # members of one sample are adjacent and in contract order
    import tarfile
    names = tarfile.open(tmp_path / "00012.tar").getnames()
    assert names[:5] == ["000120000.json", "000120000.patch.npy", "000120000.global.npy",
                         "000120000.masks.json", "000120000.jpg"]


def test_rewrite_is_byte_identical_and_stats_last(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    sa = sh.write_shard(a, 0, [_sample(0), _sample(1)], {"x": 1.0})
    sb = sh.write_shard(b, 0, [_sample(0), _sample(1)], {"x": 9.0})
    assert sa["sha256"] == sb["sha256"]
    assert (a / "00000.tar").read_bytes() == (b / "00000.tar").read_bytes()
    assert sorted(p.name for p in a.iterdir()) == ["00000.parquet", "00000.tar", "00000_stats.json"]
    sh.remove_partial_shard(a, 0)
    assert not any(a.iterdir()) and not sh.is_shard_done(a, 0)


def test_validate_detects_tampering(tmp_path):
    sh.write_shard(tmp_path, 0, [_sample(0), _sample(1, "missing_file")])
    sh.write_shard(tmp_path, 1, [_sample(2)])
    manifest = {"schema_version": 1, "feature": {"dim": 6},
                "shards": [sh.shard_entry(tmp_path, 0), sh.shard_entry(tmp_path, 1)]}
    sh.write_manifest(tmp_path, manifest)
    assert sh.validate_shards(tmp_path) == []
    assert [s["key"] for s in sh.iter_all_samples(tmp_path)] == ["000000000", "000010000"]
    data = bytearray((tmp_path / "00001.tar").read_bytes())
    data[700] ^= 0xFF
    (tmp_path / "00001.tar").write_bytes(bytes(data))
    assert sh.validate_shards(tmp_path) == ["shard 1: tar sha256 mismatch"]
    manifest["shards"][0]["n"] = 5
    sh.write_manifest(tmp_path, manifest)
    assert "shard 0: parquet has 2 rows, manifest says 5" in sh.validate_shards(tmp_path)


def test_read_manifest_errors(tmp_path):
    with pytest.raises(ZssError, match="not a zss shard folder"):
        sh.read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(ZssError, match="schema version 99"):
        sh.read_manifest(tmp_path)


def test_int8_codec_is_per_token_absmax_and_halves_the_bytes(tmp_path):
    x = np.array([[[1.0, -0.5, 0.25, 0.0]], [[0.0, 0.0, 0.0, 0.0]]], np.float32)  # [2,1,4]
    enc = sh.encode_patch(x, "int8")
    assert enc["patch.npy"].dtype == np.int8 and enc["patch_scale.npy"].shape == (2, 1, 1)
    # token 0: absmax 1 -> scale 1/127, codes round(x * 127); an all-zero token stays zero
    np.testing.assert_array_equal(enc["patch.npy"][0, 0], [127, -64, 32, 0])
    np.testing.assert_array_equal(enc["patch.npy"][1, 0], [0, 0, 0, 0])
    dec = sh.decode_patch(enc["patch.npy"], enc["patch_scale.npy"])
    assert np.abs(dec - x).max() <= 0.5 / 127 + 1e-3
    with pytest.raises(ZssError, match="features.dtype"):
        sh.encode_patch(x, "int4")

    rng = np.random.default_rng(0)
    samples = [{**_sample(i), "patch": rng.normal(size=(32, 32, 256)).astype(np.float16), "jpg": None,
                "masks": None}
               for i in range(3)]
    sh.write_shard(tmp_path / "f16", 0, samples)
    sh.write_shard(tmp_path / "i8", 0, samples, feature_dtype="int8")
    ratio = (tmp_path / "i8" / "00000.tar").stat().st_size / (tmp_path / "f16" / "00000.tar").stat().st_size
    assert ratio <= 0.52
    for got, want in zip(sh.iter_samples(tmp_path / "i8" / "00000.tar"), samples):
        assert got["patch"].dtype == np.float32
        ref = want["patch"].astype(np.float32)
        assert np.abs(got["patch"] - ref).max() <= np.abs(ref).max() / 127
