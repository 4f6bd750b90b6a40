"""Eval-area fixtures: a colour-prototype Segmenter, a random tiny OpenCLIP checkpoint, tree builders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

COLOURS = {"red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0),
           "yellow": (1.0, 1.0, 0.0), "black": (0.0, 0.0, 0.0), "white": (1.0, 1.0, 1.0)}


class ColourSegmenter(torch.nn.Module):
    """A real Segmenter whose dense feature is a patch's mean colour and whose text feature is the colour
    a prompt names: cosine similarity of centred colours, so pure colour regions are classified exactly.
    `bias_x` adds a position-dependent feature (column index) to tell slide from whole-image runs."""

    def __init__(self, patch_size: int = 4, default_size: int = 32, bias_x: float = 0.0):
        super().__init__()
        self.patch_size = patch_size
        self.default_size = default_size
        self.bias_x = bias_x
        self.scale = torch.nn.Parameter(torch.ones(()))  # a parameter so .to()/.eval() behave as usual

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        rows = []
        for text in texts:
            rgb = next((c for name, c in COLOURS.items() if name in text), (0.5, 0.5, 0.5))
            rows.append([v - 0.5 for v in rgb] + [0.0])
        return F.normalize(torch.tensor(rows) + 1e-6, dim=-1)

    def encode_dense(self, images: torch.Tensor) -> torch.Tensor:
        assert images.shape[-1] % self.patch_size == 0 and images.shape[-2] % self.patch_size == 0
        x = F.avg_pool2d(images, self.patch_size) - 0.5
        b, _, h, w = x.shape
        pos = torch.arange(w, dtype=x.dtype).view(1, 1, 1, w).expand(b, 1, h, w) * self.bias_x
        return F.normalize(torch.cat([x, pos], dim=1) * self.scale, dim=1)


@pytest.fixture
def colour_model() -> ColourSegmenter:
    return ColourSegmenter().eval()


def colour_image(h: int, w: int, split: int, left: str = "red", right: str = "blue") -> np.ndarray:
    """An RGB uint8 image: `left` colour in columns < split, `right` colour after."""
    img = np.zeros((h, w, 3), dtype=np.uint8)
    img[:, :split] = np.array(COLOURS[left]) * 255
    img[:, split:] = np.array(COLOURS[right]) * 255
    return img


def save_png(arr: np.ndarray, path, palette: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(arr.astype(np.uint8), mode="P" if palette else None)
    if palette:
        im.putpalette([v for i in range(256) for v in ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)])
    im.save(path)


@pytest.fixture(scope="session")
def tiny_clip_ckpt(tmp_path_factory) -> str:
    """A random-init `zss-tiny-vit` OpenCLIP checkpoint saved locally (the real loading path)."""
    from zss.models.clip_dense import save_random_openclip

    path = tmp_path_factory.mktemp("clip") / "tiny_vit.safetensors"
    save_random_openclip("zss-tiny-vit", path, seed=0)
    return f"openclip:zss-tiny-vit:{path}"


@pytest.fixture
def segmenter_cls() -> type[ColourSegmenter]:
    return ColourSegmenter


@pytest.fixture
def make_colour_image():
    return colour_image


@pytest.fixture
def write_png():
    return save_png


def _jpg(path, h: int, w: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)


def _label(h: int, w: int, values: list[int]) -> np.ndarray:
    """Vertical stripes of the given label values."""
    lab = np.zeros((h, w), dtype=np.uint8)
    for i, v in enumerate(values):
        lab[:, i * w // len(values):(i + 1) * w // len(values)] = v
    return lab


# raw label stripes written for every benchmark's two images (id, values)
RAW = {
    "voc": [("2007_000033", [0, 1, 15, 255]), ("2007_000042", [0, 20, 255, 7])],
    "context": [("2008_000002", [0, 1, 59, 30]), ("2008_000003", [12, 0, 5, 59])],
    "stuff": [("000000000139", [0, 170, 255, 80]), ("000000000285", [23, 91, 255, 0])],
    "object": [("000000000139", [0, 80, 1, 255]), ("000000000285", [0, 0, 17, 255])],
    "city": [("frankfurt/frankfurt_000000_000294", [0, 18, 255, 10]),
             ("lindau/lindau_000000_000019", [13, 255, 2, 0])],
    "ade": [("ADE_val_00000001", [0, 1, 150, 75]), ("ADE_val_00000002", [3, 0, 12, 150])],
}


@pytest.fixture(scope="session")
def bench_root(tmp_path_factory):
    """One data root holding every standard layout with two tiny images each (docs/eval.md)."""
    root = tmp_path_factory.mktemp("benchmarks")
    h, w = 12, 16
    voc = root / "VOCdevkit" / "VOC2012"
    for i, (sid, vals) in enumerate(RAW["voc"]):
        _jpg(voc / "JPEGImages" / f"{sid}.jpg", h, w, i)
        save_png(_label(h, w, vals), voc / "SegmentationClass" / f"{sid}.png", palette=True)
    _jpg(voc / "JPEGImages" / "2007_999999.jpg", h, w, 9)           # not in val.txt: never read
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_000033\n2007_000042\n")
    ctx = root / "VOCdevkit" / "VOC2010"
    for i, (sid, vals) in enumerate(RAW["context"]):
        _jpg(ctx / "JPEGImages" / f"{sid}.jpg", h, w, i)
        save_png(_label(h, w, vals), ctx / "SegmentationClassContext" / f"{sid}.png")
    (ctx / "ImageSets" / "SegmentationContext").mkdir(parents=True)
    (ctx / "ImageSets" / "SegmentationContext" / "val.txt").write_text("2008_000002\n2008_000003\n")
    coco = root / "coco_stuff164k"
    for i, ((sid, stuff), (_, obj)) in enumerate(zip(RAW["stuff"], RAW["object"])):
        _jpg(coco / "images" / "val2017" / f"{sid}.jpg", h, w, i)
        save_png(_label(h, w, stuff), coco / "annotations" / "val2017" / f"{sid}_labelTrainIds.png")
        save_png(_label(h, w, obj), coco / "annotations" / "val2017" / f"{sid}_instanceTrainIds.png")
    city = root / "cityscapes"
    for i, (sid, vals) in enumerate(RAW["city"]):
        Image.fromarray(np.full((h, w, 3), 40 * i, np.uint8)).save(
            _mk(city / "leftImg8bit" / "val" / f"{sid}_leftImg8bit.png"))
        save_png(_label(h, w, vals), city / "gtFine" / "val" / f"{sid}_gtFine_labelTrainIds.png")
        save_png(_label(h, w, [7] * 4), city / "gtFine" / "val" / f"{sid}_gtFine_labelIds.png")  # not read
    ade = root / "ADEChallengeData2016"
    for i, (sid, vals) in enumerate(RAW["ade"]):
        _jpg(ade / "images" / "validation" / f"{sid}.jpg", h, w, i)
        save_png(_label(h, w, vals), ade / "annotations" / "validation" / f"{sid}.png")
    return root


def _mk(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def raw_labels() -> dict:
    """What `bench_root` wrote: benchmark family -> [(sample id, label stripe values)]."""
    return RAW


@pytest.fixture(scope="session")
def simzss_model_dir(tmp_path_factory):
    """A SimZSS model directory as the recipe exports it (docs/contracts.md): a random ViT-S/14
    backbone file recorded by name/checkpoint/sha256, an untrained small text tower, config.json."""
    import json
    from dataclasses import asdict

    from safetensors.torch import save_file

    from zss.models.backbone import load_backbone
    from zss.models.random_init import save_random_timm
    from zss.recipes.simzss.text_tower import TextConfig, TextTower

    root = tmp_path_factory.mktemp("simzss_run")
    ckpt = save_random_timm("vit_small_patch14_dinov2", root / "vits14.safetensors", img_size=56, seed=0)
    spec = load_backbone("vit_small_patch14_dinov2", ckpt, img_size=56).spec
    text = TextConfig(width=32, heads=2, layers=1)
    torch.manual_seed(0)
    tower = TextTower(text, int(spec["embed_dim"]))
    model_dir = root / "model"
    model_dir.mkdir()
    save_file({k: v.contiguous() for k, v in tower.state_dict().items()}, str(model_dir / "model.safetensors"))
    config = {"kind": "simzss", "schema": 1, "backbone": spec, "text": asdict(text),
              "embed_dim": int(spec["embed_dim"]), "tokenizer": "clip-bpe", "global": "mean"}
    (model_dir / "config.json").write_text(json.dumps(config))
    return root  # a run directory: load_segmenter resolves root/model
