"""Every protocol resolves, per benchmark, to the peers' own settings (a table written by hand from their
configs: SCLIP/NACLIP/ClearCLIP/ProxyCLIP configs/cfg_*.py + cls_*.txt and segmentor defaults,
Talk2DINO configs/*/eval_*.yml + datasets/*.py, PixelCLIP eval.sh + datasets/*.json)."""

from pathlib import Path

import json
import pytest

from zss.errors import ZssError
from zss.eval.benchmarks import get_benchmark
from zss.eval.protocols import (backbone_key, benchmarks_of, default_protocol, matching_published, protocol_info,
                                protocol_names, resolve)
from zss.eval.templates import get_templates

# short side, max long side, mode, window, stride, logit scale, prob_thd, area_thd, bg_score,
# templates (name, count), PAMR steps, classes, text queries
COLS = ("short_side", "max_long_side", "mode", "crop", "stride", "logit_scale", "prob_thd", "area_thd",
        "bg_score", "templates", "n_templates", "pamr_steps", "n_classes", "n_queries")


def row(short, mode="slide", crop=224, stride=112, scale=40.0, prob=0.0, area=0.0, bg=0.0, tpl="imagenet80",
        pamr=0, k=0, q=0, long=2048):
    n_tpl = {"imagenet80": 80, "talk2dino7": 7, "imagenet_select": 8}[tpl]
    return (short, long, mode, crop, stride, scale, prob, area, bg, tpl, n_tpl, pamr, k, q)


PEERS = {
    "sclip": {  # clip_segmentor.py: logit_scale 40, slide 224/112; cfg_*.py per set
        "voc21": row(336, scale=65, prob=0.1, area=0.1, k=21, q=56),   # background = 26 stuff words
        "context60": row(336, scale=50, prob=0.1, k=60, q=60),
        "coco_object": row(336, scale=50, prob=0.1, k=81, q=113),
        "voc20": row(336, k=20, q=30),
        "context59": row(336, k=59, q=59),
        "coco_stuff": row(448, k=171, q=171),
        "cityscapes": row(560, k=19, q=19),
        "ade20k": row(336, k=150, q=150),
    },
    "naclip": {  # naclip.py defaults; PAMR 10 (README: test_all.sh ... on); VOC slide_crop=0 (whole)
        "voc21": row(336, mode="whole", prob=0.1, pamr=10, k=21, q=56),
        "context60": row(336, prob=0.1, pamr=10, k=60, q=60),
        "coco_object": row(336, prob=0.1, pamr=10, k=81, q=113),
        "voc20": row(336, mode="whole", pamr=10, k=20, q=30),
        "context59": row(336, pamr=10, k=59, q=59),
        "coco_stuff": row(336, pamr=10, k=171, q=171),
        "cityscapes": row(560, pamr=10, k=19, q=19),
        "ade20k": row(336, pamr=10, k=150, q=150),
    },
    "clearclip": {  # clearclip_segmentor.py: logit_scale 50, slide 448/224; one word per class
        "voc21": row(448, crop=448, stride=224, scale=50, prob=0.5, k=21, q=21),
        "context60": row(448, crop=448, stride=224, scale=50, prob=0.15, k=60, q=60),
        "coco_object": row(448, crop=448, stride=224, scale=50, prob=0.4, k=81, q=81),
        "voc20": row(448, crop=448, stride=224, scale=50, k=20, q=20),
        "context59": row(448, crop=448, stride=224, scale=50, k=59, q=59),
        "coco_stuff": row(448, crop=448, stride=224, scale=50, k=171, q=171),
        "cityscapes": row(448, crop=224, stride=224, scale=50, k=19, q=19),
        "ade20k": row(448, crop=448, stride=224, scale=50, k=150, q=150),
    },
    "proxyclip": {  # proxyclip_segmentor.py: slide 336/112, logit_scale 40; '; '-separated background words
        "voc21": row(336, crop=336, prob=0.2, k=21, q=46),
        "context60": row(336, crop=336, prob=0.15, k=60, q=60),
        "coco_object": row(336, crop=336, prob=0.25, k=81, q=97),
        "voc20": row(336, crop=336, k=20, q=20),
        "context59": row(336, crop=336, k=59, q=59),
        "coco_stuff": row(336, crop=336, k=171, q=171),
        "cityscapes": row(448, crop=224, k=19, q=19),
        "ade20k": row(448, crop=336, k=150, q=150),
    },
    "talk2dino": {  # datasets/*.py: (2048, 448), slide 448/224; eval_*_pamr.yml: bg_thresh, PAMR, sub_imagenet_template
        "voc21": row(448, crop=448, stride=224, bg=0.55, tpl="talk2dino7", pamr=10, k=21, q=20),
        "context60": row(448, crop=448, stride=224, bg=0.55, tpl="talk2dino7", pamr=10, k=60, q=59),
        "coco_object": row(448, crop=448, stride=224, bg=0.55, tpl="talk2dino7", pamr=10, k=81, q=80),
        "voc20": row(448, crop=448, stride=224, tpl="talk2dino7", pamr=10, k=20, q=20),
        "context59": row(448, crop=448, stride=224, tpl="talk2dino7", pamr=10, k=59, q=59),
        "coco_stuff": row(448, crop=448, stride=224, tpl="talk2dino7", pamr=10, k=171, q=171),
        "cityscapes": row(448, crop=448, stride=224, tpl="talk2dino7", pamr=10, k=19, q=19),
        "ade20k": row(448, crop=448, stride=224, tpl="talk2dino7", pamr=10, k=150, q=150),
    },
    "pixelclip": {  # 640 short side (max 2560), whole image squashed to 320, imagenet_select, argmax
        name: row(640, mode="whole", crop=224, stride=112, tpl="imagenet_select", k=k, q=k, long=2560)
        for name, k in (("voc20", 20), ("context59", 59), ("coco_stuff", 171), ("cityscapes", 19),
                        ("ade20k", 150))
    },
}


