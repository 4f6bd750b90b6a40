"""One progress display for every long-running command (ingest, train, eval, segment).

On a terminal it is a rich progress bar. When stderr is not a terminal (a Slurm or Ray job, `zss
train ... > log 2>&1`, `make demo`) the same updates become plain log lines through `logging`, quiet
and steady: the first update, then at most one line every N seconds (default 30; `zss
--progress-seconds N` or `ZSS_PROGRESS_SECONDS`), and the last one, each with done/total, the task's
own info (loss, mIoU, ...), the rate and the ETA. With `-v` every update is a line. The CLI
configures the `zss` logger once (`-v` / `-q`); `-q` silences both forms.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

log = logging.getLogger(__name__)

EVERY_SECONDS = 30.0     # plain lines: at most one per this many seconds between the first and the last
_pace: dict[str, float | None] = {"seconds": None}  # `zss --progress-seconds N` (None: env or default)


def set_pace(seconds: float | None) -> None:
    """The CLI's `--progress-seconds N` for this process (None: `ZSS_PROGRESS_SECONDS` or 30 s)."""
    if seconds is not None and not seconds >= 0:
        raise ValueError(f"progress seconds must be >= 0, got {seconds}")
    _pace["seconds"] = seconds


def pace_seconds() -> float:
    """The pace of plain progress lines: `--progress-seconds`, else `ZSS_PROGRESS_SECONDS`, else 30 s."""
    if _pace["seconds"] is not None:
        return float(_pace["seconds"])
    try:
        return max(0.0, float(os.environ.get("ZSS_PROGRESS_SECONDS", EVERY_SECONDS)))
    except ValueError:
        return EVERY_SECONDS


def quiet() -> bool:
    """`zss -q`: only warnings and errors (no progress, no "understood as" lines)."""
    return logging.getLogger("zss").level > logging.INFO


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


@dataclass
class _Task:
    description: str
    total: float | None
    completed: float
    unit: str = "items"                    # what `completed` counts (steps, samples, images)
    samples_per_unit: float | None = None  # e.g. the global batch when one unit is one step
    info: str = ""
    start_completed: float = 0.0
    started: float = field(default_factory=time.monotonic)
    logged_completed: float | None = None
    logged_at: float = 0.0


def progress_line(task: _Task, now: float) -> str:
    """`DESC: DONE/TOTAL UNIT (PCT%) | INFO | RATE | elapsed | ETA` for a log file."""
    elapsed = now - task.started
    done = task.completed - task.start_completed
    rate = done / elapsed if elapsed > 0 and done > 0 else 0.0
    total = f"/{task.total:g}" if task.total else ""
    pct = f" ({100.0 * task.completed / task.total:.0f}%)" if task.total else ""
    parts = [f"{task.description}: {task.completed:g}{total} {task.unit}{pct}"]
    if task.info:
        parts.append(task.info)
    if task.samples_per_unit:
        parts.append(f"{rate * task.samples_per_unit:.1f} samples/s")
    else:
        parts.append(f"{rate:.2f} {task.unit}/s")
    parts.append(f"elapsed {_clock(elapsed)}")
    if task.total:
        remaining = max(0.0, task.total - task.completed)
        parts.append(f"ETA {_clock(remaining / rate) if rate > 0 else '?'}")
    return " | ".join(parts)


class ProgressDisplay:
    """The subset of `rich.progress.Progress` the commands use (`with`, `add_task`, `update`),
    drawn as a rich bar on a terminal or logged as plain lines otherwise."""

    def __init__(self, disable: bool | None = None, every_seconds: float | None = None,
                 every_step: bool | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        silent = quiet()  # `zss -q`
        tty = sys.stderr.isatty()
        if disable is None:
            rich_on, plain_on = tty and not silent, not tty
        else:
            rich_on, plain_on = not disable and not silent, False
        self.plain = plain_on
        self.clock = clock  # the plain lines' pace and rates (tests pass a fake one)
        self.every_seconds = pace_seconds() if every_seconds is None else every_seconds
        # `zss -v`: a line for every update
        self.every_step = logging.getLogger("zss").isEnabledFor(logging.DEBUG) if every_step is None else every_step
        self.tasks: dict[int, _Task] = {}
        self._rich = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                              TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                              disable=not rich_on, transient=False)

    def __enter__(self) -> "ProgressDisplay":
        self._rich.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._rich.__exit__(*exc)
        if self.plain and exc[0] is None:
            for task in self.tasks.values():
                if task.logged_completed != task.completed:
                    self._emit(task, self.clock())

    def add_task(self, description: str, total: float | None = None, completed: float = 0,
                 info: str = "", unit: str = "items", samples_per_unit: float | None = None,
                 **fields: Any) -> int:
        tid = self._rich.add_task(description, total=total, completed=completed, info=info, **fields)
        self.tasks[tid] = _Task(description, total, completed, unit, samples_per_unit, info,
                                start_completed=completed, started=self.clock())
        return tid

    def update(self, task_id: int, advance: float | None = None, completed: float | None = None,
               info: str | None = None, **fields: Any) -> None:
        if info is not None:
            fields["info"] = info
        self._rich.update(task_id, advance=advance, completed=completed, **fields)
        task = self.tasks[task_id]
        if completed is not None:
            task.completed = completed
        if advance is not None:
            task.completed += advance
        if info is not None:
            task.info = info
        if self.plain:
            now = self.clock()
            if self._due(task, now):
                self._emit(task, now)

    def _due(self, task: _Task, now: float) -> bool:
        """The first update, the last (the total reached), every update with -v, else at most one
        line per `every_seconds`."""
        if task.logged_completed is None or (task.total and task.completed >= task.total):
            return True
        return self.every_step or now - task.logged_at >= self.every_seconds

    def _emit(self, task: _Task, now: float) -> None:
        log.info(progress_line(task, now))
        task.logged_completed, task.logged_at = task.completed, now


def progress_bar(disable: bool | None = None) -> ProgressDisplay:
    """The progress display: a rich bar on a terminal, plain log lines when stderr is not one
    (`disable=None`); `disable=True` shows nothing (e.g. non-zero ranks), `False` forces the bar."""
    return ProgressDisplay(disable=disable)
