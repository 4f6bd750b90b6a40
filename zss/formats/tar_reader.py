"""The tar reader: the members of a tar as (key, suffix, data), or grouped into samples by key.

One interface (`read_members`, and `read_samples` over it), two modes: a local tar is mapped privately (copy-on-write), so a
`.npy` member is a zero-copy writable view and nothing is read twice; a URL (or a file that cannot
be mapped) is streamed in large blocks, `.npy` members into writable buffers. Both modes yield the
same members and names, raise the same errors at the same point on damaged bytes (`READ_ERRORS`),
and skip a member whose suffix is not wanted without reading it (it is still yielded, with empty
data, so that grouping members by key sees every key). Understands ustar/GNU headers and GNU long
names, which is what `zss.formats.shards.write_shard` writes.
"""

from __future__ import annotations

import mmap
import os
import tarfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

from zss.errors import ZssError
from zss.formats.storage import is_url, open_read

# What damaged bytes raise while a tar is read (truncation, garbage headers, duplicate names);
# a member cut short raises ZssError.
READ_ERRORS = (tarfile.TarError, OSError, EOFError, ValueError, zlib.error)

Member = tuple[str, str, "bytes | bytearray | memoryview"]
_ZERO_BLOCK = b"\0" * 512


def read_members(url: Path | str, wanted: set[str] | None = None) -> Iterator[Member]:
    """(key, suffix, data) of the regular files of the tar at `url` (a path or URL), in order;
    a member whose suffix is not in `wanted` (None: all are) comes with empty data. `.npy` data
    is a writable buffer (see `zss.formats.npy.load_npy`), other data bytes."""
    mapped = _map(url)
    if mapped is not None:
        yield from _mapped_members(mapped, wanted)
        return
    with open_read(url) as f:
        yield from _streamed_members(f, wanted)


def read_samples(url: Path | str, wanted: set[str] | None = None,
                 keep: Callable[[int], bool] | None = None) -> Iterator[dict[str, Any]]:
    """The samples of the tar at `url`, webdataset style (the members of a sample are adjacent
    and share the key before the first dot), each as {suffix: data, "__key__": key, "__url__":
    url}: only suffixes in `wanted` (None: all), and only samples i with `keep(i)` (None: all)."""
    current: dict[str, Any] | None = None
    i = -1
    take = True
    for key, ext, data in read_members(url, wanted):
        if current is None or current["__key__"] != key:
            if current is not None and take:
                yield current
            current = {"__key__": key, "__url__": str(url)}
            i += 1
            take = keep is None or keep(i)
        if take and (wanted is None or ext in wanted):
            current[ext] = data
    if current is not None and take:
        yield current


def _octal(field: bytes) -> int:
    field = field.rstrip(b"\0 ").lstrip(b" ")
    return int(field, 8) if field else 0


def _header(header: bytes) -> tuple[int, bytes, int]:
    """(size, type flag, size padded to whole 512-byte blocks) of a tar header block."""
    size = _octal(header[124:136])
    return size, header[156:157], (size + 511) & ~511


def _member_name(header: bytes, long_name: str | None) -> str:
    """The member's path: a preceding GNU long name, else the header's name (with its ustar prefix)."""
    if long_name:
        return long_name
    name = header[:100].rstrip(b"\0").decode()
    prefix = header[345:500].rstrip(b"\0") if header[257:262] == b"ustar" else b""
    return prefix.decode() + "/" + name if prefix else name


def _key_suffix(name: str) -> tuple[str, str]:
    """`dir/000120034.patch.npy` -> ("000120034", "patch.npy")."""
    key, _, ext = name.rpartition("/")[2].partition(".")
    return key, ext


def _streamed_members(f: BinaryIO, wanted: set[str] | None) -> Iterator[Member]:
    """`read_members` over a file object, read front to back (seeking past unwanted data when
    the file can seek)."""
    seekable = f.seekable()
    long_name: str | None = None
    while True:
        header = f.read(512)
        if len(header) < 512 or header == _ZERO_BLOCK:
            return
        size, kind, padded = _header(header)
        if kind == b"L":  # GNU long name: the next member's name is this member's data
            long_name = f.read(padded)[:size].rstrip(b"\0").decode()
            continue
        name, long_name = _member_name(header, long_name), None
        if kind not in (b"0", b"\0"):
            _skip(f, padded, seekable)
            continue
        key, ext = _key_suffix(name)
        if wanted is not None and ext not in wanted:
            _skip(f, padded, seekable)
            yield key, ext, b""
            continue
        if ext.endswith("npy"):  # a writable buffer: load_npy can then view it instead of copying
            data: bytes | bytearray = bytearray(size)
            got = f.readinto(data) if size else 0
        else:
            data = f.read(size)
            got = len(data)
        if got != size:
            raise ZssError(f"truncated tar member {name}")
        _skip(f, padded - size, seekable)
        yield key, ext, data


def _skip(f: BinaryIO, n: int, seekable: bool) -> None:
    if n <= 0:
        return
    if seekable:
        f.seek(n, 1)
    else:
        f.read(n)


def _map(url: Path | str) -> "mmap.mmap | bytes | None":
    """A local tar's bytes as a private (copy-on-write) map: members become zero-copy views and
    nothing is read twice. None for URLs (streamed instead) or files that cannot be mapped."""
    if is_url(url):
        return None
    with open(url, "rb") as f:  # a missing file raises here, like the streaming reader would
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return b""
        try:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        except (OSError, ValueError):
            return None
    if hasattr(mm, "madvise"):
        mm.madvise(mmap.MADV_SEQUENTIAL)
    return mm


def _mapped_members(mm: "mmap.mmap | bytes", wanted: set[str] | None) -> Iterator[Member]:
    """`_streamed_members` over a mapped tar: the same members, names and errors, with each
    `.npy` member a zero-copy (writable, private) view and other members as bytes."""
    view = memoryview(mm)
    size = len(view)
    pos = 0
    long_name: str | None = None
    while True:
        if pos + 512 > size:
            return
        header = mm[pos:pos + 512]
        if header == _ZERO_BLOCK:
            return
        pos += 512
        n, kind, padded = _header(header)
        if kind == b"L":
            long_name = mm[pos:pos + padded][:n].rstrip(b"\0").decode()
            pos += padded
            continue
        name, long_name = _member_name(header, long_name), None
        start = pos
        pos += max(padded, 0)
        if kind not in (b"0", b"\0"):
            continue
        key, ext = _key_suffix(name)
        if wanted is not None and ext not in wanted:
            yield key, ext, b""
            continue
        if n < 0 or start + n > size:
            raise ZssError(f"truncated tar member {name}")
        yield key, ext, (view[start:start + n] if ext.endswith("npy") else mm[start:start + n])
