"""`zss prompts explain RUN`: name PixelCLIP's learned prompts by their nearest concept-bank entries.

The prompts were never given words; they are context vectors the frozen text tower reads inside the
template. To name one, every bank concept (name and synonyms) is put in the *same* template in place
of the learned slots ("A photo of a grass in the scene"), embedded by the run's own text tower and
indexed with faiss (inner product on L2-normalised vectors = cosine); each prompt's nearest entries
are its names. A 2-D PCA map of prompts and concepts (PNG) shows which concepts the prompts cover
and which they left alone.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch

from zss.errors import ZssError


def _slot_run(template: str) -> str:
    """The template with its run of `{}` context slots collapsed to one `{}` for a concept name."""
    return re.sub(r"\{\}(\s*\{\})*", "{}", template, count=1)


def explain_prompts(run_dir: Path, k: int = 3, out: Path | None = None) -> str:
    """Nearest concepts per learned prompt (text) + a PCA map PNG at `out` (default RUN/prompts_map.png)."""
    from zss.models.clip_dense import load_clip_dense
    from zss.recipes.pixelclip.segmenter import load_prompts, read_config
    from zss.formats.model_dir import resolve_model_dir
    from zss.ingest.concept_bank import ConceptBank

    run_dir = Path(run_dir)
    model_dir = resolve_model_dir(run_dir)
    config = read_config(model_dir)
    bank_path = model_dir / "concepts.json"
    if not bank_path.is_file():
        raise ZssError(f"{model_dir} has no concepts.json: train on shards ingested with --concepts "
                       f"to name the prompts")
    bank = ConceptBank(json.loads(bank_path.read_text(encoding="utf-8"))["concepts"])
    prompts = load_prompts(model_dir)["embeddings"].float()
    clip = load_clip_dense(config["clip"]["arch"], str(model_dir / config["clip"]["file"]))
    sentence = _slot_run(config["prompts"]["template"])

    @torch.no_grad()
    def encode(phrases: list[str]) -> np.ndarray:
        return clip.encode_text([sentence.format(p) for p in phrases]).float().numpy()

    indexed = bank.with_index(encode, {"name": f"open_clip/{config['clip']['arch']}",
                                       "template": sentence, "model_dir": str(model_dir)})
    scores, ids = indexed.nearest(prompts.numpy(), k=k)
    lines = [f"{len(prompts)} learned prompts of {model_dir} ({config['prompts']['template']!r}), "
             f"nearest of {len(bank)} concepts:"]
    for i, (row_s, row_i) in enumerate(zip(scores, ids)):
        names = ", ".join(f"{bank.name(int(c))} ({s:.2f})" for s, c in zip(row_s, row_i) if c >= 0)
        lines.append(f"prompt {i:02d}: {names}")
    out = Path(out) if out is not None else run_dir / "prompts_map.png"
    _draw_map(prompts.numpy(), encode([c["name"] for c in bank.concepts]),
              [c["name"] for c in bank.concepts], out)
    lines.append(f"map: {out}")
    return "\n".join(lines)


def _draw_map(prompts: np.ndarray, concepts: np.ndarray, names: list[str], out: Path) -> None:
    """PCA of prompts and concept embeddings together, prompts as numbered dots, concepts as words."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    points = np.concatenate([prompts, concepts]).astype(np.float64)
    xy = PCA(n_components=2, random_state=0).fit_transform(points)
    p, c = xy[: len(prompts)], xy[len(prompts):]
    fig, ax = plt.subplots(figsize=(8, 8), dpi=100)
    ax.scatter(c[:, 0], c[:, 1], marker="x", color="tab:gray", label="concepts")
    for (x, y), name in zip(c, names):
        ax.annotate(name, (x, y), fontsize=7, color="dimgray")
    ax.scatter(p[:, 0], p[:, 1], color="tab:red", s=18, label="learned prompts")
    for i, (x, y) in enumerate(p):
        ax.annotate(str(i), (x, y), fontsize=6, color="tab:red")
    ax.set_title("PixelCLIP prompts and concept bank (PCA of text embeddings)")
    ax.legend(loc="best")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight")
    plt.close(fig)
