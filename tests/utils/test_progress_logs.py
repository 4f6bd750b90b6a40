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
from zss.utils.progress import ProgressDisplay, set_pace

LINE = re.compile(r"train simzss: (\d+)/(\d+) steps \(\d+%\) \| loss [\d.]+ .* \| [\d.]+ samples/s \| "
                  r"elapsed \d+:\d\d:\d\d \| ETA (\d+:\d\d:\d\d|\?)")


def _fake_clock(times):
    """A clock returning `times` in turn (the display reads it once per add_task and per update)."""
    return iter(times).__next__


def _done(err: str, name: str = "job") -> list[int]:
    return [int(re.search(name + r": (\d+)/", ln).group(1)) for ln in err.splitlines() if f"{name}:" in ln]


def test_plain_lines_first_every_n_seconds_and_last(capsys):
    """Off a terminal: the first update, then at most one line per 30 s, and the last; 100 fast
    updates of a 100-image job are 2 lines, not 20 (the old 5 % rule)."""
    setup_logging()
    try:
        # add_task, then 10 updates at t = 0, 1, 2, 29, 31, 40, 60, 62, 90, 95 (enter/exit read no clock)
        clock = _fake_clock([0.0, 0.0, 1.0, 2.0, 29.0, 31.0, 40.0, 60.0, 62.0, 90.0, 95.0, 99.0])
        with ProgressDisplay(every_seconds=30, clock=clock) as bar:
            task = bar.add_task("job", total=10, info="", unit="images")
            for i in range(10):
                bar.update(task, advance=1, info=f"score {i}")
        err = capsys.readouterr().err
        # 1 at t=0 (the first); 5 at t=31 (31 s after t=0); not 7 at t=60 (29 s after 31); 8 at t=62
        # (31 s); not 9 at t=90 (28 s after 62); 10 (the last)
        assert _done(err) == [1, 5, 8, 10]
        last = [ln for ln in err.splitlines() if "job:" in ln][-1]
        assert "score 9" in last and "images/s" in last and "ETA 0:00:00" in last

        clock = _fake_clock([float(t) for t in range(200)])
        with ProgressDisplay(every_seconds=30, clock=clock) as bar:   # 100 updates 1 s apart: first, t=30, 60, 90, last
            task = bar.add_task("job", total=100, unit="images")
            for _ in range(100):
                bar.update(task, advance=1)
        assert _done(capsys.readouterr().err) == [1, 31, 61, 91, 100]

        setup_logging(quiet=True)
        with ProgressDisplay(every_seconds=0) as bar:
            bar.update(bar.add_task("job", total=2, unit="images"), advance=2)
        assert "job:" not in capsys.readouterr().err
    finally:
        logging.getLogger("zss").setLevel(logging.NOTSET)
        set_pace(None)


def test_unfinished_total_and_verbose_every_step(capsys):
    setup_logging()
    try:
        clock = _fake_clock([0.0, 0.0, 1.0, 2.0, 40.0, 41.0])
        with ProgressDisplay(every_seconds=30, clock=clock) as bar:
            task = bar.add_task("job", total=1000, unit="steps", samples_per_unit=8)
            for _ in range(4):
                bar.update(task, advance=1)   # at t = 0, 1, 2, 40 s
        assert _done(capsys.readouterr().err) == [1, 4]  # the first, then after 30 s; the exit logs the rest
        setup_logging(verbose=1)                      # `zss -v`: a line for every update
        with ProgressDisplay(every_seconds=30, clock=_fake_clock([0.0] * 10)) as bar:
            task = bar.add_task("job", total=5, unit="steps")
            for _ in range(5):
                bar.update(task, advance=1)
        assert _done(capsys.readouterr().err) == [1, 2, 3, 4, 5]
    finally:
        logging.getLogger("zss").setLevel(logging.NOTSET)
        set_pace(None)


def test_cli_pace_flag_and_env(monkeypatch):
    from zss.utils.progress import pace_seconds

    monkeypatch.setenv("ZSS_PROGRESS_SECONDS", "12")
    try:
        set_pace(None)
        assert pace_seconds() == 12.0
        set_pace(5)
        assert pace_seconds() == 5.0
        monkeypatch.delenv("ZSS_PROGRESS_SECONDS")
        set_pace(None)
        assert pace_seconds() == 30.0
    finally:
        set_pace(None)


def test_cli_segment_logs_first_and_last_only(world, tiny_clip, tmp_path, capsys):
    """`zss --progress-seconds 3600 segment` on 3 images off a terminal (a real process, stderr a
    pipe): 2 progress lines and the vocabulary it understood; with -v: a line per image."""
    from zss.cli import main

    images = sorted((world / "val" / "images").glob("*.jpg"))[:3]
    folder = tmp_path / "in"
    folder.mkdir()
    for p in images:
        (folder / p.name).write_bytes(p.read_bytes())
    args = ["segment", f"openclip:zss-tiny-vit:{tiny_clip}", str(folder), "--vocab",
            "zebra, traffic cone, wet asphalt;road", "--out", str(tmp_path / "out"), "--set", "templates=photo"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "OMP_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, "-m", "zss.cli", "--progress-seconds", "3600", *args],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert _done(done.stderr, "segment") == [1, 3]
    understood = "3 classes: zebra | traffic cone | wet asphalt (= road)"   # words as typed (README)
    assert f"zss: vocabulary: {understood}" in done.stderr.splitlines()
    assert done.stdout.startswith(f"segmented 3 image(s) with {understood} into ")
    try:
        assert main(["-v", "--progress-seconds", "3600", *args]) == 0
        assert _done(capsys.readouterr().err, "segment") == [1, 2, 3]
    finally:
        logging.getLogger("zss").setLevel(logging.NOTSET)
        set_pace(None)


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
