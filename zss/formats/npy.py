"""`.npy` members of shard tars: arrays to bytes (`npy_bytes`) and bytes back to arrays (`load_npy`).

`load_npy` is the fast path of reading a shard: a member handed out by the tar reader as a writable
buffer (a private map of the tar) becomes a zero-copy view, and each distinct `.npy` header is
parsed once per process (a shard's members share a few headers). No pickles, either way.
"""

from __future__ import annotations

import io

import numpy as np

_NPY_MAGIC = b"\x93NUMPY"
# .npy header bytes -> (dtype, shape, fortran order, element count)
_NPY_HEADERS: dict[bytes, tuple[np.dtype, tuple[int, ...], bool, int]] = {}


def npy_bytes(array: np.ndarray) -> bytes:
    """`array` (made C-contiguous) as the bytes of a `.npy` file."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def _npy_header(prefix: bytes) -> tuple[np.dtype, tuple[int, ...], bool, int]:
    info = _NPY_HEADERS.get(prefix)
    if info is None:
        fp = io.BytesIO(prefix)
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
        else:
            raise ValueError(f"unsupported .npy version {version}")
        if dtype.hasobject:
            raise ValueError("object arrays cannot be loaded from shards (no pickles)")
        info = (dtype, tuple(shape), bool(fortran), int(np.prod(shape, dtype=np.int64)))
        if len(_NPY_HEADERS) > 4096:
            _NPY_HEADERS.clear()
        _NPY_HEADERS[prefix] = info
    return info


def load_npy(data: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """A `.npy` tar member's bytes as an array (no pickles); an array (already decoded by the
    reader, e.g. int8 patch features) is returned as is.

    The array is a view of the member's buffer when that buffer is writable (what the shard reader
    hands out: a private map of the tar), else a copy, as `np.load` would give. Damaged bytes raise
    ValueError like `np.load` does."""
    if isinstance(data, np.ndarray):
        return data
    buf = memoryview(data)
    if buf.ndim != 1 or buf.itemsize != 1:
        buf = buf.cast("B")
    head = bytes(buf[:12])
    if head[:6] != _NPY_MAGIC or len(head) < 10:
        raise ValueError("not a .npy member (bad magic string)")
    if head[6] == 1:
        start = 10 + int.from_bytes(head[8:10], "little")
    elif head[6] in (2, 3) and len(head) == 12:
        start = 12 + int.from_bytes(head[8:12], "little")
    else:
        raise ValueError(f"unsupported .npy version {head[6]}")
    if head[6] == 3 or start > len(buf):
        return np.load(io.BytesIO(buf), allow_pickle=False)  # rare (utf-8 header) or damaged
    dtype, shape, fortran, count = _npy_header(bytes(buf[:start]))
    if count * dtype.itemsize > len(buf) - start:
        raise ValueError(f"truncated .npy member: {len(buf) - start} bytes for {shape} {dtype}")
    if count == 0:
        return np.empty(shape, dtype, order="F" if fortran else "C")
    arr = np.frombuffer(buf, dtype=dtype, count=count, offset=start)
    arr = arr.reshape(shape[::-1]).T if fortran else arr.reshape(shape)
    return arr.copy() if buf.readonly else arr
