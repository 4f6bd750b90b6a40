"""Where shard folders live: local paths or fsspec URLs (`s3://...`, `gs://...`, `memory://...`).

One small set of calls that works on both: join, list, exists, read, remove, hash, open for
reading, and writes that appear whole (a local file is written to `NAME.tmp` then renamed; an
object is one PUT). Files that are built incrementally (a shard's tar and parquet) are built in a
local staging folder when the destination is a URL (`staged`) and then uploaded whole (`upload`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from zss.utils.hashing import sha256_file


def is_url(path: str | Path) -> bool:
    """`s3://...`, `gs://...`, `memory://...` (anything fsspec opens), not a local path."""
    return "://" in str(path) and not str(path).startswith("file://")


def _fs(url: str):
    import fsspec

    return fsspec.core.url_to_fs(url)[0]


def join(out_dir: str | Path, name: str) -> Path | str:
    """`out_dir/name` as a Path (local) or a URL string."""
    if is_url(out_dir):
        return str(out_dir).rstrip("/") + "/" + name
    return Path(out_dir) / name


def exists(path: str | Path) -> bool:
    if not is_url(path):
        return Path(path).is_file()
    fs = _fs(str(path))
    fs.invalidate_cache(str(path))  # other processes (the workers) write here: no stale listings
    return fs.exists(str(path))


def open_read(path: str | Path, block_size: int = 8 << 20):
    """A binary file object for a local path or a URL (large read-ahead blocks for URLs)."""
    if is_url(path):
        return _fs(str(path)).open(str(path), "rb", block_size=block_size)
    return open(path, "rb", buffering=1 << 20)


def read_bytes(path: str | Path) -> bytes:
    if is_url(path):
        with _fs(str(path)).open(str(path), "rb") as f:
            return f.read()
    return Path(path).read_bytes()


def remove(path: str | Path) -> None:
    if is_url(path):
        fs = _fs(str(path))
        if fs.exists(str(path)):
            fs.rm(str(path))
    elif Path(path).exists():
        Path(path).unlink()


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Local: write a `.tmp` then rename. URL: one PUT (objects appear whole)."""
    if is_url(path):
        with _fs(str(path)).open(str(path), "wb") as f:
            f.write(data)
        return
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, p)


def listdir(out_dir: str | Path) -> list[str]:
    """File names in a folder / under a URL prefix ([] when it does not exist)."""
    if is_url(out_dir):
        fs = _fs(str(out_dir))
        fs.invalidate_cache(str(out_dir))
        try:
            return [str(p).rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(str(out_dir), detail=False)]
        except FileNotFoundError:
            return []
    p = Path(out_dir)
    return [q.name for q in p.iterdir()] if p.is_dir() else []


def sha256(path: str | Path) -> str:
    """The sha256 of a local file or an object."""
    if is_url(path):
        return hashlib.sha256(read_bytes(path)).hexdigest()
    return sha256_file(path)


@contextlib.contextmanager
def staged(paths: dict[str, Any]) -> Iterator[dict[str, Path]]:
    """Local files to build `paths` (name -> destination) in: the destinations themselves when
    they are local, files of the same names in a temporary folder (removed afterwards) when they
    are URLs; `upload` then puts each one whole."""
    if not any(is_url(p) for p in paths.values()):
        yield {k: Path(v) for k, v in paths.items()}
        return
    with tempfile.TemporaryDirectory(prefix="zss-shard-") as tmp:
        yield {k: Path(tmp) / Path(str(v)).name for k, v in paths.items()}


def upload(local: Path, url: str | Path) -> None:
    """One PUT of a local file to a URL (the object appears whole or not at all)."""
    _fs(str(url)).put_file(str(local), str(url))
