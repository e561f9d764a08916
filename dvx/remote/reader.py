"""Chunk-exact reads of data the local store lacks (``protocols/cache.md`` §3).

A ``RemoteReader`` serves a byte range of a stored file from the chunks that cover it:
each chunk comes from the local store when it has it, else from the shared chunk cache
(``dvx.store.chunkcache``), else from the remote: the remote's location map
(``dvx.remote.locations``) names its pack, offset and length, and the chunks of one
pack that lie close together are fetched with one ranged GET. Every chunk is verified
against its id before a byte of it is returned; a range is returned whole or not at
all (``CorruptObjectError`` / ``MissingObjectError`` naming the chunk and the remote).

One reader serves any number of threads, survives ``fork`` (locks, thread pools and
HTTP clients are made afresh in the child) and pickles as its configuration (a
``spawn``ed worker reopens the store and the remote).
"""

from __future__ import annotations

import os
import threading
import weakref
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from dvx.errors import ConfigError, CorruptObjectError, DvxError, MissingObjectError
from dvx.hashing import KIND_CHUNK, KIND_CHUNK_LIST, KIND_MANIFEST, KIND_NAMES, id_matches
from dvx.objects import LAYOUT_FLAT, Manifest, ManifestHead, parse_chunk_list
from dvx.pools import LazyPool
from dvx.remote.layout import PackMissingError, Remote, check_name
from dvx.remote.locations import LocationMap, RemoteLocation
from dvx.store.chunkcache import ChunkCache, configured_size
from dvx.store.local import Store
from dvx.store.pack import COMP_DELTA, COMP_NONE, DELTA_HEADER
from dvx.store.reader import SeekableFile

if TYPE_CHECKING:
    from dvx.repo import Repository

RANGE_GAP = 256 << 10  # a gap this small between needed chunks is read through: one request
RUN_LIMIT = 64 << 20  # one request fetches at most this much
FETCH_JOBS = 8  # requests in flight for one read (and index downloads)
MAX_OBJECT = 1 << 30  # the largest manifest, chunk list or tree a read accepts from an index
READ_AHEAD_MAX = 16 << 20  # RemoteFile: the most it reads beyond a sequential read


