"""Dense open-vocabulary inference: image -> per-class probabilities -> label map.

The protocol follows the training-free segmentation papers (MaskCLIP, SCLIP, ClearCLIP, SimZSS),
which all evaluate through mmsegmentation with the same steps, reproduced here without mmcv:

1. resize so the short side is `short_side` (mmcv `imrescale` to scale (2048, short_side): the long
   side is capped at `max_long_side`), bilinear;
2. slide a `crop` window with `stride` (windows are clamped inside the image, so every window has the
   same size) or run the whole image; each window's dense features are compared (cosine) with the text
   embeddings, upsampled to the window and averaged where windows overlap;
   `score: sigmoid` (Talk2DINO) turns each window's cosine into sigmoid(cos) before upsampling; `fit`
   fits a window that is not a patch multiple to the grid: `pad` (black bottom/right, then crop the
   logits back), `floor` (NACLIP: drop the remainder, stretch the floored grid's logits over the whole
   window) or `crop` (SimZSS's COCO loader: drop the remainder, which is then not scored);
3. optional PAMR refinement, at the label size after upsampling (`pamr_at: label`, as SCLIP and
   NACLIP do), at the resized image size (`pamr_at: input`) or on every window (`pamr_at: window`,
   Talk2DINO);
   then optional mask-consistent refinement (`refine: masks`, zss.eval.refine): the logits averaged
   over each mask made online from the model's own dense features;
4. upsample the cosine logits (bilinear) to the label size, multiply by `logit_scale`, softmax over
   all text queries, take the max over each class's synonyms; with `area_thd` (SCLIP VOC21) the
   foreground classes whose argmax area is at most `area_thd` of the image's foreground area get
   probability 0; argmax; pixels whose best probability is under `prob_thd` go to the background class.
   With `bg_score` (Talk2DINO) the background instead has a constant score in the `score` space
   (Talk2DINO: 0.55 against sigmoid(cos)): argmax over the classes' best score, pixels whose best
   score is not above `bg_score` become background (a tie goes to background, mmseg's argmax).

PixelCLIP's protocol squashes the whole image to `squash` x `squash` and upsamples the dense features
(not the logits) to `feature_size` x `feature_size` before the cosine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from zss.errors import ZssError
from zss.eval.pamr import pamr
from zss.eval.refine import refine_logits
from zss.eval.templates import embed_words, get_templates
from zss.formats.vocab import Vocabulary
from zss.models.segmenter import raw_text_encoder, span_encoder
from zss.utils.config import setting
from zss.utils.device import autocast


@dataclass
class InferenceConfig:
    """One evaluation protocol. `short_side: null` and `crop: 0` = the model's default input size;
    `short_side: 0` keeps the image size; `stride: 0` = crop / 2."""

    short_side: Optional[int] = setting(336, ge=0)
    max_long_side: int = setting(2048, ge=1)
    mode: str = setting("slide", choices=("slide", "whole"))  # slide | whole
    crop: int = setting(224, ge=0)
    stride: int = setting(112, ge=0)
    batch_size: int = setting(16, ge=1)  # windows per forward pass
    logit_scale: float = setting(40.0, gt=0)
    prob_thd: float = setting(0.0, ge=0, le=1)  # > 0: low-confidence pixels -> background class
    background_words: bool = True  # False: background only through prob_thd
    templates: str = "imagenet80"
    pamr_steps: int = setting(0, ge=0)
    pamr_dilations: list[int] = field(default_factory=lambda: [8, 16])
    pamr_at: str = "input"         # input (the resized image) | label (after upsampling) | window
    score: str = setting("cosine", choices=("cosine", "sigmoid"))  # sigmoid: Talk2DINO's sigmoid(cos)
    window_align_corners: bool = False  # upsampling a window's scores to the window (Talk2DINO: true)
    template_mean: str = setting("normalized", choices=("normalized", "raw"))  # raw: mean of raw embeddings
    fit: str = setting("pad", choices=("pad", "floor", "crop"))  # a window that is not a patch multiple
    area_thd: float = 0.0          # > 0: drop foreground classes covering <= area_thd of the foreground
    bg_score: float = 0.0          # > 0: background = constant score in `score` space (Talk2DINO: vs sigmoid(cos))
    squash: int = 0                # > 0 (whole mode): resize the image to squash x squash
    feature_size: int = 0          # > 0: upsample dense features to this grid before the cosine
    fp16: bool = True              # autocast on CUDA only
    # mask-consistent inference (zss.eval.refine): class scores averaged over each online mask
    refine: str = setting("none", choices=("none", "masks"))
    masks: str = setting("slic", choices=("slic", "feature-kmeans", "sam"))  # how refine=masks makes masks
    mask_k: int = setting(8, ge=1)             # feature-kmeans: clusters (= masks) per image
    mask_iters: int = setting(20, ge=1)        # feature-kmeans: at most this many Lloyd steps
    slic_size: float = setting(18.0, gt=0)     # slic: superpixel side in pixels at the inference size
    slic_compactness: float = setting(50.0, gt=0)  # slic: position vs colour (larger = squarer)
    sam_checkpoint: Optional[str] = None       # sam: KIND:PATH (vit_b | vit_l | vit_h | test_tiny)
    sam_points_per_side: int = setting(16, ge=1)  # sam: point grid (segment-anything's default 32)
    sam_pred_iou_thresh: float = setting(0.88, ge=0, le=1)
    sam_stability_thresh: float = setting(0.95, ge=0, le=1)
    refine_alpha: float = setting(1.0, ge=0, le=1)  # 1 = the mask mean; < 1 blends in the plain scores

    def validate(self) -> None:
        if self.mode not in ("slide", "whole"):
            raise ZssError(f"inference mode must be 'slide' or 'whole', not {self.mode!r}")
        if self.mode == "slide" and (self.crop < 0 or self.stride < 0):
            raise ZssError("crop and stride must be >= 0")
        if self.short_side is not None and self.short_side < 0:
            raise ZssError("short_side must be >= 0 (0 keeps the size) or null (the model's size)")
        if self.batch_size < 1:
            raise ZssError("batch_size must be >= 1")
        if self.pamr_at not in ("input", "label", "window"):
            raise ZssError(f"pamr_at must be 'input', 'label' or 'window', not {self.pamr_at!r}")
        if not 0.0 <= self.area_thd < 1.0:
            raise ZssError("area_thd must be in [0, 1)")
        if self.squash < 0 or self.feature_size < 0:
            raise ZssError("squash and feature_size must be >= 0")
        if self.refine == "masks" and self.masks == "sam" and not self.sam_checkpoint:
            raise ZssError("refine=masks with masks=sam needs sam_checkpoint=KIND:PATH (KIND vit_b, vit_l, vit_h "
                           "or test_tiny)")
        get_templates(self.templates)


def rescale_size(h: int, w: int, short_side: int, max_long_side: int) -> tuple[int, int]:
    """mmcv's `rescale_size(keep_ratio)` for scale (max_long_side, short_side)."""
    if short_side <= 0:
        return h, w
    factor = min(max_long_side / max(h, w), short_side / min(h, w))
    return int(h * factor + 0.5), int(w * factor + 0.5)


