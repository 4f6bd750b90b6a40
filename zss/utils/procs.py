"""Child processes of this one, from /proc (Linux; elsewhere nothing is found and nothing done):
what a command that started helper processes (a local Ray) checks are gone before it exits."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def _state_and_parent(pid: int) -> tuple[str, int] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def descendants(pid: int | None = None) -> set[int]:
    """Every live process below `pid` (default: this process)."""
    root = os.getpid() if pid is None else pid
    proc = Path("/proc")
    if not proc.is_dir():
        return set()
    parents: dict[int, int] = {}
    for d in proc.iterdir():
        if d.name.isdigit():
            info = _state_and_parent(int(d.name))
            if info is not None and info[0] != "Z":
                parents[int(d.name)] = info[1]
    found, frontier = set(), {root}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for its parent)."""
    info = _state_and_parent(pid)
    return info is not None and info[0] != "Z"


def reap(pids: set[int], grace: float = 5.0) -> list[int]:
    """Give `pids` `grace` seconds to exit on their own, then SIGKILL the rest; return those killed."""
    deadline = time.monotonic() + grace
    left = {p for p in pids if alive(p)}
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = {p for p in left if alive(p)}
    for p in sorted(left):
        try:
            os.kill(p, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for p in list(left):  # our own children: collect them so they are not left as zombies
        try:
            os.waitpid(p, os.WNOHANG)
        except ChildProcessError:
            pass
    return sorted(left)
