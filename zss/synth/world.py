"""The synthetic world: a deterministic stand-in for COCO Captions, SA-1B and an mmseg val set.

Classes differ by colour *and* texture, so a frozen random ViT's patch features still separate them
(DESIGN.md, "Models when nothing can be downloaded"). Every image is written in the layouts real data
uses — COCO-captions JSON + image folder, SA-1B per-image JSON with COCO RLE, img2dataset-style
webdataset tars, and an mmseg-style `images/` + `annotations/` tree — so the same readers serve the
synthetic world and real corpora.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from zss.errors import ZssError
from zss.formats.rle import encode_mask


@dataclass(frozen=True)
class SynthClass:
    """One category: its names (first = canonical) and how it looks."""

    names: tuple[str, ...]
    colour: tuple[int, int, int]
    texture: str
    stuff: bool
    adjectives: tuple[str, ...] = ()
    plural: str = ""


CLASSES: tuple[SynthClass, ...] = (
    SynthClass(("grass", "lawn"), (60, 150, 50), "blades", True, ("green", "fresh")),
    SynthClass(("water", "sea"), (40, 90, 200), "waves", True, ("blue", "calm")),
    SynthClass(("sand",), (215, 190, 130), "speckle", True, ("dry", "yellow")),
    SynthClass(("wall", "brick wall"), (150, 70, 60), "bricks", True, ("brick", "old")),
    SynthClass(("sky",), (150, 200, 240), "gradient", True, ("blue", "clear")),
    SynthClass(("ball",), (220, 40, 40), "stripes", False, ("striped", "red"), "balls"),
    SynthClass(("traffic cone", "cone"), (250, 140, 20), "bands", False, ("orange",), "traffic cones"),
    SynthClass(("box", "crate"), (130, 90, 40), "checker", False, ("cardboard", "wooden"), "boxes"),
    SynthClass(("flower",), (220, 60, 200), "dots", False, ("pink", "small"), "flowers"),
    SynthClass(("tire", "tyre"), (35, 35, 35), "rings", False, ("black", "old"), "tires"),
)
STUFF = [i for i, c in enumerate(CLASSES) if c.stuff]
THINGS = [i for i, c in enumerate(CLASSES) if not c.stuff]
SHAPES = {5: "circle", 6: "triangle", 7: "rect", 8: "circle", 9: "circle"}
NUMBERS = {1: "a", 2: "two", 3: "three"}
IGNORE = 255


def _texture(kind: str, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A [h, w] modulation in roughly [-1, 1] that characterises a class beyond its colour."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi)
    period = rng.uniform(7, 11)
    if kind == "blades":
        return np.sin(xx * 2 * np.pi / 4 + phase) * 0.6 + rng.normal(0, 0.4, (h, w))
    if kind == "waves":
        return np.sin(yy * 2 * np.pi / period + np.sin(xx / 9.0) * 2 + phase)
    if kind == "speckle":
        return (rng.random((h, w)) > 0.85).astype(np.float32) * 1.6 - 0.4
    if kind == "bricks":
        row = (yy // 8).astype(int)
        mortar = (yy % 8 < 1.5) | (((xx + (row % 2) * 8) % 16) < 1.5)
        return np.where(mortar, 1.0, -0.2)
    if kind == "gradient":
        return (yy / max(h, 1)) * 1.2 - 0.6
    if kind == "stripes":
        return np.sign(np.sin((xx + yy) * 2 * np.pi / period + phase))
    if kind == "bands":
        return np.where(np.sin(yy * 2 * np.pi / period + phase) > 0.3, 1.0, -0.3)
    if kind == "checker":
        return np.where(((xx // 6).astype(int) + (yy // 6).astype(int)) % 2 == 0, 0.8, -0.8)
    if kind == "dots":
        return np.where((np.sin(xx * 2 * np.pi / 6) * np.sin(yy * 2 * np.pi / 6)) > 0.5, 1.0, -0.3)
    if kind == "rings":
        r = np.hypot(yy - h / 2, xx - w / 2)
        return np.sign(np.sin(r * 2 * np.pi / 6 + phase))
    raise ValueError(kind)


def _paint(img: np.ndarray, region: np.ndarray, cls: SynthClass, rng: np.random.Generator) -> None:
    """Fill `region` of `img` with the class colour modulated by its texture, jittered per image."""
    h, w = region.shape
    colour = np.clip(np.array(cls.colour, np.float32) + rng.normal(0, 12, 3), 0, 255)
    amp = 55.0 if cls.texture != "speckle" else 45.0
    tex = _texture(cls.texture, h, w, rng)
    pix = colour[None, None, :] + amp * tex[..., None]
    img[region] = pix[region]


def _shape_mask(shape: str, h: int, w: int, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    if shape == "circle":
        return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    if shape == "rect":
        return (np.abs(yy - cy) <= r * 0.85) & (np.abs(xx - cx) <= r)
    if shape == "triangle":
        top, bottom = cy - r, cy + r
        half = (yy - top) / max(bottom - top, 1) * r * 0.8
        return (yy >= top) & (yy <= bottom) & (np.abs(xx - cx) <= half)
    raise ValueError(shape)


def _draw_scene(h: int, w: int, rng: np.random.Generator):
    """One image: 1–3 horizontal stuff bands, then 1–4 objects. Returns image, labels, segments."""
    img = np.zeros((h, w, 3), np.float32)
    label = np.zeros((h, w), np.uint8)
    segments: list[tuple[int, np.ndarray]] = []  # (class id, binary mask) of unlabeled regions
    n_bands = int(rng.integers(1, 4))
    stuff = list(rng.choice(STUFF, size=n_bands, replace=False))
    if 4 in stuff:  # the sky, when present, is on top
        stuff.remove(4)
        stuff.insert(0, 4)
    cuts = np.sort(rng.uniform(0.25, 0.75, n_bands - 1)) * h
    edges = [0, *cuts.astype(int).tolist(), h]
    for band, cid in enumerate(stuff):
        region = np.zeros((h, w), bool)
        region[edges[band]:edges[band + 1]] = True
        _paint(img, region, CLASSES[cid], rng)
        label[region] = cid
        segments.append((cid, region))
    n_objects = int(rng.integers(1, 5))
    objects = rng.choice(THINGS, size=n_objects, replace=True)
    boundary = np.zeros((h, w), bool)
    for cid in objects:
        r = rng.uniform(0.1, 0.2) * min(h, w)
        cy, cx = rng.uniform(r, h - r), rng.uniform(r, w - r)
        region = _shape_mask(SHAPES[int(cid)], h, w, cy, cx, r)
        if region.sum() < 16:
            continue
        _paint(img, region, CLASSES[int(cid)], rng)
        label[region] = cid
        for k, (other, m) in enumerate(segments):
            segments[k] = (other, m & ~region)
        segments.append((int(cid), region))
        edge = region ^ (np.roll(region, 1, 0) & np.roll(region, -1, 0)
                         & np.roll(region, 1, 1) & np.roll(region, -1, 1))
        boundary |= edge
    img += rng.normal(0, 6, img.shape)
    segments = [(c, m) for c, m in segments if m.sum() >= 16]
    return np.clip(img, 0, 255).astype(np.uint8), label, boundary, segments


def _phrase(cid: int, count: int, rng: np.random.Generator) -> str:
    """A noun phrase for a class: articles/numbers, adjectives, plurals, compounds, synonyms."""
    cls = CLASSES[cid]
    name = cls.names[int(rng.integers(len(cls.names)))] if rng.random() < 0.3 else cls.names[0]
    adj = f"{cls.adjectives[int(rng.integers(len(cls.adjectives)))]} " if (
        cls.adjectives and rng.random() < 0.5) else ""
    if cls.stuff:
        det = "the " if rng.random() < 0.6 else "some " if cid in (0, 1, 2) else "a "
        return f"{det}{adj}{name}"
    if count > 1 and name == cls.names[0] and cls.plural:
        return f"{NUMBERS.get(count, 'several')} {adj}{cls.plural}"
    return f"{'an' if (adj or name)[0] in 'aeiou' else 'a'} {adj}{name}"


TEMPLATES = (
    "{a}",
    "{a} next to {b}",
    "a photo of {a} and {b}",
    "{a} on {b} in the scene",
    "there is {a} near {b} on a sunny day",
    "a picture showing {a}",
    "{a}, {b} and {c}",
)


def _captions(label_counts: dict[int, int], rng: np.random.Generator) -> list[str]:
    """1–5 captions, each naming a random subset of what the image holds, plus distractor words."""
    present = sorted(label_counts)
    out = []
    for _ in range(int(rng.integers(1, 6))):
        k = int(rng.integers(1, min(3, len(present)) + 1))
        chosen = [int(c) for c in rng.choice(present, size=k, replace=False)]
        phrases = [_phrase(c, label_counts[c], rng) for c in chosen]
        usable = [t for t in TEMPLATES if t.count("{") == k]
        text = usable[int(rng.integers(len(usable)))].format(**dict(zip("abc", phrases)))
        out.append(text[0].upper() + text[1:] + ("." if rng.random() < 0.7 else ""))
    return out


def _sa1b_record(image_id: int, file_name: str, h: int, w: int, segments, rng) -> dict[str, Any]:
    """SA-1B per-image JSON: class-agnostic masks (no label), as the real annotation files hold."""
    anns = []
    for k, (_, m) in enumerate(segments):
        ys, xs = np.nonzero(m)
        anns.append({
            "id": image_id * 1000 + k,
            **encode_mask(m),  # segmentation (COCO RLE), area, bbox xywh — the shards' own encoder
            "predicted_iou": round(float(rng.uniform(0.85, 1.0)), 4),
            "stability_score": round(float(rng.uniform(0.9, 1.0)), 4),
            "point_coords": [[float(xs[len(xs) // 2]), float(ys[len(ys) // 2])]],
            "crop_box": [0, 0, w, h],
        })
    return {"image": {"image_id": image_id, "width": w, "height": h, "file_name": file_name},
            "annotations": anns}


def _jpeg(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    """Tar member with fixed metadata so the same world is the same bytes."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def _image_size(size: int, rng: np.random.Generator) -> tuple[int, int]:
    aspect = float(rng.choice([1.0, 1.0, 1.25, 0.8]))
    return size, int(round(size * aspect))


