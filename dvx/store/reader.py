"""Reading a stored file back, every byte verified (``protocols/format.md`` §7.4).

``Store.open_file(manifest_id)`` returns a ``VerifiedFile``: a seekable, read-only
binary file whose every chunk is checked against its id before any of its bytes are
returned. ``copy_to(fd)`` writes the whole file to a descriptor at full speed: chunks
that lie back to back in a pack are read as one run through the pack's memory map,
the kernel is asked to read a few runs ahead, the next run is verified (BLAKE3, GIL
released) on the store's read thread while this one is written, and large runs are
copied inside the kernel (``copy_file_range``) once verified.
"""

from __future__ import annotations

import io
import os
from bisect import bisect_right
from typing import TYPE_CHECKING

from dvx.errors import CorruptObjectError, MissingObjectError
from dvx.hashing import KIND_CHUNK, chunk_id

if TYPE_CHECKING:
    from dvx.objects import Manifest
    from dvx.store.local import Store

RUN_LIMIT = 8 << 20
COPY_RANGE_MIN = 1 << 20
PREFETCH = 4  # runs (of up to RUN_LIMIT bytes) read ahead
_HAVE_COPY_RANGE = hasattr(os, "copy_file_range")

Run = tuple[str, int, list[tuple[int, bytes]]]  # pack ("" for a delta), offset, (length, id)...

_CORRUPT_HINT = "run `dvx fsck` to list affected files, then `dvx fsck --repair` to restore from a remote"


def _corrupt(cid: bytes, pack: str) -> CorruptObjectError:
    return CorruptObjectError(f"chunk {cid.hex()} in pack {pack} is corrupted (hash mismatch)", _CORRUPT_HINT)


def _missing(cid: bytes) -> MissingObjectError:
    return MissingObjectError(f"chunk {cid.hex()} is not in the local store", "fetch it with `dvx pull`")


class SeekableFile(io.RawIOBase):
    """What every DVX read-only file shares (the local store's, the read API's, a
    remote's): a size, a position, ``seek``/``tell``; subclasses read."""

    size: int
    _pos: int

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        self._check_open()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self.size + offset
        else:
            raise ValueError(f"invalid whence ({whence})")
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        self._pos = pos
        return pos

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")


class VerifiedFile(SeekableFile):
    """A stored file, opened for reading: ``read``/``readinto``/``seek``/``tell``,
    plus ``copy_to(fd)``. Raises ``CorruptObjectError`` rather than return a byte of a
    chunk that does not hash to its id, ``MissingObjectError`` for an absent chunk."""

    def __init__(self, store: Store, manifest: Manifest, starts: list[int] | None = None) -> None:
        super().__init__()
        self._store = store
        self.manifest = manifest
        self.size: int = manifest.size
        # ``starts``: each chunk's offset (``chunk_starts``), for callers that open the
        # same manifest many times and keep it (the read API)
        self._starts = chunk_starts(manifest) if starts is None else starts
        self._pos = 0
        self._cached = -1  # index of the verified chunk held in _data
        self._data: memoryview | None = None

    # -- io.RawIOBase --------------------------------------------------------------------
    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def, override]
        self._check_open()
        out = memoryview(buffer).cast("B")
        done = 0
        while done < len(out) and self._pos < self.size:
            i = bisect_right(self._starts, self._pos) - 1
            data = self._chunk(i)
            off = self._pos - self._starts[i]
            n = min(len(out) - done, len(data) - off)
            out[done:done + n] = data[off:off + n]
            done += n
            self._pos += n
        return done

    def read(self, size: int | None = -1) -> bytes:
        self._check_open()
        if size is None or size < 0:
            size = max(0, self.size - self._pos)
        buf = bytearray(min(size, max(0, self.size - self._pos)))
        n = self.readinto(buf)
        del buf[n:]
        return bytes(buf)

    def readall(self) -> bytes:
        return self.read(-1)

    def close(self) -> None:
        self._data = None
        self._cached = -1
        super().close()

    def _chunk(self, i: int) -> memoryview:
        """The verified bytes of chunk ``i`` (kept until another chunk is read)."""
        if i == self._cached and self._data is not None:
            return self._data
        length, cid = self.manifest.chunks[i]
        store = self._store
        loc = store.locate(cid)
        if loc is None:
            raise _missing(cid)
        pack, kind, offset, ln = loc
        if store.is_delta(cid, pack):
            data = memoryview(store.read(cid, KIND_CHUNK))
            if len(data) != length:
                raise CorruptObjectError(f"chunk {cid.hex()} has the wrong length in its manifest")
        else:
            if kind != KIND_CHUNK or ln != length:
                raise CorruptObjectError(f"chunk {cid.hex()} has the wrong kind or length in the index")
            data = _verified(store, (pack, offset, [(length, cid)]))[1]
            if i + 1 < len(self.manifest.chunks):  # sequential reading: ask for the next one
                nxt = store.locate(self.manifest.chunks[i + 1][1])
                if nxt is not None and not store.is_delta(self.manifest.chunks[i + 1][1], nxt[0]):
                    store.pack_reader(nxt[0]).prefetch(nxt[2], nxt[3])
        self._data, self._cached = data, i
        return data

    # -- fast whole-file copy ---------------------------------------------------------------
    def copy_to(self, fd: int) -> int:
        """Write the whole file (from its start, whatever the position) to ``fd`` at the
        descriptor's current offset, verifying every chunk before its bytes are written.
        Returns the bytes written; the position is then the end of the file."""
        self._check_open()
        store = self._store
        runs = plan_runs(store, self.manifest)
        if len(runs) == 1:
            src, data = _verified(store, runs[0])
            _copy_run(src, data, runs[0][1], fd)
        elif runs:
            # Ask the kernel to read PREFETCH runs ahead in the background (new packs are
            # written with direct I/O, so they are often not cached), and verify the next
            # run (BLAKE3, GIL released) while this one is copied.
            for run in runs[:PREFETCH]:
                _prefetch(store, run)
            pool = store.read_pool()
            nxt = pool.submit(_verified, store, runs[0])
            for i in range(len(runs)):
                src, data = nxt.result()
                if i + 1 < len(runs):
                    nxt = pool.submit(_verified, store, runs[i + 1])
                if i + PREFETCH < len(runs):
                    _prefetch(store, runs[i + PREFETCH])
                _copy_run(src, data, runs[i][1], fd)
        self._pos = self.size
        return self.size


