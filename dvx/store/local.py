"""The local object store under ``.dvx/store`` (``protocols/format.md`` §5 and §7).

Layout::

    .dvx/store/packs/<name>.pack   immutable packs of objects
    .dvx/store/packs/<name>.idx    their sorted indexes; an index makes its pack visible
    .dvx/store/tmp/                packs and files being written

Write ordering (what makes a kill at any instant safe): a pack is written under
``tmp/``, fsynced, renamed into ``packs/``; only then is its index written (tmp, fsync,
rename). Readers consider only packs that have an index, so a half-written pack is
invisible. Pointer files are written only after every object they reach is in a
visible pack. Every read is verified against the object's id.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import queue
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from dvx.errors import CorruptObjectError, DvxError, MissingObjectError, StoreError
from dvx.fsutil import atomic_write_bytes, fsync_dir, os_error, random_token, write_all
from dvx.hashing import CONTEXTS, KIND_CHUNK, KIND_CHUNK_LIST, KIND_MANIFEST, KIND_NAMES, KIND_TREE, object_id
from dvx.objects import Manifest, Tree
from dvx.pools import LazyPool
from dvx.store.pack import (
    COMP_DELTA,
    DELTA_HEADER,
    DIRECT_ALIGN,
    PACK_HEADER,
    PACK_MAGIC,
    PACK_VERSION,
    IdxFile,
    PackEntry,
    PackFile,
    PackReader,
    encode_footer,
    encode_idx,
    parse_footer,
    read_footer,
)

if TYPE_CHECKING:
    from concurrent.futures import Future

    from dvx.store.reader import VerifiedFile

PACK_TARGET_SIZE = 32 << 20  # also the size pushed to remotes as is: one single-part PUT
MAX_QUEUED_BYTES = 32 << 20
SMALL_OBJECT = 64 << 10
SMALL_BATCH = 4 << 20
LAZY_LOOKUPS = 4096  # StoreWriter: questions answered without loading the full index

Location = tuple[str, int, int, int]  # pack name, kind, offset, length


class Store:
    """Content-addressed objects in packs. Thread-safe for readers."""

    def __init__(self, path: str, *, fsync: bool = True, direct_io: bool = True) -> None:
        self.path = path
        self.packs_dir = os.path.join(path, "packs")
        self.tmp_dir = os.path.join(path, "tmp")
        self.fsync = fsync
        # New packs bypass the page cache (O_DIRECT) when they are fsynced anyway; set
        # to False by a writer when the file system refuses direct I/O.
        self.direct_io = bool(direct_io and fsync and _O_DIRECT)
        self._idx: dict[str, IdxFile] | None = None
        self._full: dict[bytes, Location] | None = None
        self._hint = ""  # pack of the last object ``locate`` found (a guess, never trusted)
        self._deltas: set[bytes] = set()
        self._readers: dict[str, PackReader] = {}
        self._lock = threading.Lock()
        self._pool = LazyPool(1, "dvx-restore-read")  # verifies the next run while one is copied
        _STORES.add(self)

    # -- layout -------------------------------------------------------------------
    @classmethod
    def create(cls, path: str) -> None:
        for d in (path, os.path.join(path, "packs"), os.path.join(path, "tmp")):
            os.makedirs(d, exist_ok=True)

    def pack_path(self, name: str) -> str:
        return os.path.join(self.packs_dir, name + ".pack")

    def idx_path(self, name: str) -> str:
        return os.path.join(self.packs_dir, name + ".idx")

    def pack_names(self) -> list[str]:
        """Names of visible packs (those with an index)."""
        try:
            names = os.listdir(self.packs_dir)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise os_error(exc, f"list {self.packs_dir}") from None
        return sorted(n[:-4] for n in names if n.endswith(".idx") and not n.startswith("."))

    # -- index ----------------------------------------------------------------------
    def refresh(self) -> None:
        with self._lock:
            self._idx = None
            self._full = None

    def _indexes(self) -> dict[str, IdxFile]:
        if self._idx is None:
            idx: dict[str, IdxFile] = {}
            for name in self.pack_names():
                try:
                    idx[name] = IdxFile(self.idx_path(name), name)
                except FileNotFoundError:
                    continue  # removed by a concurrent gc
                except OSError as exc:
                    raise os_error(exc, f"read pack index {name}.idx") from None
            self._idx = idx
        return self._idx

    def locate(self, oid: bytes) -> Location | None:
        if self._full is not None:
            return self._full.get(oid)
        indexes = self._indexes()
        hint = self._hint  # the pack of the last hit first: related objects share packs
        idx = indexes.get(hint) if hint else None
        entry = idx.find(oid) if idx is not None else None
        if entry is not None:
            return hint, entry.kind, entry.offset, entry.length
        for name, idx in indexes.items():
            if name == hint:
                continue
            entry = idx.find(oid)
            if entry is not None:
                self._hint = name
                return name, entry.kind, entry.offset, entry.length
        return None

    def contains(self, oid: bytes) -> bool:
        return self.locate(oid) is not None

    def full_index(self) -> dict[bytes, Location]:
        """Every visible object, loaded once (used by bulk operations)."""
        if self._full is None:
            full: dict[bytes, Location] = {}
            deltas: set[bytes] = set()
            for name, idx in self._indexes().items():
                for oid, kind, off, ln in idx.raw_items():
                    full.setdefault(oid, (name, kind, off, ln))
                deltas.update(oid for oid in idx.delta_ids() if full[oid][0] == name)
            self._deltas = deltas
            self._full = full
        return self._full

    def delta_ids(self) -> set[bytes]:
        """Chunks whose indexed copy (the one ``full_index`` names) is a delta."""
        self.full_index()
        return self._deltas

    # -- reading --------------------------------------------------------------------
    def pack_reader(self, name: str) -> PackReader:
        """Random access to a visible pack (opened once, kept until ``close``)."""
        reader = self._readers.get(name)
        if reader is None:
            try:
                reader = PackReader(self.pack_path(name))
            except FileNotFoundError:
                raise CorruptObjectError(
                    f"pack {name} is listed in its index but missing",
                    "run `dvx fsck`, then `dvx fsck --repair` to restore it from a remote",
                ) from None
            self._readers[name] = reader
        return reader

    def is_delta(self, oid: bytes, pack: str) -> bool:
        """Whether ``pack`` holds ``oid`` as a delta (format.md §5.1), not whole."""
        full = self._full
        if full is not None:
            loc = full.get(oid)
            if loc is not None and loc[0] == pack:
                return oid in self._deltas
        idx = self._indexes().get(pack)
        if idx is None:
            return False
        entry = idx.find(oid)
        return entry is not None and entry.comp == COMP_DELTA

    def delta_base(self, oid: bytes, pack: str) -> bytes:
        """The base chunk id of the delta copy of ``oid`` held in ``pack``."""
        entry = self._indexes()[pack].find(oid)
        assert entry is not None and entry.comp == COMP_DELTA
        head = self.pack_reader(pack).read(entry.offset, DELTA_HEADER.size)
        return DELTA_HEADER.unpack(head)[0]  # type: ignore[no-any-return]

    def expand_delta(self, oid: bytes, stored: bytes, where: str) -> bytes:
        """Rebuild a chunk stored as a delta (format.md §5.1); the base must be stored
        whole (no chains). The caller verifies the result against ``oid``."""
        if len(stored) < DELTA_HEADER.size:
            raise CorruptObjectError(f"chunk {oid.hex()} in pack {where} has a truncated delta")
        base_id, prefix, suffix = DELTA_HEADER.unpack_from(stored, 0)
        loc = self.locate(base_id)
        if loc is None:
            raise MissingObjectError(f"chunk {base_id.hex()}, the base of chunk {oid.hex()}, is not in "
                                     "the local store", "run `dvx fsck --repair` to restore it from a remote")
        if self.is_delta(base_id, loc[0]):
            raise CorruptObjectError(f"chunk {oid.hex()} in pack {where} is a delta of a delta")
        _kind, base = self.read_raw(base_id, loc)
        if prefix + suffix > len(base):
            raise CorruptObjectError(f"chunk {oid.hex()} in pack {where} has an invalid delta")
        middle = memoryview(stored)[DELTA_HEADER.size:]
        return b"".join((base[:prefix], middle, base[len(base) - suffix:]))

    def read_raw(self, oid: bytes, loc: Location | None = None) -> tuple[int, bytes]:
        """Bytes of an object, verified against its id. Returns ``(kind, data)``."""
        loc = loc or self.locate(oid)
        if loc is None:
            raise MissingObjectError(
                f"object {oid.hex()} is not in the local store",
                "fetch it with `dvx pull`, or re-add the data",
            )
        name, kind, offset, length = loc
        if kind not in CONTEXTS:
            raise CorruptObjectError(f"object {oid.hex()} in pack {name} has unknown kind {kind}")
        try:
            data = self.pack_reader(name).read(offset, length)
        except OSError as exc:
            raise os_error(exc, f"read pack {name}") from None
        if kind == KIND_CHUNK and self.is_delta(oid, name):
            data = self.expand_delta(oid, data, name)
        if object_id(kind, data) != oid:
            raise CorruptObjectError(
                f"{KIND_NAMES[kind]} {oid.hex()} in pack {name} is corrupted (hash mismatch)",
                "run `dvx fsck` to list affected files, then `dvx fsck --repair` to restore from a remote",
            )
        return kind, data

    def read(self, oid: bytes, kind: int) -> bytes:
        got, data = self.read_raw(oid)
        if got != kind:
            raise CorruptObjectError(
                f"object {oid.hex()} is a {KIND_NAMES.get(got, got)}, expected a {KIND_NAMES[kind]}"
            )
        return data

    def read_manifest(self, oid: bytes) -> Manifest:
        return Manifest.parse(self.read(oid, KIND_MANIFEST),
                              lambda lid: self.read(lid, KIND_CHUNK_LIST))

    def read_tree(self, oid: bytes) -> Tree:
        return Tree.parse(self.read(oid, KIND_TREE))

    def read_file_bytes(self, manifest_id: bytes) -> bytes:
        """The whole content of a stored file, every chunk verified against its id (for
        small files read whole: none of ``open_file``'s set-up per file)."""
        got = self.read_files_bytes([manifest_id])[0]
        if isinstance(got, DvxError):
            raise got
        return got

    def read_files_bytes(self, manifest_ids: list[bytes]) -> list[bytes | DvxError]:
        """``read_file_bytes`` of several files: per file its bytes, or the error that
        reading it raised. The pack ranges of all their manifests, then of all their
        chunks, are asked of the kernel at once (``posix_fadvise``) before any is read,
        so the disk serves them together instead of one read waiting for the last
        (packs are written with direct I/O: they are often not in the page cache)."""
        out: list[bytes | DvxError] = []
        locs = [self.locate(m) for m in manifest_ids]
        self._prefetch(locs)
        manifests: list[Manifest | DvxError] = []
        for mid, loc in zip(manifest_ids, locs, strict=True):
            try:
                kind, data = self.read_raw(mid, loc)
                if kind != KIND_MANIFEST:
                    raise CorruptObjectError(f"object {mid.hex()} is a {KIND_NAMES.get(kind, kind)}, "
                                             "expected a manifest")
                manifests.append(Manifest.parse(data, lambda lid: self.read(lid, KIND_CHUNK_LIST)))
            except DvxError as exc:
                manifests.append(exc)
        chunk_locs = {cid: self.locate(cid) for m in manifests if isinstance(m, Manifest)
                      for _n, cid in m.chunks}
        self._prefetch(list(chunk_locs.values()))
        for m in manifests:
            if isinstance(m, DvxError):
                out.append(m)
                continue
            try:
                parts = []
                for length, cid in m.chunks:
                    kind, data = self.read_raw(cid, chunk_locs[cid])
                    if kind != KIND_CHUNK or len(data) != length:
                        raise CorruptObjectError(
                            f"chunk {cid.hex()} has the wrong kind or length in its manifest")
                    parts.append(data)
                out.append(parts[0] if len(parts) == 1 else b"".join(parts))
            except DvxError as exc:
                out.append(exc)
        return out

    def _prefetch(self, locs: list[Location | None]) -> None:
        for loc in locs:
            if loc is not None:
                with contextlib.suppress(DvxError):  # its read reports it
                    self.pack_reader(loc[0]).prefetch(loc[2], loc[3])

    def open_file(self, manifest_id: bytes) -> VerifiedFile:
        """The file a manifest describes, opened for reading: seekable, and every byte
        verified against its chunk's id before it is returned (``dvx.store.reader``)."""
        from dvx.store.reader import VerifiedFile

        return VerifiedFile(self, self.read_manifest(manifest_id))

    def read_pool(self) -> LazyPool:
        """This store's read-ahead thread (created on first use, renewed after fork)."""
        return self._pool

    def close(self) -> None:
        for r in self._readers.values():
            r.close()
        self._readers.clear()
        self._pool.shutdown()

    # -- packs as files: inspection, adoption, export, deletion ----------------------------
    def pack_index(self, name: str) -> IdxFile:
        """The parsed (checksum-verified) index of a visible pack, read afresh."""
        try:
            return IdxFile(self.idx_path(name), name)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise os_error(exc, f"read pack index {name}.idx") from None

    def pack_footer(self, name: str) -> tuple[list[PackEntry], str]:
        """A pack's own footer entries and the name they hash to (``read_footer``)."""
        return read_footer(self.pack_path(name))

    def pack_objects(self, name: str, entries: Iterable[PackEntry]
                     ) -> Iterator[tuple[PackEntry, bytes | memoryview]]:
        """The stored bytes of ``entries`` of a pack (as stored: a delta is not
        expanded, nothing is verified), in offset order, as views of one read-only
        mapping of the pack (a view is valid until the next one is asked for). For fsck."""
        fd = os.open(self.pack_path(name), os.O_RDONLY)
        view: memoryview | None = None
        try:
            try:
                view = memoryview(mmap.mmap(fd, 0, access=mmap.ACCESS_READ))
            except (OSError, ValueError):  # an empty file, or no mmap here: read each
                view = None
            for e in sorted(entries, key=lambda e: e.offset):
                if view is not None:
                    yield e, view[e.offset:e.offset + e.length]  # short if truncated: fails verification
                else:
                    yield e, os.pread(fd, e.length, e.offset)
        finally:
            if view is not None:
                with contextlib.suppress(BufferError):
                    view.release()
            os.close(fd)

    def pack_size(self, name: str) -> int:
        """Bytes of a pack file (0 if it is gone)."""
        return _file_size(self.pack_path(name))

    def pack_disk_usage(self, name: str) -> int:
        """Bytes of a pack and its index."""
        return _file_size(self.pack_path(name)) + _file_size(self.idx_path(name))

    def pack_mtime(self, name: str) -> float | None:
        """When a pack was published (its index's mtime), None if it is gone."""
        try:
            return os.path.getmtime(self.idx_path(name))
        except OSError:
            return None

    def orphan_packs(self) -> list[tuple[str, float | None]]:
        """``(name, mtime)`` of pack files without an index: what a kill between
        publishing a pack and its index leaves (invisible to readers)."""
        try:
            names = os.listdir(self.packs_dir)
        except OSError:
            return []
        visible = set(self.pack_names())
        out = []
        for n in sorted(names):
            if n.endswith(".pack") and not n.startswith(".") and n[:-5] not in visible:
                try:
                    mtime: float | None = os.path.getmtime(os.path.join(self.packs_dir, n))
                except OSError:
                    mtime = None
                out.append((n[:-5], mtime))
        return out

    def delete_pack(self, name: str) -> None:
        """Delete a pack: its index first, so readers never see an index without its
        pack (format.md §7.6). The caller holds the store lock exclusively."""
        for path in (self.idx_path(name), self.pack_path(name)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        reader = self._readers.pop(name, None)
        if reader is not None:
            reader.close()
        with self._lock:
            self._idx = None
            self._full = None

    def delete_orphan_packs(self, older_than: float, now: float) -> int:
        """Delete index-less pack files older than ``older_than`` seconds. Returns how many."""
        removed = 0
        for name, mtime in self.orphan_packs():
            if mtime is None or now - mtime <= older_than:
                continue
            with contextlib.suppress(OSError):
                os.unlink(self.pack_path(name))
                removed += 1
        return removed

    def clean_tmp(self, older_than: float, now: float) -> int:
        """Delete temporary files (packs being written, downloads, exports) older than
        ``older_than`` seconds: a younger one may belong to a running command."""
        removed = 0
        try:
            names = os.listdir(self.tmp_dir)
        except OSError:
            return 0
        for n in names:
            path = os.path.join(self.tmp_dir, n)
            try:
                if now - os.path.getmtime(path) > older_than:
                    os.unlink(path)
                    removed += 1
            except OSError:
                continue
        return removed

    def adopt_pack(self, name: str, fill: Callable[[str], object], where: str) -> int:
        """Take in a pack from elsewhere (a remote): ``fill(path)`` writes it to a
        temporary file of this store; it is then verified completely (footer, name,
        every object against its id; whole objects only, as remote packs hold) and
        published, pack before index (format.md §7.1). Nothing unverified becomes
        visible. ``where`` names the source in errors. Returns the pack's size (0 if
        this store already has it)."""
        if os.path.exists(self.idx_path(name)):
            return 0
        tmp = os.path.join(self.tmp_dir, f"adopt-{random_token(8)}.pack")
        try:
            fill(tmp)
            size = os.path.getsize(tmp)
            entries = _adopted_entries(name, lambda: read_footer(tmp), where)
            with open(tmp, "rb") as f:
                # hashed in place (a map of the file, still in the page cache): no copy
                # and no allocation per object
                with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm, memoryview(mm) as view:
                    self._verify_objects(name, view, entries, where)
                if self.fsync:
                    os.fsync(f.fileno())
            os.chmod(tmp, 0o444)
            return self._publish_adopted(tmp, name, entries, size)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def _publish_adopted(self, tmp: str, name: str, entries: list[PackEntry], size: int) -> int:
        """A verified, fsynced pack file goes live: the pack, then its index (§7)."""
        os.replace(tmp, self.pack_path(name))
        atomic_write_bytes(self.idx_path(name), encode_idx(entries, size), fsync=self.fsync, mode=0o444)
        if self.fsync:
            fsync_dir(self.packs_dir)
        return size

    def _verify_objects(self, name: str, view: memoryview, entries: list[PackEntry], where: str) -> None:
        for e in sorted(entries, key=lambda e: e.offset):
            piece = view[e.offset:e.offset + e.length]
            ok = e.kind in CONTEXTS and object_id(e.kind, piece) == e.oid
            piece.release()
            if not ok:
                raise CorruptObjectError(
                    f"{where}: pack {name} holds a corrupted {KIND_NAMES.get(e.kind, 'object')} "
                    f"{e.oid.hex()} (hash mismatch); nothing was written",
                    "run `dvx fsck --remote` and push the data again from a machine that has it")

    def adopt_pack_buffer(self, name: str, size: int, fill: Callable[[memoryview], object], where: str) -> int:
        """``adopt_pack`` through memory: ``fill(view)`` writes the pack's ``size``
        bytes into a buffer of this store (one per thread, reused: its pages are
        touched fresh once); the pack is verified there completely (footer, name,
        every object), then written (directly when the store writes its own packs
        so), fsynced and published, pack before index.
        Exactly the verified bytes are stored, in one pass over them (no second read).
        Returns the pack's size (0 if this store already has it)."""
        if os.path.exists(self.idx_path(name)):
            return 0
        buf = _adopt_buffer(size)
        tmp = os.path.join(self.tmp_dir, f"adopt-{random_token(8)}.pack")
        try:
            view = memoryview(buf)[:size]
            try:
                fill(view)
                entries = _adopted_entries(name, lambda: parse_footer(name, view), where)
                self._verify_objects(name, view, entries, where)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
                try:
                    self._write_whole(fd, view)
                    if self.fsync:
                        os.fsync(fd)
                finally:
                    os.close(fd)
            finally:
                view.release()
            return self._publish_adopted(tmp, name, entries, size)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def _write_whole(self, fd: int, view: memoryview) -> None:
        """Write a page-aligned buffer to a new file: its aligned part directly when
        the store writes its packs so (no copy into fresh page-cache pages, which on
        the benchmark VM cost more than the network), the rest buffered."""
        aligned = len(view) - len(view) % DIRECT_ALIGN if self.direct_io else 0
        if aligned:
            try:
                _set_direct(fd, True)
                write_all(fd, view[:aligned])
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                self.direct_io = False  # refused: everything through the page cache
                _set_direct(fd, False)
                os.ftruncate(fd, 0)
                os.lseek(fd, 0, os.SEEK_SET)
                aligned = 0
            else:
                _set_direct(fd, False)
        write_all(fd, view[aligned:])

    def export_pack(self, name: str) -> PackFile:
        """A visible pack as it is, to copy elsewhere (its file is not to be modified)."""
        with open(self.idx_path(name), "rb") as f:
            idx_bytes = f.read()
        idx = IdxFile(self.idx_path(name), name, idx_bytes)  # checks the checksum
        return PackFile(name, self.pack_path(name), idx_bytes, idx.entries(), idx.pack_size)

    def export_objects(self, oids: Iterable[bytes], target: int = PACK_TARGET_SIZE) -> Iterator[PackFile]:
        """New packs of ``oids`` (each read verified, deltas expanded: whole objects
        only), about ``target`` bytes each, written to temporary files that the
        consumer removes with ``PackFile.discard()``."""
        index = self.full_index()
        entries: list[PackEntry] = []
        f = None
        path = ""
        size = 0
        try:
            for oid in oids:
                if f is None:
                    path = os.path.join(self.tmp_dir, f"export-{random_token(8)}.pack")
                    f = open(path, "wb")  # noqa: SIM115 - spans many iterations, closed below
                    f.write(PACK_HEADER.pack(PACK_MAGIC, PACK_VERSION))
                    size = PACK_HEADER.size
                    entries = []
                kind, data = self.read_raw(oid, index.get(oid))
                entries.append(PackEntry(oid, kind, size, len(data)))
                f.write(data)
                size += len(data)
                if size >= target:
                    done, f = f, None
                    yield _finish_export(done, path, entries, size)
            if f is not None:
                done, f = f, None
                yield _finish_export(done, path, entries, size)
        finally:
            if f is not None:  # stopped half-way: the partial file goes
                f.close()
                with contextlib.suppress(OSError):
                    os.unlink(path)

    # -- repair -----------------------------------------------------------------------
    @property
    def damaged_dir(self) -> str:
        return os.path.join(self.path, "damaged")

    def rescue_pack(self, name: str) -> list[tuple[bytes, int]]:
        """Take a damaged pack out of the store without losing what is sound in it.

        Every object of the pack that still reads back verified is copied into a new
        pack (written whole), then the pack and its index are moved, index first, to
        ``.dvx/store/damaged/`` (kept for inspection; nothing is deleted). Returns
        ``(id, kind)`` of the objects that could not be saved: they are now missing
        from the store, for a fetch to restore. The caller holds the store lock.
        A kill at any point leaves a valid store (at worst, sound copies twice)."""
        entries: list[PackEntry] = []
        footer_ok = True
        try:
            entries, _footer_name = read_footer(self.pack_path(name))
        except (CorruptObjectError, OSError):
            footer_ok = False
            idx = self._indexes().get(name)
            if idx is not None:
                entries = idx.entries()
        full = self.full_index()
        lost: list[tuple[bytes, int]] = []
        sound: list[tuple[bytes, int, bytes]] = []
        for e in entries:
            held = full.get(e.oid)
            if held is not None and held[0] != name:
                continue  # a copy in another pack is the one readers use
            try:
                kind, data = self.read_raw(e.oid, (name, e.kind, e.offset, e.length))
            except (CorruptObjectError, MissingObjectError, StoreError, OSError):
                lost.append((e.oid, e.kind))
                continue
            sound.append((e.oid, kind, data))
        if footer_ok and not lost and len(sound) == len(entries):
            # every object is sound: only the index can be wrong; rebuild it from the
            # pack's own footer (same pack name, so no copy could be published)
            size = os.path.getsize(self.pack_path(name))
            atomic_write_bytes(self.idx_path(name), encode_idx(entries, size), fsync=self.fsync, mode=0o444)
            self.refresh()
            return []
        if sound:
            writer = self.writer()
            writer.known = {o: loc for o, loc in writer.known.items() if loc[0] != name}
            with writer:
                for oid, kind, data in sound:
                    writer.add(kind, oid, data)
        os.makedirs(self.damaged_dir, exist_ok=True)
        reader = self._readers.pop(name, None)
        if reader is not None:
            reader.close()
        for path in (self.idx_path(name), self.pack_path(name)):  # index first: pack invisible
            with contextlib.suppress(FileNotFoundError):
                os.replace(path, os.path.join(self.damaged_dir, os.path.basename(path)))
        if self.fsync:
            fsync_dir(self.packs_dir)
        self.refresh()
        return lost

    def writer(self, pack_target: int = PACK_TARGET_SIZE) -> StoreWriter:
        return StoreWriter(self, pack_target)


class _OpenPack:
    def __init__(self, tmp_dir: str) -> None:
        self.tmp_path = os.path.join(tmp_dir, f"pack-{random_token(8)}.tmp")
        self.entries: list[PackEntry] = []
        self.size = PACK_HEADER.size
        self.fd = -1
        self.written = PACK_HEADER.size  # bytes handed to the kernel (writer thread)
        self.flushed = 0  # bytes whose writeback was started
        self.direct = False  # written with O_DIRECT through the writer's staging buffer


class _DirectStage:
    """An aligned staging buffer for writing packs with ``O_DIRECT`` (writer thread only).

    Adding a large file means writing as many bytes as it has; through the page cache
    that costs a copy plus a fresh page per 4 KiB, which on small VMs is the largest
    single cost of ``dvx add``. With ``O_DIRECT`` the disk reads the data straight out
    of this buffer. Only whole aligned blocks are written directly; the unaligned tail of
    a pack is written through the page cache after ``O_DIRECT`` is switched off. Every
    pack is still fsynced before it is published, so the crash-safety order is the same.
    """

    def __init__(self) -> None:
        import mmap

        self.buf = mmap.mmap(-1, DIRECT_STAGE)  # page-aligned
        self.view = memoryview(self.buf)
        self.fill = 0  # bytes staged
        self.sent = 0  # of which already written

    def add(self, fd: int, data: bytes | memoryview) -> bool:
        """Stage ``data``, writing whole stages directly. Returns False if the kernel
        refused direct I/O: then everything (staged or not) was written buffered and
        ``O_DIRECT`` is off for this file."""
        view = memoryview(data).cast("B")
        while view:
            n = min(len(view), DIRECT_STAGE - self.fill)
            _copy_into(self.view, self.fill, view[:n])
            self.fill += n
            view = view[n:]
            if self.fill == DIRECT_STAGE:
                if not self._drain(fd, DIRECT_STAGE):
                    write_all(fd, view)
                    return False
                self.fill = self.sent = 0
        return True

    def finish(self, fd: int) -> bool:
        """Write what is staged: the aligned part directly, the rest buffered. Returns
        False if direct I/O was refused (everything was then written buffered)."""
        aligned = self.fill - self.fill % DIRECT_ALIGN
        if aligned > self.sent and not self._drain(fd, aligned):
            return False
        _set_direct(fd, False)
        write_all(fd, self.view[self.sent:self.fill])
        self.fill = self.sent = 0
        return True

    def _drain(self, fd: int, upto: int) -> bool:
        """Write staged bytes up to ``upto`` directly; on EINVAL (direct I/O refused,
        nothing written by the failed call) write all that is staged buffered instead."""
        try:
            while self.sent < upto:
                self.sent += os.write(fd, self.view[self.sent:upto])
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            _set_direct(fd, False)
            write_all(fd, self.view[self.sent:self.fill])
            self.fill = self.sent = 0
            return False
        return True

    def close(self) -> None:
        self.view.release()
        # After a failed write (a full disk) the error's traceback may still hold a
        # slice of the buffer; the mapping then goes when that error does.
        with contextlib.suppress(BufferError):
            self.buf.close()


_STOP = object()


class StoreWriter:
    """Appends objects to new packs, deduplicating against the store.

    Offsets are assigned by the caller's thread; a writer thread performs the writes
    (coalesced) and a finisher thread fsyncs and publishes finished packs, so I/O
    overlaps chunking and hashing. ``commit()`` returns once everything is visible;
    ``abort()`` (or an exception in the ``with`` block) removes temporary files.
    """

    def __init__(self, store: Store, pack_target: int) -> None:
        self.store = store
        self.pack_target = pack_target
        # The store's full index, loaded on first need: a writer that stores a few
        # objects (re-adding one changed file among a million) asks the pack indexes
        # directly instead of loading millions of entries (see ``_stored``).
        self._known: dict[bytes, Location] | None = None
        self._lookups = 0
        self._limit: int | None = None
        self.pending: set[bytes] = set()
        self.bytes_written = 0
        self.objects_written = 0
        self.new_packs: list[str] = []
        self._current: _OpenPack | None = None
        self._small = bytearray()
        self._queue: queue.Queue[object] = queue.Queue()
        # bytes handed to the writer thread but not yet written: bounded, so a fast
        # producer cannot buffer a whole file in memory
        self._queued_bytes = 0
        self._queued_cond = threading.Condition()
        self._error: BaseException | None = None
        from concurrent.futures import ThreadPoolExecutor

        self._finisher = ThreadPoolExecutor(1, thread_name_prefix="dvx-pack-finish")
        self._finishing: list[Future[str]] = []
        self._open_packs: list[_OpenPack] = []
        self._stage: _DirectStage | None = None  # created by the writer thread when needed
        self._thread = threading.Thread(target=self._run, name="dvx-pack-writer", daemon=True)
        self._thread.start()

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:  # type: ignore[no-untyped-def]
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    # -- caller side ------------------------------------------------------------------
    @property
    def known(self) -> dict[bytes, Location]:
        if self._known is None:
            self._known = self.store.full_index()
        return self._known

    @known.setter
    def known(self, value: dict[bytes, Location]) -> None:
        self._known = value

    def _stored(self, oid: bytes) -> bool:
        """Whether the store held ``oid`` when this writer started: binary searches of
        the pack indexes for the first ``LAZY_LOOKUPS`` questions, then the full index."""
        known = self._known
        if known is None:
            self._lookups += 1
            if self._lookups <= LAZY_LOOKUPS or self._lookups <= self._lazy_limit():
                return self.store.locate(oid) is not None
            known = self.known
        return oid in known

    def _lazy_limit(self) -> int:
        """Lookups worth answering by binary search: 1/64 of the store's objects (the
        full index costs a tuple per object)."""
        if self._limit is None:
            self._limit = sum(idx.count for idx in self.store._indexes().values()) // 64
        return self._limit

    def has(self, oid: bytes) -> bool:
        return oid in self.pending or self._stored(oid)

    def _pack(self) -> _OpenPack:
        if self._current is None:
            self._current = _OpenPack(self.store.tmp_dir)
            self._open_packs.append(self._current)
            self._put(("open", self._current))
        return self._current

    def _put(self, item: object) -> None:
        if self._error is not None:
            raise self._wrap(self._error)
        if isinstance(item, tuple) and item[0] == "write":
            size = len(item[2])
            with self._queued_cond:
                while self._queued_bytes > MAX_QUEUED_BYTES and self._error is None:
                    self._queued_cond.wait(0.1)
                self._queued_bytes += size
        self._queue.put(item)

    def add_delta(self, oid: bytes, base: bytes, prefix: int, suffix: int, middle: bytes | memoryview) -> bool:
        """Store a chunk as a delta against ``base`` (a chunk stored whole)."""
        if oid in self.pending or self._stored(oid):
            return False
        return self.add(KIND_CHUNK, oid, DELTA_HEADER.pack(base, prefix, suffix) + bytes(middle), COMP_DELTA)

    def add(self, kind: int, oid: bytes, data: bytes | memoryview, comp: int = 0) -> bool:
        """Store one object unless present; returns whether it was written."""
        if oid in self.pending or self._stored(oid):
            return False
        pack = self._pack()
        pack.entries.append(PackEntry(oid, kind, pack.size, len(data), comp))
        pack.size += len(data)
        self.pending.add(oid)
        self.bytes_written += len(data)
        self.objects_written += 1
        if len(data) < SMALL_OBJECT:
            # Small objects are gathered here and handed to the writer thread in
            # batches: one queue operation per few MiB instead of one per object.
            self._small += data
            if len(self._small) >= SMALL_BATCH:
                self._flush_small()
        else:
            self._flush_small()
            self._put(("write", pack, data))
        if pack.size >= self.pack_target:
            self._roll()
        return True

    def add_small(self, kind: int, oid: bytes, data: bytes | memoryview) -> None:
        """``add`` for an object known to be below SMALL_OBJECT (the per-file hot path
        of adding many small files)."""
        if oid in self.pending or self._stored(oid):
            return
        pack = self._current or self._pack()
        n = len(data)
        pack.entries.append(PackEntry(oid, kind, pack.size, n))
        pack.size += n
        self.pending.add(oid)
        self.bytes_written += n
        self.objects_written += 1
        small = self._small
        small += data
        if len(small) >= SMALL_BATCH:
            self._flush_small()
        if pack.size >= self.pack_target:
            self._roll()

    def _flush_small(self) -> None:
        if self._small:
            assert self._current is not None
            self._put(("write", self._current, bytes(self._small)))
            self._small.clear()

    def add_object(self, kind: int, data: bytes) -> bytes:
        oid = object_id(kind, data)
        self.add(kind, oid, data)
        return oid

    def add_spans(self, kind: int, block: memoryview, spans: Iterable[tuple[bytes, int, int]]) -> int:
        """Store the new ones of ``(oid, start, end)`` spans of ``block``, coalescing
        adjacent spans into single writes. Returns bytes written."""
        written = 0
        run_start = run_end = -1
        pack = self._pack()
        self._flush_small()
        for oid, start, end in spans:
            if oid in self.pending or self._stored(oid):
                continue
            if pack.size >= self.pack_target:
                self._flush_small()
                if run_start >= 0:
                    self._put(("write", pack, block[run_start:run_end]))
                    run_start = -1
                self._roll()
                pack = self._pack()
            length = end - start
            pack.entries.append(PackEntry(oid, kind, pack.size, length))
            pack.size += length
            self.pending.add(oid)
            written += length
            self.objects_written += 1
            if run_start >= 0 and start == run_end:
                run_end = end
            else:
                if run_start >= 0:
                    self._put(("write", pack, block[run_start:run_end]))
                run_start, run_end = start, end
        if run_start >= 0:
            self._put(("write", pack, block[run_start:run_end]))
        self.bytes_written += written
        return written

    def after_writes(self, fn: Callable[[], object]) -> None:
        """Call ``fn`` on the writer thread once everything queued so far is written
        (used to recycle read buffers whose views were queued)."""
        self._put(("release", None, fn))

    def _roll(self) -> None:
        if self._current is not None:
            self._flush_small()
            self._put(("close", self._current))
            self._current = None

    def commit(self) -> list[str]:
        """Finish all packs and make them visible; returns the new pack names."""
        self._roll()
        self._queue.put(_STOP)
        self._thread.join()
        try:
            for fut in self._finishing:
                fut.result()
        except BaseException as exc:
            self._error = self._error or exc
        self._finisher.shutdown()
        if self._error is not None:
            self._cleanup()
            raise self._wrap(self._error)
        self.new_packs = [p for p in self.new_packs if p]
        if self.new_packs:
            fsync_dir(self.store.packs_dir) if self.store.fsync else None
            self.store.refresh()
        return self.new_packs

    def abort(self) -> None:
        self._current = None
        self._queue.put(_STOP)
        self._thread.join()
        for fut in self._finishing:
            with contextlib.suppress(BaseException):
                fut.result()
        self._finisher.shutdown()
        self._cleanup()

    def _cleanup(self) -> None:
        for pack in self._open_packs:
            if pack.fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(pack.fd)
                pack.fd = -1
            with contextlib.suppress(OSError):
                os.unlink(pack.tmp_path)

    @staticmethod
    def _wrap(exc: BaseException) -> BaseException:
        if isinstance(exc, OSError):
            return os_error(exc, "write to the DVX store")
        return exc

    # -- writer thread ------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._loop()
        finally:
            if self._stage is not None:
                self._stage.close()
                self._stage = None

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self._error is not None:
                continue  # drain
            try:
                assert isinstance(item, tuple)
                op: str = item[0]
                pack: _OpenPack = item[1]
                rest: tuple[Any, ...] = item[2:]
                if op == "open":
                    pack.fd = self._open_pack_file(pack)
                    self._write(pack, PACK_HEADER.pack(PACK_MAGIC, PACK_VERSION))
                elif op == "write":
                    try:
                        self._write(pack, rest[0])
                    finally:
                        with self._queued_cond:
                            self._queued_bytes -= len(rest[0])
                            self._queued_cond.notify()
                    pack.written += len(rest[0])
                    if (self.store.fsync and not pack.direct
                            and pack.written - pack.flushed >= WRITEBACK_STEP):
                        _start_writeback(pack.fd, pack.flushed, pack.written - pack.flushed)
                        pack.flushed = pack.written
                elif op == "release":
                    rest[0]()
                elif op == "close":
                    footer, name = encode_footer(pack.entries)
                    self._write(pack, footer)
                    if pack.direct:
                        assert self._stage is not None
                        if not self._stage.finish(pack.fd):
                            self.store.direct_io = False
                        pack.direct = False
                    pack.size += len(footer)
                    self._finishing.append(self._finisher.submit(self._publish, pack, name))
            except BaseException as exc:  # reported to the caller at commit
                self._error = exc

    def _open_pack_file(self, pack: _OpenPack) -> int:
        fd = os.open(pack.tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        if self.store.direct_io:
            # Switched on after opening: a file system without direct I/O refuses it
            # here (EINVAL), and the file is simply written through the page cache.
            # (Asking for O_DIRECT in open() itself can fail after creating the file.)
            try:
                _set_direct(fd, True)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    os.close(fd)
                    raise
                self.store.direct_io = False
            else:
                pack.direct = True
                if self._stage is None:
                    self._stage = _DirectStage()
        return fd

    def _write(self, pack: _OpenPack, data: bytes | memoryview) -> None:
        if not pack.direct:
            write_all(pack.fd, data)
            return
        assert self._stage is not None
        if not self._stage.add(pack.fd, data):
            # The file system accepted O_DIRECT but refuses these writes: the
            # rest of this pack, and later packs, go through the page cache.
            pack.direct = False
            self.store.direct_io = False

    def _publish(self, pack: _OpenPack, name: str) -> str:
        if self.store.fsync:
            os.fsync(pack.fd)
        os.close(pack.fd)
        pack.fd = -1
        final = self.store.pack_path(name)
        if os.path.exists(self.store.idx_path(name)):
            os.unlink(pack.tmp_path)  # identical pack already present
            pack.entries = []
            return name
        os.replace(pack.tmp_path, final)
        atomic_write_bytes(self.store.idx_path(name), encode_idx(pack.entries, pack.size),
                           fsync=self.store.fsync, mode=0o444)
        pack.entries = []  # published: ``pending`` still names its objects; the rest can go
        self.new_packs.append(name)
        return name


_O_DIRECT: int = getattr(os, "O_DIRECT", 0)
DIRECT_STAGE = 8 << 20


def _set_direct(fd: int, on: bool) -> None:
    import fcntl

    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, (flags | _O_DIRECT) if on else (flags & ~_O_DIRECT))


try:
    from dvx._buffers import copy_into as _copy_into  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - the extension was not built

    def _copy_into(dst: memoryview, offset: int, src: memoryview) -> int:
        dst[offset:offset + len(src)] = src
        return len(src)


def _load_sync_file_range():  # type: ignore[no-untyped-def]
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.sync_file_range
        fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
        return fn
    except (OSError, AttributeError):
        return None


_sync_file_range: Any = False  # loaded (ctypes) on first use; None where unavailable
_SYNC_FILE_RANGE_WRITE = 2
WRITEBACK_STEP = 8 << 20


def _start_writeback(fd: int, start: int, length: int) -> None:
    """Ask the kernel to start writing a range to disk now (Linux), so the final fsync
    of a pack finds little left to do. A no-op elsewhere."""
    global _sync_file_range
    if _sync_file_range is False:
        _sync_file_range = _load_sync_file_range()
    if _sync_file_range is not None:
        _sync_file_range(fd, start, length, _SYNC_FILE_RANGE_WRITE)


_ADOPT_BUFFERS = threading.local()
ADOPT_BUFFER_KEEP = 64 << 20  # a thread keeps a buffer up to this size for its next pack


def _adopt_buffer(size: int) -> mmap.mmap:
    """This thread's download buffer, at least ``size`` bytes: a private anonymous
    map (page-aligned for direct I/O; private, so a forked child never shares it)."""
    buf: mmap.mmap | None = getattr(_ADOPT_BUFFERS, "buf", None)
    if buf is None or len(buf) < size:
        if buf is not None:
            with contextlib.suppress(BufferError):  # a view still held: freed when collected
                buf.close()
        buf = mmap.mmap(-1, max(size, 1), flags=mmap.MAP_PRIVATE)
        _ADOPT_BUFFERS.buf = buf if size <= ADOPT_BUFFER_KEEP else None
    return buf


def _adopted_entries(name: str, footer: Callable[[], tuple[list[PackEntry], str]], where: str
                     ) -> list[PackEntry]:
    """The entries of a pack taken in from ``where`` (a remote), its footer checked:
    sound, naming the pack, whole objects only (as remote packs hold)."""
    try:
        entries, footer_name = footer()
    except (DvxError, OSError):
        raise CorruptObjectError(f"{where}: pack {name} is damaged",
                                 "run `dvx fsck --remote` and push the data again") from None
    if footer_name != name:
        raise CorruptObjectError(f"{where}: pack {name} holds another pack's content ({footer_name})",
                                 "run `dvx fsck --remote`")
    if any(e.comp for e in entries):
        raise CorruptObjectError(f"{where}: pack {name} holds delta-encoded objects, which remote "
                                 "packs never do", "run `dvx fsck --remote` and push the data again")
    return entries


def store_error_for(exc: OSError, what: str) -> StoreError:
    return os_error(exc, what)


def _finish_export(f, path: str, entries: list[PackEntry], size: int) -> PackFile:  # type: ignore[no-untyped-def]
    footer, name = encode_footer(entries)
    f.write(footer)
    f.close()
    size += len(footer)
    return PackFile(name, path, encode_idx(entries, size), entries, size, temporary=True)


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


# Stores in this process: a forked child gets fresh locks (a parent thread may have held
# one at the fork). Their read pools are renewed by ``dvx.pools``.
_STORES: weakref.WeakSet[Store] = weakref.WeakSet()


def _stores_after_fork() -> None:
    for store in list(_STORES):
        store._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_stores_after_fork)
