"""User-facing errors: the CLI turns these into one line on stderr and a non-zero exit."""


class ZssError(Exception):
    """A failure the user can act on (bad argument, missing file, unknown model name)."""


class BadItem(Exception):
    """A per-item input failure (ingest rows, images to segment); `kind` becomes the row's status (`missing_file`, `bad_caption`, ...)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class ExitWith(BaseException):
    """End the command with exit status `code` and the line `zss: MESSAGE` on stderr (the CLI does it)."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


class PartialFailure(ExitWith):
    """Some items of a batch command failed (named on stderr and in its summary); the rest are written."""


class Interrupted(ExitWith):
    """The user or a scheduler stopped a command (SIGINT/SIGTERM), after it saved what it could.

    The CLI prints `zss: MESSAGE` and exits with `code` (130 for SIGINT, 143 for SIGTERM). Like
    KeyboardInterrupt it is a BaseException, so no `except Exception` on the way swallows it."""
