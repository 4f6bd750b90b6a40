"""`--vocab auto` costs, measured in one run (docs/auto-vocab.md):

1. the shipped name bank: size and read time (and the WordNet build when /usr/share/wordnet exists);
2. name-index build rate of MODEL's text tower and of a ViT-B/16-size text tower (12 layers, width
   512, context 77, random weights) on `--phrases` bank phrases, extrapolated to the whole bank;
3. faiss search time of one image's region queries: flat inner product over the bank's size and
   over 8x it, and IVF-SQ8 over 8x it (what FLAT_MAX is set from);
4. segment time per image with `--vocab auto` (index already built) vs the same images with their
   vocabulary given (`--classes`), and the ratio (goal <= 1.2x);
5. with `--data-root WORLD` (a synthetic world, a model that records its training concepts): how
   names the model never saw score. Per k-means region with a ground-truth majority class: the
   cosine of the class's trained names, the best untrained name's cosine, how often and by how many
   untrained names the trained one is out-ranked, and whether it is in the index's shortlist.

Times are wall and process CPU seconds (the CPU column is the honest one on a shared, loaded box).

    python benchmarks/auto_vocab.py MODEL_DIR IMAGES_DIR --classes CLASSES.txt [--bank auto|FILE]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch


class Clock:
    def __enter__(self):
        self.w, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.w, time.process_time() - self.c


def bank_costs(bank_spec: str):
    from zss.formats.name_bank import parse_auto_vocab, read_name_bank

    path = parse_auto_vocab(bank_spec if bank_spec.startswith("auto") else f"auto:{bank_spec}")
    with Clock() as t:
        bank = read_name_bank(path)
    phrases = len(bank.phrases()[0])
    print(f"bank {path}: {len(bank)} entries, {phrases} phrases, {path.stat().st_size / 1e6:.2f} MB; "
          f"read {t.wall:.2f} s wall / {t.cpu:.2f} s CPU")
    if Path("/usr/share/wordnet/data.noun").is_file():
        import tempfile

        from zss.ingest.wordnet_bank import build_wordnet_bank
        with tempfile.TemporaryDirectory() as tmp, Clock() as t:
            _, sel, _ = build_wordnet_bank("/usr/share/wordnet", Path(tmp) / "b.tsv.gz")
        print(f"WordNet build: {len(sel.entries)} entries in {t.wall:.1f} s wall / {t.cpu:.1f} s CPU")
    return bank, phrases


class _Tower(torch.nn.Module):
    def __init__(self, tower):
        super().__init__()
        self.tower = tower

    @torch.no_grad()
    def encode_text(self, texts):
        return self.tower.encode(list(texts))


def index_rates(model, bank, n: int, total: int) -> None:
    from zss.eval.name_index import embed_phrases
    from zss.formats.name_bank import parse_auto_vocab, read_name_bank
    from zss.recipes.simzss.text_tower import TextConfig, TextTower

    phrases = bank.phrases()[0][:n]
    shipped = len(read_name_bank(parse_auto_vocab("auto")).phrases()[0])
    vitb = _Tower(TextTower(TextConfig(width=512, heads=8, layers=12, context_length=77), 512).eval())
    for what, m in (("MODEL text tower", model), ("ViT-B/16-size text tower (12x512, ctx 77, random)", vitb)):
        with Clock() as t:
            embed_phrases(m, phrases, what)
        print(f"index build, {what}: {n} phrases in {t.wall:.1f} s wall / {t.cpu:.1f} s CPU -> whole bank "
              f"({total} phrases) ~{t.wall * total / n / 60:.1f} min wall / {t.cpu * total / n / 60:.1f} min CPU; "
              f"shipped bank ({shipped}) ~{t.wall * shipped / n / 60:.1f} min wall / "
              f"{t.cpu * shipped / n / 60:.1f} min CPU")


def search_costs(total: int, dim: int, queries: int = 6) -> None:
    from zss.eval.name_index import make_index

    rng = np.random.default_rng(0)
    q = rng.standard_normal((queries, dim)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    for n, kind in ((total, "flat"), (8 * total, "flat"), (8 * total, "ivf-sq8")):
        x = rng.standard_normal((n, dim)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        import faiss
        index = faiss.IndexFlatIP(dim) if kind == "flat" else None
        if index is None:
            import zss.eval.name_index as ni
            old, ni.FLAT_MAX = ni.FLAT_MAX, 0
            index = make_index(x)
            ni.FLAT_MAX = old
        else:
            index.add(x)
        with Clock() as t:
            for _ in range(20):
                index.search(q, 28)
        print(f"search {queries} region queries, {kind} over {n} x {dim}: {1000 * t.wall / 20:.1f} ms wall / "
              f"{1000 * t.cpu / 20:.1f} ms CPU per image")
        del x, index


def segment_ratio(model, model_spec: str, bank, images: list[Path], classes: Path, auto_sets: list[str]) -> None:
    from zss.eval.auto_vocab import AutoNamer, split_auto_overrides
    from zss.eval.inference import Predictor
    from zss.eval.segment import read_image, segment_config
    from zss.formats.vocab import Vocabulary

    cfg = segment_config([])
    arrays = [read_image(p) for p in images]
    given = Predictor(model, Vocabulary.from_file(classes), cfg, "cpu")
    namer = AutoNamer(model, model_spec, bank, cfg, split_auto_overrides(auto_sets)[0], device="cpu")
    given.predict(arrays[0])      # warm-up (allocator, threads) for both paths
    namer.predict(arrays[0])
    times = {"given": [0.0, 0.0], "auto": [0.0, 0.0]}
    for image in arrays:          # interleaved, so load changes hit both alike
        for kind, run in (("given", given.predict), ("auto", namer.predict)):
            with Clock() as t:
                run(image)
            times[kind][0] += t.wall
            times[kind][1] += t.cpu
    n = len(arrays)
    g, a = times["given"], times["auto"]
    print(f"segment per image ({n} images): given {g[0] / n:.3f} s wall / {g[1] / n:.3f} s CPU; "
          f"auto {a[0] / n:.3f} s wall / {a[1] / n:.3f} s CPU; ratio auto/given {a[0] / g[0]:.2f}x wall, "
          f"{a[1] / g[1]:.2f}x CPU (goal <= 1.2x)")


def _world_regions(namer, bench, data_root: Path, n_classes: int, k: int):
    """(unit region embeddings [R, C], ground-truth majority class per region) of a world's val images."""
    from zss.eval.benchmarks import read_sample
    from zss.utils.kmeans import kmeans_label_grid

    embs, gts = [], []
    for sample in bench.samples(data_root):
        image, label = read_sample(sample, [])
        namer.tap.clear()
        x = namer.base.prepare(image)
        namer.base.logits(x)
        grid = namer._feature_grid(x)
        labels = kmeans_label_grid(grid, k, 0, 30, spherical=True)
        ys = ((np.arange(labels.shape[0]) + .5) * label.shape[0] / labels.shape[0]).astype(int)
        xs = ((np.arange(labels.shape[1]) + .5) * label.shape[1] / labels.shape[1]).astype(int)
        gt = label[ys][:, xs]
        for i in np.unique(labels):
            vals, cnt = np.unique(gt[labels == i], return_counts=True)
            if 0 <= vals[cnt.argmax()] < n_classes:
                emb = grid[labels == i].mean(0)
                embs.append(emb / np.linalg.norm(emb))
                gts.append(int(vals[cnt.argmax()]))
    return np.stack(embs), np.array(gts)


