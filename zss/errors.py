"""User-facing errors: the CLI turns these into one line on stderr and a non-zero exit."""


class ZssError(Exception):
    """A failure the user can act on (bad argument, missing file, unknown model name)."""
