"""`zss train joint` end to end on the masked feature world: learning with images lacking masks,
exact resume, bad input through the real command line, the model directory in segment and eval
(with mask-consistent inference)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY, assert_losses_fell, cli_train, read_metrics
from joint_world import make_masked_world
from zss.cli import main
from zss.commands.train import run_training
from zss.errors import ZssError
from zss.recipes.simzss.segmenter import load_text_tower
from zss.recipes.simzss.text_tower import TextConfig, TextTower


@pytest.fixture(scope="module")
def masked_world(tmp_path_factory):
    """48 images, every 5th without masks."""
    return make_masked_world(tmp_path_factory.mktemp("masked"), unmasked_every=5)


def test_joint_learns_and_counts_what_each_term_saw(masked_world, tmp_path):
    run = tmp_path / "run"
    rows = cli_train("joint", masked_world.shards, run, 40,
                     TINY + ["batch_size=16", "lr=2e-3", "warmup=0.1", "recipe.local_weight=1.0"])
    # images without masks still train: they are counted, and the region terms skip their concepts
    assert sum(float(r["images_without_masks"]) for r in rows) > 0
    assert all(float(r["n_region"]) <= float(r["n_occ"]) for r in rows)
    assert all(float(r["n_consistency"]) == float(r["n_masks"]) for r in rows)
    # the concept terms learn; the global InfoNCE on a random backbone's mean token only reaches chance
    # level (ln 16 = 2.77 at batch 16) in 40 steps, so it is not asked to fall by a margin
    assert_losses_fell(rows, ("loss_local", "loss_region"))
    torch.manual_seed(0)
    untrained = TextTower(TextConfig(width=64, heads=2, layers=2, context_length=16), 32).eval()
    config = json.loads((run / "model" / "config.json").read_text())
    trained = load_text_tower(run / "model", config=config)
    before, after = masked_world.zero_shot_miou(untrained), masked_world.zero_shot_miou(trained)
    assert after > before + 0.05, (before, after)
    assert config["kind"] == "joint" and config["joint"]["mil_weight"] == 0.5 and config["embed_dim"] == 32


def test_killed_joint_run_resumes_exactly(masked_world, tmp_path, crash_after_step):
    overrides = TINY + ["batch_size=8", "lr=2e-3", "warmup=0.2", "ckpt_every=3", "grad_clip=1.0",
                         "recipe.cluster_weight=0.5"]
    full = tmp_path / "full"
    run_training("joint", masked_world.shards, full, steps=8, overrides=overrides)
    killed = tmp_path / "killed"
    with crash_after_step(6):
        run_training("joint", masked_world.shards, killed, steps=8, overrides=overrides)
    run_training("joint", masked_world.shards, killed, resume=True)
    a, b = read_metrics(full), read_metrics(killed)
    assert [r["step"] for r in b] == [str(s) for s in range(1, 9)]
    for ra, rb in zip(a, b):
        for key in ("loss", "loss_region", "loss_mil", "loss_consistency", "loss_cluster", "grad_norm"):
            assert float(ra[key]) == pytest.approx(float(rb[key]), abs=1e-5), (ra["step"], key)
    wa, wb = load_file(str(full / "model" / "model.safetensors")), load_file(str(killed / "model" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize("kind, expected", [("masks", "--masks"), ("captions", "no captions")])
def test_shards_missing_masks_or_captions_exit_2_with_one_line(tmp_path, kind, expected):
    world = make_masked_world(tmp_path / "w", n_train=8, n_val=1, n_shards=1,
                              masks=kind != "masks", captions=kind != "captions")
    proc = subprocess.run([sys.executable, "-m", "zss.cli", "train", "joint", str(world.shards), str(tmp_path / "run"),
                           "--steps", "2"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in proc.stderr, proc.stderr


def test_joint_model_dir_segments_and_evaluates_with_mask_refinement(world, tmp_path):
    from zss.models.random_init import save_random_timm
    from zss.utils.hashing import sha256_file

    ckpt = save_random_timm("vit_small_patch14_dinov2", tmp_path / "vits14.safetensors", img_size=56)
    record = {"name": "vit_small_patch14_dinov2", "checkpoint": str(ckpt), "sha256": sha256_file(ckpt),
              "img_size": 56, "patch_size": 14, "embed_dim": 384, "global": "cls"}
    masked = make_masked_world(tmp_path / "w", n_train=8, n_val=1, n_shards=1, dim=384, backbone=record)
    run = tmp_path / "run"
    run_training("joint", masked.shards, run, steps=2, overrides=TINY + ["batch_size=4"])
    image = sorted((world / "val" / "images").glob("*.jpg"))[0]
    proc = subprocess.run([sys.executable, "-m", "zss.cli", "segment", str(run / "model"), str(image),
                           "--vocab-file", str(world / "classes.txt"), "--out", str(tmp_path / "seg"),
                           "--set", "refine=masks", "--set", "masks=feature-kmeans", "--set", "mask_k=4"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert list((tmp_path / "seg").glob("*_overlay.png"))
    out = tmp_path / "eval"
    assert main(["eval", str(run / "model"), "--benchmark", "synth", "--data-root", str(world), "--limit", "2",
                 "--out", str(out), "--set", "refine=masks"]) == 0
    res = json.loads((out / "results.json").read_text())["benchmarks"]["synth"]
    assert res["inference"]["refine"] == "masks" and res["inference"]["masks"] == "slic"  # the default source
    assert main(["eval", str(run / "model"), "--benchmark", "synth", "--data-root", str(world), "--limit", "1",
                 "--out", str(tmp_path / "bad"), "--set", "refine=blur"]) == 2


@pytest.mark.slow
def test_zss_trains_joint_on_an_sa1b_folder_with_caption_sidecars(world, ingest_kwargs, tmp_path):
    """What docs/joint.md tells a user to type: `zss ingest sa1b:DIR --masks sa1b` on SA-1B files with
    `sa_N.txt` caption sidecars (the synthetic world writes them), then `zss train joint`."""
    sa1b = world / "train" / "sa1b"
    assert (sa1b / "sa_1.txt").read_text().strip()
    shards, run = tmp_path / "shards", tmp_path / "run"
    zss = [sys.executable, "-m", "zss.cli"]
    ingest = subprocess.run(zss + ["ingest", f"sa1b:{sa1b}", str(shards), "--features", ingest_kwargs["features"],
                                   "--img-size", "112", "--masks", "sa1b", "--concepts", str(world / "classes.txt"),
                                   "--shard-size", "12", "--workers", "1", "--limit", "12"],
                            capture_output=True, text=True, timeout=600)
    assert ingest.returncode == 0, ingest.stderr[-2000:]
    manifest = json.loads((shards / "manifest.json").read_text())
    assert manifest["models"]["masks"]["mode"] == "sa1b"
    args = ["train", "joint", str(shards), str(run), "--config", "joint-demo", "--steps", "3"]
    for item in TINY + ["batch_size=4", "recipe.max_regions=8"]:
        args += ["--set", item]
    train = subprocess.run(zss + args, capture_output=True, text=True, timeout=600)
    assert train.returncode == 0, train.stderr[-2000:]
    rows = read_metrics(run)
    assert len(rows) == 3 and all(float(r["n_region"]) > 0 and float(r["n_mil"]) > 0 for r in rows)
    assert json.loads((run / "model" / "config.json").read_text())["kind"] == "joint"