def _calibrations(S, E, V, trained, penalty: float) -> dict[str, np.ndarray]:
    """Region x phrase scores under each calibration compared (docs/auto-vocab.md, unseen names)."""
    def unit(x):
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    m = V.mean(0)
    _, _, vt = np.linalg.svd((V - m)[np.random.default_rng(0).permutation(len(V))[:20000]], full_matrices=False)
    top = vt[:10]
    w, q = np.linalg.eigh(np.cov((V - m).T))
    white = q @ np.diag(1 / np.sqrt(w + 1e-3)) @ q.T
    return {"none": S, "penalty 0.15": S - 0.15 * ~trained, f"prior penalty {penalty:.3f}": S - penalty * ~trained,
            "trained names only (a filter, for reference)": S - 9.0 * ~trained,
            "minus each name's mean over the regions": S - S.mean(0),
            "bank's top 10 principal directions removed": unit(E - E @ top.T @ top) @ unit((V - m) - (V - m) @ top.T @ top).T,
            "whitened by the bank's covariance": unit(E @ white) @ unit((V - m) @ white).T}


def unseen_scores(model, model_spec: str, bank, data_root: Path, k: int = 6) -> None:
    from zss.eval.auto_vocab import RETRIEVE_EXTRA, AutoNamer
    from zss.eval.benchmarks import get_benchmark
    from zss.eval.evaluate import resolve
    from zss.eval.name_mapping import NameMapper

    bench, res = get_benchmark("synth"), resolve("zss", "synth", [], model=model_spec)
    namer = AutoNamer(model, model_spec, bank, res.config)
    if namer.prior is None:
        print("unseen names: the model records no training concepts in the bank; nothing to compare")
        return
    classes = bench.vocabulary(data_root, res.classes).classes
    phrases, owners = namer.index.phrases, namer.index.owners
    mapper = NameMapper(bank, classes)
    cls = np.array([(mapper.map(int(e), p) or (-1,))[0] for e, p in zip(owners, phrases)])
    trained = np.array([not namer.unseen(p) for p in phrases])
    V = namer.index.index.reconstruct_n(0, namer.index.index.ntotal)
    E, gt = _world_regions(namer, bench, data_root, len(classes), k)
    keep = np.array([((cls == c) & trained).any() for c in gt])
    E, gt = E[keep], gt[keep]
    S = E @ V.T
    rows = []
    for s, c, emb in zip(S, gt, E):
        true = s[(cls == c) & trained].max()
        listed = {e for e, _, _ in namer.index.search(emb[None], 5 + RETRIEVE_EXTRA)[0]}
        rows.append((true, s[~trained].max(), int((s[~trained] > true).sum()),
                     bool(listed & set(owners[(cls == c) & trained].tolist()))))
    a = np.array(rows, dtype=float)
    u = V[~trained]
    print(f"unseen names ({len(rows)} regions of {data_root}, {int((~trained).sum())} untrained of {len(phrases)} "
          f"phrases): trained class name cosine {a[:, 0].mean():.3f}, best untrained {a[:, 1].mean():.3f}; an "
          f"untrained name out-ranks the trained one in {100 * (a[:, 1] > a[:, 0]).mean():.0f}% of regions "
          f"(median {np.median(a[:, 2]):.0f} names, max {a[:, 2].max():.0f}); the trained name is in the "
          f"shortlist of {5 + RETRIEVE_EXTRA} in {100 * a[:, 3].mean():.0f}%; with the prior penalty "
          f"{namer.penalty:.3f} an untrained one still wins {100 * (a[:, 1] - namer.penalty > a[:, 0]).mean():.0f}%; "
          f"untrained embeddings' mean vector norm {np.linalg.norm(u.mean(0)):.2f}")
    for name, score in _calibrations(S, E, V, trained, namer.penalty).items():
        print(f"  region naming accuracy (top-1 phrase maps to the region's class), {name}: "
              f"{100 * (cls[score.argmax(1)] == gt).mean():.1f}%")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("images", type=Path)
    ap.add_argument("--classes", type=Path, required=True, help="the images' vocabulary, one class per line")
    ap.add_argument("--bank", default="auto")
    ap.add_argument("--phrases", type=int, default=1024, help="phrases embedded to time the index build")
    ap.add_argument("--n-images", type=int, default=8)
    ap.add_argument("--skip", default="", help="comma list of sections to skip: bank,index,search,segment")
    ap.add_argument("--data-root", type=Path, help="a synthetic world: measure how untrained names score")
    ap.add_argument("--set", nargs="*", default=[], help="auto.KEY=VALUE settings of the timed --vocab auto runs")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    from zss.recipes import load_segmenter

    torch.set_grad_enabled(False)
    model = load_segmenter(args.model, "cpu")
    bank, total = bank_costs(args.bank)
    if "index" not in skip:
        index_rates(model, bank, min(args.phrases, total), total)
    if "search" not in skip:
        search_costs(total, int(model.encode_text(["a"]).shape[-1]))
    if "segment" not in skip:
        images = sorted(p for p in args.images.iterdir() if p.suffix.lower() in (".jpg", ".png"))[:args.n_images]
        segment_ratio(model, args.model, bank, images, args.classes, args.set)
    if args.data_root is not None:
        unseen_scores(model, args.model, bank, args.data_root)


if __name__ == "__main__":
    main()
