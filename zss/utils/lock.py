"""One writer per output folder: a lock file holding the writer's host, pid and start time.

    with FolderLock(out, "zss ingest"):
        ...write into out...

The lock is created atomically (O_CREAT|O_EXCL). A second writer is refused with one line naming the
holder. A lock whose holder is gone (same host, pid no longer alive) is taken over with a warning; a
lock held from another host is never taken over automatically (we cannot tell whether that process
lives): the line says which file to delete once the user knows it is dead.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from zss.errors import ZssError

LOCK_NAME = ".zss.lock"
log = logging.getLogger(__name__)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _describe(info: dict[str, Any]) -> str:
    started = info.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)) if isinstance(started, (int, float)) else "?"
    return f"{info.get('command', 'zss')} (pid {info.get('pid', '?')} on {info.get('host', '?')}, started {when})"


class FolderLock:
    """Exclusive writer lock on `folder` (created if needed); a context manager."""

    def __init__(self, folder: str | Path, command: str) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.command = command
        self.held = False

    def _read(self) -> dict[str, Any] | None:
        try:
            info = json.loads(self.path.read_text())
            return info if isinstance(info, dict) else {}
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # half-written or garbage: treated as a lock of unknown holder

    def acquire(self) -> None:
        from zss.utils.enverrors import environment_error

        info = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(), "command": self.command}
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            err = environment_error(exc, self.folder)
            if err is exc:
                err = ZssError(f"cannot create the output folder {self.folder}: {exc.strerror or exc}")
            raise err from exc
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._read()
                if holder is None:
                    continue  # released meanwhile
                if holder.get("host") == info["host"] and isinstance(holder.get("pid"), int) \
                        and holder["pid"] != os.getpid() and not _alive(holder["pid"]):
                    log.warning(f"zss: warning: taking over the stale lock {self.path} of {_describe(holder)}, "
                                "which is no longer running")
                    self.path.unlink(missing_ok=True)
                    continue
                if not holder:
                    raise ZssError(f"{self.folder} is locked by an unreadable lock file {self.path}; "
                                   "delete it if no other zss writes there")
                if holder.get("host") == info["host"] and holder.get("pid") == os.getpid():
                    raise ZssError(f"{self.folder} is already being written by this process")
                raise ZssError(f"{self.folder} is being written by {_describe(holder)}; wait for it to finish "
                               f"or, if that process is gone, delete {self.path}")
            except OSError as exc:
                raise environment_error(exc, self.folder) from exc
            with os.fdopen(fd, "w") as f:
                json.dump(info, f)
            self.held = True
            return
        raise ZssError(f"could not take the lock {self.path}; retry")

    def release(self) -> None:
        if self.held:
            holder = self._read()
            if holder and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "FolderLock":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
