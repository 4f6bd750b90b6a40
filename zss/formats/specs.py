"""Model specs as users type them: one spelling for an OpenCLIP model across every command.

The canonical form is `openclip:ARCH[:CKPT]` (ARCH an open_clip name such as `ViT-B-16`, CKPT a local
file or an open_clip pretrained tag). Older spellings stay accepted: `open_clip/ARCH[:CKPT]` (ingest's
`--features`, and the name recorded in shard manifests) and, where only an OpenCLIP model makes sense
(`--text-encoder`, PixelCLIP's `clip:`), a bare `ARCH[:CKPT]`.
"""

from __future__ import annotations

from zss.errors import ZssError

OPENCLIP = "openclip:"
LEGACY_OPENCLIP = "open_clip/"


def is_openclip_spec(spec: str) -> bool:
    """True for `openclip:…` and `open_clip/…`."""
    return spec.startswith(OPENCLIP) or spec.startswith(LEGACY_OPENCLIP)


def parse_openclip_spec(spec: str, bare_ok: bool = True) -> tuple[str, str | None]:
    """`openclip:ARCH[:CKPT]`, `open_clip/ARCH[:CKPT]` or (when `bare_ok`) `ARCH[:CKPT]` ->
    (arch, checkpoint or None). Checkpoints may hold ':' (architecture names never do)."""
    if spec.startswith(OPENCLIP):
        rest = spec[len(OPENCLIP):]
    elif spec.startswith(LEGACY_OPENCLIP):
        rest = spec[len(LEGACY_OPENCLIP):]
    elif bare_ok:
        rest = spec
    else:
        raise ZssError(f"{spec!r} is not an OpenCLIP spec (expected openclip:ARCH[:CKPT])")
    arch, _, ckpt = rest.partition(":")
    if not arch:
        raise ZssError(f"empty OpenCLIP architecture in {spec!r} (expected openclip:ARCH[:CKPT])")
    return arch, (ckpt or None)


def openclip_spec(arch: str, checkpoint: str | None = None) -> str:
    """The canonical spelling of an OpenCLIP model."""
    return f"{OPENCLIP}{arch}" + (f":{checkpoint}" if checkpoint else "")
