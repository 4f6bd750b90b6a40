"""Self-contained model directories: files bundled by hard link or copy with their sha256, recorded by
relative name; older directories with absolute paths still resolve."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from zss.errors import ZssError
from zss.formats.model_dir import bundle_backbone, bundle_concept_bank, bundle_file, weights_file
from zss.utils.hashing import sha256_file


def test_bundle_file_hard_links_and_records_the_hash(tmp_path):
    src = tmp_path / "w.safetensors"
    src.write_bytes(b"weights" * 100)
    model = tmp_path / "model"
    model.mkdir()
    got = bundle_file(src, model, "backbone.safetensors", sha256_file(src))
    assert got == {"file": "backbone.safetensors", "sha256": sha256_file(src)}
    assert os.path.samefile(src, model / "backbone.safetensors")     # same file system: a hard link
    assert bundle_file(src, model, "backbone.safetensors") == got    # again: nothing to do
    assert not list(model.glob(".*tmp"))
    with pytest.raises(ZssError, match="changed since"):
        bundle_file(src, model, "other.safetensors", "0" * 64)
    with pytest.raises(ZssError, match="missing"):
        bundle_file(tmp_path / "nope.safetensors", model, "x.safetensors")


def test_bundle_file_copies_when_links_fail(tmp_path, monkeypatch):
    src = tmp_path / "w.bin"
    src.write_bytes(b"abc")

    def no_link(a, b):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    (tmp_path / "m").mkdir()
    bundle_file(src, tmp_path / "m", "backbone.bin")
    assert (tmp_path / "m" / "backbone.bin").read_bytes() == b"abc"
    assert not os.path.samefile(src, tmp_path / "m" / "backbone.bin")


def test_bundle_backbone_rewrites_paths_relative(tmp_path, caplog):
    ckpt, den = tmp_path / "vit.pth", tmp_path / "dvt.safetensors"
    ckpt.write_bytes(b"vit")
    den.write_bytes(b"den")
    model = tmp_path / "model"
    model.mkdir()
    record = {"name": "vit_x", "checkpoint": str(ckpt), "sha256": sha256_file(ckpt), "img_size": 56,
              "denoiser": {"type": "transformer", "file": str(den), "sha256": sha256_file(den), "dim": 8}}
    out = bundle_backbone(record, model)
    assert out["checkpoint"] == "backbone.pth" and out["sha256"] == sha256_file(ckpt)
    assert out["denoiser"] == {**record["denoiser"], "file": "denoiser.safetensors"}
    assert out["img_size"] == 56 and record["checkpoint"] == str(ckpt)   # the input record is untouched
    assert bundle_backbone(out, model) == out                           # an imported model: already inside
    hub = bundle_backbone({"name": "vit_x", "checkpoint": None}, model)
    assert hub["checkpoint"] is None and "not a local file" in caplog.text
    with pytest.raises(ZssError, match="is missing"):
        bundle_backbone({"name": "vit_x", "checkpoint": str(tmp_path / "gone.pth")}, model)


def test_weights_file_resolves_inside_the_folder_absolute_and_tags(tmp_path):
    (tmp_path / "backbone.safetensors").write_bytes(b"x")
    assert weights_file(tmp_path, "backbone.safetensors") == str(tmp_path / "backbone.safetensors")
    assert weights_file(tmp_path, "/old/abs/vit.safetensors") == "/old/abs/vit.safetensors"  # older dirs
    assert weights_file(tmp_path, "openai") == "openai" and weights_file(tmp_path, None) is None
    with pytest.raises(ZssError, match="denoiser.safetensors is missing"):
        weights_file(tmp_path, "denoiser.safetensors", "denoiser weights")


def test_concept_bank_travels_with_its_index(tmp_path):
    bank = tmp_path / "shards" / "concepts.json"
    bank.parent.mkdir()
    bank.write_text(json.dumps({"schema": 1, "concepts": [], "index": {"file": "concepts.faiss"}}))
    (bank.parent / "concepts.faiss").write_bytes(b"idx")
    (tmp_path / "m").mkdir()
    bundle_concept_bank(bank, tmp_path / "m")
    shutil.rmtree(bank.parent)
    assert json.loads((tmp_path / "m" / "concepts.json").read_text())["index"]["file"] == "concepts.faiss"
    assert (tmp_path / "m" / "concepts.faiss").read_bytes() == b"idx"
    bundle_concept_bank(None, tmp_path / "m")  # no bank: nothing
