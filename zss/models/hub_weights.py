"""A timm backbone the shards took from the hub (no local checkpoint file) gets its weights written
into a model directory at export, so the folder segments without that hub cache.

Only the local hub cache is read (huggingface_hub's offline mode, no network probe): export never
downloads. When the weights are not in the cache the record stays as it was and
`zss.formats.model_dir.bundle_backbone` warns that the folder needs them where it runs.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from zss.errors import ZssError
from zss.utils.hashing import sha256_file

log = logging.getLogger(__name__)


@contextmanager
def cache_only() -> Iterator[None]:
    """huggingface_hub reads its cache and never the network while this holds."""
    from huggingface_hub import constants

    env, flag = os.environ.get("HF_HUB_OFFLINE"), constants.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = flag
        if env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = env


WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def in_hub_cache(name: str) -> bool:
    """Whether the local hub cache holds the weights timm would load for `name` (a file check: no
    model is built, nothing is fetched)."""
    import timm
    from huggingface_hub import try_to_load_from_cache

    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except (RuntimeError, ValueError, KeyError):
        return False
    repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    return bool(repo) and any(isinstance(try_to_load_from_cache(repo, f), str) for f in WEIGHT_FILES)


def save_hub_backbone(record: dict[str, Any], model_dir: str | Path) -> dict[str, Any]:
    """`record` (a manifest's backbone record) with the hub weights it names saved to
    `model_dir/backbone.safetensors` (at the record's img_size, as the features were made), or
    `record` unchanged when it names a file, is not a timm model, or the cache lacks the weights."""
    name = str(record.get("name") or "")
    if record.get("checkpoint") or not name or name.startswith(("open_clip/", "openclip:")):
        return record
    if not in_hub_cache(name):
        return record
    from safetensors.torch import save_file

    from zss.models.backbone import create_timm_vit

    try:
        with cache_only():
            vit = create_timm_vit(name, int(record.get("img_size") or 224), None, pretrained=True)
    except ZssError as exc:
        log.debug("hub weights of %s not in the local cache: %s", name, exc)
        return record
    path = Path(model_dir) / "backbone.safetensors"
    save_file({k: v.detach().cpu().contiguous() for k, v in vit.state_dict().items()}, str(path))
    return {**record, "checkpoint": path.name, "sha256": sha256_file(path), "from_hub": name}
