"""`zss serve` in a real browser: headless Debian chromium driven by playwright (never a downloaded
browser), two tiny random OpenCLIP models side by side, one good upload and one bad one."""

from __future__ import annotations

import base64
import io
import os
import shutil
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
REPO = Path(__file__).resolve().parents[2]


def _answers_info(port: int) -> None:
    urllib.request.urlopen(f"http://127.0.0.1:{port}/api/info", timeout=2).read()


@pytest.fixture()
def server(tiny_clip, tmp_path, local_server):
    """`zss serve` with two models (the tiny_clip checkpoint and a second seed), on a free port."""
    from zss.models.clip_dense import save_random_openclip

    other = save_random_openclip("zss-tiny-vit", tmp_path / "tiny_vit_seed1.safetensors", seed=1)
    models = [f"openclip:zss-tiny-vit:{tiny_clip}", f"openclip:zss-tiny-vit:{other}"]
    bank = tmp_path / "names.txt"           # the "name it for me" switch's bank (docs/auto-vocab.md)
    bank.write_text("grass;lawn\nwater;sea\nsky\nsand\nwall\nball\n")
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="2", ZSS_CACHE=str(tmp_path / "cache"))
    port = local_server("serve", lambda port: [sys.executable, "-m", "zss.cli", "serve", *models, "--port", str(port),
                                               "--max-side", "512", "--name-bank", str(bank), "--prepare-names"],
                        ready=_answers_info, env=env, timeout=240)  # model loading on a busy 2-core machine
    return f"http://127.0.0.1:{port}", models


def _submit(page, vocab: str, image: Path | None = None, until_message: str = "") -> None:
    """Fill the form (the image too, if given) and press run; with `until_message` (a JS expression's
    tail on the message text), wait up to a minute until it holds."""
    if image is not None:
        page.set_input_files("#image", str(image))
    page.fill("#vocab", vocab)
    page.click("#run")
    if until_message:
        page.wait_for_function(f"document.getElementById('message').textContent{until_message}", timeout=60_000)


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
            _submit(page, "grass; lawn, water, sky", bad, until_message=".length > 0")
            assert "not an image" in page.text_content("#message")
            assert page.locator(".result").count() == 0

            # an empty vocabulary: a message too
            _submit(page, " ", good, until_message=".includes('class')")

            # the real request: both models side by side
            _submit(page, "grass; lawn, water, sky")
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
            # "name it for me": the page lists the names chosen from the bank, with scores and areas
            page.check("#auto")
            assert page.is_disabled("#vocab")
            page.click("#run")
            page.wait_for_selector(".result table.names tr.name", timeout=180_000)
            cards = page.locator(".result")
            assert cards.count() == 2 and page.text_content("#message") == ""
            for i in range(2):
                chosen = [t.strip() for t in cards.nth(i).locator("tr.name td:first-child").all_text_contents()]
                assert chosen and set(chosen) <= {"grass", "water", "sky", "sand", "wall", "ball"}
                legend = {t.strip() for t in cards.nth(i).locator("tr.area td:first-child").all_text_contents()}
                assert legend <= set(chosen) | {"unknown"}
        finally:
            browser.close()
    assert outside == []                                 # nothing fetched from anywhere else
