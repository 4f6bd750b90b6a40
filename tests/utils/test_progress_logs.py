"""Progress for logs a cluster job can read: plain lines at a steady pace when stderr is a file."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from zss.utils.logs import setup_logging
from zss.utils.progress import ProgressDisplay

LINE = re.compile(r"train simzss: (\d+)/(\d+) steps \(\d+%\) \| loss [\d.]+ .* \| [\d.]+ samples/s \| "
                  r"elapsed \d+:\d\d:\d\d \| ETA (\d+:\d\d:\d\d|\?)")


def test_plain_lines_every_fraction_and_at_the_end(capsys):
    setup_logging()
    try:
        with ProgressDisplay(every_seconds=3600, every_fraction=0.25) as bar:  # stderr: captured, not a tty
            task = bar.add_task("job", total=10, info="", unit="images")
            for i in range(10):
                bar.update(task, advance=1, info=f"score {i}")
        lines = [ln for ln in capsys.readouterr().err.splitlines() if "job:" in ln]
        # first update, then every ceil(10 * 0.25) = 3 images, and the last one
        assert [int(re.search(r"job: (\d+)/10", ln).group(1)) for ln in lines] == [1, 4, 7, 10]
        assert "score 9" in lines[-1] and "images/s" in lines[-1] and "ETA 0:00:00" in lines[-1]
        setup_logging(quiet=True)
        with ProgressDisplay(every_seconds=0) as bar:
            bar.update(bar.add_task("job", total=2, unit="images"), advance=2)
        assert "job:" not in capsys.readouterr().err
    finally:
        logging.getLogger("zss").setLevel(logging.NOTSET)


def test_plain_lines_every_seconds(capsys, monkeypatch):
    setup_logging()
    clock = iter([0.0, 0.0, 1.0, 2.0, 40.0, 41.0])
    monkeypatch.setattr("zss.utils.progress.time.monotonic", lambda: next(clock))
    try:
        with ProgressDisplay(every_seconds=30, every_fraction=1.0) as bar:
            task = bar.add_task("job", total=1000, unit="steps", samples_per_unit=8)
            for _ in range(4):
                bar.update(task, advance=1)   # at t = 0, 1, 2, 40 s
        done = [int(re.search(r"job: (\d+)/1000", ln).group(1)) for ln in capsys.readouterr().err.splitlines()
                if "job:" in ln]
        assert done == [1, 4]  # the first, then after 30 s; no line at the end for an unfinished total
    finally:
        logging.getLogger("zss").setLevel(logging.NOTSET)


@pytest.mark.slow
def test_train_redirected_to_a_file_logs_progress_while_running(feature_world, tiny_overrides, tmp_path):
    """`zss train simzss ... > log 2>&1`: progress lines reach the file before the run ends."""
    log = tmp_path / "train.log"
    sets = [a for o in tiny_overrides + ["batch_size=8", "ckpt_every=1000"] for a in ("--set", o)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "ZSS_PROGRESS_SECONDS": "30"}
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "zss.cli", "train", "simzss", str(feature_world.shards),
                                 str(tmp_path / "run"), "--steps", "8"] + sets,
                                stdout=fh, stderr=subprocess.STDOUT, env=env)
        seen_while_running = None
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            lines = [ln for ln in log.read_text().splitlines() if LINE.search(ln)]
            if lines and seen_while_running is None:
                seen_while_running = lines
            time.sleep(0.05)
        assert proc.wait(timeout=60) == 0, log.read_text()
    text = log.read_text()
    assert seen_while_running, text  # written (and flushed) while the run was still going
    done = [int(LINE.search(ln).group(1)) for ln in text.splitlines() if LINE.search(ln)]
    assert done[0] == 1 and done[-1] == 8 and done == sorted(done)  # pace: the tests above
    assert "trained simzss" in text.splitlines()[-1]
