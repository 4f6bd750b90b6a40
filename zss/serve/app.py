"""The `zss serve` web app: models loaded once, one request segmented at a time, errors as messages.

Starlette + uvicorn, one HTML page with inline CSS/JS (no CDN, no analytics, nothing fetched from
outside the server). `POST /api/segment` takes a multipart form (`image` file or `example` name,
`vocab` in `--vocab` syntax, one `model` field per model to run, `auto=1` for "name it for me")
and answers JSON: per model the overlay PNG with its legend, the palette label PNG (data URLs) and
the per-class areas; with `auto=1` the names are chosen per image from the name bank (`--name-bank`,
default the shipped WordNet bank; docs/auto-vocab.md) and listed with their scores and areas
(`names`). A model's name index is built at its first such request (then cached beside the model).
Bad input is `{"error": message}` with status 400; the page shows it. Under load, admission comes
before anything of a request is read or decoded (`zss.serve.admission`): beyond `--max-queue`
requests inside, the answer is 503 with `Retry-After`, and the page retries on its own, showing
"queued". Uploads are decoded one at a time, inside the inference queue. `GET /api/vocab?text=...`
says what a vocabulary is understood as (`3 classes: zebra | traffic cone | wet asphalt (= road)`);
every segment answer carries it too (`understood`).
"""

from __future__ import annotations

import base64
import io
import logging
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
from zss.serve.admission import DEFAULT_LIMIT, Admission, Busy
from zss.serve.images import MAX_UPLOAD_BYTES, decode_upload
from zss.serve.page import PAGE
from zss.utils.device import default_device

EXAMPLES = files("zss.serve") / "examples"
MAX_PENDING = DEFAULT_LIMIT  # requests inside at once (one running, the rest waiting); more: 503 + Retry-After
PREDICTOR_CACHE = 16     # (model, vocabulary) pairs whose text embeddings are kept

log = logging.getLogger(__name__)


def example_names() -> list[str]:
    return sorted(p.name for p in EXAMPLES.iterdir() if p.name.endswith((".png", ".jpg")))


