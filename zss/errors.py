"""User-facing errors: the CLI turns these into one line on stderr and a non-zero exit."""


class ZssError(Exception):
    """A failure the user can act on (bad argument, missing file, unknown model name)."""


class BadItem(Exception):
    """A per-item input failure (ingest rows, images to segment); `kind` becomes the row's status (`missing_file`, `bad_caption`, ...)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
