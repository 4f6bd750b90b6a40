"""Hub downloads that fail fast without a network.

huggingface_hub retries an unreachable host for ~48 s before it gives up. Before a hub name is
resolved, `hub_offline()` probes the hub host once (a TCP connect with a short timeout, in a thread so
a hanging resolver cannot stall it); when it cannot be reached, or `HF_HUB_OFFLINE` is set, the
download runs in huggingface_hub's offline mode: cached files still load, anything else fails at once
and the caller turns that into one line telling the user to pass `NAME:/path/to/checkpoint`.
"""

from __future__ import annotations

import os
import socket
import threading
from contextlib import contextmanager
from functools import lru_cache
from urllib.parse import urlparse

PROBE_TIMEOUT = 3.0
_TRUE = {"1", "on", "yes", "true"}


def offline_env() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) set to a true value."""
    return any(os.environ.get(k, "").strip().lower() in _TRUE for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_host() -> str:
    return urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or "huggingface.co"


@lru_cache(maxsize=8)
def reachable(host: str, port: int = 443, timeout: float = PROBE_TIMEOUT) -> bool:
    """Can a TCP connection to host:port be opened within `timeout` seconds (DNS included)?"""
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(result and result[0])


@contextmanager
def hub_offline():
    """Yields the reason the hub is unusable ('HF_HUB_OFFLINE is set', 'no network to HOST') or None;
    while a reason holds, huggingface_hub is in offline mode (cache only, no retries)."""
    reason = None
    if offline_env():
        reason = "HF_HUB_OFFLINE is set"
    elif not reachable(hub_host()):
        reason = f"no network to {hub_host()}"
    if reason is None:
        yield None
        return
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - timm and open_clip depend on it
        yield reason
        return
    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield reason
    finally:
        constants.HF_HUB_OFFLINE = before


def fetch_hint(name: str, reason: str | None) -> str:
    """The one-line advice when a hub name cannot be fetched."""
    why = f" ({reason})" if reason else ""
    return f"cannot fetch the weights of {name!r} from the hub{why}: pass {name}:/path/to/checkpoint"
