"""A tracked directory, directory by directory: scan records and incremental trees.

``scan_dirs`` lists a tracked directory as one *record* per directory: its entries
sorted by the bytes of their names, each with its kind and stat, packed in one
``bytes`` (``ENTRY_HEAD``, then the name, and for a link its target). Comparing a
directory with its cached state is one ``bytes`` comparison, and no Python object is
made per file unless a directory changed. The Cython scanner (``dvx._scan``) and the
pure-Python functions here give identical results (tested against each other).

``build`` turns a scan and the stat cache's ``TreeRecord`` into tree ids, bottom-up:
a directory whose record equals its cached one (same names, kinds and stats), whose
cached ids are trusted and whose subdirectories' tree ids are the ones its cached tree
was built from keeps that tree id without reading or encoding anything. Only changed
directories are parsed, their changed files hashed, and their trees (and their
ancestors') encoded: the work follows what changed, not the size of the tree. A
directory that was renamed or moved keeps its files' ids too (its record is found by
content among the cached ones).
"""

from __future__ import annotations

import os
import stat as stat_mod
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from dvx.fsutil import os_error
from dvx.objects import ENTRY_FILE, ENTRY_LINK, ENTRY_TREE, encode_tree_items
from dvx.statcache import NO_ID, RACY_NS, DirRecord, Stat, TreeRecord

ENTRY_HEAD = struct.Struct("<HBBQQqq")  # name length, kind, exec, ino, size, mtime_ns, ctime_ns
K_FILE, K_DIR, K_LINK, K_SPECIAL = 1, 2, 3, 4
ID = 32

# name, kind, exec, ino, size, mtime_ns, ctime_ns, link target
Entry = tuple[str, int, int, int, int, int, int, "str | None"]
Record = tuple[str, bytes]  # (directory relative to the tracked path, its record)


