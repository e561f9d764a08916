"""Pack files and their indexes (``protocols/format.md`` §5).

A pack holds many objects back to back, then a footer listing them; the ``.idx`` file
beside it holds the same entries sorted by id for binary search. A pack's name is the
BLAKE3 of its footer entries (which name every blob by its content id), so two packs
with the same name hold the same bytes.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
from typing import NamedTuple

from blake3 import blake3

from dvx.errors import CorruptObjectError
from dvx.hashing import pack_name

PACK_MAGIC = b"DVXP"
PACK_END_MAGIC = b"DVXPEND1"
IDX_MAGIC = b"DVXI"
PACK_VERSION = 1

PACK_HEADER = struct.Struct("<4sB3x")
# kind, compression, reserved, offset, length, id
ENTRY = struct.Struct("<BBHQI32s")
FOOTER_TAIL = struct.Struct("<I32s8s")  # entry count, BLAKE3 of entries, end magic
IDX_HEADER = struct.Struct("<4sB3xQI")  # magic, version, pack size, count
IDX_ENTRY = struct.Struct("<32sBBHQI")  # id, kind, compression, reserved, offset, length
IDX_CHECKSUM = 32


COMP_NONE = 0
COMP_DELTA = 1  # a chunk stored as a delta against another chunk (format.md §5.1)
DELTA_HEADER = struct.Struct("<32sII")  # base chunk id, prefix length, suffix length


class PackEntry(NamedTuple):
    """One object in a pack (a tuple: cheap to create, one per stored object)."""

    oid: bytes
    kind: int
    offset: int
    length: int
    comp: int = COMP_NONE


class PackFile:
    """A pack as a file, to upload or copy: its name, path, index bytes and entries.
    ``temporary``: a file written for this purpose, removed by ``discard()``."""

    __slots__ = ("name", "path", "idx", "entries", "size", "temporary")

    def __init__(self, name: str, path: str, idx: bytes, entries: list[PackEntry], size: int,
                 temporary: bool = False) -> None:
        self.name = name
        self.path = path
        self.idx = idx
        self.entries = entries
        self.size = size
        self.temporary = temporary

    @property
    def payload(self) -> int:
        """Bytes of the objects it holds."""
        return sum(e.length for e in self.entries)

    def discard(self) -> None:
        if self.temporary:
            with contextlib.suppress(OSError):
                os.unlink(self.path)


def encode_footer(entries: list[PackEntry]) -> tuple[bytes, str]:
    blob = b"".join(ENTRY.pack(e.kind, e.comp, 0, e.offset, e.length, e.oid) for e in entries)
    tail = FOOTER_TAIL.pack(len(entries), blake3(blob).digest(), PACK_END_MAGIC)
    return blob + tail, pack_name(blob)


def encode_idx(entries: list[PackEntry], pack_size: int) -> bytes:
    body = IDX_HEADER.pack(IDX_MAGIC, PACK_VERSION, pack_size, len(entries)) + b"".join(
        IDX_ENTRY.pack(e.oid, e.kind, e.comp, 0, e.offset, e.length)
        for e in sorted(entries, key=lambda e: e.oid)
    )
    return body + blake3(body).digest()


def read_footer(path: str) -> tuple[list[PackEntry], str]:
    """Parse a pack's own footer (used to rebuild a lost index and by fsck)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < PACK_HEADER.size + FOOTER_TAIL.size:
            raise CorruptObjectError(f"pack {os.path.basename(path)} is truncated ({size} bytes)")
        head = f.read(PACK_HEADER.size)
        f.seek(size - FOOTER_TAIL.size)
        tail = f.read(FOOTER_TAIL.size)
        count = FOOTER_TAIL.unpack(tail)[0]
        blob_len = min(count * ENTRY.size, size - PACK_HEADER.size - FOOTER_TAIL.size)
        f.seek(size - FOOTER_TAIL.size - blob_len)
        blob = f.read(blob_len)
    return _parse_footer(os.path.basename(path), size, head, blob, tail)


def parse_footer(label: str, data: bytes | bytearray | memoryview) -> tuple[list[PackEntry], str]:
    """``read_footer`` of a whole pack held in memory."""
    with memoryview(data) as view:  # released at once: the caller may close the buffer
        size = len(view)
        if size < PACK_HEADER.size + FOOTER_TAIL.size:
            raise CorruptObjectError(f"pack {label} is truncated ({size} bytes)")
        tail = bytes(view[size - FOOTER_TAIL.size:])
        count = FOOTER_TAIL.unpack(tail)[0]
        blob_len = min(count * ENTRY.size, size - PACK_HEADER.size - FOOTER_TAIL.size)
        blob = bytes(view[size - FOOTER_TAIL.size - blob_len:size - FOOTER_TAIL.size])
        head = bytes(view[:PACK_HEADER.size])
    return _parse_footer(label, size, head, blob, tail)


def _parse_footer(label: str, size: int, head: bytes, blob: bytes, tail: bytes) -> tuple[list[PackEntry], str]:
    magic, version = PACK_HEADER.unpack(head)
    if magic != PACK_MAGIC or version != PACK_VERSION:
        raise CorruptObjectError(f"pack {label} has a bad header")
    count, checksum, end = FOOTER_TAIL.unpack(tail)
    blob_len = count * ENTRY.size
    if end != PACK_END_MAGIC or blob_len > size - PACK_HEADER.size - FOOTER_TAIL.size:
        raise CorruptObjectError(f"pack {label} has a bad footer")
    if blake3(blob).digest() != checksum:
        raise CorruptObjectError(f"pack {label} footer checksum mismatch")
    data_end = size - FOOTER_TAIL.size - blob_len
    entries = []
    for kind, comp, _res, offset, length, oid in ENTRY.iter_unpack(blob):
        if offset < PACK_HEADER.size or offset + length > data_end:
            raise CorruptObjectError(f"pack {label} entry lies outside its data")
        if comp not in (COMP_NONE, COMP_DELTA):
            raise CorruptObjectError(f"pack {label} uses unknown encoding {comp}", "upgrade dvx")
        entries.append(PackEntry(oid, kind, offset, length, comp))
    return entries, pack_name(blob)


