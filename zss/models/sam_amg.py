"""Batched automatic masks: segment-anything's `SamAutomaticMaskGenerator`, several images at once.

`BatchedMaskGenerator(sam, **settings).generate_batch(images)` returns, for each image, what
`SamAutomaticMaskGenerator(sam, **settings).generate(image)` returns (same settings, same records,
same order), computed differently:

- encoder: the crops of all images (resized exactly as segment-anything resizes them) go through
  the image encoder `image_batch` at a time;
- decoder: the point prompts of all crops of all images are decoded together, `points_per_batch`
  at a time (in pieces of `decoder_chunk`), each prompt reading its own crop's embedding; the first
  transformer layer's image side, which does not depend on the prompt (the embedding plus the
  no-mask embedding and its key / value / query projections), is computed once per crop;
- post-processing runs on the device, vectorised over the masks of a prompt batch: the
  predicted-IoU filter comes first and only the kept masks are upsampled (segment-anything's own
  two interpolations, per crop, `upsample_chunk` masks per call), then stability scores, thresholds,
  boxes and the crop-edge filter on tensors; per-crop and cross-crop box NMS are torchvision's
  batched_nms on the same inputs in the same order as the reference (so ties break alike); small
  regions are removed with one labelling call for all masks of an image; COCO RLE is encoded once
  per image from the final masks by pycocotools.

Every number that decides a mask comes from the reference's own arithmetic (the same modules, the
same interpolation calls, the same formulas), only on differently sized batches; on this machine's
CPU kernels the results are bit-identical (the tests compare records), and in general batching may
move logits by float rounding, hence the contract: the same number of masks, each with IoU >= 0.99
to its counterpart, the same scores to 1e-4.

On a CPU the decoder and the upsampling are bound by memory traffic: they run in small pieces
(`decoder_chunk` 4, `upsample_chunk` 4 masks) whose tensors stay in the allocator's reused memory
and the cache; on a GPU, whole batches.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops.boxes import batched_nms, box_area

from segment_anything.utils.amg import (
    batched_mask_to_box,
    build_all_layer_point_grids,
    calculate_stability_score,
    generate_crop_boxes,
)
from segment_anything.utils.transforms import ResizeLongestSide

from zss.models.sam_amg_ops import decode_masks, near_crop_edge, remove_small_regions_batch, uncompressed_rles

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")


@dataclass
class _Crop:
    image: int                 # index of the image in the batch
    box: list[int]             # x0, y0, x1, y1 in the image
    layer: int                 # crop layer (0: the whole image)
    input_size: tuple[int, int]  # (h, w) of the resized crop fed to the encoder


class BatchedMaskGenerator:
    """segment-anything's automatic mask generator over batches of images (same arguments)."""

    def __init__(
        self,
        model,
        points_per_side: int | None = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: list[np.ndarray] | None = None,
        min_mask_region_area: int = 0,
        output_mode: str = "binary_mask",
        image_batch: int = 8,
        decoder_chunk: int | None = None,
        upsample_chunk: int | None = None,
        threads: int | None = 1,
    ) -> None:
        if (points_per_side is None) == (point_grids is None):
            raise ValueError("exactly one of points_per_side or point_grids must be given")
        if output_mode not in OUTPUT_MODES:
            raise ValueError(f"unknown output_mode {output_mode!r}: expected one of {', '.join(OUTPUT_MODES)}")
        if points_per_side is not None:
            self.point_grids = build_all_layer_point_grids(points_per_side, crop_n_layers,
                                                           crop_n_points_downscale_factor)
        else:
            self.point_grids = point_grids
        if output_mode == "coco_rle":
            from pycocotools import mask as _  # noqa: F401
        if min_mask_region_area > 0:
            import scipy.ndimage  # noqa: F401
        self.model = model
        self.transform = ResizeLongestSide(model.image_encoder.img_size)
        self.points_per_batch = points_per_batch
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.crop_n_points_downscale_factor = crop_n_points_downscale_factor
        self.min_mask_region_area = min_mask_region_area
        self.output_mode = output_mode
        self.image_batch = image_batch
        # CPU: small pieces (memory-bound; see the module doc). GPU: whole prompt batches.
        cpu = model.device.type == "cpu"
        self.decoder_chunk = decoder_chunk or (4 if cpu else points_per_batch)
        self.upsample_chunk = upsample_chunk or (4 if cpu else 64)
        # CPU: torch intra-op threads for the decoder and post-processing (many small operations,
        # where OpenMP fork/join costs more than it saves; None keeps torch's setting)
        self.threads = threads if cpu else None
        self.timings: dict[str, float] = defaultdict(float)  # seconds per stage, accumulated

    @property
    def device(self) -> torch.device:
        return self.model.device

    def _tick(self, stage: str, start: float) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        now = time.perf_counter()
        self.timings[stage] += now - start
        return now

    @torch.no_grad()
    def generate(self, image: np.ndarray) -> list[dict[str, Any]]:
        """Masks of one HWC uint8 image (as `SamAutomaticMaskGenerator.generate`)."""
        return self.generate_batch([image])[0]

    @torch.no_grad()
    def generate_batch(self, images: list[np.ndarray]) -> list[list[dict[str, Any]]]:
        """Masks of each HWC uint8 image: one list of records per image."""
        t = time.perf_counter()
        crops: list[_Crop] = []
        for i, image in enumerate(images):
            boxes, layers = generate_crop_boxes(image.shape[:2], self.crop_n_layers, self.crop_overlap_ratio)
            crops += [_Crop(i, box, layer, (0, 0)) for box, layer in zip(boxes, layers)]
        embeddings = self._encode(images, crops)
        t = self._tick("encoder", t)
        old = torch.get_num_threads()
        if self.threads is not None and self.threads != old:
            torch.set_num_threads(self.threads)
        try:
            per_crop = self._decode(images, crops, embeddings)
            del embeddings
            return [self._finish(images[i], [(c, per_crop[j]) for j, c in enumerate(crops) if c.image == i])
                    for i in range(len(images))]
        finally:
            if torch.get_num_threads() != old:
                torch.set_num_threads(old)

    # -- encoder ---------------------------------------------------------------------------------

    def _encode(self, images: list[np.ndarray], crops: list[_Crop]) -> torch.Tensor:
        """Image embeddings [n_crops, C, h, w] of every crop, `image_batch` crops per encoder call."""
        model = self.model
        out = []
        for lo in range(0, len(crops), self.image_batch):
            batch = []
            for crop in crops[lo:lo + self.image_batch]:
                x0, y0, x1, y1 = crop.box
                image = images[crop.image][y0:y1, x0:x1, :]
                if model.image_format != "RGB":
                    image = image[..., ::-1]
                resized = self.transform.apply_image(image)  # segment-anything's own resize
                crop.input_size = tuple(resized.shape[:2])
                x = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()
                batch.append(model.preprocess(x[None])[0])
            out.append(model.image_encoder(torch.stack(batch)))
        return torch.cat(out)

    # -- decoder and per-batch post-processing -----------------------------------------------------

    def _prompts(self, crops: list[_Crop]) -> tuple[torch.Tensor, np.ndarray, torch.Tensor]:
        """All point prompts, crop after crop: model-frame coords [P, 2] (as the reference feeds
        them), crop-frame coords [P, 2] (float64, as the reference records them), crop index [P]."""
        coords, points, owner = [], [], []
        for j, crop in enumerate(crops):
            x0, y0, x1, y1 = crop.box
            size = (y1 - y0, x1 - x0)
            pts = self.point_grids[crop.layer] * np.array(size)[None, ::-1]
            coords.append(self.transform.apply_coords(pts, size))
            points.append(pts)
            owner.append(np.full(len(pts), j))
        coords_t = torch.as_tensor(np.concatenate(coords), device=self.device)
        return coords_t, np.concatenate(points), torch.as_tensor(np.concatenate(owner), device=self.device)

    def _decode(self, images, crops: list[_Crop], embeddings: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Masks of every crop that pass the IoU, stability and crop-edge filters (before NMS),
        at crop resolution."""
        model = self.model
        coords, points, owner = self._prompts(crops)
        points_t = torch.as_tensor(points, device=self.device)
        image_pe = model.prompt_encoder.get_dense_pe()
        crop_boxes = torch.as_tensor([c.box for c in crops], device=self.device)
        image_boxes = torch.as_tensor([[0, 0, images[c.image].shape[1], images[c.image].shape[0]] for c in crops],
                                      device=self.device)
        kept: dict[int, list[dict[str, torch.Tensor]]] = defaultdict(list)
        for lo in range(0, len(coords), self.points_per_batch):
            t = time.perf_counter()
            sl = slice(lo, lo + self.points_per_batch)
            in_points = coords[sl][:, None, :]
            in_labels = torch.ones(in_points.shape[0], 1, dtype=torch.int, device=self.device)
            sparse, dense = model.prompt_encoder(points=(in_points, in_labels), boxes=None, masks=None)
            parts = [decode_masks(model.mask_decoder, embeddings, owner[sl][i:i + self.decoder_chunk], image_pe,
                                   sparse[i:i + self.decoder_chunk], dense[i:i + self.decoder_chunk])
                     for i in range(0, len(sparse), self.decoder_chunk)]
            low_res = torch.cat([p[0] for p in parts])
            iou_preds = torch.cat([p[1] for p in parts])
            del parts
            t = self._tick("decoder", t)
            self._post_batch(low_res, iou_preds, points_t[sl], owner[sl], crops, crop_boxes, image_boxes, kept)
            self._tick("post", t)
        out = []
        for j in range(len(crops)):
            parts = kept.get(j, [])
            if parts:
                out.append({k: torch.cat([p[k] for p in parts]) for k in parts[0]})
            else:
                out.append({})
        return out

    def _post_batch(self, low_res, iou_preds, points, owner, crops, crop_boxes, image_boxes, kept) -> None:
        """The reference's `_process_batch` for a batch of prompts from several crops, vectorised:
        the IoU filter first, then only the kept masks are upsampled (per crop), then stability,
        thresholds, boxes and the crop-edge filter."""
        model = self.model
        m = low_res.shape[1]
        low_res = low_res.flatten(0, 1)
        iou = iou_preds.flatten(0, 1)
        owner = owner.repeat_interleave(m)
        points = points.repeat_interleave(m, dim=0)
        keep = iou > self.pred_iou_thresh if self.pred_iou_thresh > 0.0 else torch.ones_like(iou, dtype=torch.bool)
        idx = keep.nonzero()[:, 0]
        for j in owner[idx].unique().tolist():  # upsampling per crop, on its kept masks only
            crop = crops[j]
            x0, y0, x1, y1 = crop.box
            for sel in idx[owner[idx] == j].split(self.upsample_chunk):
                masks = model.postprocess_masks(low_res[sel][:, None], crop.input_size, (y1 - y0, x1 - x0))[:, 0]
                stability = calculate_stability_score(masks, model.mask_threshold, self.stability_score_offset)
                if self.stability_score_thresh > 0.0:
                    ok = stability >= self.stability_score_thresh
                    masks, sel, stability = masks[ok], sel[ok], stability[ok]
                masks = masks > model.mask_threshold
                boxes = batched_mask_to_box(masks)
                near = near_crop_edge(boxes, crop_boxes[j], image_boxes[j])
                if bool(near.any()):
                    masks, sel, stability, boxes = masks[~near], sel[~near], stability[~near], boxes[~near]
                if len(sel):
                    kept[j].append({"masks": masks, "iou_preds": iou[sel], "points": points[sel],
                                    "stability_score": stability, "boxes": boxes})

    # -- per image: NMS, small regions, records ----------------------------------------------------

    def _finish(self, image: np.ndarray, crops: list[tuple[_Crop, dict[str, torch.Tensor]]]) -> list[dict[str, Any]]:
        t = time.perf_counter()
        h, w = image.shape[:2]
        parts = []
        for crop, data in crops:  # the reference's per-crop NMS and uncropping
            if not data:
                continue
            keep = batched_nms(data["boxes"].float(), data["iou_preds"],
                               torch.zeros(len(data["boxes"]), device=data["boxes"].device),
                               iou_threshold=self.box_nms_thresh)
            x0, y0, x1, y1 = crop.box
            masks = data["masks"][keep]
            if (x0, y0, x1, y1) != (0, 0, w, h):
                masks = F.pad(masks, (x0, w - x1, y0, h - y1), value=0)
            offset = torch.tensor([[x0, y0, x0, y0]], device=masks.device)
            parts.append({"masks": masks, "iou_preds": data["iou_preds"][keep],
                          "points": data["points"][keep] + torch.tensor([[x0, y0]], device=masks.device),
                          "stability_score": data["stability_score"][keep],
                          "boxes": data["boxes"][keep] + offset,
                          "crop_boxes": torch.tensor([crop.box], device=masks.device).expand(len(keep), 4)})
        if not parts:
            self._tick("post", t)
            return []
        data = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        if len(crops) > 1:  # the reference's cross-crop NMS: prefer masks from smaller crops
            scores = 1 / box_area(data["crop_boxes"])
            keep = batched_nms(data["boxes"].float(), scores.to(data["boxes"].device),
                               torch.zeros(len(data["boxes"]), device=data["boxes"].device),
                               iou_threshold=self.crop_nms_thresh)
            data = {k: v[keep] for k, v in data.items()}
        if self.min_mask_region_area > 0:
            data = self._small_regions(data)
        records = self._records(data)
        self._tick("post", t)
        return records

    def _small_regions(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The reference's `postprocess_small_regions`: holes, then islands, smaller than
        min_mask_region_area removed from every mask (one labelling call for all masks), then NMS
        preferring unchanged masks."""
        masks = data["masks"].cpu().numpy()
        new, changed = remove_small_regions_batch(masks, self.min_mask_region_area)
        new_t = torch.as_tensor(new, device=data["masks"].device)
        boxes = batched_mask_to_box(new_t)
        scores = torch.as_tensor((~changed).astype(np.float32))
        keep = batched_nms(boxes.float().cpu(), scores, torch.zeros(len(boxes)),
                           iou_threshold=max(self.box_nms_thresh, self.crop_nms_thresh)).to(new_t.device)
        changed_t = torch.as_tensor(changed, device=new_t.device)
        data = dict(data)
        data["masks"] = torch.where(changed_t[:, None, None], new_t, data["masks"])
        data["boxes"] = torch.where(changed_t[:, None], boxes, data["boxes"])
        return {k: v[keep] for k, v in data.items()}

    def _records(self, data: dict[str, torch.Tensor]) -> list[dict[str, Any]]:
        masks = data["masks"]
        areas = masks.flatten(1).sum(1).tolist()
        boxes = data["boxes"].clone()
        boxes[:, 2:] -= boxes[:, :2]  # xyxy -> xywh
        crop = data["crop_boxes"].clone()
        crop[:, 2:] -= crop[:, :2]
        if self.output_mode == "coco_rle":
            from pycocotools import mask as mask_utils

            arr = np.asfortranarray(masks.permute(1, 2, 0).cpu().numpy().astype(np.uint8))
            segs = mask_utils.encode(arr)
            for s in segs:
                s["counts"] = s["counts"].decode("utf-8")
        elif self.output_mode == "binary_mask":
            segs = list(masks.cpu().numpy())
        else:
            segs = uncompressed_rles(masks)
        return [{"segmentation": seg, "area": area, "bbox": b, "predicted_iou": p,
                 "point_coords": [pt], "stability_score": s, "crop_box": c}
                for seg, area, b, p, pt, s, c in zip(
                    segs, areas, boxes.tolist(), data["iou_preds"].tolist(), data["points"].tolist(),
                    data["stability_score"].tolist(), crop.tolist())]
