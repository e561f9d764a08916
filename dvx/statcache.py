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
from dataclasses import dataclass, field

from blake3 import blake3

from dvx.fsutil import write_cache_file

MAGIC = b"DVXSTAT2"
TREE_MAGIC = b"DVXSTAT3"
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


@dataclass(slots=True)
class DirRecord:
    """One directory of a tracked tree as it was last hashed or checked out."""

    record: bytes  # its scan record (sorted entries with their stats)
    ids: bytes  # 32 bytes per entry of ``record``: manifest id of a file, else NO_ID
    tree: bytes  # id of the tree this directory roots
    size: int  # bytes of data below it
    files: int  # files below it
    subs: bytes  # the tree ids of its subdirectories (in record order) when ``tree`` was built
    trusted: bool  # every file has an id that is not racy: ``tree`` may be reused


@dataclass
class TreeRecord:
    root_id: bytes | None = None  # tree id of the whole tracked directory (trusted)
    scan_start_ns: int = 0
    dirs: dict[str, DirRecord] = field(default_factory=dict)


def scan_fingerprint(dirs: list[tuple[str, bytes]]) -> bytes:
    """BLAKE3 of a directory scan (``dvx.workspace.scan_dirs``): equal fingerprints mean
    equal entries with equal stats, so a clean check loads nothing else."""
    h = blake3()
    for rel, record in dirs:
        h.update(b"%d:%s\0%d\0" % (len(rel), rel.encode("utf-8", "surrogateescape"), len(record)))
        h.update(record)
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

    def load_tree(self, target: str) -> TreeRecord:
        try:
            with open(self._path(target), "rb") as f:
                data = f.read()
            if not data.startswith(TREE_MAGIC):
                return TreeRecord()
            name, root, start, dirs = marshal.loads(memoryview(data)[len(TREE_MAGIC):])
            if name != target:
                return TreeRecord()
            return TreeRecord(root, start, {d[0]: DirRecord(*d[1:]) for d in dirs})
        except (OSError, EOFError, ValueError, TypeError, IndexError):
            return TreeRecord()

    def save_tree(self, target: str, rec: TreeRecord, fp: bytes | None) -> None:
        """Write a tree's cache; ``rec.root_id`` only when every directory is trusted, and
        the head (root id, scan fingerprint ``fp``) only then."""
        root = rec.root_id if all(d.trusted for d in rec.dirs.values()) else None
        blob = marshal.dumps((target, root, rec.scan_start_ns,
                              [(rel, d.record, d.ids, d.tree, d.size, d.files, d.subs, d.trusted)
                               for rel, d in rec.dirs.items()]))
        write_cache_file(self._path(target), TREE_MAGIC + blob)
        if root is not None and fp is not None:
            self.save_head(target, root, fp)
        else:
            with contextlib.suppress(OSError):
                os.unlink(self._path(target)[:-6] + ".head")

    def drop(self, target: str) -> None:
        for path in (self._path(target), self._path(target)[:-6] + ".head"):
            with contextlib.suppress(OSError):
                os.unlink(path)

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
                if not name.endswith(".base"):
                    os.unlink(os.path.join(self.dir, name))
