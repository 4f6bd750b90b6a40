"""The `zss serve` web app: models loaded once, one request segmented at a time, errors as messages.

Starlette + uvicorn, one HTML page with inline CSS/JS (no CDN, no analytics, nothing fetched from
outside the server). `POST /api/segment` takes a multipart form (`image` file or `example` name,
`vocab` in `--vocab` syntax, one `model` field per model to run) and answers JSON: per model the
overlay PNG with its legend, the palette label PNG (data URLs) and the per-class areas. Bad input is
`{"error": message}` with status 400; the page shows it.
"""

from __future__ import annotations

import base64
import io
import threading
import time
from collections import OrderedDict
from importlib.resources import files
from pathlib import Path
from typing import Callable

import numpy as np

from zss.errors import ZssError
from zss.eval.inference import Predictor
from zss.eval.render import class_areas, label_image, overlay
from zss.eval.segment import segment_config
from zss.formats.vocab import Vocabulary
from zss.serve.images import MAX_UPLOAD_BYTES, decode_upload
from zss.serve.page import PAGE
from zss.utils.device import default_device

EXAMPLES = files("zss.serve") / "examples"
MAX_PENDING = 8          # requests waiting for the model beyond this get "busy, retry"
PREDICTOR_CACHE = 16     # (model, vocabulary) pairs whose text embeddings are kept


def example_names() -> list[str]:
    return sorted(p.name for p in EXAMPLES.iterdir() if p.name.endswith((".png", ".jpg")))


def png_data_url(image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class Service:
    """Loaded segmenters + the `zss segment` protocol; `segment` is what one request does."""

    def __init__(self, specs: list[str], device: str | None = None, max_side: int = 1024,
                 overrides: list[str] | None = None):
        from zss.recipes import load_segmenter

        if not specs:
            raise ZssError("give at least one model (a model directory or openclip:ARCH:CKPT)")
        if max_side < 32:
            raise ZssError("--max-side must be >= 32")
        self.device = default_device(device)
        self.cfg = segment_config(overrides)
        self.max_side = max_side
        self.models = OrderedDict((spec, load_segmenter(spec, self.device)) for spec in specs)
        self._lock = threading.Lock()            # the queue: one inference at a time, FIFO-ish
        self._pending = 0
        self._count_lock = threading.Lock()
        self._predictors: OrderedDict[tuple[str, str], Predictor] = OrderedDict()

    def predictor(self, name: str, vocab: Vocabulary) -> Predictor:
        key = (name, repr((vocab.classes, vocab.background)))
        if key in self._predictors:
            self._predictors.move_to_end(key)
        else:
            self._predictors[key] = Predictor(self.models[name], vocab, self.cfg, self.device)
            while len(self._predictors) > PREDICTOR_CACHE:
                self._predictors.popitem(last=False)
        return self._predictors[key]

    def image_bytes(self, upload: bytes | None, example: str | None) -> bytes:
        if upload:
            return upload
        if example:
            if example not in example_names():
                raise ZssError(f"unknown example {example!r}")
            return (EXAMPLES / example).read_bytes()
        raise ZssError("no image: upload a file or pick an example")

    def segment(self, data: bytes, vocab_text: str, model_names: list[str]) -> dict:
        """Segment one image with every model named (in the order loaded); ZssError on bad input."""
        if not vocab_text or not vocab_text.strip():
            raise ZssError("type at least one class, e.g. \"zebra; traffic cone; wet asphalt,road\"")
        vocab = Vocabulary.from_string(vocab_text)
        names = [n for n in self.models if n in set(model_names)] if model_names else list(self.models)[:1]
        unknown = sorted(set(model_names) - set(self.models))
        if unknown:
            raise ZssError(f"unknown model(s): {', '.join(unknown)}")
        if not names:
            raise ZssError("pick at least one model")
        image = decode_upload(data, self.max_side)
        with self._count_lock:
            if self._pending >= MAX_PENDING:
                raise ZssError("server busy, try again in a moment")
            self._pending += 1
        try:
            with self._lock:
                results = [self._run(name, vocab, image) for name in names]
        finally:
            with self._count_lock:
                self._pending -= 1
        h, w = image.shape[:2]
        return {"size": [h, w], "classes": vocab.names, "results": results}

    def _run(self, name: str, vocab: Vocabulary, image: np.ndarray) -> dict:
        start = time.perf_counter()
        label = self.predictor(name, vocab).predict(image)
        areas = class_areas(label, vocab.names)
        return {"model": name, "overlay": png_data_url(overlay(image, label, areas)),
                "label": png_data_url(label_image(label)), "areas": areas,
                "seconds": round(time.perf_counter() - start, 3)}


def create_app(service: Service):
    """The Starlette app around a loaded `Service`."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(PAGE)

    async def info(request: Request) -> JSONResponse:
        return JSONResponse({"models": list(service.models), "examples": example_names(),
                             "max_side": service.max_side})

    async def example(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in example_names():
            return JSONResponse({"error": f"unknown example {name!r}"}, status_code=404)
        return Response((EXAMPLES / name).read_bytes(), media_type="image/png")

    async def segment(request: Request) -> JSONResponse:
        try:
            size = int(request.headers.get("content-length") or 0)
            if size > MAX_UPLOAD_BYTES + 65536:
                raise ZssError(f"upload too large (> {MAX_UPLOAD_BYTES / 1e6:.0f} MB)")
            async with request.form(max_files=1, max_fields=32) as form:
                upload = form.get("image")
                data = await upload.read() if hasattr(upload, "read") else None
                vocab = str(form.get("vocab") or "")
                example_name = str(form.get("example") or "") or None
                models = [str(m) for m in form.getlist("model")]
            image = service.image_bytes(data, example_name)
            result = await run_in_threadpool(service.segment, image, vocab, models)
        except ZssError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except Exception as exc:   # malformed multipart bodies and the like: the client's fault
            if type(exc).__name__ in ("MultiPartException", "HTTPException"):
                return JSONResponse({"error": f"bad request: {exc}"}, status_code=400)
            raise
        return JSONResponse(result)

    return Starlette(routes=[Route("/", page), Route("/api/info", info),
                             Route("/examples/{name}", example),
                             Route("/api/segment", segment, methods=["POST"])])


def run_server(specs: list[str], host: str = "127.0.0.1", port: int = 7860, max_side: int = 1024,
               overrides: list[str] | None = None, device: str | None = None,
               announce: Callable[[str], None] = print) -> None:
    """Load the models once, then serve until interrupted."""
    import uvicorn

    service = Service(specs, device=device, max_side=max_side, overrides=overrides)
    announce(f"zss serve: {', '.join(service.models)} on http://{host}:{port}/ (Ctrl-C stops)")
    uvicorn.run(create_app(service), host=host, port=port, log_level="warning", workers=1,
                access_log=False, server_header=False)


__all__ = ["Service", "create_app", "run_server", "example_names"]
