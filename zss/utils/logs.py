"""Logging for the command line: the library logs through `logging.getLogger(__name__)`; the CLI
calls `setup_logging` once per command (`-v/--verbose`, `-q/--quiet`)."""

from __future__ import annotations

import logging
import sys


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time of the record (tests swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):  # noqa: D401
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it
        pass


def setup_logging(verbose: int = 0, quiet: bool = False) -> None:
    """`zss.*` records to stderr, one line each with a timestamp: INFO by default (progress lines
    when stderr is not a terminal), DEBUG with -v, warnings and errors only with -q."""
    level = logging.WARNING if quiet else logging.DEBUG if verbose > 0 else logging.INFO
    logger = logging.getLogger("zss")
    for h in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        logger.removeHandler(h)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s",
                                           datefmt="%Y-%m-%d %H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
