"""Where each object of a remote lies: the location map (``protocols/cache.md`` §2).

Built from the remote's pack indexes (one LIST, then the indexes not cached yet) and
kept under ``.dvx/state/remotes/<name>/locations``, so a later process finds any
object's pack, offset and length without a request. It is refreshed (listed again)
only when an object it is asked for is not in it. Every field read from it came from a
remote, so it is treated as untrusted: pack names are hex-checked, and every object
read through it is verified against its id.

File layout, little-endian::

    "DVXL" u8 version=1, 3 zero bytes, u32 pack count, u64 entry count
    pack count x 32 bytes            the pack names (binary; hex is the name)
    entry count x 52 bytes, sorted by id:
        32s id, u32 pack number, u8 kind, u8 encoding, u16 zero, u64 offset, u32 length
    32 bytes                         BLAKE3 of everything before
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import NamedTuple

from blake3 import blake3

from dvx.errors import CorruptObjectError
from dvx.store.pack import PackEntry

MAGIC = b"DVXL"
VERSION = 1
HEADER = struct.Struct("<4sB3xIQ")
ENTRY = struct.Struct("<32sIBBHQI")
CHECKSUM = 32


class RemoteLocation(NamedTuple):
    pack: str
    kind: int
    offset: int
    length: int
    comp: int


class LocationMap:
    """A sorted, binary-searchable id -> location map of the packs it was built from."""

    def __init__(self, packs: list[str], body: bytes) -> None:
        self.packs = packs
        self._body = body
        self.count = len(body) // ENTRY.size

    @classmethod
    def build(cls, indexes: Iterable[tuple[str, Iterable[PackEntry]]]) -> LocationMap:
        """From ``(pack name, its index entries)``; an id in several packs keeps the
        first pack's location (packs are content-named: any copy is as good)."""
        packs: list[str] = []
        found: dict[bytes, tuple[int, int, int, int, int]] = {}
        for name, entries in indexes:
            n = len(packs)
            packs.append(name)
            for e in entries:
                found.setdefault(e.oid, (n, e.kind, e.comp, e.offset, e.length))
        body = b"".join(ENTRY.pack(oid, *found[oid][:3], 0, *found[oid][3:]) for oid in sorted(found))
        return cls(packs, body)

    def encode(self) -> bytes:
        head = HEADER.pack(MAGIC, VERSION, len(self.packs), self.count)
        blob = head + b"".join(bytes.fromhex(p) for p in self.packs) + self._body
        return blob + blake3(blob).digest()

    @classmethod
    def parse(cls, data: bytes, where: str) -> LocationMap:
        if len(data) < HEADER.size + CHECKSUM:
            raise CorruptObjectError(f"{where} is truncated")
        magic, version, npacks, count = HEADER.unpack_from(data, 0)
        if magic != MAGIC or version != VERSION:
            raise CorruptObjectError(f"{where} has an unknown header")
        body_at = HEADER.size + 32 * npacks
        if len(data) != body_at + count * ENTRY.size + CHECKSUM:
            raise CorruptObjectError(f"{where} has the wrong length")
        if blake3(data[:-CHECKSUM]).digest() != data[-CHECKSUM:]:
            raise CorruptObjectError(f"{where} checksum mismatch")
        packs = [data[HEADER.size + 32 * i:HEADER.size + 32 * (i + 1)].hex() for i in range(npacks)]
        m = cls(packs, data[body_at:-CHECKSUM])
        for i in range(1, m.count):  # sorted and unique, or binary search lies
            if m._key(i - 1) >= m._key(i):
                raise CorruptObjectError(f"{where} is not sorted")
        return m

    def _key(self, i: int) -> bytes:
        at = i * ENTRY.size
        return self._body[at:at + 32]

    def find(self, oid: bytes) -> RemoteLocation | None:
        lo, hi = 0, self.count
        while lo < hi:
            mid = (lo + hi) // 2
            if self._key(mid) < oid:
                lo = mid + 1
            else:
                hi = mid
        if lo < self.count and self._key(lo) == oid:
            _oid, n, kind, comp, _r, offset, length = ENTRY.unpack_from(self._body, lo * ENTRY.size)
            if n >= len(self.packs):
                raise CorruptObjectError(f"location map entry {oid.hex()} names pack number {n}")
            return RemoteLocation(self.packs[n], kind, offset, length, comp)
        return None

    def __len__(self) -> int:
        return self.count
