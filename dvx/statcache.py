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
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field

from blake3 import blake3

from dvx.fsutil import write_cache_file

MAGIC = b"DVXSTAT2"
TREE_MAGIC = b"DVXSTAT3"
BLOB_MAGIC = b"DVXDIR1\0"
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


class DirRecord:
    """One directory of a tracked tree as it was last hashed or checked out.

    Its record and ids live in a file of their own (``blob``), read only when the
    directory changed: a clean or nearly clean tree of a million files loads and
    rewrites a few kilobytes per directory that changed, not the whole cache."""

    __slots__ = ("digest", "tree", "size", "files", "subs", "trusted", "blob", "_data", "_loader")

    def __init__(self, digest: bytes, tree: bytes, size: int, files: int, subs: bytes, trusted: bool,
                 blob: str = "", record: bytes | None = None, ids: bytes | None = None,
                 loader: Callable[[str], tuple[bytes, bytes] | None] | None = None) -> None:
        self.digest = digest  # BLAKE3 of its scan record (sorted entries with their stats)
        self.tree = tree  # id of the tree this directory roots
        self.size = size  # bytes of data below it
        self.files = files  # files below it
        self.subs = subs  # its subdirectories' tree ids (record order) when ``tree`` was built
        self.trusted = trusted  # every file has an id that is not racy: ``tree`` may be reused
        self.blob = blob  # the file holding record and ids ("" until saved)
        self._data = (record, ids) if record is not None and ids is not None else None
        self._loader = loader

    def available(self) -> bool:
        """Whether its record and ids can be had (the blob may be gone: a cache)."""
        if self._data is None and self._loader is not None and self.blob:
            self._data = self._loader(self.blob)
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
            if not data.startswith(TREE_MAGIC):
                return TreeRecord()
            name, root, start, dirs = marshal.loads(memoryview(data)[len(TREE_MAGIC):])
            if name != target:
                return TreeRecord()
            blob_dir = self._blob_dir(target)

            def load_blob(blob: str) -> tuple[bytes, bytes] | None:
                try:
                    with open(os.path.join(blob_dir, blob), "rb") as f:
                        raw = f.read()
                    if not raw.startswith(BLOB_MAGIC):
                        return None
                    record, ids = marshal.loads(memoryview(raw)[len(BLOB_MAGIC):])
                    if not (isinstance(record, bytes) and isinstance(ids, bytes)):
                        return None
                    return record, ids
                except (OSError, EOFError, ValueError, TypeError):
                    return None

            out = TreeRecord(root, start, {
                rel: DirRecord(digest, tree, size, files, subs, trusted, blob, loader=load_blob)
                for rel, digest, tree, size, files, subs, trusted, blob in dirs})
            if not all(isinstance(d.blob, str) and isinstance(d.trusted, bool) and len(d.digest) == 32
                       for d in out.dirs.values()):
                return TreeRecord()
            return out
        except (OSError, EOFError, ValueError, TypeError, IndexError):
            return TreeRecord()

    def save_tree(self, target: str, rec: TreeRecord, fp: bytes | None) -> None:
        """Write a tree's cache: the record and ids of each directory not saved yet into
        a file named by their hash, then the list of directories, then remove the files
        no longer listed. ``rec.root_id`` (and the head: root id and scan fingerprint
        ``fp``) only when every directory is trusted."""
        blob_dir = self._blob_dir(target)
        try:
            os.makedirs(blob_dir, exist_ok=True)
        except OSError:
            return  # a cache that cannot be written only makes a later command slower
        for d in rec.dirs.values():
            if not d.blob and d.available():
                record, ids = d._data  # type: ignore[misc]
                body = BLOB_MAGIC + marshal.dumps((record, ids))
                d.blob = blake3(body).hexdigest()[:32]
                path = os.path.join(blob_dir, d.blob)
                if not os.path.exists(path) and not write_cache_file(path, body):
                    d.blob = ""
        root = rec.root_id if all(d.trusted for d in rec.dirs.values()) else None
        listing = marshal.dumps((target, root, rec.scan_start_ns,
                                 [(rel, d.digest, d.tree, d.size, d.files, d.subs, d.trusted, d.blob)
                                  for rel, d in rec.dirs.items()]))
        if not write_cache_file(self._path(target), TREE_MAGIC + listing):
            return
        used = {d.blob for d in rec.dirs.values()}
        with contextlib.suppress(OSError):
            for name in os.listdir(blob_dir):
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
