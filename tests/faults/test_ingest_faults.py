"""Faults during `zss ingest`, done for real: Ctrl-C to a real `zss ingest` process group, a second
ingest into the same folder while the first runs, a stale lock, an unwritable output folder."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fault_helpers import finish, slow_patch, start_zss, wait_for

from zss.errors import ZssError
from zss.utils.procs import alive, descendants
from zss.ingest.runner import run_ingest

pytestmark = [pytest.mark.timeout(900)]

# Each shard write sleeps 6 s, so Ctrl-C lands while shards are still being written.
SLOW_WRITE = slow_patch("zss.formats.shards:write_shard", 6)


def _cli_args(kw: dict, out) -> list[str]:
    args = ["ingest", kw["source"], str(out), "--features", kw["features"], "--img-size", str(kw["img_size"]),
            "--masks", kw["masks"], "--concepts", kw["concepts"], "--shard-size", str(kw["shard_size"]),
            "--workers", str(kw["workers"])]
    for item in kw["overrides"]:
        args += ["--set", item]
    return args


def _shard_files(out) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.suffix in (".tar", ".parquet")}


@pytest.mark.slow
@pytest.mark.usefixtures("ray_2cpu")
def test_ctrl_c_keeps_finished_shards_leaves_no_ray_and_locks_out_a_second_writer(
        ingested_shards, ingest_kwargs, tmp_path):
    out, log = tmp_path / "out", tmp_path / "ingest.log"
    proc = start_zss(_cli_args(ingest_kwargs, out), log, SLOW_WRITE)
    try:
        wait_for(lambda: out.is_dir() and any(out.glob("*_stats.json")), proc, log)
        # a second writer into the same folder is refused, naming the holder
        with pytest.raises(ZssError, match=rf"being written by zss ingest \(pid {proc.pid} on {socket.gethostname()}"):
            run_ingest(out=out, **ingest_kwargs)
        helpers = descendants(proc.pid)
        assert helpers, "the driver should have started Ray processes"
        os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole process group
        code = proc.wait(timeout=120)
    finally:
        finish(proc)
    text = log.read_text()
    assert code == 130, text[-3000:]
    lines = [ln for ln in text.splitlines() if ln.startswith("zss: interrupted")]
    assert len(lines) == 1 and "re-run the same command to resume" in lines[0], text[-3000:]
    n_done = int(lines[0].split("; ")[1].split(" shard")[0])
    assert n_done == len(list(out.glob("*_stats.json"))) >= 1
    assert "Traceback" not in text
    time.sleep(2)
    left = [p for p in helpers if alive(p)]
    assert not left, f"Ray processes left behind: {left}"
    assert not (out / ".zss.lock").exists()

    summary = run_ingest(out=out, **ingest_kwargs)  # the re-run resumes
    assert f"{n_done} already done" in summary
    assert _shard_files(out) == _shard_files(ingested_shards)


def test_stale_lock_is_taken_over_with_a_warning(ingested_shards, ingest_kwargs, tmp_path, caplog):
    out = tmp_path / "out"
    out.mkdir()
    for p in ingested_shards.iterdir():
        (out / p.name).write_bytes(p.read_bytes())
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)  # a pid that surely is not running any more
    (out / ".zss.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": dead,
                                               "started": time.time() - 60, "command": "zss ingest"}))
    summary = run_ingest(out=out, **ingest_kwargs)
    assert "0 written, 3 already done" in summary
    assert f"taking over the stale lock {out / '.zss.lock'}" in caplog.text and f"pid {dead}" in caplog.text
    assert not (out / ".zss.lock").exists()

    # a lock held from another host is never taken over
    (out / ".zss.lock").write_text(json.dumps({"host": "elsewhere", "pid": 1, "started": 0, "command": "zss ingest"}))
    with pytest.raises(ZssError, match="pid 1 on elsewhere.*delete .*zss.lock"):
        run_ingest(out=out, **ingest_kwargs)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_output_is_one_line(ingest_kwargs, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(ZssError, match=r"permission denied: .*ro.*writable"):
            run_ingest(out=ro / "out", **ingest_kwargs)
    finally:
        ro.chmod(0o755)


@pytest.mark.slow
@pytest.mark.usefixtures("ray_2cpu")
def test_verify_lists_damaged_shards_and_the_documented_re_ingest_fixes_them(
        ingested_shards, ingest_kwargs, tmp_path, capsys):
    from zss.cli import main

    out = tmp_path / "out"
    out.mkdir()
    for p in ingested_shards.iterdir():
        (out / p.name).write_bytes(p.read_bytes())
    assert main(["inspect", "--verify", str(out)]) == 0
    data = bytearray((out / "00001.tar").read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    (out / "00001.tar").write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["inspect", "--verify", str(out)]) == 3
    err = capsys.readouterr().err
    assert "1 of 3 shard(s)" in err and "00001.tar sha256 differs" in err and "00000.tar" not in err
    fix = [ln for ln in err.splitlines() if ln.startswith("to re-ingest just these: rm ")][0]
    for path in fix.split("rm ", 1)[1].split(" and re-run")[0].split():
        Path(path).unlink()  # what the line tells the user to do
    summary = run_ingest(out=out, **ingest_kwargs)
    assert "1 written, 2 already done" in summary
    assert _shard_files(out) == _shard_files(ingested_shards)
    assert main(["inspect", "--verify", str(out)]) == 0
