"""Running `zss` as a real subprocess (its own session, so signals reach it and its children like a
terminal's Ctrl-C would), slowed down where a test wants to land a signal, and waiting for a file to
appear."""

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

# Python source for `start_zss(patch=...)`: the function or method TARGET sleeps after each call.
SLOW_CALL = """
import importlib
import time
_owner = importlib.import_module({module!r})
for _name in {owners!r}:
    _owner = getattr(_owner, _name)
_original = getattr(_owner, {name!r})
_calls = [0]
def _slow(*args, **kwargs):
    out = _original(*args, **kwargs)
    _calls[0] += 1
    if _calls[0] > {fast_calls}:
        time.sleep({seconds})
    return out
setattr(_owner, {name!r}, _slow)
"""


def slow_patch(target: str, seconds: float, fast_calls: int = 0) -> str:
    """A `start_zss` patch: `target` ("package.module:function" or "package.module:Class.method")
    sleeps `seconds` after each of its calls but the first `fast_calls`."""
    module, _, attrs = target.partition(":")
    *owners, name = attrs.split(".")
    return SLOW_CALL.format(module=module, owners=owners, name=name, fast_calls=fast_calls, seconds=seconds)


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
