"""Verified reads of a stored file from the local store, made for many small opens and
long sequential reads (``protocols/read.md`` §2; the store's own ``VerifiedFile``
does the same for one-off use, and ``copy_to`` for whole files).

What a read costs: the location of each chunk is looked up once per process and
manifest (:class:`Locations`; a manifest of many chunks takes the store's full index
at once), so a warm read is a bisect, a slice of the pack's memory map and the BLAKE3
of each chunk it touches. A read of several chunks verifies them on two threads (the
store's read pool and the caller; BLAKE3 releases the GIL). A location can go stale
when ``gc`` repacks: the read then fails to verify or finds the pack gone, and the
caller refreshes the store's index and asks again (``Locations.forget``).
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from typing import TYPE_CHECKING, Any

from dvx.errors import CorruptObjectError, MissingObjectError
from dvx.hashing import KIND_CHUNK, chunk_id
from dvx.store.reader import SeekableFile

if TYPE_CHECKING:
    from dvx.objects import Manifest
    from dvx.store.local import Location, Store

FULL_INDEX_CHUNKS = 64  # more chunks than this: look all of them up in the full index
PARALLEL_MIN = 4  # chunks in one read before the second thread helps
SCRATCH_MAX = 16 << 20  # reads up to this size go through a reused per-thread buffer
_SCRATCH = threading.local()
_CORRUPT_HINT = "run `dvx fsck` to list affected files, then `dvx fsck --repair` to restore from a remote"


class Locations:
    """Where each chunk of one manifest lies in the store: ``(pack, offset)`` for a
    chunk stored whole, ``("", -1)`` for one stored as a delta, None before the
    first look-up. Filled lazily; shared by every reader of the manifest."""

    __slots__ = ("_lock", "slots")

    def __init__(self, count: int) -> None:
        self.slots: list[tuple[str, int] | None] = [None] * count
        self._lock = threading.Lock()

    def forget(self) -> None:
        self.slots = [None] * len(self.slots)

    def get(self, store: Store, manifest: Manifest, i: int) -> tuple[str, int]:
        slots = self.slots
        got = slots[i]
        if got is not None:
            return got
        chunks = manifest.chunks
        if len(chunks) > FULL_INDEX_CHUNKS:
            with self._lock:
                full = store.full_index()
                deltas = store.delta_ids()
                for j, (length, cid) in enumerate(chunks):
                    if slots[j] is None:
                        loc = full.get(cid)
                        if loc is not None:
                            slots[j] = _slot(loc, cid, length, cid in deltas)
        else:
            length, cid = chunks[i]
            loc = store.locate(cid)
            if loc is not None:
                slots[i] = _slot(loc, cid, length, store.is_delta(cid, loc[0]))
        got = slots[i]
        if got is None:
            raise MissingObjectError(f"chunk {chunks[i][1].hex()} is not in the local store",
                                     "fetch it with `dvx fetch`")
        return got


def _slot(loc: Location, cid: bytes, length: int, delta: bool) -> tuple[str, int]:
    pack, kind, offset, ln = loc
    if delta:
        return "", -1
    if kind != KIND_CHUNK or ln != length:
        raise CorruptObjectError(f"chunk {cid.hex()} has the wrong kind or length in the index of pack {pack}",
                                 _CORRUPT_HINT)
    return pack, offset


def verified_chunk(store: Store, manifest: Manifest, locs: Locations, i: int) -> memoryview:
    """The bytes of chunk ``i``, checked against its id (a view of the pack's memory
    map: no copy)."""
    length, cid = manifest.chunks[i]
    pack, offset = locs.get(store, manifest, i)
    if not pack:  # a delta: rebuilt and verified by the store
        data = memoryview(store.read(cid, KIND_CHUNK))
        if len(data) != length:
            raise CorruptObjectError(f"chunk {cid.hex()} has the wrong length in its manifest")
        return data
    view = store.pack_reader(pack).view()
    if offset + length > len(view):
        raise CorruptObjectError(f"pack {pack} is truncated at offset {offset}", _CORRUPT_HINT)
    data = view[offset:offset + length]
    if chunk_id(data) != cid:
        raise CorruptObjectError(f"chunk {cid.hex()} in pack {pack} is corrupted (hash mismatch)",
                                 _CORRUPT_HINT)
    return data


class LocalFile(SeekableFile):
    """A stored file read from the local store, every chunk verified before any of
    its bytes is returned; a read that meets a missing or corrupt chunk raises and
    leaves the position where it was."""

    def __init__(self, store: Store, manifest: Manifest, starts: list[int], locs: Locations,
                 pool: Any = None) -> None:
        super().__init__()
        self._store = store
        self.manifest = manifest
        self.size = manifest.size
        self._starts = starts
        self._locs = locs
        self._pool = pool
        self._pos = 0
        self._cached = -1
        self._data: memoryview | None = None

    def _chunk(self, i: int) -> memoryview:
        if i == self._cached and self._data is not None:
            return self._data
        data = verified_chunk(self._store, self.manifest, self._locs, i)
        self._data, self._cached = data, i
        return data

    def readinto(self, buffer: Any) -> int:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        out = memoryview(buffer).cast("B")
        pos = self._pos
        want = min(len(out), self.size - pos)
        if want <= 0:
            return 0
        starts = self._starts
        first = bisect_right(starts, pos) - 1
        last = bisect_right(starts, pos + want - 1) - 1
        views: dict[int, memoryview] = {}
        count = last - first + 1
        if count >= PARALLEL_MIN and self._pool is not None:
            half = first + count // 2
            later = self._pool.submit(self._verify_span, half, last + 1)
            try:
                views.update(self._verify_span(first, half))
            finally:
                views.update(later.result())
        done = 0
        for i in range(first, last + 1):
            data = views.get(i)
            if data is None:
                data = self._chunk(i)
            off = pos + done - starts[i]
            n = min(want - done, len(data) - off)
            out[done:done + n] = data[off:off + n]
            done += n
        if views:
            self._data, self._cached = views[last], last
        self._pos = pos + done
        return done

    def _verify_span(self, start: int, end: int) -> dict[int, memoryview]:
        return {i: verified_chunk(self._store, self.manifest, self._locs, i) for i in range(start, end)}

    def read(self, size: int | None = -1) -> bytes:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        left = max(0, self.size - self._pos)
        n = left if size is None or size < 0 else min(size, left)
        if n > SCRATCH_MAX:
            buf = bytearray(n)
            got = self.readinto(buf)
            del buf[got:]
            return bytes(buf)
        # Into a per-thread scratch buffer, then one copy into the result: a fresh
        # buffer per read costs a page fault per 4 KiB on first touch.
        scratch = getattr(_SCRATCH, "buf", None)
        if scratch is None or len(scratch) < n:
            scratch = _SCRATCH.buf = bytearray(max(n, 1 << 20))
        view = memoryview(scratch)
        got = self.readinto(view[:n])
        return bytes(view[:got])

    def readall(self) -> bytes:
        return self.read(-1)

    def close(self) -> None:
        self._data = None
        self._cached = -1
        super().close()


__all__ = ["Locations", "LocalFile", "verified_chunk"]