def _but(peer_row: tuple, **cols) -> tuple:
    """`peer_row` with the named COLS replaced."""
    return tuple(cols.get(col, value) for col, value in zip(COLS, peer_row))


# zss's own synonym lists (text queries per benchmark) with SCLIP's settings, except no area threshold
# and ADE20K at short side 448 (zss/manifests/protocols/zss.yaml)
ZSS_QUERIES = {"voc21": 62, "context60": 79, "coco_object": 127, "voc20": 35, "context59": 78, "coco_stuff": 199,
               "cityscapes": 20, "ade20k": 214}
PEERS["zss"] = {bench: _but(sclip, area_thd=0.0, n_queries=ZSS_QUERIES[bench],
                            short_side=448 if bench == "ade20k" else sclip[0])
                for bench, sclip in PEERS["sclip"].items()}


def _resolved_row(protocol: str, bench: str) -> tuple:
    res = resolve(protocol, bench, model="openclip:ViT-B-16")  # PixelCLIP sizes the image by the arch
    cfg = res.config
    vocab = get_benchmark(bench).vocabulary(Path("."), res.classes)
    n_queries = len(vocab.queries(cfg.background_words)[0])
    return (cfg.short_side, cfg.max_long_side, cfg.mode, cfg.crop, cfg.stride, cfg.logit_scale, cfg.prob_thd,
            cfg.area_thd, cfg.bg_score, cfg.templates, len(get_templates(cfg.templates)), cfg.pamr_steps,
            len(vocab), n_queries)


def test_every_protocol_is_in_the_table():
    assert protocol_names() == ["sclip", "clearclip", "proxyclip", "naclip", "talk2dino", "pixelclip", "zss"]
    for name in protocol_names():
        assert set(PEERS[name]) <= set(benchmarks_of(name))
        assert set(benchmarks_of(name)) - set(PEERS[name]) <= {"synth", "folder"}
        info = protocol_info(name)
        assert info["repository"] and info["files"] and info["title"]


@pytest.mark.parametrize("protocol,bench", [(p, b) for p in PEERS for b in PEERS[p]])
def test_resolved_settings_match_the_peers(protocol, bench):
    got = dict(zip(COLS, _resolved_row(protocol, bench)))
    want = dict(zip(COLS, PEERS[protocol][bench]))
    if want["mode"] == "whole":  # window and stride do not apply to whole-image inference
        got.pop("crop"), got.pop("stride"), want.pop("crop"), want.pop("stride")
    assert got == want


