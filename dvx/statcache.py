"""The stat cache: lets ``status``/``add`` skip reading files that did not change.

One file per tracked path under ``.dvx/state/stat/``. For a tracked file
(``CacheRecord``) it holds the ``(inode, size, mtime_ns, ctime_ns, executable)`` the
file had when hashed and its manifest id. For a tracked directory (``TreeRecord``) it
holds one ``DirRecord`` per directory: the directory's scan record (its entries with
their stats, ``dvx.workspace.scan_dirs``), the manifest id of each file in it, and the
tree id, size and file count of the subtree it roots. A directory whose record and
whose subdirectories' tree ids are unchanged keeps its tree id without reading or
building anything, so the work of ``status``/``add``/``checkout`` follows what changed,
not the size of the tree. It is a cache: any read problem means "empty", never an
error, and it is rewritten atomically.

Racy entries (git's "racy clean" problem): a file modified within the timestamp
granularity after it was hashed could keep its old mtime. Entries whose mtime is not
at least ``RACY_NS`` older than the moment the scan started are stored without an id,
so they are re-hashed next time.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from blake3 import blake3

from dvx.fsutil import random_token, write_all, write_cache_file

MAGIC = b"DVXSTAT2"
TREE_MAGIC = b"DVXSTAT4"  # a tracked directory's listing (its records and ids in segments)
SEGMENT_MAGIC = b"DVXSEG1\0"
OLD_TREE_MAGIC = b"DVXSTAT3"  # read (2026-12 and before: one file per directory's record)
OLD_BLOB_MAGIC = b"DVXDIR1\0"
NO_ID = bytes(32)  # in DirRecord.ids: not a file, or no trusted id
RACY_NS = 20_000_000  # 20 ms: well above ext4/xfs timestamp granularity

Stat = tuple[int, int, int, int, int]  # ino, size, mtime_ns, ctime_ns, exec


def stat_key(st: os.stat_result) -> Stat:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, 1 if st.st_mode & 0o100 else 0)


@dataclass
class CacheRecord:
    root_id: bytes | None = None
    scan_start_ns: int = 0
    stats: dict[str, Stat] = field(default_factory=dict)
    ids: dict[str, bytes] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    dirs: frozenset[str] = frozenset()


# a directory's record and ids in a segment file: (segment name, offset, record length,
# ids length, first 16 bytes of BLAKE3(record + ids))
BlobRef = tuple[str, int, int, int, bytes]


class DirRecord:
    """One directory of a tracked tree as it was last hashed or checked out.

    Its record and ids live in a segment file (``ref``), read only when the directory
    changed: a clean or nearly clean tree of a million files loads a few kilobytes per
    directory that changed, not the whole cache, and a save writes one segment with
    the directories that changed, whatever their number."""

    __slots__ = ("digest", "tree", "size", "files", "subs", "trusted", "ref", "_data", "_loader")

    def __init__(self, digest: bytes, tree: bytes, size: int, files: int, subs: bytes, trusted: bool,
                 ref: BlobRef | None = None, record: bytes | None = None, ids: bytes | None = None,
                 loader: Callable[[], tuple[bytes, bytes] | None] | None = None) -> None:
        self.digest = digest  # BLAKE3 of its scan record (sorted entries with their stats)
        self.tree = tree  # id of the tree this directory roots
        self.size = size  # bytes of data below it
        self.files = files  # files below it
        self.subs = subs  # its subdirectories' tree ids (record order) when ``tree`` was built
        self.trusted = trusted  # every file has an id that is not racy: ``tree`` may be reused
        self.ref = ref  # where its record and ids are saved (None until saved)
        self._data = (record, ids) if record is not None and ids is not None else None
        self._loader = loader

    def available(self) -> bool:
        """Whether its record and ids can be had (its segment may be gone: a cache)."""
        if self._data is None and self._loader is not None:
            self._data = self._loader()
            self._loader = None
        return self._data is not None

    @property
    def record(self) -> bytes:
        """Its scan record (empty if unavailable)."""
        return self._data[0] if self.available() else b""  # type: ignore[index]

    @property
    def ids(self) -> bytes:
        """32 bytes per entry of ``record``: a file's manifest id, else ``NO_ID``."""
        return self._data[1] if self.available() else b""  # type: ignore[index]


@dataclass
class TreeRecord:
    root_id: bytes | None = None  # tree id of the whole tracked directory (trusted)
    scan_start_ns: int = 0
    dirs: dict[str, DirRecord] = field(default_factory=dict)


