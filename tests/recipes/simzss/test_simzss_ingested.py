"""SimZSS on shards made by the real ingest pipeline (random ViT-S/14 features of the synthetic
world, spaCy concepts): trains, and its model directory segments with the recorded backbone."""

from __future__ import annotations

import torch

from zss.recipes import load_segmenter
from zss.commands.train import run_training


def test_train_on_ingested_shards_and_segment(ingested_shards, tiny_overrides, tmp_path):
    run = tmp_path / "run"
    run_training("simzss", ingested_shards, run, steps=3,
                 overrides=tiny_overrides + ["batch_size=4", "recipe.global_token=cls", "num_workers=2"])
    seg = load_segmenter(run, "cpu")
    assert seg.config["backbone"]["name"] == "vit_small_patch14_dinov2" and seg.default_size == 112
    dense = seg.encode_dense(torch.rand(1, 3, 112, 112))
    text = seg.encode_text(["a photo of a ball.", "a photo of the sky."])
    assert dense.shape == (1, 384, 8, 8) and text.shape == (2, 384)
    assert (run / "model" / "concepts.json").is_file()
