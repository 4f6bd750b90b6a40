"""The pieces of the batched automatic mask generator (`zss.models.sam_amg`) that are not the driver:
the mask decoder over prompts of several crops, the crop-edge filter, uncompressed RLE and
small-region removal for many masks at once. Each computes what segment-anything's own function
computes (named in its docstring), on batches.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch


def _heads(attn, x: torch.Tensor) -> torch.Tensor:
    return attn._separate_heads(x, attn.num_heads)


def _attend(attn, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The core of segment-anything's `Attention.forward` on projected, head-separated q, k, v."""
    scores = q @ k.permute(0, 1, 3, 2)
    scores = scores / math.sqrt(q.shape[-1])
    scores = torch.softmax(scores, dim=-1)
    return attn.out_proj(attn._recombine_heads(scores @ v))


def decode_masks(decoder, embeddings: torch.Tensor, owner: torch.Tensor, image_pe: torch.Tensor,
                  sparse: torch.Tensor, dense: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`MaskDecoder.forward(multimask_output=True)` for prompts of several crops: prompt p reads
    the embedding of crop owner[p] (the reference repeats one crop's embedding per prompt).

    The first transformer layer's image side does not depend on the prompt until its last step
    (the image embedding plus the no-mask embedding, its key / value projections for the
    token-to-image attention and its query projection for the image-to-token attention): those are
    computed once per crop, with the same modules, and shared by the crop's prompts."""
    transformer = decoder.transformer
    output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    output_tokens = output_tokens.unsqueeze(0).expand(sparse.size(0), -1, -1)
    tokens = torch.cat((output_tokens, sparse), dim=1)
    crops, local = owner.unique(return_inverse=True)
    b, c, h, w = sparse.shape[0], embeddings.shape[1], embeddings.shape[2], embeddings.shape[3]
    shared = dense.stride(0) == 0 or bool((dense == dense[:1]).all())  # no mask prompts: always
    if not shared:  # the reference computation, prompt by prompt
        src = embeddings[owner] + dense
        pos = image_pe.expand(b, -1, -1, -1)
        hs, keys = transformer(src, pos, tokens)
    else:
        key_pe = image_pe.flatten(2).permute(0, 2, 1)                     # [1, HW, C]
        keys0 = (embeddings[crops] + dense[:1]).flatten(2).permute(0, 2, 1)  # [n, HW, C] per crop
        layer0, rest = transformer.layers[0], transformer.layers[1:]
        # layer 0, token side (skip_first_layer_pe: no PE in the self-attention)
        queries = layer0.self_attn(q=tokens, k=tokens, v=tokens)
        queries = layer0.norm1(queries)
        t2i = layer0.cross_attn_token_to_image
        k_img = keys0 + key_pe
        q = _heads(t2i, t2i.q_proj(queries + tokens))
        kk = _heads(t2i, t2i.k_proj(k_img))[local]
        vv = _heads(t2i, t2i.v_proj(keys0))[local]
        queries = layer0.norm2(queries + _attend(t2i, q, kk, vv))
        queries = layer0.norm3(queries + layer0.mlp(queries))
        # layer 0, image side: image-to-token attention, queries projected once per crop
        i2t = layer0.cross_attn_image_to_token
        qt = queries + tokens
        q_img = _heads(i2t, i2t.q_proj(k_img))[local]
        attn_out = _attend(i2t, q_img, _heads(i2t, i2t.k_proj(qt)), _heads(i2t, i2t.v_proj(queries)))
        keys = layer0.norm4(keys0[local] + attn_out)
        for layer in rest:
            queries, keys = layer(queries=queries, keys=keys, query_pe=tokens, key_pe=key_pe)
        q = queries + tokens
        k = keys + key_pe
        queries = transformer.norm_final_attn(queries + transformer.final_attn_token_to_image(q=q, k=k, v=keys))
        hs = queries
    iou_token_out = hs[:, 0, :]
    mask_tokens_out = hs[:, 1:(1 + decoder.num_mask_tokens), :]
    src = keys.transpose(1, 2).view(b, c, h, w)
    upscaled = decoder.output_upscaling(src)
    hyper_in = torch.stack([decoder.output_hypernetworks_mlps[i](mask_tokens_out[:, i, :])
                            for i in range(decoder.num_mask_tokens)], dim=1)
    b, c, h, w = upscaled.shape
    masks = (hyper_in @ upscaled.view(b, c, h * w)).view(b, -1, h, w)
    iou_pred = decoder.iou_prediction_head(iou_token_out)
    return masks[:, 1:], iou_pred[:, 1:]  # multimask output


def near_crop_edge(boxes: torch.Tensor, crop_box: torch.Tensor, image_box: torch.Tensor,
                    atol: float = 20.0) -> torch.Tensor:
    """segment-anything's `is_box_near_crop_edge` for boxes [M, 4] in the crop's frame."""
    boxes = (boxes + torch.stack([crop_box[0], crop_box[1], crop_box[0], crop_box[1]])).float()
    near_crop = torch.isclose(boxes, crop_box.float()[None], atol=atol, rtol=0)
    near_image = torch.isclose(boxes, image_box.float()[None], atol=atol, rtol=0)
    return (near_crop & ~near_image).any(1)


def uncompressed_rles(masks: torch.Tensor) -> list[dict[str, Any]]:
    """segment-anything's `mask_to_rle_pytorch` (column-major run lengths, starting with a run of
    zeros) for masks [M, H, W], from one change-point pass over all of them."""
    m, h, w = masks.shape
    flat = masks.permute(0, 2, 1).flatten(1)
    rows, cols = (flat[:, 1:] ^ flat[:, :-1]).nonzero(as_tuple=True)
    cuts = (cols + 1).cpu().numpy()
    ends = np.cumsum(torch.bincount(rows, minlength=m).cpu().numpy())
    starts = flat[:, 0].cpu().numpy()
    out = []
    for i in range(m):  # assembling the Python lists of counts
        edges = np.concatenate([[0], cuts[ends[i - 1] if i else 0:ends[i]], [h * w]])
        counts = [0] if starts[i] else []
        counts.extend(np.diff(edges).tolist())
        out.append({"size": [h, w], "counts": counts})
    return out


def remove_small_regions_batch(masks: np.ndarray, area_thresh: float) -> tuple[np.ndarray, np.ndarray]:
    """segment-anything's `remove_small_regions` (holes, then islands; 8-connectivity) on masks
    [M, H, W] at once: new masks and which changed [M]."""
    from scipy import ndimage

    structure = np.zeros((3, 3, 3), bool)
    structure[1] = True  # 8-connected within a mask, never across masks

    def small(work: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Components of each slice: labels, sizes (index = label), owning slice per label."""
        labels, n = ndimage.label(work, structure=structure)
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        owner = np.zeros(n + 1, np.int64)
        owner[labels.ravel()] = np.repeat(np.arange(len(work)), work[0].size)
        return labels, sizes, owner

    out = masks.astype(bool).copy()
    changed = np.zeros(len(out), bool)
    # holes: components of the background smaller than the threshold are filled
    labels, sizes, _ = small(~out)
    fill = sizes < area_thresh
    fill[0] = False
    holes = fill[labels]
    changed |= holes.reshape(len(out), -1).any(1)
    out |= holes
    # islands: components of the mask smaller than the threshold are removed; if every component
    # of a mask is small, its largest stays
    labels, sizes, owner = small(out)
    drop = sizes < area_thresh
    drop[0] = False
    n = len(sizes) - 1
    if n:
        comp_owner = owner[1:]
        small_comp = drop[1:]
        all_small = np.ones(len(out), bool)
        np.logical_and.at(all_small, comp_owner, small_comp)
        has = np.zeros(len(out), bool)
        has[comp_owner] = True
        all_small &= has
        # the largest component of such masks (first on ties, as np.argmax over cv2's sizes)
        order = np.lexsort((np.arange(n), -sizes[1:], comp_owner))
        first = np.ones(n, bool)
        first[1:] = comp_owner[order][1:] != comp_owner[order][:-1]
        largest = order[first] + 1
        keep_largest = np.zeros(n + 1, bool)
        keep_largest[largest[all_small[comp_owner[order[first]]]]] = True
        drop &= ~keep_largest
    # cv2's version reports a change whenever a mask has a small island, even when it keeps it
    small_any = np.zeros(len(out), bool)
    if n:
        small_any[owner[1:][(sizes < area_thresh)[1:]]] = True
    changed |= small_any
    out &= ~drop[labels]
    return out, changed