def record_digests(dirs: list[tuple[str, bytes]]) -> list[bytes]:
    """BLAKE3 of each directory record of a scan (``dvx.treescan.scan_dirs``)."""
    return [blake3(record).digest() for _, record in dirs]


def scan_fingerprint(dirs: list[tuple[str, bytes]], digests: list[bytes] | None = None) -> bytes:
    """BLAKE3 of a directory scan: equal fingerprints mean equal entries with equal
    stats, so a clean check loads nothing else."""
    h = blake3()
    for (rel, _), digest in zip(dirs, digests if digests is not None else record_digests(dirs), strict=True):
        h.update(b"%d:%s\0" % (len(rel), rel.encode("utf-8", "surrogateescape")))
        h.update(digest)
    return h.digest()


def fingerprint(files: dict[str, Stat], links: dict[str, str], dirs: frozenset[str] | set[str]) -> bytes:
    """BLAKE3 of a scan (in scan order): equal fingerprints mean equal scans, so the
    clean check needs only this, not the whole cache."""
    return blake3(marshal.dumps((files, links, tuple(sorted(dirs))))).digest()


SEGMENT_SUFFIX = ".seg"
_SEGMENT_NAME = re.compile(r"[0-9a-f]{16}\.seg")
_OLD_BLOB_NAME = re.compile(r"[0-9a-f]{32}")
CHECK_LEN = 16  # bytes of BLAKE3(record + ids) kept in a BlobRef


def _valid_ref(ref: object) -> bool:
    return ref is None or (
        isinstance(ref, tuple) and len(ref) == 5 and isinstance(ref[0], str) and _SEGMENT_NAME.fullmatch(ref[0])
        is not None and all(isinstance(x, int) and x >= 0 for x in ref[1:4])
        and isinstance(ref[4], bytes) and len(ref[4]) == CHECK_LEN)


