"""A read-only reader of GNU dbm (``dbm.gnu``) files, in pure Python.

Most Errbot data directories were written by a Python whose ``dbm`` picked GNU dbm, but
many Pythons (pyenv and other source builds without the gdbm headers, some containers)
have no ``dbm.gnu`` module.  :class:`GdbmFileEngine` reads such files without it, so their
contents can still be listed and imported; it never writes.

The on-disk layout (learnt from GDBM's documentation and headers; no GDBM code is used):

* **Header**, at offset 0: ``magic``, ``block_size``, ``dir`` (offset of the directory),
  ``dir_size`` (its size in bytes), ``dir_bits``, ``bucket_size``, ``bucket_elems``,
  ``next_block``; then the header's table of free space ("avail"), which a reader does not
  need.  Integers are C ``int`` and offsets C ``off_t``, in the writing machine's byte order
  and alignment.  The magic number tells the offset width: ``0x13579acf`` (``off_t`` of
  8 bytes), ``0x13579acd`` (4 bytes), ``0x13579ace`` (the original magic, width not
  recorded), and GDBM 1.21's "numsync" variants ``0x13579ad1`` / ``0x13579ad0``, whose
  header adds a sync counter before the avail table but is otherwise the same.
* **Directory**: ``2 ** dir_bits`` bucket offsets.  The top ``dir_bits`` bits of a key's
  31-bit hash select an entry; after bucket splits several entries share one bucket.
* **Bucket** (``bucket_size`` bytes): ``av_count``, six free-space entries, ``bucket_bits``,
  ``count``, then ``bucket_elems`` elements of ``hash_value``, the first four key bytes,
  ``data_pointer``, ``key_size`` and ``data_size``.  A free slot has ``hash_value`` -1.
* **Records**: the key's bytes at ``data_pointer``, immediately followed by the value's.

Three layouts exist in the wild: 8-byte ``off_t`` aligned to 8 (64-bit machines, and
32-bit ARM/PowerPC), 8-byte ``off_t`` aligned to 4 (32-bit x86 with large-file support),
and 4-byte ``off_t`` (old 32-bit builds).  The header's ``bucket_elems`` must equal what
the layout's bucket size implies, which tells them apart.  Files from big-endian machines
are read too: the byte order of the magic number gives the file's byte order.

The whole file is read and checked when it is opened (Errbot's files are small): every
bucket the directory references is walked once, and each live element must lie inside the
file, match its key prefix, and sit in the bucket its hash selects.  Anything else raises
:class:`~plugstore.errors.BackendUnavailableError` naming the file and the problem.
"""

from __future__ import annotations

import errno
import fcntl
import struct
import sys
from dataclasses import dataclass

from ..errors import BackendUnavailableError
from .dbmformats import _HINTS, Engine

OMAGIC = 0x13579ACE
MAGIC32 = 0x13579ACD
MAGIC64 = 0x13579ACF
NUMSYNC_MAGIC32 = 0x13579AD0
NUMSYNC_MAGIC64 = 0x13579AD1
MAGICS = (OMAGIC, MAGIC32, MAGIC64, NUMSYNC_MAGIC32, NUMSYNC_MAGIC64)

_HASH_BITS = 31
_SMALL = 4  # key bytes kept in a bucket element
_EMPTY_SLOT = -1


@dataclass(frozen=True)
class _Layout:
    """Where a writer's C compiler put the fields of GDBM's structures."""

    name: str
    offset: str  # struct code of off_t
    header: str  # magic, block_size, dir, dir_size, dir_bits, bucket_size, elems, next
    bits_at: int  # offset of bucket_bits (then count) in a bucket
    table_at: int  # offset of the element table in a bucket
    element: str  # hash_value, key_start, data_pointer, key_size, data_size


