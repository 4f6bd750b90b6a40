"""The batched automatic mask generator vs segment-anything's SamAutomaticMaskGenerator: the same
masks on the same images with the same (tiny, random) SAM."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from segment_anything import SamAutomaticMaskGenerator

from zss.models.random_init import save_random_sam
from zss.models.sam import load_sam

from zss.models.sam_amg import BatchedMaskGenerator
from zss.models.sam_amg_ops import remove_small_regions_batch

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools.*")


@pytest.fixture(scope="module")
def sam(tmp_path_factory):
    """zss's `test_tiny` SAM (segment-anything's own builder, 2-block encoder), random weights,
    loaded through zss's real path."""
    path = save_random_sam("test_tiny", tmp_path_factory.mktemp("sam") / "sam_tiny.safetensors", seed=0)
    return load_sam("test_tiny", path)


@pytest.fixture(scope="module")
def sam256():
    """The same SAM modules as `test_tiny` (segment-anything's classes, the real decoder widths),
    at a 256-pixel input (16x16 embedding) so that the many-image / many-crop cases run in seconds
    on a CPU: the generator's code path is the same at any input size."""
    from functools import partial

    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    torch.manual_seed(0)
    size, patch = 256, 16
    sam = Sam(
        image_encoder=ImageEncoderViT(depth=2, embed_dim=32, img_size=size, mlp_ratio=4,
                                      norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=2,
                                      patch_size=patch, qkv_bias=True, use_rel_pos=True,
                                      global_attn_indexes=[1], window_size=14, out_chans=256),
        prompt_encoder=PromptEncoder(embed_dim=256, image_embedding_size=(size // patch, size // patch),
                                     input_image_size=(size, size), mask_in_chans=16),
        mask_decoder=MaskDecoder(num_multimask_outputs=3,
                                 transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048,
                                                               num_heads=8),
                                 transformer_dim=256, iou_head_depth=3, iou_head_hidden_dim=256),
        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375])
    return sam.eval()