class _Segments:
    """Reads records and ids out of a tree's segment files, each opened once (closed
    when no directory of the listing needs it any more)."""

    def __init__(self, blob_dir: str) -> None:
        self.dir = blob_dir
        self.fds: dict[str, int] = {}

    def read(self, ref: BlobRef) -> tuple[bytes, bytes] | None:
        seg, offset, record_len, ids_len, check = ref
        fd = self.fds.get(seg)
        if fd is None:
            try:
                fd = os.open(os.path.join(self.dir, seg), os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                fd = -1
            self.fds[seg] = fd
        if fd < 0 or ids_len % 32:
            return None
        try:
            raw = os.pread(fd, record_len + ids_len, offset)
        except OSError:
            return None
        if len(raw) != record_len + ids_len or blake3(raw).digest()[:CHECK_LEN] != check:
            return None  # torn or damaged: that directory is hashed again
        return raw[:record_len], raw[record_len:]

    def __del__(self, _close: Callable[[int], None] = os.close) -> None:
        for fd in self.fds.values():
            if fd >= 0:
                try:  # noqa: SIM105 - contextlib may be gone at interpreter exit
                    _close(fd)
                except OSError:
                    pass


def _read_old_blob(blob_dir: str, blob: str) -> tuple[bytes, bytes] | None:
    """A directory's record and ids in the cache format before 2026-12 (a file each)."""
    if _OLD_BLOB_NAME.fullmatch(blob) is None:
        return None
    try:
        with open(os.path.join(blob_dir, blob), "rb") as f:
            raw = f.read()
        if not raw.startswith(OLD_BLOB_MAGIC):
            return None
        record, ids = marshal.loads(memoryview(raw)[len(OLD_BLOB_MAGIC):])
    except (OSError, EOFError, ValueError, TypeError):
        return None
    if not (isinstance(record, bytes) and isinstance(ids, bytes)):
        return None
    return record, ids


def _write_segment(blob_dir: str, dirs: list[DirRecord]) -> str | None:
    """Write the record and ids of ``dirs`` (those available) into a new segment and
    point their ``ref`` at it; returns its name, or None if it could not be written
    (then those directories are left without a ``ref``). The segment needs no
    temporary name: no listing names it until it is complete, and one that no listing
    names is removed by the next save."""
    name = random_token(8) + SEGMENT_SUFFIX
    parts: list[bytes] = [SEGMENT_MAGIC]
    refs: list[tuple[DirRecord, BlobRef]] = []
    offset = len(SEGMENT_MAGIC)
    for d in dirs:
        if not d.available():
            d.ref = None
            continue
        record, ids = d._data  # type: ignore[misc]
        h = blake3(record)
        h.update(ids)
        refs.append((d, (name, offset, len(record), len(ids), h.digest()[:CHECK_LEN])))
        parts += (record, ids)
        offset += len(record) + len(ids)
    path = os.path.join(blob_dir, name)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            for i in range(0, len(parts), 512):
                chunk = parts[i:i + 512]
                done = os.writev(fd, chunk)
                for p in chunk:  # after a short write, the rest piece by piece
                    if done >= len(p):
                        done -= len(p)
                        continue
                    write_all(fd, memoryview(p)[done:])
                    done = 0
        finally:
            os.close(fd)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(path)
        for d, _ in refs:
            d.ref = None
        return None
    for d, ref in refs:
        d.ref = ref
    return name


class StatCache:
    def __init__(self, state_dir: str) -> None:
        self.dir = os.path.join(state_dir, "stat")

    def _path(self, target: str) -> str:
        return os.path.join(self.dir, blake3(target.encode()).hexdigest()[:32] + ".cache")

    def load_head(self, target: str) -> tuple[bytes | None, bytes]:
        """``(root id, fingerprint)`` of the last fully trusted scan, from a small file."""
        try:
            with open(self._path(target)[:-6] + ".head", "rb") as f:
                data = f.read()
            if not data.startswith(MAGIC):
                return None, b""
            name, root, fp = marshal.loads(data[len(MAGIC):])
            if name != target:
                return None, b""
            return root, fp
        except (OSError, EOFError, ValueError, TypeError):
            return None, b""

    def save_head(self, target: str, root: bytes | None, fp: bytes) -> None:
        if root is None:
            return
        write_cache_file(self._path(target)[:-6] + ".head", MAGIC + marshal.dumps((target, root, fp)))

    def load(self, target: str) -> CacheRecord:
        try:
            with open(self._path(target), "rb") as f:
                data = f.read()
            if not data.startswith(MAGIC):
                return CacheRecord()
            obj = marshal.loads(data[len(MAGIC):])
            if obj[0] != target:
                return CacheRecord()
            _, root_id, start, stats, ids, links, dirs = obj
            return CacheRecord(root_id, start, stats, ids, links, frozenset(dirs))
        except (OSError, EOFError, ValueError, TypeError, IndexError):
            return CacheRecord()

    def save(self, target: str, rec: CacheRecord) -> None:
        limit = rec.scan_start_ns - RACY_NS
        ids = {k: v for k, v in rec.ids.items() if rec.stats.get(k, (0, 0, limit))[2] < limit}
        root = rec.root_id if len(ids) == len(rec.stats) else None
        blob = marshal.dumps((target, root, rec.scan_start_ns, rec.stats, ids, rec.links,
                              tuple(sorted(rec.dirs))))
        write_cache_file(self._path(target), MAGIC + blob)  # one that cannot be written is only slower
        self.save_head(target, root, fingerprint(rec.stats, rec.links, rec.dirs))

    def _blob_dir(self, target: str) -> str:
        return self._path(target)[:-6] + ".dirs"

    def load_tree(self, target: str) -> TreeRecord:
        try:
            with open(self._path(target), "rb") as f:
                data = f.read()
            blob_dir = self._blob_dir(target)
            if data.startswith(TREE_MAGIC):
                name, root, start, dirs = marshal.loads(memoryview(data)[len(TREE_MAGIC):])
                if name != target:
                    return TreeRecord()
                segments = _Segments(blob_dir)
                out = TreeRecord(root, start, {
                    rel: DirRecord(digest, tree, size, files, subs, trusted, ref,
                                   loader=None if ref is None else partial(segments.read, ref))
                    for rel, digest, tree, size, files, subs, trusted, ref in dirs})
                if not all(_valid_ref(d.ref) for d in out.dirs.values()):
                    return TreeRecord()
            elif data.startswith(OLD_TREE_MAGIC):  # before 2026-12 (one file per directory)
                name, root, start, dirs = marshal.loads(memoryview(data)[len(OLD_TREE_MAGIC):])
                if name != target or not all(isinstance(d[7], str) for d in dirs):
                    return TreeRecord()
                out = TreeRecord(root, start, {
                    rel: DirRecord(digest, tree, size, files, subs, trusted,
                                   loader=partial(_read_old_blob, blob_dir, blob) if blob else None)
                    for rel, digest, tree, size, files, subs, trusted, blob in dirs})
            else:
                return TreeRecord()
            if not all(isinstance(d.trusted, bool) and isinstance(d.digest, bytes) and len(d.digest) == 32
                       for d in out.dirs.values()):
                return TreeRecord()
            return out
        except (OSError, EOFError, ValueError, TypeError, IndexError):
            return TreeRecord()

    def save_tree(self, target: str, rec: TreeRecord, fp: bytes | None) -> None:
        """Write a tree's cache: one new segment holding the record and ids of every
        directory not saved yet (and those of nearly empty or small segments, moved so
        that few segments remain), then the list of directories (atomically), then
        remove the segments no longer listed. ``rec.root_id`` (and the head: root id
        and scan fingerprint ``fp``) only when every directory is trusted."""
        blob_dir = self._blob_dir(target)
        try:
            os.makedirs(blob_dir, exist_ok=True)
            names = os.listdir(blob_dir)
        except OSError:
            return  # a cache that cannot be written only makes a later command slower
        sizes: dict[str, int] = {}
        for name in names:
            if name.endswith(SEGMENT_SUFFIX) and not name.startswith("."):
                with contextlib.suppress(OSError):
                    sizes[name] = os.stat(os.path.join(blob_dir, name)).st_size
        live: dict[str, int] = {}
        for d in rec.dirs.values():
            if d.ref is not None and d.ref[0] in sizes:
                live[d.ref[0]] = live.get(d.ref[0], 0) + d.ref[2] + d.ref[3]
        fresh = [d for d in rec.dirs.values() if (d.ref is None or d.ref[0] not in sizes) and d.available()]
        new_bytes = sum(len(d.record) + len(d.ids) for d in fresh)
        move: set[str] = set()
        for seg in sorted(live, key=lambda s: live[s]):
            # a segment mostly dead, or no larger than what is written anyway, moves into
            # the new one: the space and the number of segments stay bounded
            if 2 * live[seg] < sizes[seg] or (new_bytes and live[seg] <= new_bytes):
                move.add(seg)
                new_bytes += live[seg]
        written = None
        if fresh or move:
            written = _write_segment(blob_dir, [d for d in rec.dirs.values() if d.ref is None or
                                                d.ref[0] not in sizes or d.ref[0] in move])
        for d in rec.dirs.values():
            if d.ref is not None and d.ref[0] not in sizes and d.ref[0] != written:
                d.ref = None  # its segment is gone: the directory is hashed again next time
        root = rec.root_id if all(d.trusted for d in rec.dirs.values()) else None
        listing = marshal.dumps((target, root, rec.scan_start_ns,
                                 [(rel, d.digest, d.tree, d.size, d.files, d.subs, d.trusted, d.ref)
                                  for rel, d in rec.dirs.items()]))
        if not write_cache_file(self._path(target), TREE_MAGIC + listing):
            return
        used = {d.ref[0] for d in rec.dirs.values() if d.ref is not None}
        for name in names:
            if name not in used and not name.startswith("."):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(blob_dir, name))
        if root is not None and fp is not None:
            self.save_head(target, root, fp)
        else:
            with contextlib.suppress(OSError):
                os.unlink(self._path(target)[:-6] + ".head")

    def drop(self, target: str) -> None:
        for path in (self._path(target), self._path(target)[:-6] + ".head"):
            with contextlib.suppress(OSError):
                os.unlink(path)
        shutil.rmtree(self._blob_dir(target), ignore_errors=True)

    # The base: which version (root id) DVX last checked out or added at a path, written
    # only by checkout and add (status never changes it). Data whose content is still
    # the base while the pointer names another version is stale (the pointer moved
    # under it: merge, rebase, reset), not edited. Kept by clear(): it names a version,
    # not an object gc may delete.
    def save_base(self, target: str, root: bytes | None) -> None:
        path = self._path(target)[:-6] + ".base"
        if root is not None and self.load_base(target) == root:
            return  # unchanged: a checkout with nothing to do writes nothing
        if root is None:
            with contextlib.suppress(OSError):
                os.unlink(path)
            return
        write_cache_file(path, MAGIC + marshal.dumps((target, root)))

    def load_base(self, target: str) -> bytes | None:
        try:
            with open(self._path(target)[:-6] + ".base", "rb") as f:
                data = f.read()
            if not data.startswith(MAGIC):
                return None
            name, root = marshal.loads(data[len(MAGIC):])
            return root if name == target and isinstance(root, bytes) else None
        except (OSError, EOFError, ValueError, TypeError):
            return None

    def clear(self) -> None:
        """Forget every cached stat and id (bases are kept)."""
        with contextlib.suppress(OSError):
            for name in os.listdir(self.dir):
                if name.endswith(".dirs"):
                    shutil.rmtree(os.path.join(self.dir, name), ignore_errors=True)
                elif not name.endswith(".base"):
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(self.dir, name))