_L64 = _Layout("64-bit offsets", "q", "iiqiiiiq", 104, 112, "i4sqii")
_L64_PACKED = _Layout("64-bit offsets, 4-byte aligned", "q", "iiqiiiiq", 76, 84, "i4sqii")
_L32 = _Layout("32-bit offsets", "i", "iiiiiiii", 52, 60, "i4siii")
_LAYOUTS = {
    MAGIC64: (_L64, _L64_PACKED),
    NUMSYNC_MAGIC64: (_L64, _L64_PACKED),
    MAGIC32: (_L32,),
    NUMSYNC_MAGIC32: (_L32,),
    OMAGIC: (_L64, _L64_PACKED, _L32),
}


def byte_order(head: bytes) -> str | None:
    """The :mod:`struct` byte order of a GDBM file starting with ``head``, else ``None``."""
    if len(head) < 4:
        return None
    if int.from_bytes(head[:4], "little") in MAGICS:
        return "<"
    if int.from_bytes(head[:4], "big") in MAGICS:
        return ">"
    return None


def is_gdbm(head: bytes) -> bool:
    """Whether ``head`` (a file's first bytes) is a GDBM header, in either byte order."""
    return byte_order(head) is not None


class _Corrupt(Exception):
    """What is wrong with the file (turned into a ``BackendUnavailableError``)."""


@dataclass(frozen=True)
class _Header:
    layout: _Layout
    block_size: int
    dir_at: int
    dir_size: int
    dir_bits: int
    bucket_size: int
    bucket_elems: int


def _header(data: bytes, order: str) -> _Header:
    """Decode the header with the layout that fits it."""
    magic = struct.unpack_from(order + "I", data)[0]
    problems: list[str] = []
    for layout in _LAYOUTS[magic]:
        fmt = struct.Struct(order + layout.header)
        if len(data) < fmt.size:
            raise _Corrupt(f"the file is {len(data)} bytes, shorter than a GDBM header")
        _, block, dir_at, dir_size, dir_bits, bucket_size, elems, _ = fmt.unpack_from(data)
        element = struct.calcsize(order + layout.element)
        offset = struct.calcsize(order + layout.offset)
        if bucket_size < layout.table_at + element:
            problems.append(f"bucket size {bucket_size} is too small")
        elif elems != (bucket_size - layout.table_at - element) // element + 1:
            problems.append(f"{elems} elements do not fit buckets of {bucket_size} bytes")
        elif not 0 <= dir_bits <= _HASH_BITS or dir_size != offset << dir_bits:
            problems.append(f"a directory of {dir_size} bytes cannot have {dir_bits} bits")
        elif block <= fmt.size:
            problems.append(f"block size {block} is smaller than the header")
        else:
            return _Header(layout, block, dir_at, dir_size, dir_bits, bucket_size, elems)
    raise _Corrupt("bad header: " + "; or, ".join(problems))


