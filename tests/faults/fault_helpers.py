"""Running `zss` as a real subprocess (its own session, so signals reach it and its children like a
terminal's Ctrl-C would) and waiting for a file to appear."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

# `zss` as the console script runs it, after PATCH (python source) slowed it down where a test
# wants to land a signal.
RUNNER = """
import sys
{patch}
from zss.cli import main
sys.exit(main(sys.argv[1:]))
"""


def start_zss(args: list[str], log: Path, patch: str = "") -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                        os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, "-c", RUNNER.format(patch=patch), *args],
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True, env=env)


def wait_for(cond: Callable[[], bool], proc: subprocess.Popen, log: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert proc.poll() is None, f"exited {proc.returncode} early:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"timed out:\n{log.read_text()[-3000:]}"
        time.sleep(0.05)


def finish(proc: subprocess.Popen, timeout: float = 120) -> int:
    """Wait for the process; then make sure nothing of its session is left."""
    try:
        return proc.wait(timeout=timeout)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def session_alive(pgid: int) -> bool:
    """Whether any process of session/group `pgid` still runs (e.g. a Ray worker left behind)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
