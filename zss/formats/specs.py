"""Model specs as users type them, parsed in one place into a `ModelSpec` that every loader takes.

- a frozen vision backbone (`--features`, `features.name`): a timm ViT `NAME[:CKPT]`, or an OpenCLIP
  model `openclip:ARCH[:CKPT]`;
- an OpenCLIP model (`--text-encoder`, PixelCLIP's `clip:`, the MaskCLIP baseline of `zss eval`):
  `openclip:ARCH[:CKPT]`, where a bare `ARCH[:CKPT]` is accepted too;
- a Segment Anything model (`--sam-checkpoint`): `KIND:PATH`.

ARCH is an open_clip name such as `ViT-B-16`, CKPT a local file or (OpenCLIP) a pretrained tag such as
`openai`; checkpoints may hold ':' (names never do). The older OpenCLIP spelling `open_clip/ARCH[:CKPT]`
stays accepted: it is the name shard manifests and model directories record (`ModelSpec.name`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from zss.errors import ZssError

OPENCLIP = "openclip:"
LEGACY_OPENCLIP = "open_clip/"
SAM_KINDS = ("vit_b", "vit_l", "vit_h", "test_tiny")
# what each kind of place takes -> the model kinds it accepts
EXPECTED_KINDS = {"backbone": ("timm", "openclip"), "openclip": ("openclip",), "sam": ("sam",)}


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec: which loader (`kind`: timm | openclip | sam), which architecture (a timm
    model name, an open_clip architecture, or a SAM kind), which weights (None: the hub's)."""

    kind: str
    arch: str
    checkpoint: str | None = None

    @property
    def name(self) -> str:
        """The model's name as manifests and model directories record it (`open_clip/ARCH` for an
        OpenCLIP model, the spelling shard manifests have always used; else ARCH)."""
        return f"{LEGACY_OPENCLIP}{self.arch}" if self.kind == "openclip" else self.arch

    def with_checkpoint(self, checkpoint: str | Path | None) -> ModelSpec:
        """This model with `checkpoint` as its weights (None or '' keeps the spec's own)."""
        return replace(self, checkpoint=str(checkpoint)) if checkpoint not in (None, "") else self


def is_openclip_spec(spec: str) -> bool:
    """True for `openclip:…` and `open_clip/…`."""
    return spec.startswith(OPENCLIP) or spec.startswith(LEGACY_OPENCLIP)


def _parse_openclip(spec: str) -> ModelSpec:
    rest = spec
    for prefix in (OPENCLIP, LEGACY_OPENCLIP):
        if spec.startswith(prefix):
            rest = spec[len(prefix):]
            break
    arch, _, ckpt = rest.partition(":")
    if not arch:
        raise ZssError(f"empty OpenCLIP architecture in {spec!r} (expected openclip:ARCH[:CKPT])")
    return ModelSpec("openclip", arch, ckpt or None)


def _parse_sam(spec: str) -> ModelSpec:
    kind, sep, path = spec.partition(":")
    if not sep or not path or kind not in SAM_KINDS:
        raise ZssError(f"bad SAM checkpoint {spec!r}: expected KIND:PATH with KIND in {', '.join(SAM_KINDS)}")
    return ModelSpec("sam", kind, path)


def _kinds(expect: str) -> tuple[str, ...]:
    if expect not in EXPECTED_KINDS:
        raise ValueError(f"expect must be one of {', '.join(EXPECTED_KINDS)}, got {expect!r}")
    return EXPECTED_KINDS[expect]


def parse_model_spec(spec: str, expect: str = "backbone") -> ModelSpec:
    """The one parser of model specs; `expect` is what the place takes: `backbone` (a timm
    `NAME[:CKPT]` or `openclip:ARCH[:CKPT]`), `openclip` (bare `ARCH[:CKPT]` allowed) or `sam`
    (`KIND:PATH`). See the module docstring for the spellings."""
    _kinds(expect)
    if expect == "sam":
        return _parse_sam(spec)
    if expect == "openclip" or is_openclip_spec(spec):
        return _parse_openclip(spec)
    name, sep, ckpt = spec.partition(":")
    if not name:
        raise ZssError(f"bad --features value {spec!r}: expected NAME[:CHECKPOINT]")
    return ModelSpec("timm", name, ckpt if sep and ckpt else None)


def to_model_spec(model: ModelSpec | str, checkpoint: str | Path | None = None,
                  expect: str = "backbone") -> ModelSpec:
    """What a loader was handed, as one `ModelSpec`: a parsed spec as it is, or a string parsed
    (a spec as users type it, or the name a manifest records). A separate `checkpoint` (how
    manifests and model directories record weights) wins over the spec's own. For SAM a string
    with a separate checkpoint is the KIND alone."""
    if isinstance(model, ModelSpec):
        spec = model
        if spec.kind not in _kinds(expect):
            raise ZssError(f"{spec.arch!r} is a {spec.kind} model; expected {' or '.join(_kinds(expect))}")
    elif expect == "sam" and checkpoint not in (None, ""):
        spec = ModelSpec("sam", model)
    else:
        spec = parse_model_spec(model, expect)
    return spec.with_checkpoint(checkpoint)