def chunk_starts(manifest: Manifest) -> list[int]:
    """The offset in the file of each chunk of ``manifest``."""
    starts = []
    pos = 0
    for length, _cid in manifest.chunks:
        starts.append(pos)
        pos += length
    return starts


def plan_runs(store: Store, manifest: Manifest) -> list[Run]:
    """Group chunks that lie back to back in one pack into single reads."""
    index = store.full_index() if len(manifest.chunks) > 8 else None
    deltas = store.delta_ids() if index is not None else None
    runs: list[Run] = []
    cur_pack, cur_start, cur_end = "", -1, -1
    for length, cid in manifest.chunks:
        loc = index.get(cid) if index is not None else store.locate(cid)
        if loc is None:
            raise _missing(cid)
        pack, kind, offset, ln = loc
        if (cid in deltas) if deltas is not None else store.is_delta(cid, pack):
            runs.append(("", -1, [(length, cid)]))  # rebuilt from its base by read_raw
            cur_pack = ""
            continue
        if kind != KIND_CHUNK or ln != length:
            raise CorruptObjectError(f"chunk {cid.hex()} has the wrong kind or length in the index")
        if runs and pack == cur_pack and offset == cur_end and cur_end - cur_start + ln <= RUN_LIMIT:
            runs[-1][2].append((length, cid))
            cur_end += ln
        else:
            runs.append((pack, offset, [(length, cid)]))
            cur_pack, cur_start, cur_end = pack, offset, offset + ln
    return runs


def _verified(store: Store, run: Run) -> tuple[int, memoryview]:
    """Check every chunk of a run against its id, reading the pack through its memory
    map (no copy). Returns the pack's fd and the verified bytes."""
    pack, offset, chunks = run
    if not pack:  # a chunk stored as a delta: rebuilt and verified by the store
        return -1, memoryview(store.read(chunks[0][1], KIND_CHUNK))
    reader = store.pack_reader(pack)
    total = sum(n for n, _ in chunks)
    view = reader.view()
    if offset + total > len(view):
        raise CorruptObjectError(f"pack {pack} is truncated at offset {offset}",
                                 "run `dvx fsck`, then `dvx fsck --repair` to restore it from a remote")
    pos = offset
    for n, cid in chunks:
        if chunk_id(view[pos:pos + n]) != cid:
            raise _corrupt(cid, pack)
        pos += n
    return reader.fd, view[offset:offset + total]


def _copy_run(src_fd: int, data: memoryview, offset: int, dest_fd: int) -> None:
    """Write verified bytes: large runs are copied inside the kernel (copy_file_range)
    from the pack file, small ones written from the mapping."""
    if src_fd >= 0 and len(data) >= COPY_RANGE_MIN and _HAVE_COPY_RANGE:
        done = 0
        try:
            while done < len(data):
                n = os.copy_file_range(src_fd, dest_fd, len(data) - done, offset + done)
                if n <= 0:
                    break
                done += n
            if done == len(data):
                return
        except OSError:
            pass  # e.g. another filesystem on an old kernel: fall back to write
        _write_all(dest_fd, data[done:])
        return
    _write_all(dest_fd, data)


def _prefetch(store: Store, run: Run) -> None:
    pack, offset, chunks = run
    if pack:
        store.pack_reader(pack).prefetch(offset, sum(n for n, _ in chunks))


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
