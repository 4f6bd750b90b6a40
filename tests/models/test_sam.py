"""SAM loading from local files (safetensors and Meta's .pth state-dict format)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from zss.errors import ZssError
from zss.models.random_init import save_random_sam
from zss.formats.specs import parse_model_spec
from zss.models.sam import load_sam, sam_spec
from zss.utils.hashing import sha256_file


def test_tiny_sam_round_trip_both_formats(tmp_path):
    path = save_random_sam("test_tiny", tmp_path / "sam.safetensors", seed=1)
    sam = load_sam("test_tiny", path)
    saved = load_file(str(path))
    assert all(torch.equal(saved[k], v) for k, v in sam.state_dict().items())
    assert not sam.training and not any(p.requires_grad for p in sam.parameters())

    pth = tmp_path / "sam.pth"  # the layout of Meta's released checkpoints: a bare state dict
    torch.save(saved, pth)
    again = load_sam("test_tiny", pth)
    assert all(torch.equal(saved[k], v) for k, v in again.state_dict().items())
    parsed = load_sam(parse_model_spec(f"test_tiny:{pth}", "sam"))  # a parsed KIND:PATH spec
    assert all(torch.equal(saved[k], v) for k, v in parsed.state_dict().items())
    assert sam_spec("test_tiny", path) == {"kind": "test_tiny", "checkpoint": str(path),
                                           "sha256": sha256_file(path)}


def test_sam_user_errors(tmp_path):
    path = save_random_sam("test_tiny", tmp_path / "sam.safetensors")
    with pytest.raises(ZssError, match="unknown SAM kind"):
        load_sam("vit_q", path)
    with pytest.raises(ZssError, match="not found"):
        load_sam("test_tiny", tmp_path / "nope.pth")
    with pytest.raises(ZssError, match="does not fit"):
        load_sam("vit_b", path)
