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
import re
import tempfile
from pathlib import Path
from typing import Any, Iterator

from zss.errors import ZssError
from zss.utils.hashing import sha256_file

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):(/*)(.*)$")
# schemes whose `NAME:/x` or `NAME:x` (one slash or none) is a URL cut short, not a local path
_REMOTE = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss", "hf", "http", "https", "memory")


def is_url(path: str | Path) -> bool:
    """`s3://...`, `gs://...`, `memory://...` (anything fsspec opens), not a local path."""
    return "://" in str(path) and not str(path).startswith("file://")


def location(text: str | Path) -> Path | str:
    """What a user typed for a shard folder or a run: a local `Path`, or a URL kept as a string.

    A URL is checked before anything is read or written, each problem one line (`ZssError`): a
    scheme fsspec does not know, its package not installed (`s3fs`, `gcsfs`, ...), a URL cut short
    (`s3:/bucket/x` as a shell or `pathlib` leaves it, `s3:///x` without a bucket), and a bucket
    that does not exist or cannot be reached. `file://PATH` is the local PATH."""
    if isinstance(text, Path):
        return text
    s = str(text)
    if s.startswith("file://"):
        return Path(s[len("file://"):])
    m = _SCHEME.match(s)
    if m is None or (not is_url(s) and m.group(1).lower() not in _REMOTE):
        return Path(s)  # a local path (also `C:/...` and names with a colon)
    scheme, slashes, rest = m.group(1), m.group(2), m.group(3)
    if len(slashes) > 2:
        raise ZssError(f"malformed URL {s!r}: no bucket name (write {scheme}://BUCKET/PATH)")
    if slashes != "//":
        raise ZssError(f"malformed URL {s!r}: write {scheme}://BUCKET/PATH (two slashes after '{scheme}:')")
    fs = _filesystem(s, scheme)
    if hasattr(fs, "split_path"):  # object stores with buckets (s3fs, gcsfs, adlfs)
        bucket = rest.split("/", 1)[0]
        if not bucket:
            raise ZssError(f"malformed URL {s!r}: no bucket name (write {scheme}://BUCKET/PATH)")
        _check_bucket(fs, s, scheme, bucket)
    return s


def _known_protocol(scheme: str) -> bool:
    import fsspec

    return scheme.lower() in fsspec.available_protocols()


def _filesystem(url: str, scheme: str):
    """The fsspec file system of `url`, or one line saying why there is none."""
    import fsspec

    if not _known_protocol(scheme):
        raise ZssError(f"unknown URL scheme {scheme!r} in {url!r} (fsspec knows s3, gs, az, memory, ...)")
    try:
        return _fs(url)
    except ImportError as exc:
        raise ZssError(f"{url}: {exc} (pip install it beside zss)") from exc
    except (ValueError, TypeError) as exc:
        raise ZssError(f"malformed URL {url!r}: {exc}") from exc


def _check_bucket(fs, url: str, scheme: str, bucket: str) -> None:
    try:
        fs.invalidate_cache(bucket)
        found = fs.exists(bucket)
    except Exception as exc:  # noqa: BLE001 - endpoint down, no credentials, refused: the environment's
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ZssError(f"cannot reach bucket {bucket!r} of {url} ({type(exc).__name__}: {first})") from exc
    if not found:
        raise ZssError(f"bucket {bucket!r} of {url} does not exist (or these credentials cannot see it); "
                       f"create it first")


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
