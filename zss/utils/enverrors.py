"""Environment failures (disk full, permission denied, read-only file system) as one actionable line."""

from __future__ import annotations

import errno
from pathlib import Path

from zss.errors import ZssError

_ADVICE = {
    errno.ENOSPC: ("no space left on the device", "free space (or choose another output folder) and re-run; "
                   "finished work is kept and the re-run continues from it"),
    errno.EDQUOT: ("disk quota exceeded", "free space or raise the quota and re-run; finished work is kept"),
    errno.EACCES: ("permission denied", "make it writable for this user or choose another folder"),
    errno.EPERM: ("operation not permitted", "make it writable for this user or choose another folder"),
    errno.EROFS: ("read-only file system", "choose an output folder on a writable file system"),
}


def is_environment_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in _ADVICE


def environment_error(exc: OSError, path: str | Path | None = None) -> Exception:
    """A ZssError naming the path and what to do when `exc` is an environment failure, else `exc`."""
    if exc.errno not in _ADVICE:
        return exc
    what, todo = _ADVICE[exc.errno]
    where = exc.filename or path
    return ZssError(f"{what}: {where}: {todo}")