def window_starts(size: int, crop: int, stride: int) -> list[int]:
    """mmseg `slide_inference` window origins along one axis (last window clamped to the border)."""
    n = max(size - crop + stride - 1, 0) // stride + 1
    return [max(min(i * stride + crop, size) - crop, 0) for i in range(n)]


class Predictor:
    """A segmenter + a vocabulary + a protocol; text embeddings are computed once."""

    def __init__(self, model: torch.nn.Module, vocab: Vocabulary, cfg: InferenceConfig,
                 device: str | torch.device = "cpu"):
        cfg.validate()
        self.model = model
        self.vocab = vocab
        self.cfg = cfg
        self.device = torch.device(device)
        words, owners = vocab.queries(cfg.background_words)
        encode_raw = raw_text_encoder(model) if cfg.template_mean == "raw" else None
        if cfg.template_mean == "raw" and encode_raw is None:
            raise ZssError("template_mean=raw needs a segmenter with encode_text_raw (unnormalised text "
                           f"embeddings); {type(model).__name__} has none: pass --set template_mean=normalized")
        self.text = embed_words(model.encode_text, words, get_templates(cfg.templates),
                                encode_spans=span_encoder(model), encode_raw=encode_raw).to(self.device)
        self.owners = torch.tensor(owners, device=self.device)
        self.patch = int(model.patch_size)
        self.short_side = int(model.default_size if cfg.short_side is None else cfg.short_side)
        self.crop = int(cfg.crop or model.default_size)
        self.stride = int(cfg.stride or max(self.crop // 2, 1))
        if self.background_only_by_threshold and cfg.prob_thd <= 0 and cfg.bg_score <= 0:
            raise ZssError("background_words=false needs prob_thd > 0 or bg_score > 0 to ever predict background")

    @property
    def background_only_by_threshold(self) -> bool:
        return self.vocab.background is not None and not self.cfg.background_words

    # ----------------------------------------------------------------- dense logits
    def fitted_size(self, h: int, w: int) -> tuple[int, int]:
        """The part of an h x w window the encoder sees under `fit` (pad: the padded size)."""
        p = self.patch
        if self.cfg.fit == "pad":
            return h + (-h) % p, w + (-w) % p
        if h < p or w < p:
            raise ZssError(f"a {h}x{w} window is smaller than one {p}px patch (fit={self.cfg.fit})")
        return h // p * p, w // p * p

    def valid_size(self, image_hw: tuple[int, int], out_size: tuple[int, int]) -> tuple[int, int]:
        """The region of an `out_size` label map that `fit: crop` predicts (whole mode: the floored
        image, top-left); the full `out_size` otherwise."""
        if self.cfg.fit != "crop" or self.cfg.mode != "whole":
            return tuple(out_size)
        if self.cfg.squash > 0:
            h = w = self.cfg.squash
        else:
            h, w = rescale_size(image_hw[0], image_hw[1], self.short_side, self.cfg.max_long_side)
        fh, fw = self.fitted_size(h, w)
        return round(fh * out_size[0] / h), round(fw * out_size[1] / w)

    @torch.no_grad()
    def _window_logits(self, crops: torch.Tensor) -> torch.Tensor:
        """[B,3,h,w] crops -> scores [B,Q,h,w]: cosine (or sigmoid(cos)), fitted to the patch grid by
        `fit`, upsampled to the window, PAMR-refined per window with `pamr_at: window`."""
        _, _, h, w = crops.shape
        fh, fw = self.fitted_size(h, w)
        x = F.pad(crops, [0, fw - w, 0, fh - h]) if self.cfg.fit == "pad" else crops[:, :, :fh, :fw]
        with autocast(self.device, self.cfg.fp16):
            feats = self.model.encode_dense(x)
        if self.cfg.feature_size > 0:
            size = (self.cfg.feature_size, self.cfg.feature_size)
            feats = F.normalize(F.interpolate(feats.float(), size=size, mode="bilinear", align_corners=False), dim=1)
        logits = torch.einsum("bchw,qc->bqhw", feats.float(), self.text)
        if self.cfg.score == "sigmoid":
            logits = torch.sigmoid(logits)
        size = (h, w) if self.cfg.fit == "floor" else (fh, fw)
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=self.cfg.window_align_corners)
        if self.cfg.fit == "crop" and (fh, fw) != (h, w):
            logits = F.pad(logits, [0, w - fw, 0, h - fh], mode="replicate")
        logits = logits[:, :, :h, :w]
        if self.cfg.pamr_steps > 0 and self.cfg.pamr_at == "window":
            logits = pamr(crops, logits, self.cfg.pamr_steps, tuple(self.cfg.pamr_dilations))
        return logits

    @torch.no_grad()
    def logits(self, image: torch.Tensor) -> torch.Tensor:
        """Image [3,H,W] in [0,1] at the inference size -> cosine logits [Q,H,W]."""
        _, h, w = image.shape
        if self.cfg.mode == "whole":
            return self._window_logits(image[None])[0]
        ch, cw = min(self.crop, h), min(self.crop, w)
        boxes = [(y, x) for y in window_starts(h, ch, self.stride) for x in window_starts(w, cw, self.stride)]
        acc = torch.zeros(len(self.owners), h, w, device=image.device)
        count = torch.zeros(1, h, w, device=image.device)
        for i in range(0, len(boxes), self.cfg.batch_size):
            chunk = boxes[i:i + self.cfg.batch_size]
            crops = torch.stack([image[:, y:y + ch, x:x + cw] for y, x in chunk])
            for (y, x), lg in zip(chunk, self._window_logits(crops)):
                acc[:, y:y + ch, x:x + cw] += lg
                count[:, y:y + ch, x:x + cw] += 1
        return acc / count

    # ----------------------------------------------------------------- full prediction
    def prepare(self, image: np.ndarray) -> torch.Tensor:
        """uint8 [H,W,3] -> float [3,h,w] in [0,1] at the protocol's inference size."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise ZssError(f"expected an RGB image [H,W,3], got shape {image.shape}")
        x = torch.from_numpy(np.ascontiguousarray(image)).to(self.device).permute(2, 0, 1).float() / 255.0
        h, w = rescale_size(image.shape[0], image.shape[1], self.short_side, self.cfg.max_long_side)
        if self.cfg.squash > 0:
            if (h, w) != tuple(image.shape[:2]):  # the short-side resize happens first, as PixelCLIP's loader does
                x = F.interpolate(x[None], size=(h, w), mode="bilinear", align_corners=False)[0].clamp(0, 1)
            h = w = self.cfg.squash
        if (h, w) != tuple(image.shape[:2]):
            x = F.interpolate(x[None], size=(h, w), mode="bilinear", align_corners=False)[0].clamp(0, 1)
        return x

    @torch.no_grad()
    def label_logits(self, image: np.ndarray, out_size: tuple[int, int] | None = None) -> torch.Tensor:
        """uint8 [H,W,3] -> cosine logits [Q,H',W'] at `out_size` (default: the image size), PAMR applied."""
        x = self.prepare(image)
        logits = self.logits(x)
        size = tuple(out_size or image.shape[:2])
        steps, dil = self.cfg.pamr_steps, tuple(self.cfg.pamr_dilations)
        if steps > 0 and self.cfg.pamr_at == "input":
            logits = pamr(x[None], logits[None], steps, dil)[0]
        logits = F.interpolate(logits[None], size=size, mode="bilinear", align_corners=False)[0]
        if steps > 0 and self.cfg.pamr_at == "label":
            img = F.interpolate(x[None], size=size, mode="bilinear", align_corners=False)
            logits = pamr(img, logits[None], steps, dil)[0]
        if self.cfg.refine == "masks":
            logits = refine_logits(self.model, x, logits, self.cfg.masks, self.cfg.mask_k, self.cfg.mask_iters,
                                   self.cfg.refine_alpha, self.cfg.slic_size, self.cfg.slic_compactness,
                                   {"spec": self.cfg.sam_checkpoint, "points": self.cfg.sam_points_per_side,
                                    "iou": self.cfg.sam_pred_iou_thresh,
                                    "stability": self.cfg.sam_stability_thresh})
        return logits

    def _per_class(self, values: torch.Tensor, fill: float) -> torch.Tensor:
        """[Q,H,W] per query -> [K,H,W] max over each class's synonyms (classes without a query: `fill`)."""
        out = torch.full((len(self.vocab), *values.shape[1:]), fill, device=values.device, dtype=values.dtype)
        index = self.owners.view(-1, 1, 1).expand_as(values)
        return out.scatter_reduce_(0, index, values, reduce="amax", include_self=True)

    @torch.no_grad()
    def probabilities(self, image: np.ndarray, out_size: tuple[int, int] | None = None) -> torch.Tensor:
        """uint8 [H,W,3] -> class probabilities [K,H',W'] at `out_size` (default: the image size)."""
        logits = self.label_logits(image, out_size)
        return self._per_class(torch.softmax(logits * self.cfg.logit_scale, dim=0), 0.0)

    def _drop_small_classes(self, probs: torch.Tensor) -> torch.Tensor:
        """SCLIP's area_thd: zero the probabilities of foreground classes whose argmax area is at most
        `area_thd` times the image's total foreground argmax area."""
        k = probs.shape[0]
        area = torch.bincount(probs.argmax(dim=0).flatten(), minlength=k).to(probs.dtype)
        fg = torch.ones(k, dtype=torch.bool, device=probs.device)
        if self.vocab.background is not None:
            fg[self.vocab.background] = False
        keep = area > self.cfg.area_thd * area[fg].sum()
        keep[~fg] = True
        return probs * keep.to(probs.dtype).view(-1, 1, 1)

    @torch.no_grad()
    def predict(self, image: np.ndarray, out_size: tuple[int, int] | None = None) -> np.ndarray:
        """uint8 [H,W,3] -> label ids int64 [H',W'] (background rule applied)."""
        bg = self.vocab.background
        if self.cfg.bg_score > 0 and bg is not None:
            scores = self._per_class(self.label_logits(image, out_size), float("-inf"))
            scores[bg] = float("-inf")
            best, pred = scores.max(dim=0)
            pred[best <= self.cfg.bg_score] = bg
            return pred.cpu().numpy().astype(np.int64)
        probs = self.probabilities(image, out_size)
        if self.cfg.area_thd > 0:
            probs = self._drop_small_classes(probs)
        best, pred = probs.max(dim=0)
        if self.cfg.prob_thd > 0 and bg is not None:
            pred[best < self.cfg.prob_thd] = bg
        return pred.cpu().numpy().astype(np.int64)
