"""Shards are the unit of failure: SIGKILL `zss ingest` after its first shard, re-run it in
incremental mode, and get exactly the keys and bytes of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from zss.formats import shards as sh
from zss.ingest.runner import run_ingest

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("ray_2cpu")]

# `zss ingest` as the console script runs it, with a pause in the driver after each finished shard
# (workers write the shards; the driver only records their stats) so the kill lands mid-run
# whatever the machine's speed: with one worker and two shards in flight, shard 2 is never started.
SLOW_INGEST = """
import sys, time
import zss.formats.shards as sh
entry = sh.entry_from_stats
def slow(*args, **kwargs):
    time.sleep(4)
    return entry(*args, **kwargs)
sh.entry_from_stats = slow
from zss.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _cli_args(kw: dict, out) -> list[str]:
    # one worker x one torch thread: the same bytes as the fixture's two workers x one thread
    args = ["ingest", kw["source"], str(out), "--features", kw["features"], "--img-size", str(kw["img_size"]),
            "--masks", kw["masks"], "--concepts", kw["concepts"], "--shard-size", str(kw["shard_size"]),
            "--workers", "1", "--set", "threads_per_worker=1"]
    for item in kw["overrides"]:
        args += ["--set", item]
    return args


def _shard_files(out) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.suffix in (".tar", ".parquet")}


def test_sigkill_then_incremental_resume_is_byte_identical(ingested_shards, ingest_kwargs, tmp_path):
    out = tmp_path / "killed"
    log = open(tmp_path / "ingest.log", "wb")
    proc = subprocess.Popen([sys.executable, "-c", SLOW_INGEST, *_cli_args(ingest_kwargs, out)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not (out.is_dir() and any(out.glob("*_stats.json"))):
            assert proc.poll() is None, (tmp_path / "ingest.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "first shard never finished"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        try:  # the killed driver's Ray helpers share its process group: clean them up too
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        log.close()
    assert proc.returncode == -signal.SIGKILL
    done = [s for s in range(3) if (out / f"{s:05d}_stats.json").exists()]
    pending = [s for s in range(3) if s not in done]
    assert done and pending, "the kill should land mid-run, after one shard"
    assert not sh.read_manifest(out)["complete"]
    # what a kill in the middle of writing leaves behind: a torn tar and a temporary parquet
    (out / f"{pending[0]:05d}.tar").write_bytes(b"torn")
    (out / f"{pending[-1]:05d}.parquet.tmp").write_bytes(b"torn")

    summary = run_ingest(out=out, **ingest_kwargs)  # incremental is the default mode
    assert f"{len(done)} already done" in summary and "status: ok=24" in summary

    assert _shard_files(out) == _shard_files(ingested_shards)
    assert not list(out.glob("*.tmp"))
    keys = lambda d: [s["key"] for s in sh.iter_all_samples(d)]  # noqa: E731
    assert keys(out) == keys(ingested_shards) and len(keys(out)) == 24
    assert sh.validate_shards(out) == [] and sh.read_manifest(out)["complete"]
    # a finished folder is left alone by another incremental run
    again = run_ingest(out=out, **ingest_kwargs)
    assert "0 written, 3 already done" in again
