"""Segment time per image vs the backbone's forward alone (goal: <= 1.3x), and a `zss serve`
request vs `zss segment` on the same image (goal: <= 1.5x).

Runs `zss segment`'s per-image path (decode, resize, slide windows, upsampling, softmax over the
vocabulary, argmax, label PNG + overlay + JSON) and, in the same run, times every call of the model's
`encode_dense` (the backbone forward on the windows). The ratio total / forward is what matters: it is
measured in one process on the same images, so it is meaningful on a busy machine, unlike the
absolute times. By default the model is a random-init OpenCLIP ViT-S/16 saved to a local file and
loaded through the real checkpoint path; `--model` takes any spec `zss segment` takes.

The serve figure starts the real `zss serve` app (uvicorn, in this process, model loaded once) and
times HTTP requests that upload each image with the same vocabulary (the first request, which embeds
the vocabulary once, is the warm-up), against `segment_image` per image with the model loaded.

    python benchmarks/segment.py [--model SPEC] [--images 3] [--size 336x448] [--classes 10] [--no-serve]
"""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from zss.eval.segment import segment_config, segment_image
from zss.eval.inference import Predictor
from zss.formats.vocab import Vocabulary
from zss.recipes import load_segmenter
from zss.utils.device import default_device

WORDS = ["grass", "water", "sand", "wall", "sky", "ball", "traffic cone", "box", "flower", "tire",
         "person", "car", "tree", "road", "building", "dog", "cat", "chair", "table", "window"]


def timed(fn, sink: list[float], device: torch.device):
    """Wrap `fn` so each call's wall time (synchronised on CUDA) is appended to `sink`."""
    def wrapper(*args, **kwargs):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        if device.type == "cuda":
            torch.cuda.synchronize()
        sink.append(time.perf_counter() - start)
        return out
    return wrapper


def multipart(fields: list[tuple[str, str]], file_field: str, path: Path) -> tuple[bytes, str]:
    """A multipart/form-data body (what the browser sends) and its content type."""
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; '
                 f'filename="{path.name}"\r\nContent-Type: image/jpeg\r\n\r\n'.encode()
                 + path.read_bytes() + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def serve_times(spec: str, paths: list[Path], vocab: str, overrides: list[str], device) -> list[float]:
    """Seconds per `zss serve` HTTP request for paths[1:] (paths[0] warms up), model loaded once."""
    import uvicorn

    from zss.serve.app import Service, create_app

    service = Service([spec], device=str(device), max_side=4096, overrides=overrides)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(service), host="127.0.0.1", port=port,
                                          log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    times = []
    try:
        for i, path in enumerate(paths):
            body, ctype = multipart([("vocab", vocab), ("model", spec)], "image", path)
            req = urllib.request.Request(f"http://127.0.0.1:{port}/api/segment", data=body,
                                         headers={"Content-Type": ctype})
            start = time.perf_counter()
            answer = json.loads(urllib.request.urlopen(req, timeout=600).read())
            if i:
                times.append(time.perf_counter() - start)
            assert "results" in answer, answer
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model spec (default: random-init openclip ViT-S-16)")
    ap.add_argument("--arch", default="ViT-S-16", help="OpenCLIP architecture for the default model")
    ap.add_argument("--images", type=int, default=3)
    ap.add_argument("--size", default="336x448", help="HxW of the test images")
    ap.add_argument("--classes", type=int, default=10, help="vocabulary size (<= 20)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="inference key=value")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--no-serve", action="store_true", help="skip the `zss serve` request timing")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = default_device()
    h, w = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        spec = args.model
        if spec is None:
            from zss.models.clip_dense import save_random_openclip

            ckpt = save_random_openclip(args.arch, tmp_path / "clip.safetensors", seed=0)
            spec = f"openclip:{args.arch}:{ckpt}"
        model = load_segmenter(spec, device)
        vocab = Vocabulary.from_string(",".join(WORDS[:args.classes]))
        cfg = segment_config(args.overrides)
        predictor = Predictor(model, vocab, cfg, device)   # text embeddings: once, not timed
        rng = np.random.default_rng(0)
        paths = []
        for i in range(args.images + 1):                   # +1: warm-up image
            p = tmp_path / f"img{i}.jpg"
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(p)
            paths.append(p)
        forward: list[float] = []
        model.encode_dense = timed(model.encode_dense, forward, device)
        segment_image(predictor, paths[0], tmp_path / "out" / "warmup")
        forward.clear()
        start = time.perf_counter()
        for p in paths[1:]:
            segment_image(predictor, p, tmp_path / "out" / p.stem)
        if device.type == "cuda":
            torch.cuda.synchronize()
        total = time.perf_counter() - start
        served = None if args.no_serve else serve_times(spec, paths, ",".join(WORDS[:args.classes]),
                                                        args.overrides, device)
    n = args.images
    fwd = sum(forward)
    print(f"model {spec if args.model else 'random ' + args.arch}, device {device}, {n} images {h}x{w}, "
          f"{len(vocab)} classes, protocol short_side={predictor.short_side} mode={cfg.mode} "
          f"crop={predictor.crop} stride={predictor.stride}")
    print(f"segment per image:          {total / n * 1000:8.1f} ms")
    print(f"backbone forward per image: {fwd / n * 1000:8.1f} ms  ({len(forward) // n} forward calls per image)")
    ratio = total / fwd
    print(f"ratio segment / forward:    {ratio:8.2f}x  (goal <= 1.3x: {'met' if ratio <= 1.3 else 'NOT met'})")
    if served:
        per = sum(served) / len(served)
        rs = per / (total / n)
        print(f"zss serve request per image: {per * 1000:7.1f} ms  (HTTP upload + decode + segment + PNGs + JSON)")
        print(f"ratio serve / segment:      {rs:8.2f}x  (goal <= 1.5x: {'met' if rs <= 1.5 else 'NOT met'})")


if __name__ == "__main__":
    main()