def images(sizes=((64, 96), (80, 80), (56, 104)), seed=0) -> list[np.ndarray]:
    """Small RGB images: a few flat rectangles on a flat background, plus noise."""
    rng = np.random.default_rng(seed)
    out = []
    for h, w in sizes:
        im = np.full((h, w, 3), rng.integers(0, 255, 3), np.float64)
        for _ in range(4):
            y0, x0 = rng.integers(0, h - 10), rng.integers(0, w - 10)
            im[y0:y0 + rng.integers(8, h // 2), x0:x0 + rng.integers(8, w // 2)] = rng.integers(0, 255, 3)
        out.append(np.clip(im + rng.normal(0, 6, im.shape), 0, 255).astype(np.uint8))
    return out


def as_mask(seg) -> np.ndarray:
    if isinstance(seg, np.ndarray):
        return seg.astype(bool)
    if isinstance(seg["counts"], list):  # uncompressed RLE
        h, w = seg["size"]
        seg = mask_utils.frPyObjects(seg, h, w)
    return mask_utils.decode(seg).astype(bool)


def assert_same_masks(ref: list[dict], got: list[dict]) -> None:
    """Same number of masks, in the same order; each IoU >= 0.99 to its counterpart, the same
    scores to 1e-4, the same boxes, points and crop boxes."""
    assert len(got) == len(ref)
    for a, b in zip(ref, got):
        ma, mb = as_mask(a["segmentation"]), as_mask(b["segmentation"])
        assert ma.shape == mb.shape
        iou = (ma & mb).sum() / max((ma | mb).sum(), 1)
        assert iou >= 0.99
        assert abs(a["predicted_iou"] - b["predicted_iou"]) <= 1e-4
        assert abs(a["stability_score"] - b["stability_score"]) <= 1e-4
        assert a["area"] == b["area"] and a["bbox"] == b["bbox"] and a["crop_box"] == b["crop_box"]
        assert np.allclose(a["point_coords"], b["point_coords"])
        assert set(a) == set(b)


# Thresholds so that masks survive a random SAM: its IoU predictions are ~0-0.4 and its logits small
# (a small stability offset makes the stability scores non-trivial; both filters still drop some
# masks), and its masks are scattered over the whole image, so every box is the image's and box
# NMS would keep one mask: NMS runs but suppresses nothing at 1.0.
SURVIVE = dict(pred_iou_thresh=0.05, stability_score_thresh=0.05, stability_score_offset=0.05,
               box_nms_thresh=1.0)


def run_both(sam, ims, **kw):
    ref = SamAutomaticMaskGenerator(sam, **kw)
    got = BatchedMaskGenerator(sam, **kw).generate_batch(ims)
    return [ref.generate(im) for im in ims], got


def test_same_masks_as_segment_anything(sam256):
    sam = sam256
    ims = images(((64, 96),))
    ref, got = run_both(sam, ims, points_per_side=3, output_mode="coco_rle", **SURVIVE)
    assert sum(len(r) for r in ref) >= 3, "the settings must let masks through"
    assert any(0 < a["stability_score"] < 1 for r in ref for a in r)
    for r, g in zip(ref, got):
        assert_same_masks(r, g)  # batching may move logits by float rounding: the contract, not equality


def test_small_decoder_chunks_and_batches_change_nothing(sam256):
    sam = sam256
    ims = images(((64, 96), (56, 104)), seed=1)
    kw = dict(points_per_side=3, output_mode="coco_rle", **SURVIVE)
    base = BatchedMaskGenerator(sam, **kw).generate_batch(ims)
    other = BatchedMaskGenerator(sam, points_per_batch=5, decoder_chunk=3, upsample_chunk=2, image_batch=2,
                                 **kw).generate_batch(ims)
    single = [BatchedMaskGenerator(sam, **kw).generate(im) for im in ims]
    for a, b, c in zip(base, other, single):
        assert_same_masks(a, b)
        assert_same_masks(a, c)


def test_crop_layers_and_cross_crop_nms(sam256):
    sam = sam256
    ims = images(((36, 44),), seed=2)  # small: inner crop edges near the image edges (kept)
    ref, got = run_both(sam, ims, points_per_side=2, crop_n_layers=1, crop_n_points_downscale_factor=2,
                        crop_nms_thresh=0.8, output_mode="binary_mask", **SURVIVE)
    assert any(a["crop_box"] != [0, 0, im.shape[1], im.shape[0]] for r, im in zip(ref, ims) for a in r)
    for r, g in zip(ref, got):
        assert_same_masks(r, g)


def test_small_region_removal_and_uncompressed_rle(sam256):
    sam = sam256
    ims = images(((64, 80),), seed=3)
    ref, got = run_both(sam, ims, points_per_side=4, min_mask_region_area=60, output_mode="uncompressed_rle",
                        **SURVIVE)
    plain = BatchedMaskGenerator(sam, points_per_side=4, output_mode="uncompressed_rle", **SURVIVE).generate(ims[0])
    assert [a["segmentation"] for a in plain] != [a["segmentation"] for a in ref[0]]  # regions were removed
    for r, g in zip(ref, got):
        assert_same_masks(r, g)
        assert [a["segmentation"] for a in r] == [b["segmentation"] for b in g]


def test_default_thresholds_drop_a_random_sams_masks_alike(sam256):
    sam = sam256
    ims = images(((48, 64),), seed=4)
    threads = torch.get_num_threads()
    ref, got = run_both(sam, ims, points_per_side=3, output_mode="coco_rle")
    assert ref == got
    assert torch.get_num_threads() == threads  # the decoder's 1 CPU thread is restored


def test_remove_small_regions_batch_matches_segment_anything():
    from segment_anything.utils.amg import remove_small_regions

    rng = np.random.default_rng(5)
    masks = rng.random((12, 30, 40)) < np.linspace(0.05, 0.9, 12)[:, None, None]
    masks[3] = False  # empty
    masks[4] = False
    masks[4, 5:8, 5:8] = True  # a single small island: kept (the largest), but reported changed
    masks[5] = True
    masks[5, 10:12, 10:12] = False  # a small hole
    for area in (3, 10, 50):
        new, changed = remove_small_regions_batch(masks, area)
        for i, m in enumerate(masks):
            ref, ch1 = remove_small_regions(m, area, mode="holes")
            ref, ch2 = remove_small_regions(ref, area, mode="islands")
            assert np.array_equal(new[i], ref), (area, i)
            assert changed[i] == (ch1 or ch2), (area, i)


def test_bad_settings():
    class Model:
        device = torch.device("cpu")

    with pytest.raises(ValueError, match="exactly one"):
        BatchedMaskGenerator(Model(), points_per_side=None)
    with pytest.raises(ValueError, match="output_mode"):
        BatchedMaskGenerator(Model(), output_mode="png")


def test_tiny_sam_in_the_ingest_stage_batched_equals_reference(tmp_path):
    """zss's `test_tiny` SAM (random weights) loaded through the real checkpoint path: `--masks sam`
    (batched, the default) and `masks.impl=reference` (segment-anything's generator) give the same
    masks (count, IoU >= 0.99, scores to 1e-4) and in fact the same JSON, so the shard bytes do
    not depend on the implementation."""
    import json

    from zss.ingest.stages.masks import MaskConfig, MaskStage

    ckpt = save_random_sam("test_tiny", tmp_path / "sam.safetensors", seed=0)
    ims = np.stack(images(((48, 64),), seed=6))
    batch = {"index": np.arange(1), "status": np.array(["ok"], dtype=object),
             "error": np.array([""], dtype=object), "size": np.array([[48, 64]], dtype=np.int32), "image": ims}
    out = {}
    for impl in ("batched", "reference"):
        cfg = MaskConfig(mode="sam", sam_checkpoint=f"test_tiny:{ckpt}", points_per_side=3, impl=impl,
                         pred_iou_thresh=0.05, stability_score_thresh=0.0)
        stage = MaskStage(cfg)
        assert type(stage.generator).__name__ == ("BatchedMaskGenerator" if impl == "batched"
                                                  else "SamAutomaticMaskGenerator")
        out[impl] = list(stage(batch)["masks"])
    ref, got = json.loads(out["reference"][0]), json.loads(out["batched"][0])
    assert len(ref) >= 1, "the thresholds keep masks"
    for a in ref + got:
        a["segmentation"]["counts"] = a["segmentation"]["counts"].encode()
    assert_same_masks(ref, got)
    assert out["batched"] == out["reference"]


def test_cli_rejects_an_unknown_impl_in_one_line(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "zss.cli", "ingest", f"folder:{tmp_path / 'src'}", str(tmp_path / "o"),
                        "--masks", "sam", "--sam-checkpoint", f"test_tiny:{tmp_path / 'sam.pth'}",
                        "--set", "masks.impl=fast"], capture_output=True, text=True, timeout=180)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == ["zss: error: config masks.impl must be batched or reference, got 'fast'"]