def test_peer_specific_details():
    v21 = resolve("sclip", "voc21")
    assert v21.classes == "sclip/voc21" and v21.source == "wangf3014/SCLIP: configs/cfg_voc21.py"
    assert v21.config.pamr_at == "label"
    sclip_bg = get_benchmark("voc21").vocabulary(Path("."), "sclip/voc21").classes[0]
    assert len(sclip_bg) == 26 and "background" not in sclip_bg and sclip_bg[0] == "sky"
    assert get_benchmark("voc21").vocabulary(Path("."), "sclip/voc21").background == 0
    person = get_benchmark("voc20").vocabulary(Path("."), "sclip/voc20").classes[14]
    assert person[:2] == ["person", "person in shirt"] and len(person) == 7
    pc = resolve("pixelclip", "ade20k", model="openclip:ViT-B-16").config
    assert (pc.squash, pc.feature_size) == (320, 64)
    assert get_templates("imagenet_select")[-1] == "A photo of a {} in the scene"
    nac = resolve("naclip", "context60").config
    assert (nac.pamr_steps, nac.pamr_dilations, nac.pamr_at) == (10, [8, 16], "label")
    t2d = resolve("talk2dino", "voc21").config
    assert t2d.background_words is False and get_templates("talk2dino7")[1] == "a bad photo of a {}."
    assert resolve("sclip", "ade20k", ["short_side=448"]).config.short_side == 448


def test_defaults_errors_and_published_rows():
    assert default_protocol("voc21") == "sclip" and default_protocol("folder") == "zss"
    with pytest.raises(ZssError, match="unknown protocol 'nope'"):
        resolve("nope", "voc21")
    with pytest.raises(ZssError, match="does not define benchmark 'voc21'"):
        resolve("pixelclip", "voc21")
    with pytest.raises(ZssError, match="does not define benchmark 'folder'"):
        resolve("sclip", "folder")
    rows = matching_published("sclip", "openclip:ViT-B-16:openai")
    assert len(rows) == 1 and rows[0]["mIoU"]["voc21"] == 59.63 and "README" in rows[0]["source"]
    assert matching_published("sclip", "openclip:ViT-L-14:openai") == []
    assert [r["mIoU"]["ade20k"] for r in matching_published("pixelclip", "openclip:ViT-B-16")] == [18.7, 17.4]


def test_published_rows_match_model_directories_by_their_backbone(tmp_path):
    """An imported PixelCLIP model (OpenAI ViT-B/16, QuickGELU arch) is set beside PixelCLIP's rows;
    a SimZSS model on DINOv2 ViT-B/14 has no ViT-B/16 row to be set beside."""
    pix, sim = tmp_path / "pix", tmp_path / "sim"
    pix.mkdir(), sim.mkdir()
    (pix / "config.json").write_text(json.dumps({"kind": "pixelclip", "schema": 1, "clip": {"arch": "ViT-B-16-quickgelu"}}))
    (sim / "config.json").write_text(json.dumps({"kind": "simzss", "schema": 1,
                                                 "backbone": {"name": "vit_base_patch14_reg4_dinov2"}}))
    assert [r["method"] for r in matching_published("pixelclip", str(pix))] == \
        ["PixelCLIP (SA-1B masks)", "PixelCLIP (DINO masks)"]
    assert matching_published("pixelclip", str(sim)) == []
    assert matching_published("sclip", str(tmp_path / "nothing-here")) == []
    assert backbone_key("vit_base_patch16_224") == backbone_key("ViT-B/16") == "vitb16"


def _model_dir(root: Path, name: str, config: dict) -> str:
    (root / name).mkdir()
    (root / name / "config.json").write_text(json.dumps({"schema": 1, **config}))
    return str(root / name)


