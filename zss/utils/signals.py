"""Graceful stop on SIGINT/SIGTERM: the first signal only sets a flag that a loop polls at a safe
point (after an optimizer step, between shards); a second SIGINT stops at once (`Interrupted`, nothing saved).

    with StopRequest() as stop:
        while ...:
            do_one_unit()
            if stop.signum: save(); raise Interrupted(stop.exit_code, ...)

Handlers are only installed from the main thread (elsewhere the context is a no-op that never fires).
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

from zss.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_code(signum: int) -> int:
    """The shell's convention: 128 + signal number (130 SIGINT, 143 SIGTERM)."""
    return 128 + int(signum)


class StopRequest:
    """Context manager recording the first SIGINT/SIGTERM instead of dying on it."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def exit_code(self) -> int:
        return exit_code(self.signum or signal.SIGINT)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum or signal.SIGINT).name

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise Interrupted(exit_code(signum), "interrupted again; stopped at once without saving")
        if self.signum is None:
            self.signum = signum
            print(f"zss: {signal.Signals(signum).name} received; finishing the current step "
                  "(Ctrl-C again to stop at once)", file=sys.stderr, flush=True)

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)
        self._previous.clear()


def ignore_stop_signals() -> None:
    """For helper processes (data-loader workers): the parent decides when to stop."""
    for s in SIGNALS:
        signal.signal(s, signal.SIG_IGN)