# -- scanning -------------------------------------------------------------------------
def scan_dirs_reference(top: str, recursive: bool = True) -> list[Record]:
    """Pure-Python ``dvx._scan.scan_dirs``: same records, same order."""
    out: list[Record] = []
    stack = [("", top)]
    while stack:
        rel, path = stack.pop(0)
        names = sorted(os.listdir(os.fsencode(path)))
        parts = []
        subs = []
        for raw in names:
            full = os.path.join(os.fsencode(path), raw)
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                continue
            mode = st.st_mode
            tail = b""
            if stat_mod.S_ISREG(mode):
                head = ENTRY_HEAD.pack(len(raw), K_FILE, 1 if mode & 0o100 else 0, st.st_ino,
                                       st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            elif stat_mod.S_ISDIR(mode):
                head = ENTRY_HEAD.pack(len(raw), K_DIR, 0, 0, 0, 0, 0)
                name = os.fsdecode(raw)
                subs.append((f"{rel}/{name}" if rel else name, os.fsdecode(full)))
            elif stat_mod.S_ISLNK(mode):
                try:
                    target = os.readlink(full)
                except FileNotFoundError:
                    continue
                head = ENTRY_HEAD.pack(len(raw), K_LINK, 0, 0, len(target), 0, 0)
                tail = struct.pack("<H", len(target)) + target
            else:
                head = ENTRY_HEAD.pack(len(raw), K_SPECIAL, 0, 0, mode, 0, 0)
            parts.append(head + raw + tail)
        out.append((rel, b"".join(parts)))
        if recursive:
            stack.extend(subs)
    return out


def parse_entries_reference(record: bytes) -> list[Entry]:
    out: list[Entry] = []
    pos, end = 0, len(record)
    while pos < end:
        if pos + ENTRY_HEAD.size > end:
            raise ValueError("truncated directory record")
        n, kind, exe, ino, size, mtime, ctime = ENTRY_HEAD.unpack_from(record, pos)
        pos += ENTRY_HEAD.size
        name = record[pos:pos + n].decode("utf-8", "surrogateescape")
        pos += n
        target = None
        if kind == K_LINK:
            (tlen,) = struct.unpack_from("<H", record, pos)
            target = record[pos + 2:pos + 2 + tlen].decode("utf-8", "surrogateescape")
            pos += 2 + tlen
        out.append((name, kind, exe, ino, size, mtime, ctime, target))
    if pos != end:
        raise ValueError("truncated directory record")
    return out


def _raw_entries(record: bytes) -> list[tuple[bytes, bytes]]:
    """(name bytes, whole entry bytes) of each entry."""
    out = []
    pos, end = 0, len(record)
    while pos < end:
        n, kind = ENTRY_HEAD.unpack_from(record, pos)[:2]
        length = ENTRY_HEAD.size + n
        if kind == K_LINK:
            length += 2 + struct.unpack_from("<H", record, pos + length)[0]
        out.append((record[pos + ENTRY_HEAD.size:pos + ENTRY_HEAD.size + n], record[pos:pos + length]))
        pos += length
    return out


def diff_entries_reference(old: bytes, new: bytes) -> list[tuple[str, int, int, Entry | None, Entry | None]]:
    a, b = _raw_entries(old), _raw_entries(new)
    pa, pb = parse_entries_reference(old), parse_entries_reference(new)
    ai = {name: (i, raw) for i, (name, raw) in enumerate(a)}
    bi = {name: (i, raw) for i, (name, raw) in enumerate(b)}
    out: list[tuple[str, int, int, Entry | None, Entry | None]] = []
    for name in sorted(set(ai) | set(bi)):
        x, y = ai.get(name), bi.get(name)
        if x is not None and y is not None and x[1] == y[1]:
            continue
        out.append((name.decode("utf-8", "surrogateescape"), x[0] if x else -1, y[0] if y else -1,
                    pa[x[0]] if x else None, pb[y[0]] if y else None))
    return out


def racy_entries_reference(record: bytes, limit: int) -> list[int]:
    return [i for i, e in enumerate(parse_entries_reference(record)) if e[1] == K_FILE and e[5] >= limit]


def patch_entries_reference(record: bytes, stats: dict[int, tuple[int, int, int, int, int]]) -> bytes:
    out = bytearray(record)
    pos = i = 0
    while pos < len(out):
        n, kind = ENTRY_HEAD.unpack_from(out, pos)[:2]
        if i in stats:
            if kind != K_FILE:
                raise ValueError("patch_entries: not a file")
            ino, size, mtime, ctime, exe = stats[i]
            ENTRY_HEAD.pack_into(out, pos, n, kind, exe, ino, size, mtime, ctime)
        length = ENTRY_HEAD.size + n
        if kind == K_LINK:
            length += 2 + struct.unpack_from("<H", out, pos + length)[0]
        pos += length
        i += 1
    return bytes(out)


def kind_entries_reference(record: bytes, kind: int) -> list[int]:
    return [i for i, e in enumerate(parse_entries_reference(record)) if e[1] == kind]


try:
    from dvx._scan import (  # type: ignore[import-not-found]
        diff_entries,
        kind_entries,
        parse_entries,
        patch_entries,
        racy_entries,
        scan_one,
    )
except ImportError:  # pragma: no cover - the extension was not built
    scan_one = None
try:
    from dvx._scan import scan_level  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - an extension built before scan_level
    scan_level = None
    kind_entries = kind_entries_reference
    patch_entries = patch_entries_reference
    parse_entries = parse_entries_reference
    diff_entries = diff_entries_reference
    racy_entries = racy_entries_reference

SCAN_THREADS = 2


def scan_dirs(top: str, where: str, recursive: bool = True) -> list[Record]:
    """Records of ``top`` and (``recursive``) every directory below it: ``""`` first,
    then level by level, each directory's subdirectories in name order.

    With the Cython scanner, the directories of a level are scanned by two threads
    (the listing and the ``fstatat`` per entry run without the GIL): on a million files
    the system calls are most of the time of a clean ``status``."""
    try:
        if scan_one is None:
            return scan_dirs_reference(top, recursive)
        return _scan_parallel(top, recursive)
    except OSError as exc:
        raise os_error(exc, f"read {where}") from None


def _scan_parallel(top: str, recursive: bool) -> list[Record]:
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    out: list[Record] = []
    level = [("", fd)]
    pool = None
    try:
        while level:
            if len(level) > 1 and pool is None and scan_level is None:
                from concurrent.futures import ThreadPoolExecutor

                pool = ThreadPoolExecutor(SCAN_THREADS, thread_name_prefix="dvx-scan")
            items, level = level, []
            results: list[tuple[bytes, list[tuple[str, int]]] | BaseException] = []
            if scan_level is not None:
                # the whole level in one call, its threads started in C without the GIL
                results = scan_level([fd for _r, fd in items], [os.path.join(top, rel) for rel, _fd in items],
                                     recursive, SCAN_THREADS)
            elif pool is None:
                for rel, fd in items:
                    try:
                        results.append(scan_one(fd, os.path.join(top, rel), recursive))
                    except Exception as exc:  # noqa: BLE001 - re-raised below, after cleanup
                        results.append(exc)
            else:
                futures = [pool.submit(scan_one, fd, os.path.join(top, rel), recursive) for rel, fd in items]
                for f in futures:
                    err = f.exception()
                    results.append(err if err is not None else f.result())
            failed = next((r for r in results if isinstance(r, BaseException)), None)
            for (rel, _fd), res in zip(items, results, strict=True):
                if isinstance(res, BaseException):
                    continue  # scan_one closed its directory
                record, subs = res
                out.append((rel, record))
                level.extend((join(rel, name), sub) for name, sub in subs)
            if failed is not None:
                raise failed
    finally:
        for _r, sub in level:
            os.close(sub)
        if pool is not None:
            pool.shutdown(wait=True)
    return out


def join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


def skipped(scan: list[Record]) -> list[str]:
    """FIFOs, sockets and devices met by a scan (not data): ``name (fifo)``, sorted."""
    from dvx.workspace import special_kind

    out = []
    for rel, record in scan:
        if kind_entries(record, K_SPECIAL):  # rare: parse only then
            out += [f"{join(rel, e[0])} ({special_kind(e[4])})" for e in parse_entries(record)
                    if e[1] == K_SPECIAL]
    return sorted(out)


def children_of(scan: list[Record]) -> dict[str, list[str]]:
    """Subdirectories of each scanned directory, in record (name) order."""
    kids: dict[str, list[str]] = {rel: [] for rel, _ in scan}
    for rel, _ in scan:
        if rel:
            kids[rel.rpartition("/")[0]].append(rel)
    return kids


# -- building trees -------------------------------------------------------------------
@dataclass(slots=True)
class DirState:
    """One directory of a scan once ``build`` has resolved it."""

    rel: str
    record: bytes
    digest: bytes
    ids: bytes = b""  # when rebuilt (else ``cached.ids``)
    tree: bytes = b""
    size: int = 0
    files: int = 0
    subs: bytes = b""
    rebuilt: bool = False  # parsed and encoded in this run
    cached: DirRecord | None = None  # else: reused whole from this cache entry

    def file_ids(self) -> bytes:
        return self.cached.ids if self.cached is not None else self.ids


# hash(abs directory, where, [(name, scan stat)]) -> (name, manifest id, stat) per file
FileHasher = Callable[[str, str, list[tuple[str, Stat]]], Iterable[tuple[str, bytes, Stat]]]


def build(top: str, where: str, scan: list[Record], digests: list[bytes], cache: TreeRecord,
          hash_files: FileHasher, *, store_tree: Callable[[bytes, bytes], None] | None = None,
          known: Callable[[bytes], bool] | None = None,
          check_names: bool = False) -> dict[str, DirState]:
    """Resolve every directory of ``scan`` to a tree id (``result[""]`` is the root).

    ``digests`` are the records' hashes (``statcache.record_digests``); ``hash_files``
    hashes the files whose id is not known; ``store_tree(id, data)`` receives each tree
    encoded in this run; ``known(id)`` (add) says whether an object is in the store:
    cached ids the store lacks are not reused. ``check_names``: refuse names that are
    not UTF-8 (add), checked only in directories that changed."""
    states: dict[str, DirState] = {}
    kids = children_of(scan)
    by_digest: dict[bytes, DirRecord] | None = None
    for (rel, record), digest in zip(reversed(scan), reversed(digests), strict=True):
        st = states[rel] = DirState(rel, record, digest)
        subs = b"".join(states[k].tree for k in kids[rel])
        c = cache.dirs.get(rel)
        if c is None or c.digest != digest:
            if by_digest is None:
                by_digest = {d.digest: d for d in cache.dirs.values() if d.trusted}
            c = by_digest.get(digest, c)  # renamed or moved: same entries, same stats
        if (c is not None and c.digest == digest and c.trusted and c.subs == subs
                and (known is None or known(c.tree))):
            st.tree, st.size, st.files, st.subs, st.cached = c.tree, c.size, c.files, subs, c
            continue
        data = _rebuild(st, top, where, c, subs, kids[rel], states, hash_files, known, check_names)
        if store_tree is not None:
            store_tree(st.tree, data)
    return states


def _rebuild(st: DirState, top: str, where: str, c: DirRecord | None, subs: bytes, kids: list[str],
             states: dict[str, DirState], hash_files: FileHasher,
             known: Callable[[bytes], bool] | None, check_names: bool) -> bytes:
    """Parse a changed directory, hash its changed files, encode its tree; returns
    the tree's bytes."""
    entries = parse_entries(st.record)
    old: dict[str, tuple[tuple[int, ...], bytes]] = {}
    if c is not None and known is not None and known(c.tree):
        known = None  # its previous tree is stored, so are the files it names: no need to ask each
    if c is not None and c.available():
        for i, e in enumerate(parse_entries(c.record)):
            if e[1] == K_FILE:
                mid = c.ids[i * ID:(i + 1) * ID]
                if mid != NO_ID:
                    old[e[0]] = (e[1:7], mid)
    dir_where = join(where, st.rel)
    if check_names:
        from dvx.workspace import check_utf8

        check_utf8(st.rel, dir_where)
        for e in entries:
            check_utf8(e[0], join(dir_where, e[0]))
            if e[7] is not None:
                check_utf8(e[7], f"link {join(dir_where, e[0])}")
    found: dict[str, bytes] = {}
    todo: list[tuple[str, Stat]] = []
    for e in entries:
        if e[1] != K_FILE:
            continue
        prev = old.get(e[0])
        if prev is not None and prev[0] == e[1:7] and (known is None or known(prev[1])):
            found[e[0]] = prev[1]
        else:
            todo.append((e[0], (e[3], e[4], e[5], e[6], e[2])))
    if todo:
        for name, mid, _stat in hash_files(os.path.join(top, st.rel) if st.rel else top, dir_where, todo):
            found[name] = mid
    ids = []
    items = []
    size = files = 0
    k = 0
    for e in entries:
        kind = e[1]
        if kind == K_FILE:
            mid = found[e[0]]
            ids.append(mid)
            items.append((e[0], ENTRY_FILE, e[2], e[4], 1, mid))
            size += e[4]
            files += 1
            continue
        ids.append(NO_ID)
        if kind == K_DIR:
            child = states[kids[k]]
            k += 1
            items.append((e[0], ENTRY_TREE, 0, child.size, child.files, child.tree))
            size += child.size
            files += child.files
        elif kind == K_LINK:
            assert e[7] is not None
            items.append((e[0], ENTRY_LINK, 0, 0, 0, e[7]))
    data, tid = encode_tree_items(items)
    st.ids, st.tree, st.size, st.files, st.subs, st.rebuilt = b"".join(ids), tid, size, files, subs, True
    return data


def to_cache(states: dict[str, DirState], scan: list[Record], scan_start_ns: int) -> TreeRecord:
    """The cache to save after ``build``: rebuilt directories with files too young to
    trust (git's racy-clean rule, ``dvx.statcache``) keep no id for them."""
    limit = scan_start_ns - RACY_NS
    dirs: dict[str, DirRecord] = {}
    for rel, _ in scan:
        s = states[rel]
        if s.cached is not None:
            dirs[rel] = s.cached  # reused whole (same record, ids and subtrees): its blob stays
            continue
        ids, trusted = s.ids, True
        racy = racy_entries(s.record, limit)
        if racy:
            buf = bytearray(ids)
            for i in racy:
                buf[i * ID:(i + 1) * ID] = NO_ID
            ids, trusted = bytes(buf), False
        dirs[rel] = DirRecord(s.digest, s.tree, s.size, s.files, s.subs, trusted, record=s.record, ids=ids)
    return TreeRecord(states[""].tree, scan_start_ns, dirs)


def record_files(state: DirState) -> Iterator[tuple[str, int, int, int, bytes, str | None]]:
    """``(name, kind, exec, size, id or NO_ID, link target)`` of a resolved directory."""
    ids = state.file_ids()
    for i, e in enumerate(parse_entries(state.record)):
        if e[1] == K_SPECIAL:
            continue
        yield e[0], e[1], e[2], e[4], ids[i * ID:(i + 1) * ID], e[7]