def test_pixelclip_sizes_the_image_by_the_models_architecture(tmp_path):
    """configs/pixelclip_convnext_base.yaml L4 CLIP_RESOLUTION 640; pixelclip/config.py L36 320 (ViT-B)."""
    convnext = _model_dir(tmp_path, "cx", {"kind": "pixelclip", "clip": {"arch": "convnext_base_w_320"}})
    vit = _model_dir(tmp_path, "vit", {"kind": "pixelclip", "clip": {"arch": "ViT-B-16-quickgelu"}})
    res = resolve("pixelclip", "ade20k", model=convnext)
    assert (res.config.squash, res.config.feature_size) == (640, 64)
    assert res.record()["squash_from"] == "convnext_base_w_320 -> convnext"
    assert res.record()["inference"]["squash"] == 640
    assert resolve("pixelclip", "ade20k", model=vit).config.squash == 320
    assert resolve("pixelclip", "voc20", model="openclip:convnext_base_w_320").config.squash == 640
    assert resolve("pixelclip", "voc20", model="openclip:zss-tiny-convnext").config.squash == 640
    over = resolve("pixelclip", "ade20k", ["squash=512"], model=convnext)
    assert over.config.squash == 512 and "squash_from" not in over.record()
    assert resolve("pixelclip", "ade20k", ["squash=512"]).config.squash == 512  # no model needed then
    with pytest.raises(ZssError, match="architecture"):
        resolve("pixelclip", "ade20k", model=str(tmp_path / "no-config"))
    with pytest.raises(ZssError, match="architecture"):
        resolve("pixelclip", "ade20k")
    assert "squash_from" not in resolve("sclip", "ade20k", model=convnext).record()


def test_talk2dino_protocol_follows_the_pamr_configs():
    """README L231-257 runs eval_*_pamr.yml: sigmoid masks, PAMR(10, [1,2,4,8,12,24]) per window,
    window upsampling align_corners=True, raw template mean."""
    for bench in PEERS["talk2dino"]:
        res = resolve("talk2dino", bench)
        cfg = res.config
        assert (cfg.pamr_steps, cfg.pamr_dilations, cfg.pamr_at) == (10, [1, 2, 4, 8, 12, 24], "window")
        assert (cfg.score, cfg.window_align_corners, cfg.template_mean, cfg.fit) == ("sigmoid", True, "raw", "pad")
        assert res.classes == f"talk2dino/{bench}" and "_pamr.yml" in res.source


def test_talk2dino_class_names_are_mmsegs():
    """mmseg 0.30 CLASSES (voc.py, coco_stuff.py, cityscapes.py, ade.py) and Talk2DINO's own VOC20 list."""
    def classes(bench):
        return get_benchmark(bench).vocabulary(Path("."), f"talk2dino/{bench}").classes
    v21 = get_benchmark("voc21").vocabulary(Path("."), "talk2dino/voc21")
    assert v21.background == 0 and len(v21.queries(False)[0]) == 20
    assert (v21.classes[4], v21.classes[11]) == (["boat"], ["diningtable"])
    assert classes("voc20")[3] == ["boat"] and classes("voc20")[15] == ["pottedplant"]
    assert classes("coco_stuff")[9] == ["traffic light"]
    assert classes("ade20k")[44] == ["chest of drawers"] and classes("ade20k")[7] == ["bed"]
    assert classes("cityscapes")[7] == ["traffic sign"]
    sizes = {b: len(classes(b)) for b in PEERS["talk2dino"]}
    assert sizes == {"voc21": 21, "context60": 60, "coco_object": 81, "voc20": 20, "context59": 59,
                     "coco_stuff": 171, "cityscapes": 19, "ade20k": 150}


def test_whole_image_fit_rule_per_protocol():
    """NACLIP floors the grid (clip/model.py L96, naclip.py L64-68); every other protocol pads."""
    assert resolve("naclip", "voc21").config.fit == "floor"
    assert resolve("naclip", "voc20").config.fit == "floor"
    for proto in ("sclip", "clearclip", "proxyclip", "talk2dino", "zss"):
        assert resolve(proto, "ade20k").config.fit == "pad"
    assert resolve("pixelclip", "ade20k", model="openclip:ViT-B-16").config.fit == "pad"
    assert resolve("zss", "ade20k", ["fit=crop"]).config.fit == "crop"