def png_data_url(image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class Service:
    """Loaded segmenters + the `zss segment` protocol; `segment` is what one request does."""

    def __init__(self, specs: list[str], device: str | None = None, max_side: int = 1024,
                 overrides: list[str] | None = None, name_bank: str | None = None,
                 max_queue: int = MAX_PENDING, prepare_names: bool = False):
        from zss.eval.auto_segment import auto_bank, auto_settings
        from zss.recipes import load_segmenter

        if not specs:
            raise ZssError("give at least one model (a model directory or openclip:ARCH:CKPT)")
        if max_side < 32:
            raise ZssError("--max-side must be >= 32")
        self.device = default_device(device)
        bank_spec = name_bank or "auto"
        self.bank = auto_bank(bank_spec if bank_spec.startswith("auto") else f"auto:{bank_spec}")
        self.auto, overrides = auto_settings(self.bank, overrides)
        self._namers: dict[str, object] = {}
        self._namer_lock = threading.Lock()      # one build per model, the warm-up thread's or a request's
        self.cfg = segment_config(overrides)
        self.max_side = max_side
        self.models = OrderedDict((spec, load_segmenter(spec, self.device)) for spec in specs)
        self._lock = threading.Lock()            # the queue: one inference at a time, FIFO-ish
        if max_queue < 1:
            raise ZssError("--max-queue must be >= 1")
        self.admission = Admission(max_queue)    # checked by the app before a request's body is read
        self._predictors: OrderedDict[tuple[str, str], Predictor] = OrderedDict()
        if prepare_names:  # the name indexes load or build now, beside serving, not on the first request
            threading.Thread(target=self._prepare_names, name="zss-name-index", daemon=True).start()

    def namer(self, name: str):
        """The model's "name it for me" namer: its name index loaded from the cache or built (minutes
        for a large bank on a CPU, once per model and bank; docs/auto-vocab.md)."""
        from zss.eval.auto_segment import make_namer

        with self._namer_lock:
            if name not in self._namers:
                self._namers[name] = make_namer(self.models[name], name, self.bank, self.cfg, self.auto, self.device)
            return self._namers[name]

    def _prepare_names(self) -> None:
        for name in self.models:
            try:
                self.namer(name)
            except ZssError as exc:  # bad input (a bank, a model without a text tower): requests say it too
                log.warning("name index for %s not prepared: %s", name, exc)
                return
        log.info("name indexes ready for %d model(s)", len(self.models))

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

    def segment(self, data: bytes, vocab_text: str, model_names: list[str], auto: bool = False) -> dict:
        """Segment one image with every model named (in the order loaded); ZssError on bad input.
        `auto`: the vocabulary is chosen per image and model from the name bank."""
        if auto:
            vocab = None
        elif not vocab_text or not vocab_text.strip():
            raise ZssError("type at least one class, e.g. \"zebra, traffic cone, wet asphalt;road\"")
        else:
            vocab = Vocabulary.from_string(vocab_text)
        names = [n for n in self.models if n in set(model_names)] if model_names else list(self.models)[:1]
        unknown = sorted(set(model_names) - set(self.models))
        if unknown:
            raise ZssError(f"unknown model(s): {', '.join(unknown)}")
        if not names:
            raise ZssError("pick at least one model")
        with self._lock:  # decoded in turn: a queue of uploads holds their bytes, never their pixels
            start = time.perf_counter()
            try:
                image = decode_upload(data, self.max_side)
                results = [self._run(name, vocab, image) for name in names]
            finally:
                self.admission.observe(time.perf_counter() - start)
        h, w = image.shape[:2]
        return {"size": [h, w], "classes": vocab.names if vocab else "auto",
                "understood": vocab.describe() if vocab else "auto", "results": results}

    def _run(self, name: str, vocab: Vocabulary | None, image: np.ndarray) -> dict:
        start = time.perf_counter()
        extra = {}
        if vocab is None:
            from zss.eval.auto_segment import auto_image_record

            res, areas, record = auto_image_record(self.namer(name), image)
            label, extra = res.label, {"names": record["auto_vocabulary"], "bank": self.bank.source}
        else:
            label = self.predictor(name, vocab).predict(image)
            areas = class_areas(label, vocab.names)
        return {"model": name, "overlay": png_data_url(overlay(image, label, areas)),
                "label": png_data_url(label_image(label)), "areas": areas, **extra,
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

    async def vocab(request: Request) -> JSONResponse:
        """What the words typed so far are understood as (the page shows it while typing)."""
        text = request.query_params.get("text", "")
        if not text.strip():
            return JSONResponse({"understood": ""})
        try:
            return JSONResponse({"understood": Vocabulary.from_string(text).describe()})
        except ZssError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    async def segment(request: Request) -> JSONResponse:
        """Admission first (503 + Retry-After, the body unread), then the request."""
        try:
            service.admission.enter()
        except Busy as busy:
            return JSONResponse({"error": str(busy), "busy": True, "retry_after": busy.retry_after},
                                status_code=503, headers={"Retry-After": str(busy.retry_after)})
        try:
            return await admitted_segment(request)
        finally:
            service.admission.leave()

    async def admitted_segment(request: Request) -> JSONResponse:
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
                auto = str(form.get("auto") or "") in ("1", "on", "true")
            image = service.image_bytes(data, example_name)
            result = await run_in_threadpool(service.segment, image, vocab, models, auto)
        except ZssError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except Exception as exc:   # malformed multipart bodies and the like: the client's fault
            if type(exc).__name__ in ("MultiPartException", "HTTPException"):
                return JSONResponse({"error": f"bad request: {exc}"}, status_code=400)
            raise
        return JSONResponse(result)

    return Starlette(routes=[Route("/", page), Route("/api/info", info), Route("/api/vocab", vocab),
                             Route("/examples/{name}", example),
                             Route("/api/segment", segment, methods=["POST"])])


def run_server(specs: list[str], host: str = "127.0.0.1", port: int = 7860, max_side: int = 1024,
               overrides: list[str] | None = None, device: str | None = None,
               announce: Callable[[str], None] = print, name_bank: str | None = None,
               max_queue: int = MAX_PENDING, prepare_names: bool = False) -> None:
    """Load the models once, then serve until interrupted."""
    import uvicorn

    service = Service(specs, device=device, max_side=max_side, overrides=overrides, name_bank=name_bank,
                      max_queue=max_queue, prepare_names=prepare_names)
    announce(f"zss serve: {', '.join(service.models)} on http://{host}:{port}/ (Ctrl-C stops)")
    uvicorn.run(create_app(service), host=host, port=port, log_level="warning", workers=1,
                access_log=False, server_header=False)


__all__ = ["Service", "create_app", "run_server", "example_names"]
