"""`zss serve` in a real browser: headless Debian chromium driven by playwright (never a downloaded
browser), two tiny random OpenCLIP models side by side, one good upload and one bad one."""

from __future__ import annotations

import base64
import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server(tiny_clip, tmp_path):
    """`zss serve` with two models (the tiny_clip checkpoint and a second seed), on a free port."""
    from zss.models.clip_dense import save_random_openclip

    other = save_random_openclip("zss-tiny-vit", tmp_path / "tiny_vit_seed1.safetensors", seed=1)
    models = [f"openclip:zss-tiny-vit:{tiny_clip}", f"openclip:zss-tiny-vit:{other}"]
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="2")
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "zss.cli", "serve", *models, "--port", str(port),
                             "--max-side", "512"], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 240        # model loading on a busy 2-core machine
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                urllib.request.urlopen(base + "/api/info", timeout=2).read()
                break
            except OSError:
                assert time.time() < deadline, "zss serve did not come up"
                time.sleep(0.5)
        yield base, models
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium browser installed (apt-get install chromium)")
def test_browser_upload_words_overlay_and_bad_upload(server, tmp_path):
    from playwright.sync_api import sync_playwright

    base, models = server
    h, w = 96, 128
    arr = np.zeros((h, w, 3), dtype=np.uint8)
    arr[:, : w // 2] = (40, 160, 40)
    arr[:, w // 2:] = (30, 60, 200)
    arr[: h // 3] = (150, 200, 250)
    good = tmp_path / "scene.png"
    Image.fromarray(arr).save(good)
    bad = tmp_path / "notes.png"            # an image name, not an image
    bad.write_text("this is not a picture")

    outside: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 760})
            page.on("request", lambda r: None if r.url.startswith((base, "data:"))
                    else outside.append(r.url))
            page.goto(base + "/")
            page.wait_for_selector("input[name=model]")
            assert page.locator("input[name=model]").count() == 2

            # a bad upload: a message on the page, the server stays up
            page.set_input_files("#image", str(bad))
            page.fill("#vocab", "grass; lawn, water, sky")
            page.click("#run")
            page.wait_for_function("document.getElementById('message').textContent.length > 0",
                                   timeout=60_000)
            assert "not an image" in page.text_content("#message")
            assert page.locator(".result").count() == 0

            # an empty vocabulary: a message too
            page.set_input_files("#image", str(good))
            page.fill("#vocab", " ")
            page.click("#run")
            page.wait_for_function("document.getElementById('message').textContent.includes('class')",
                                   timeout=60_000)

            # the real request: both models side by side
            page.fill("#vocab", "grass; lawn, water, sky")
            page.click("#run")
            page.wait_for_selector(".result img.overlay", timeout=180_000)
            page.wait_for_function("[...document.querySelectorAll('.result img.overlay')]"
                                   ".every(i => i.complete && i.naturalWidth > 0)", timeout=30_000)
            assert page.text_content("#message") == ""
            cards = page.locator(".result")
            assert cards.count() == 2
            for i, model in enumerate(models):
                card = cards.nth(i)
                assert model in card.locator("h2").text_content()
                nat_w, nat_h = card.locator("img.overlay").evaluate("i => [i.naturalWidth, i.naturalHeight]")
                assert nat_w > w and nat_h >= h          # image + legend to its right
                href = card.locator("a.download").get_attribute("href")
                label = Image.open(io.BytesIO(base64.b64decode(href.split(",", 1)[1])))
                assert label.mode == "P" and label.size == (w, h)
                ids = np.unique(np.asarray(label))
                assert set(ids.tolist()) <= {0, 1, 2}
                shown = [t.strip() for t in card.locator("tr.area td:first-child").all_text_contents()]
                names = ["grass", "water", "sky"]
                assert sorted(shown) == sorted(names[i] for i in ids)   # legend = classes present
            page.screenshot(path=str(tmp_path / "serve.png"), full_page=True)
            if os.environ.get("ZSS_SERVE_SCREENSHOT"):
                shutil.copy(tmp_path / "serve.png", os.environ["ZSS_SERVE_SCREENSHOT"])
        finally:
            browser.close()
    assert outside == []                                 # nothing fetched from anywhere else