def _read_index(data: bytes) -> dict[bytes, tuple[int, int]]:
    """``{key: (start, end)}`` of every live value in ``data``, a whole GDBM file."""
    order = byte_order(data)
    if order is None:
        raise _Corrupt("it does not start with a GDBM magic number")
    head = _header(data, order)
    size = len(data)
    if not 0 < head.dir_at <= size - head.dir_size:
        raise _Corrupt(
            f"the directory ({head.dir_size} bytes at offset {head.dir_at}) lies beyond the "
            f"end of the file ({size} bytes)"
        )
    directory = struct.unpack_from(
        f"{order}{1 << head.dir_bits}{head.layout.offset}", data, head.dir_at
    )
    counts = struct.Struct(order + "ii")
    element = struct.Struct(order + head.layout.element)
    shift = _HASH_BITS - head.dir_bits
    index: dict[bytes, tuple[int, int]] = {}
    seen: set[int] = set()
    for bucket in directory:
        if bucket in seen:
            continue  # a bucket split fewer times than the directory: several entries
        seen.add(bucket)
        if not 0 < bucket <= size - head.bucket_size:
            raise _Corrupt(f"a bucket at offset {bucket} lies beyond the end of the file")
        bits, count = counts.unpack_from(data, bucket + head.layout.bits_at)
        if not (0 <= bits <= head.dir_bits and 0 <= count <= head.bucket_elems):
            raise _Corrupt(f"the bucket at offset {bucket} is damaged")
        table = bucket + head.layout.table_at
        for slot in range(head.bucket_elems):
            hash_value, key_start, at, key_size, data_size = element.unpack_from(
                data, table + slot * element.size
            )
            if hash_value == _EMPTY_SLOT:
                continue
            where = f"element {slot} of the bucket at offset {bucket}"
            if hash_value < 0 or key_size < 0 or data_size < 0 or at < 0:
                raise _Corrupt(f"{where} is damaged")
            end = at + key_size + data_size
            if end > size:
                raise _Corrupt(
                    f"{where} points at {key_size + data_size} bytes at offset {at}, beyond "
                    f"the end of the file ({size} bytes)"
                )
            key = data[at : at + key_size]
            if key[:_SMALL] != key_start[: min(key_size, _SMALL)]:
                raise _Corrupt(f"{where} points at a record of another key")
            if directory[hash_value >> shift] != bucket:
                raise _Corrupt(f"{where} is in the wrong bucket for its hash value")
            if key in index:
                raise _Corrupt(f"key {key!r} is stored twice")
            index[key] = (at + key_size, end)
    return index


def _read_file(path: str) -> bytes:
    """The whole file, read under a shared lock so that a live GDBM writer is noticed."""
    with open(path, "rb") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                raise BackendUnavailableError(
                    f"{path} is locked by a process that has it open for writing with GDBM "
                    "(a running Errbot?): stop it, then try again"
                ) from None
            # No flock on this file system: read it unlocked, as gdbm itself would.
        return f.read()  # closing the file drops the lock


class GdbmFileEngine(Engine):
    """A GNU dbm file, read whole when opened, without the ``dbm.gnu`` module.

    Read-only: :meth:`put` and :meth:`delete` raise
    :class:`~plugstore.errors.BackendUnavailableError`.  :meth:`refresh` returns ``False``,
    so a caller that sees the file change reopens (and so rereads) it.
    """

    kind = "dbm.gnu"

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            data = _read_file(path)
        except OSError as exc:
            raise BackendUnavailableError(f"cannot read dbm.gnu file {path}: {exc}") from None
        try:
            self._index = _read_index(data)
        except (_Corrupt, struct.error, MemoryError) as exc:
            problem = str(exc) if isinstance(exc, _Corrupt) else "a structure is cut short"
            raise BackendUnavailableError(
                f"{path} is not a readable GNU dbm file: {problem} (a truncated or corrupt "
                "file?); restore it from a backup, or check it with a Python that has dbm.gnu"
            ) from None
        self._data = data

    def _refuse(self) -> BackendUnavailableError:
        version = ".".join(map(str, sys.version_info[:3]))
        return BackendUnavailableError(
            f"{self.path} is a dbm.gnu file (GNU dbm), but this Python ({version}) has no "
            f"dbm.gnu module: plugstore can read it but not write it; {_HINTS['dbm.gnu']}, "
            "or convert the file with a Python that has it"
        )

    def get(self, key: bytes) -> bytes | None:
        where = self._index.get(bytes(key))
        return None if where is None else self._data[where[0] : where[1]]

    def put(self, key: bytes, value: bytes) -> None:
        raise self._refuse()

    def delete(self, key: bytes) -> bool:
        raise self._refuse()

    def keys(self) -> list[bytes]:
        return list(self._index)

    def count(self) -> int:
        return len(self._index)

    def commit(self) -> None:
        return None  # nothing can have changed: put and delete refuse

    def close(self) -> None:
        self._index = {}
        self._data = b""


__all__ = ["MAGICS", "GdbmFileEngine", "byte_order", "is_gdbm"]
