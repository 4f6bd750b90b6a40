"""One progress bar style for every long-running command."""

from __future__ import annotations

import sys

from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)


def progress_bar(disable: bool | None = None) -> Progress:
    """A rich Progress; silent when stderr is not a terminal unless asked otherwise."""
    if disable is None:
        disable = not sys.stderr.isatty()
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    disable=disable, transient=False)