def make_world(out: str | Path, n_train: int = 64, n_val: int = 16, size: int = 224,
               seed: int = 0, wds_shard_size: int = 100) -> dict[str, Any]:
    """Write the synthetic world under `out` and return its description (also in world.json)."""
    if n_train < 1 or n_val < 1 or size < 32:
        raise ZssError("synth needs --n-images >= 1, --n-val >= 1 and --size >= 32")
    out = Path(out)
    dirs = {k: out / k for k in ("train/images", "train/annotations", "train/sa1b", "train/wds",
                                 "val/images", "val/annotations")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    classes = [";".join(c.names) for c in CLASSES]
    (out / "classes.txt").write_text("\n".join(classes) + "\n")

    coco: dict[str, Any] = {"info": {"description": "zss synthetic world", "seed": seed},
                            "images": [], "annotations": []}
    tar = None
    ann_id = 1
    for i in range(n_train):
        rng = np.random.default_rng([seed, 0, i])
        h, w = _image_size(size, rng)
        img, label, _, segments = _draw_scene(h, w, rng)
        counts: dict[int, int] = {}
        for cid, _m in segments:
            counts[cid] = counts.get(cid, 0) + (0 if CLASSES[cid].stuff and cid in counts else 1)
        caps = _captions(counts, rng)
        image_id = i + 1
        name = f"{image_id:012d}"
        jpg = _jpeg(img)
        (dirs["train/images"] / f"{name}.jpg").write_bytes(jpg)
        (dirs["train/annotations"] / f"{name}.png").write_bytes(_png(label))
        coco["images"].append({"id": image_id, "file_name": f"{name}.jpg", "width": w, "height": h})
        for cap in caps:
            coco["annotations"].append({"id": ann_id, "image_id": image_id, "caption": cap})
            ann_id += 1
        (dirs["train/sa1b"] / f"sa_{image_id}.jpg").write_bytes(jpg)
        record = _sa1b_record(image_id, f"sa_{image_id}.jpg", h, w, segments, rng)
        (dirs["train/sa1b"] / f"sa_{image_id}.json").write_text(json.dumps(record))
        # SA-1B itself has no captions: the sidecar `zss ingest sa1b:` reads holds this image's captions
        (dirs["train/sa1b"] / f"sa_{image_id}.txt").write_text("\n".join(caps) + "\n")
        if i % wds_shard_size == 0:
            if tar is not None:
                tar.close()
            tar = tarfile.open(dirs["train/wds"] / f"{i // wds_shard_size:05d}.tar", "w",
                               format=tarfile.USTAR_FORMAT)
        key = f"{i:09d}"
        meta = {"key": key, "caption": caps[0], "captions": caps, "url": f"synth://{name}.jpg",
                "width": w, "height": h}
        _add(tar, f"{key}.jpg", jpg)
        _add(tar, f"{key}.txt", caps[0].encode())
        _add(tar, f"{key}.json", json.dumps(meta).encode())
    if tar is not None:
        tar.close()
    (out / "train" / "captions.json").write_text(json.dumps(coco))

    for i in range(n_val):
        rng = np.random.default_rng([seed, 1, i])
        h, w = _image_size(size, rng)
        img, label, boundary, _ = _draw_scene(h, w, rng)
        label = label.copy()
        label[boundary] = IGNORE
        name = f"{100000 + i:012d}"
        (dirs["val/images"] / f"{name}.jpg").write_bytes(_jpeg(img))
        (dirs["val/annotations"] / f"{name}.png").write_bytes(_png(label))

    info = {"schema": 1, "classes": classes, "seed": seed, "n_train": n_train, "n_val": n_val,
            "size": size, "ignore_index": IGNORE,
            "layouts": {"coco": "train/captions.json + train/images", "sa1b": "train/sa1b",
                        "webdataset": "train/wds", "mmseg_val": "val/images + val/annotations",
                        "train_ground_truth": "train/annotations"}}
    (out / "world.json").write_text(json.dumps(info, indent=2))
    return info