class IdxFile:
    """A memory-mapped ``.idx``: sorted fixed-size records, binary-searchable."""

    def __init__(self, path: str, name: str, data: bytes | None = None) -> None:
        """Reads ``path``, or parses ``data`` (the file's bytes) when given."""
        self.path = path
        self.name = name
        if data is None:
            with open(path, "rb") as f:
                data = f.read()
        if len(data) < IDX_HEADER.size + IDX_CHECKSUM:
            raise CorruptObjectError(f"pack index {name}.idx is truncated")
        magic, version, pack_size, count = IDX_HEADER.unpack_from(data, 0)
        if magic != IDX_MAGIC:
            raise CorruptObjectError(f"pack index {name}.idx has bad magic")
        if version != PACK_VERSION:
            raise CorruptObjectError(
                f"pack index {name}.idx has version {version}; this dvx reads {PACK_VERSION}"
            )
        if len(data) != IDX_HEADER.size + count * IDX_ENTRY.size + IDX_CHECKSUM:
            raise CorruptObjectError(f"pack index {name}.idx has the wrong length")
        # (through a view: a copy of a large index costs more than hashing it)
        if blake3(memoryview(data)[:-IDX_CHECKSUM]).digest() != data[-IDX_CHECKSUM:]:
            raise CorruptObjectError(f"pack index {name}.idx checksum mismatch")
        self.pack_size = pack_size
        self.count = count
        self._data = data

    def _key(self, i: int) -> bytes:
        off = IDX_HEADER.size + i * IDX_ENTRY.size
        return self._data[off:off + 32]

    def find(self, oid: bytes) -> PackEntry | None:
        lo, hi = 0, self.count
        while lo < hi:
            mid = (lo + hi) // 2
            if self._key(mid) < oid:
                lo = mid + 1
            else:
                hi = mid
        if lo < self.count and self._key(lo) == oid:
            return self.entry(lo)
        return None

    def entry(self, i: int) -> PackEntry:
        oid, kind, comp, _r, offset, length = IDX_ENTRY.unpack_from(
            self._data, IDX_HEADER.size + i * IDX_ENTRY.size
        )
        return PackEntry(oid, kind, offset, length, comp)

    def entries(self) -> list[PackEntry]:
        body = memoryview(self._data)[IDX_HEADER.size:IDX_HEADER.size + self.count * IDX_ENTRY.size]
        return [PackEntry(oid, kind, off, ln, comp) for oid, kind, comp, _r, off, ln in
                IDX_ENTRY.iter_unpack(body)]

    def delta_ids(self) -> set[bytes]:
        """Objects this pack stores as deltas (none in remote packs)."""
        body = memoryview(self._data)[IDX_HEADER.size:IDX_HEADER.size + self.count * IDX_ENTRY.size]
        return {oid for oid, _k, comp, _r, _o, _l in IDX_ENTRY.iter_unpack(body) if comp != COMP_NONE}

    def raw_items(self):  # type: ignore[no-untyped-def]
        """Fast iteration: ``(oid, kind, offset, length)`` tuples."""
        body = memoryview(self._data)[IDX_HEADER.size:IDX_HEADER.size + self.count * IDX_ENTRY.size]
        for oid, kind, _c, _r, off, ln in IDX_ENTRY.iter_unpack(body):
            yield oid, kind, off, ln


_FADV_WILLNEED: int | None = getattr(os, "POSIX_FADV_WILLNEED", None)
DIRECT_ALIGN = 4096  # a multiple of every common logical block size


class PackReader:
    """Random access into one pack file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDONLY)
        self._map: mmap.mmap | None = None

    def read(self, offset: int, length: int) -> bytes:
        data = os.pread(self._fd, length, offset)
        if len(data) != length:
            raise CorruptObjectError(
                f"pack {os.path.basename(self.path)} is truncated at offset {offset}"
            )
        return data

    def view(self) -> memoryview:
        """The whole pack, memory-mapped read-only (zero-copy reads from the page cache)."""
        if self._map is None:
            self._map = mmap.mmap(self._fd, 0, access=mmap.ACCESS_READ)
        return memoryview(self._map)

    @property
    def fd(self) -> int:
        return self._fd

    def prefetch(self, offset: int, length: int) -> None:
        """Start reading a range into the page cache in the background (packs written
        with direct I/O are not cached), so a later read finds it there."""
        if _FADV_WILLNEED is not None:
            with contextlib.suppress(OSError):
                os.posix_fadvise(self._fd, offset, length, _FADV_WILLNEED)

    def readinto(self, offset: int, buf: memoryview) -> None:
        n = os.preadv(self._fd, [buf], offset)
        if n != len(buf):
            raise CorruptObjectError(
                f"pack {os.path.basename(self.path)} is truncated at offset {offset}"
            )

    def close(self) -> None:
        if self._map is not None:
            with contextlib.suppress(BufferError):  # a live view keeps the mapping
                self._map.close()
            self._map = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        # a Repository dropped without close() (an API user's) must not leak descriptors
        with contextlib.suppress(Exception):
            self.close()