class RemoteReader:
    """Reads objects and byte ranges of files from one remote, for one repository."""

    def __init__(self, store: Store, remote: Remote, cache: ChunkCache | None = None) -> None:
        self.store = store
        self.remote = remote
        self.cache = cache
        self._lock = threading.Lock()
        self._map: LocationMap | None = None
        self._checked = False  # the remote's format gate passed
        self._pool = LazyPool(FETCH_JOBS, "dvx-range-read")
        self.bytes_fetched = 0  # pack bytes received from the remote
        self.range_requests = 0  # ranged GETs of pack bytes
        _READERS.add(self)

    def __reduce__(self) -> tuple[Callable[..., RemoteReader], tuple[Any, ...]]:
        cache = (self.cache.root, self.cache.max_size) if self.cache is not None else None
        return _rebuild, (self.store.path, self.store.fsync, self.remote, cache)

    @property
    def requests(self) -> int:
        """Requests the remote made so far (all kinds)."""
        return self.remote.requests

    @property
    def where(self) -> str:
        return f"remote {self.remote.name!r} ({self.remote.url})"

    # -- public reads ---------------------------------------------------------------------
    def read_object(self, oid: bytes, kind: int) -> bytes:
        """A manifest, chunk list, tree (or chunk): the local store's copy, else the
        cache's, else the remote's; verified against ``oid`` as a ``kind``."""
        return self.read_objects({oid: kind})[oid]

    def read_objects(self, wanted: dict[bytes, int], lengths: dict[bytes, int] | None = None
                     ) -> dict[bytes, bytes]:
        """``{id: verified bytes}`` of ``{id: kind}``; what the store and the cache lack
        is fetched together (coalesced ranged GETs, in parallel). ``lengths``: the
        sizes a manifest gives (chunks): an index entry that disagrees is refused
        before any request."""
        got: dict[bytes, bytes] = {}
        need: dict[bytes, int] = {}
        for oid, kind in wanted.items():
            data: bytes | None = None
            if self.store.contains(oid):
                data = self.store.read(oid, kind)
            elif self.cache is not None:
                data = self.cache.get(oid, kind)
            if data is None:
                need[oid] = kind
            else:
                got[oid] = data
        if need:
            got.update(self._fetch(need, lengths or {}))
        return got

    def read_manifest(self, oid: bytes) -> Manifest:
        """A manifest with all its chunk lists (fetched together). For one range of a
        large file, ``read_manifest_range`` / ``open_manifest`` read only the chunk
        lists that cover it."""
        raw = self.read_object(oid, KIND_MANIFEST)
        head = ManifestHead.parse(raw)
        lists: dict[bytes, bytes] = {}
        if head.layout != LAYOUT_FLAT:
            lists = self.read_objects({e[-1]: KIND_CHUNK_LIST for e in head.entries})
        return Manifest.parse(raw, lists.__getitem__)

    def read_range(self, manifest: Manifest, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of the file (clipped to its size), every covering
        chunk verified; only the chunks the store and cache lack are fetched."""
        return self._read_span(_FlatSpans(manifest), start, end)

    def read_manifest_range(self, manifest_id: bytes, start: int, end: int) -> bytes:
        """``read_range`` of the file a manifest id names, reading only the manifest's
        head and the chunk lists that cover the range (a few KiB, not the whole list
        of a large file's chunks)."""
        return self._read_span(self.spans(manifest_id), start, end)

    def open_file(self, manifest: Manifest) -> RemoteFile:
        """The file, opened for reading: seekable, every byte verified."""
        return RemoteFile(self, _FlatSpans(manifest))

    def open_manifest(self, manifest_id: bytes) -> RemoteFile:
        """``open_file`` by manifest id: chunk lists are read as reads reach them."""
        return RemoteFile(self, self.spans(manifest_id))

    def spans(self, manifest_id: bytes) -> Spans:
        """How the file's bytes map to chunks, reading chunk lists only on demand."""
        head = ManifestHead.parse(self.read_object(manifest_id, KIND_MANIFEST))
        if head.layout == LAYOUT_FLAT:
            return _FlatSpans(Manifest(head.size, head.digest, head.entries))  # type: ignore[arg-type]
        return _ListSpans(self, head)

    def _read_span(self, spans: Spans, start: int, end: int) -> bytes:
        start, end = max(0, start), min(end, spans.size)
        if end <= start:
            return b""
        chunks, first_start = spans.covering(start, end)
        got = self.read_chunks(chunks)
        out = b"".join(got[cid] for _n, cid in chunks)
        skip = start - first_start
        return out[skip:skip + (end - start)] if (skip or len(out) != end - start) else out

    def read_chunks(self, chunks: Sequence[tuple[int, bytes]]) -> dict[bytes, bytes]:
        """``{id: verified bytes}`` of ``(length, id)`` chunks of a manifest."""
        got = self.read_objects({cid: KIND_CHUNK for _n, cid in chunks}, {cid: n for n, cid in chunks})
        for length, cid in chunks:
            if len(got[cid]) != length:
                raise CorruptObjectError(
                    f"chunk {cid.hex()} is {len(got[cid])} bytes; its manifest says {length}")
        return got

    # -- the location map ------------------------------------------------------------------
    def _map_path(self) -> str:
        return os.path.join(self.remote.cache_dir, "locations")

    def _load_map(self) -> LocationMap | None:
        with self._lock:
            if self._map is not None:
                return self._map
        try:
            with open(self._map_path(), "rb") as f:
                data = f.read()
            m = LocationMap.parse(data, self._map_path())
            for name in m.packs:
                check_name(name)
        except (OSError, DvxError):
            return None  # none yet, or damaged: rebuilt from the remote
        with self._lock:
            self._map = m
        return m

    def _refresh_map(self) -> LocationMap:
        """List the remote's packs (one LIST) and rebuild the map from their indexes
        (cached ones are read locally; new ones are downloaded)."""
        self._check_format()
        names = self.remote.list_pack_names()
        indexes = list(self._pool.executor().map(self.remote.index, names)) if names else []
        m = LocationMap.build((idx.name, idx.entries()) for idx in indexes)
        from dvx.fsutil import write_cache_file

        write_cache_file(self._map_path(), m.encode())  # best effort, like the indexes
        with self._lock:
            self._map = m
        return m

    def _check_format(self) -> None:
        if not self._checked:
            self.remote.check_format(create=False)
            self._checked = True

    def _locate(self, wanted: dict[bytes, int], refreshed: bool) -> tuple[dict[bytes, RemoteLocation], bool]:
        m = self._load_map()
        if m is None:
            m, refreshed = self._refresh_map(), True
        locs = {oid: m.find(oid) for oid in wanted}
        if any(loc is None for loc in locs.values()) and not refreshed:
            m, refreshed = self._refresh_map(), True
            locs = {oid: m.find(oid) for oid in wanted}
        for oid, loc in locs.items():
            if loc is None:
                raise MissingObjectError(f"{KIND_NAMES.get(wanted[oid], 'object')} {oid.hex()} is not on "
                                         f"{self.where}", "push it from a machine that has it (`dvx push`)")
        return locs, refreshed  # type: ignore[return-value]

    # -- fetching --------------------------------------------------------------------------
    def _fetch(self, wanted: dict[bytes, int], lengths: dict[bytes, int]) -> dict[bytes, bytes]:
        """Fetch, verify and cache ``{id: kind}`` from the remote; all or nothing."""
        locs, refreshed = self._locate(wanted, False)
        try:
            return self._fetch_located(wanted, locs, lengths)
        except PackMissingError:
            if refreshed:
                raise
        # a pack named by an older map is gone (remote gc): list the packs again, once
        self._refresh_map()
        locs, _ = self._locate(wanted, True)
        return self._fetch_located(wanted, locs, lengths)

    def _fetch_located(self, wanted: dict[bytes, int], locs: dict[bytes, RemoteLocation],
                       lengths: dict[bytes, int]) -> dict[bytes, bytes]:
        self._check_format()
        out: dict[bytes, bytes] = {}
        bases: dict[bytes, bytes] = {}  # base id of each delta entry -> the delta's id
        for oid, loc in locs.items():
            kind = wanted[oid]
            if loc.kind != kind:
                raise CorruptObjectError(f"{self.where}: {KIND_NAMES.get(kind, kind)} {oid.hex()} is "
                                         f"indexed as kind {loc.kind} in pack {loc.pack}",
                                         "run `dvx fsck --remote` and push again")
            if loc.comp not in (COMP_NONE, COMP_DELTA) or (loc.comp == COMP_DELTA and kind != KIND_CHUNK):
                raise CorruptObjectError(f"{self.where}: {KIND_NAMES.get(kind, kind)} {oid.hex()} in pack "
                                         f"{loc.pack} uses unknown encoding {loc.comp}", "upgrade dvx")
            # the index is the remote's word: a length that cannot be right is refused
            # before anything is requested (a forged index must not make us read GiBs)
            expected = lengths.get(oid)
            limit = MAX_OBJECT if expected is None else expected + (
                DELTA_HEADER.size if loc.comp == COMP_DELTA else 0)
            exact = loc.comp == COMP_NONE and expected is not None
            if loc.length > limit or (exact and loc.length != expected):
                raise self._corrupt(oid, loc, f"has the wrong length in the pack's index ({loc.length})")
        stored = self._get_ranges(locs)
        for oid, data in stored.items():
            loc = locs[oid]
            if loc.comp == COMP_DELTA:
                if len(data) < DELTA_HEADER.size:
                    raise self._corrupt(oid, loc, "has a truncated delta")
                bases[DELTA_HEADER.unpack_from(data, 0)[0]] = oid
        base_bytes = self._delta_bases(list(bases), locs, stored) if bases else {}
        for oid, data in stored.items():
            loc, kind = locs[oid], wanted[oid]
            if loc.comp == COMP_DELTA:
                data = self._expand(oid, data, loc, base_bytes)
            if not id_matches(kind, data, oid):
                raise self._corrupt(oid, loc, "is corrupted (hash mismatch)")
            out[oid] = data
        if self.cache is not None:
            for oid, data in out.items():
                self.cache.put(oid, data)
        return out

    def _delta_bases(self, ids: list[bytes], locs: dict[bytes, RemoteLocation],
                     stored: dict[bytes, bytes]) -> dict[bytes, bytes]:
        """The bytes of each delta's base (format.md §5.1: stored whole, no chains);
        the rebuilt chunk is verified, so a wrong base can only make it fail."""
        got: dict[bytes, bytes] = {}
        for b in ids:
            loc = locs.get(b)
            if loc is not None:  # in this batch
                if loc.comp == COMP_NONE:
                    got[b] = stored[b]
                continue  # a chain: refused by _expand
            if not (self.store.contains(b) or (self.cache is not None and self.cache.has(b))):
                m = self._load_map()
                where = m.find(b) if m is not None else None
                if where is not None and where.comp != COMP_NONE:
                    continue  # a chain
            got[b] = self.read_object(b, KIND_CHUNK)
        return got

    def _expand(self, oid: bytes, stored: bytes, loc: RemoteLocation, bases: dict[bytes, bytes]) -> bytes:
        base_id, prefix, suffix = DELTA_HEADER.unpack_from(stored, 0)
        base = bases.get(base_id)
        if not base:  # in this very batch: a chain, or a delta against itself
            raise self._corrupt(oid, loc, "is a delta of a chunk that is not stored whole")
        if prefix + suffix > len(base):
            raise self._corrupt(oid, loc, "has an invalid delta")
        return b"".join((base[:prefix], stored[DELTA_HEADER.size:], base[len(base) - suffix:]))

    def _corrupt(self, oid: bytes, loc: RemoteLocation, what: str) -> CorruptObjectError:
        return CorruptObjectError(
            f"{self.where}: {KIND_NAMES.get(loc.kind, 'object')} {oid.hex()} in pack {loc.pack} {what}; "
            "refused", "run `dvx fsck --remote` and push the data again from a machine that has it")

    def _get_ranges(self, locs: dict[bytes, RemoteLocation]) -> dict[bytes, bytes]:
        """The stored bytes of each located object, with one ranged GET per run of
        objects that lie close together in a pack (``RANGE_GAP``, ``RUN_LIMIT``)."""
        by_pack: dict[str, list[tuple[int, int, bytes]]] = {}
        for oid, loc in locs.items():
            by_pack.setdefault(loc.pack, []).append((loc.offset, loc.length, oid))
        runs: list[tuple[str, int, int, list[tuple[int, int, bytes]]]] = []
        for pack, items in by_pack.items():
            items.sort()
            cur: list[tuple[int, int, bytes]] = []
            s = e = 0
            for off, ln, oid in items:
                if cur and off - e <= RANGE_GAP and max(e, off + ln) - s <= RUN_LIMIT:
                    cur.append((off, ln, oid))
                    e = max(e, off + ln)
                    continue
                if cur:
                    runs.append((pack, s, e, cur))
                cur, s, e = [(off, ln, oid)], off, off + ln
            runs.append((pack, s, e, cur))

        def get(run: tuple[str, int, int, list[tuple[int, int, bytes]]]) -> dict[bytes, bytes]:
            pack, s, e, items = run
            data = self.remote.read_pack_range(pack, s, e)
            with self._lock:
                self.bytes_fetched += len(data)
                self.range_requests += 1
            view = memoryview(data)
            return {oid: bytes(view[off - s:off - s + ln]) for off, ln, oid in items}

        out: dict[bytes, bytes] = {}
        if len(runs) == 1:
            out.update(get(runs[0]))
        else:
            for part in self._pool.executor().map(get, runs):
                out.update(part)
        return out

    def _after_fork(self) -> None:
        self._lock = threading.Lock()


class RemoteFile(SeekableFile):
    """A file read through a ``RemoteReader``: ``read``/``readinto``/``seek``/``tell``.
    Keeps the last chunks it read, so small sequential reads cost no new fetch."""

    def __init__(self, reader: RemoteReader, spans: Spans) -> None:
        super().__init__()
        self._reader = reader
        self._spans = spans
        self.size: int = spans.size
        self._pos = 0
        self._held: tuple[int, int, bytes] | None = None  # start, end, verified bytes
        self._ahead = 0  # read-ahead, grown while reads are sequential

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def, override]
        self._check_open()
        out = memoryview(buffer).cast("B")
        want = min(len(out), max(0, self.size - self._pos))
        done = 0
        while done < want:
            held = self._held
            if held is None or not (held[0] <= self._pos < held[1]):
                held = self._fetch(want - done)
            at = self._pos - held[0]
            n = min(want - done, held[1] - self._pos)
            out[done:done + n] = held[2][at:at + n]
            done += n
            self._pos += n
        return done

    def _fetch(self, want: int) -> tuple[int, int, bytes]:
        """Whole chunks from the position on (kept: the next small read is served from
        them). Reading on where the last fetch ended is sequential: read ahead, more
        each time (1 MiB, doubled up to READ_AHEAD_MAX); a seek elsewhere resets it."""
        held = self._held
        if held is not None and held[1] == self._pos:
            self._ahead = min(max(2 * self._ahead, 1 << 20), READ_AHEAD_MAX)
        else:
            self._ahead = 0
        chunks, cstart = self._spans.covering(self._pos, min(self.size, self._pos + want + self._ahead))
        got = self._reader.read_chunks(chunks)
        data = b"".join(got[cid] for _n, cid in chunks)
        self._held = (cstart, cstart + len(data), data)
        return self._held

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
        self._held = None
        super().close()


class Spans:
    """A file's size and the chunks that cover a byte range."""

    size: int

    def covering(self, start: int, end: int) -> tuple[list[tuple[int, bytes]], int]:
        """The ``(length, id)`` chunks covering ``[start, end)`` (within the file, not
        empty) and the file offset of the first one."""
        raise NotImplementedError


class _FlatSpans(Spans):
    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.size = manifest.size

    def covering(self, start: int, end: int) -> tuple[list[tuple[int, bytes]], int]:
        starts = _starts(self.manifest)
        first = bisect_right(starts, start) - 1
        last = bisect_left(starts, end)
        return list(self.manifest.chunks[first:last]), starts[first]


class _ListSpans(Spans):
    """A two-level manifest (format.md §3): the head says how many bytes each chunk
    list covers, so a range needs only the lists that cover it (kept, up to
    ``LISTS_KEPT``, for the next reads)."""

    LISTS_KEPT = 64

    def __init__(self, reader: RemoteReader, head: ManifestHead) -> None:
        self._reader = reader
        self.size = head.size
        self._refs: list[tuple[int, int, bytes]] = list(head.entries)  # type: ignore[arg-type]
        self._starts: list[int] = []
        pos = 0
        for covered, _count, _lid in self._refs:
            self._starts.append(pos)
            pos += covered
        self._lists: dict[int, tuple[tuple[int, bytes], ...]] = {}
        self._lock = threading.Lock()

    def _load(self, indexes: list[int]) -> list[tuple[tuple[int, bytes], ...]]:
        with self._lock:
            have = {i: self._lists[i] for i in indexes if i in self._lists}
        todo = [i for i in indexes if i not in have]
        if todo:
            got = self._reader.read_objects({self._refs[i][2]: KIND_CHUNK_LIST for i in todo})
            for i in todo:
                covered, count, lid = self._refs[i]
                group = parse_chunk_list(got[lid])
                if len(group) != count or sum(n for n, _ in group) != covered:
                    raise CorruptObjectError(f"chunk list {lid.hex()} does not match its manifest entry")
                have[i] = group
            with self._lock:
                if len(self._lists) + len(todo) > self.LISTS_KEPT:
                    self._lists.clear()
                self._lists.update((i, have[i]) for i in todo)
        return [have[i] for i in indexes]

    def covering(self, start: int, end: int) -> tuple[list[tuple[int, bytes]], int]:
        first = bisect_right(self._starts, start) - 1
        last = bisect_left(self._starts, end)
        chunks: list[tuple[int, bytes]] = []
        pos = self._starts[first]
        lo = -1
        for group in self._load(list(range(first, last))):
            for n, cid in group:
                if pos + n > start and pos < end:
                    if lo < 0:
                        lo = pos
                    chunks.append((n, cid))
                pos += n
        return chunks, lo


def _starts(manifest: Manifest) -> list[int]:
    """Offset of each chunk in the file (computed once per manifest object)."""
    cache = manifest.__dict__
    starts: list[int] | None = cache.get("_dvx_starts")
    if starts is None:
        starts, pos = [], 0
        for length, _cid in manifest.chunks:
            starts.append(pos)
            pos += length
        cache["_dvx_starts"] = starts
    return starts


def remote_config_name(config: Any, name: str | None) -> str:
    """The remote ``name`` names, or the default one (``[core] default_remote``, else
    the only remote)."""
    if name is None:
        name = config.core.default_remote
        if name is None:
            if len(config.remotes) == 1:
                return str(next(iter(config.remotes)))
            if not config.remotes:
                raise ConfigError("no remote is configured", "add one with `dvx remote add NAME URL --default`")
            raise ConfigError("no default remote is set",
                              "pass a remote name or set one with `dvx remote modify NAME --default`")
    if name not in config.remotes:
        raise ConfigError(f"no remote named {name!r}", "see `dvx remote list`")
    return name


def open_remote(repo: Repository, remote_name: str | None) -> RemoteReader:
    """A reader of the named remote (the default one if None) for ``repo``, with the
    shared chunk cache sized by ``DVX_CACHE_SIZE`` / ``[cache] size``."""
    name = remote_config_name(repo.config, remote_name)
    remote = Remote(repo.config.remotes[name], repo.state_dir, repo.root)
    cache = ChunkCache(max_size=configured_size(repo.config.cache.size))
    return RemoteReader(repo.store, remote, cache)


def _rebuild(store_path: str, fsync: bool, remote: Remote, cache: tuple[str, int] | None) -> RemoteReader:
    return RemoteReader(Store(store_path, fsync=fsync), remote,
                        ChunkCache(cache[0], cache[1]) if cache is not None else None)


_READERS: weakref.WeakSet[RemoteReader] = weakref.WeakSet()


def _readers_after_fork() -> None:
    for reader in list(_READERS):
        reader._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_readers_after_fork)
