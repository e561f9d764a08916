"""Reading the work tree: scanning tracked paths, hashing files, building trees.

Never follows a symlink: links inside a tracked directory are recorded as links, and
regular files are opened with ``O_NOFOLLOW``.
"""

from __future__ import annotations

import os
import stat as stat_mod
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from blake3 import blake3

from dvx.errors import DvxError, StoreError
from dvx.fsutil import os_error
from dvx.hashing import (
    KIND_CHUNK,
    KIND_MANIFEST,
    KIND_TREE,
    chunk_id,
    manifest_id,
    object_id,
)
from dvx.objects import ENTRY_FILE, ENTRY_LINK, ENTRY_TREE, Manifest, Tree, TreeEntry
from dvx.pools import LazyPool
from dvx.statcache import Stat, stat_key
from dvx.store.local import SMALL_OBJECT, Store, StoreWriter

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

    from dvx.chunking import Chunker

SMALL_FILE = 1 << 20


class BlockPool:
    """Reusable read buffers for ``Chunker.iter_blocks`` (a ``BufferPool``).

    A fresh 8 MiB ``bytearray`` per block means zeroing (and, on a VM, faulting in) as
    much memory as the file is large; reusing a few buffers avoids both. Thread-safe: a
    buffer is handed back by whichever thread finished with it last.
    """

    def __init__(self, keep: int = 8) -> None:
        import collections

        self._free: collections.deque[bytearray] = collections.deque()
        self._keep = keep

    def take(self, size: int) -> bytearray:
        while self._free:
            try:
                buf = self._free.pop()
            except IndexError:  # emptied by another thread meanwhile
                break
            if len(buf) == size:
                return buf
        return bytearray(size)

    def release(self, block: memoryview) -> None:
        """Hand back the buffer under ``block``; the caller guarantees nothing else
        still reads from it."""
        buf = block.obj
        if isinstance(buf, bytearray) and len(self._free) < self._keep:
            self._free.append(buf)


_BLOCKS = BlockPool()  # read buffers of large files, reused across files
_hash_pool = LazyPool(1, "dvx-file-hash")  # renewed in a forked child (dvx.pools)


def _pool() -> ThreadPoolExecutor:
    return _hash_pool.executor()


@dataclass
class Scan:
    """What a tracked directory holds right now (paths relative to it, '/'-separated)."""

    files: dict[str, Stat] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=set)
    special: dict[str, int] = field(default_factory=dict)  # FIFOs, sockets, devices: st_mode

    def skipped(self) -> list[str]:
        """What the scan met but DVX does not track, sorted: ``name (fifo)``..."""
        return [f"{name} ({special_kind(mode)})" for name, mode in sorted(self.special.items())]


def special_kind(mode: int) -> str:
    if stat_mod.S_ISFIFO(mode):
        return "fifo"
    if stat_mod.S_ISSOCK(mode):
        return "socket"
    if stat_mod.S_ISCHR(mode) or stat_mod.S_ISBLK(mode):
        return "device"
    return "special file"


try:
    from dvx._scan import scan_tree as _scan_tree  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - the extension was not built
    _scan_tree = None


def scan_dir(top: str, where: str) -> Scan:
    """Walk ``top`` without following symlinks: the Cython scanner when built, else
    ``scan_dir_reference`` (same results, tested against each other)."""
    if _scan_tree is None:
        return scan_dir_reference(top, where)
    try:
        found = _scan_tree(top)
    except OSError as exc:
        raise os_error(exc, f"read {where}") from None
    if len(found) == 3:  # pragma: no cover - an extension built before it reported special files
        return scan_dir_reference(top, where)
    return Scan(*found)


def scan_dir_reference(top: str, where: str) -> Scan:
    """Walk ``top`` without following symlinks (one ``lstat`` per entry)."""
    scan = Scan()
    files, links, dirs, special = scan.files, scan.links, scan.dirs, scan.special
    stack = [("", top)]
    is_dir, is_reg, is_lnk = stat_mod.S_ISDIR, stat_mod.S_ISREG, stat_mod.S_ISLNK
    while stack:
        prefix, path = stack.pop()
        try:
            it = os.scandir(path)
        except OSError as exc:
            raise os_error(exc, f"read directory {where}/{prefix}".rstrip("/")) from None
        with it:
            for entry in it:
                rel = prefix + entry.name
                try:
                    st = entry.stat(follow_symlinks=False)
                    mode = st.st_mode
                    if is_reg(mode):
                        files[rel] = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns,
                                      1 if mode & 0o100 else 0)
                    elif is_dir(mode):
                        dirs.add(rel)
                        stack.append((rel + "/", entry.path))
                    elif is_lnk(mode):
                        links[rel] = os.readlink(entry.path)
                    else:  # sockets, fifos and devices are not data: reported, not tracked
                        special[rel] = mode
                except FileNotFoundError:
                    continue  # vanished while scanning
                except OSError as exc:
                    raise os_error(exc, f"read {where}/{rel}") from None
    return scan


def check_utf8(name: str, where: str) -> None:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise DvxError(f"{where}: file name is not valid UTF-8", "rename the file") from None


def hash_file(path: str, where: str, chunker: Chunker, writer: StoreWriter | None,
              expected: Stat | None = None, base: DeltaBase | None = None) -> tuple[Manifest, Stat]:
    """Chunk and hash one file, storing new chunks (and the manifest) when a writer is
    given. Returns the manifest and the stat the content corresponds to.

    The file's stat is compared before and after reading (``expected`` from a directory
    scan saves one ``fstat``), so a file written to meanwhile is refused, not recorded
    with a mix of old and new content.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise os_error(exc, f"read {where}") from None
    try:
        if expected is not None and expected[1] <= SMALL_FILE:
            data = _read_small(fd, expected[1])
            manifest = _hash_small(data, chunker, writer)
            before_key: tuple[int, int] = (expected[1], expected[2])
        else:
            before = os.fstat(fd)
            if not stat_mod.S_ISREG(before.st_mode):
                raise DvxError(f"{where} is not a regular file")
            before_key = (before.st_size, before.st_mtime_ns)
            if before.st_size <= SMALL_FILE:
                manifest = _hash_small(_read_small(fd, before.st_size), chunker, writer)
            else:
                with os.fdopen(fd, "rb", buffering=0, closefd=False) as f:
                    manifest = _hash_stream(f, chunker, writer, base)
        after = os.fstat(fd)
    except OSError as exc:
        raise os_error(exc, f"read {where}") from None
    finally:
        os.close(fd)
    if (after.st_size, after.st_mtime_ns) != before_key or manifest.size != after.st_size:
        raise DvxError(f"{where} changed while it was being read", "re-run when it is not being written")
    if writer is not None:
        for kind, oid, data in manifest.objects():
            writer.add(kind, oid, data)
    return manifest, stat_key(after)


def read_files_reference(paths: list[bytes], sizes: list[int]
                         ) -> tuple[bytes, list[int | tuple[int, int, Stat]]]:
    """Pure-Python ``dvx._scan.read_files`` (same results): read whole small files,
    each up to one byte past its expected size, without following symlinks."""
    parts: list[bytes] = []
    out: list[int | tuple[int, int, Stat]] = []
    total = 0
    for path, size in zip(paths, sizes, strict=True):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            out.append(exc.errno or 0)
            continue
        try:
            data = b""
            while len(data) < size + 1:
                more = os.read(fd, size + 1 - len(data))
                if not more:
                    break
                data += more
            st = stat_key(os.fstat(fd))
        except OSError as exc:
            out.append(exc.errno or 0)
            continue
        finally:
            os.close(fd)
        out.append((total, len(data), st))
        parts.append(data + bytes(size + 1 - len(data)))
        total += size + 1
    return b"".join(parts), out


try:
    from dvx._scan import read_files as _read_files  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - the extension was not built
    _read_files = read_files_reference

SMALL_BATCH_FILES = 256


NewFile = tuple[int, bytes, bytes, bool]  # directory fd, name, content, exec


def write_new_files_reference(files: list[NewFile], threads: int = 2) -> list[Stat | int]:
    """Pure-Python ``dvx._scan.write_new_files`` (one thread, same results): each file
    written as an unnamed ``O_TMPFILE`` file in its directory, then linked into place
    (never over an existing name); its stat key, or an errno (-1: not tried after the
    disk filled up)."""
    import errno

    out: list[Stat | int] = []
    full = False
    for dfd, name, data, exe in files:
        if full:
            out.append(-1)
            continue
        try:
            fd = os.open(".", os.O_WRONLY | os.O_TMPFILE | os.O_CLOEXEC, 0o777 if exe else 0o666, dir_fd=dfd)
        except OSError as exc:
            out.append(exc.errno or errno.EIO)
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
            continue
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if exe:
                mode = os.fstat(fd).st_mode
                os.fchmod(fd, mode | ((mode & 0o444) >> 2))
            os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=dfd, follow_symlinks=True)
            out.append(stat_key(os.fstat(fd)))  # after the link: its ctime is final
        except OSError as exc:
            out.append(exc.errno or errno.EIO)
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
        finally:
            os.close(fd)
    return out


try:
    from dvx._scan import write_new_files  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - the extension was not built (or is older)
    write_new_files = write_new_files_reference


def add_small_files(top: str, where: str, names: list[str], expected: dict[str, Stat],
                    chunker: Chunker, writer: StoreWriter
                    ) -> Iterator[tuple[str, bytes, int, Stat]]:
    """Read, hash and store small files; yields ``(name, manifest id, size, stat)``.

    The hot loop of adding many small files. Files are read in batches by
    ``read_files`` (Cython, the GIL released for the whole batch) on a worker thread
    while this thread hashes the previous batch. A file no larger than the minimum
    chunk size is one chunk, so its manifest is encoded directly
    (``Manifest.encode_small``: the same bytes as the general path).
    """
    single = min(chunker.params.min_size, SMALL_OBJECT)
    prefix = os.fsencode(top) + b"/"
    batches = [names[i:i + SMALL_BATCH_FILES] for i in range(0, len(names), SMALL_BATCH_FILES)]

    def load(batch: list[str]) -> tuple[bytes, list[int | tuple[int, int, Stat]]]:
        return _read_files([prefix + os.fsencode(n) for n in batch], [expected[n][1] for n in batch])

    pending = _pool().submit(load, batches[0]) if batches else None
    for k, batch in enumerate(batches):
        assert pending is not None
        data, results = pending.result()
        pending = _pool().submit(load, batches[k + 1]) if k + 1 < len(batches) else None
        view = memoryview(data)
        for name, res in zip(batch, results, strict=True):
            what = f"{where}/{name}"
            if isinstance(res, int):
                raise os_error(OSError(res, os.strerror(res), os.path.join(top, name)), f"read {what}")
            offset, size, st = res
            exp = expected[name]
            if st[1] != exp[1] or st[2] != exp[2] or size != exp[1]:
                raise DvxError(f"{what} changed while it was being read",
                               "re-run when it is not being written")
            content = view[offset:offset + size]
            if size > single:
                raw = bytes(content)
                manifest = _hash_small(raw, chunker, None)
                store_small_file(manifest, raw, writer)
                yield name, manifest.object_id(), size, st
                continue
            if size:
                cid = chunk_id(content)
                head = Manifest.encode_small(size, blake3(content).digest(), cid)
                writer.add_small(KIND_CHUNK, cid, content)
            else:
                head = Manifest.encode_small(0, _EMPTY_DIGEST, None)
            mid = manifest_id(head)
            writer.add_small(KIND_MANIFEST, mid, head)
            yield name, mid, size, st


_EMPTY_DIGEST = blake3(b"").digest()


def store_small_file(manifest: Manifest, data: bytes, writer: StoreWriter) -> None:
    view = memoryview(data)
    start = 0
    for n, cid in manifest.chunks:
        writer.add(KIND_CHUNK, cid, view[start:start + n])
        start += n
    for kind, oid, obj in manifest.objects():
        writer.add(kind, oid, obj)


def _read_small(fd: int, size: int) -> bytes:
    data = os.read(fd, size + 1)
    if len(data) > size:  # grew since the stat: read the rest, the check above refuses it
        data += os.read(fd, 1 << 30)
    return data


def _hash_small(data: bytes, chunker: Chunker, writer: StoreWriter | None) -> Manifest:
    digest = blake3(data).digest()
    if len(data) <= chunker.params.min_size:
        ends = [len(data)] if data else []
    else:
        ends, _ = chunker.find_cuts(data, len(data), True)
    chunks = []
    start = 0
    view = memoryview(data)
    for end in ends:
        piece = view[start:end]
        cid = chunk_id(piece)
        chunks.append((end - start, cid))
        if writer is not None:
            writer.add(KIND_CHUNK, cid, piece)
        start = end
    return Manifest(len(data), digest, tuple(chunks))


def _hash_stream(f, chunker: Chunker, writer: StoreWriter | None,  # type: ignore[no-untyped-def]
                 base: DeltaBase | None = None) -> Manifest:
    """Two-stage pipeline: this thread reads and finds cut points (Cython, no GIL) while
    a worker hashes the previous block's chunks and the whole file and hands new chunks
    to the pack writer. At most two blocks are in flight, so memory stays bounded."""
    hasher = blake3()
    chunks: list[tuple[int, bytes]] = []
    in_flight: list[Future[None]] = []
    file_pos = [0]

    def digest_block(block: memoryview, ends: list[int]) -> None:
        hasher.update(block)
        spans = []
        start = 0
        for end in ends:
            piece = block[start:end]
            cid = chunk_id(piece)
            chunks.append((end - start, cid))
            spans.append((cid, start, end))
            if base is not None and writer is not None and not writer.has(cid):
                found = base.delta(piece, file_pos[0] + start)
                if found is not None:
                    bid, p, s = found
                    writer.add_delta(cid, bid, p, s, piece[p:len(piece) - s])
            start = end
        file_pos[0] += start
        if writer is not None:
            writer.add_spans(KIND_CHUNK, block, spans)
            writer.after_writes(lambda: _BLOCKS.release(block))
        else:
            _BLOCKS.release(block)

    try:
        for block, ends in chunker.iter_blocks(f, pool=_BLOCKS):
            if len(in_flight) >= 2:
                in_flight.pop(0).result()
            in_flight.append(_pool().submit(digest_block, block, ends))
    finally:
        for fut in in_flight:
            fut.result()
    return Manifest(sum(n for n, _ in chunks), hasher.digest(), tuple(chunks))


class DeltaBase:
    """The previous version of a file, to store edited chunks as small deltas.

    A new chunk is compared with the old chunk that started at (or right after) the
    same file offset; if they share a prefix and a suffix covering at least 3/4 of it,
    only the middle is stored (``protocols/format.md`` §5.1). Bases are always chunks
    stored whole, so a read needs at most one extra chunk.
    """

    MIN_SAVING = 4  # store a delta only if it is at most 1/4 of the chunk

    def __init__(self, store: Store, manifest: Manifest) -> None:
        self.store = store
        self.chunks = manifest.chunks
        self.starts: list[int] = []
        pos = 0
        for n, _ in self.chunks:
            self.starts.append(pos)
            pos += n

    def delta(self, data: memoryview, pos: int) -> tuple[bytes, int, int] | None:
        """``(base id, prefix, suffix)`` for a new chunk at file offset ``pos``."""
        i = bisect_right(self.starts, pos) - 1
        for j in (i, i + 1):
            if not 0 <= j < len(self.chunks):
                continue
            cid = self.chunks[j][1]
            loc = self.store.locate(cid)
            if loc is None or self.store.is_delta(cid, loc[0]):
                continue
            try:
                base = self.store.read(cid, KIND_CHUNK)
            except DvxError:
                continue
            new = bytes(data)
            p = _common_prefix(new, base)
            s = _common_suffix(new, base, min(len(new), len(base)) - p)
            if (len(new) - p - s) * self.MIN_SAVING <= len(new):
                return cid, p, s
        return None


def _common_prefix(a: bytes, b: bytes) -> int:
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:  # invariant: a[:lo] == b[:lo]
        mid = (lo + hi + 1) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _common_suffix(a: bytes, b: bytes, limit: int) -> int:
    lo, hi = 0, limit
    la, lb = len(a), len(b)
    while lo < hi:  # invariant: the last lo bytes agree
        mid = (lo + hi + 1) // 2
        if a[la - mid:la - lo] == b[lb - mid:lb - lo]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def build_tree(scan: Scan, file_info: dict[str, tuple[bytes, int, int]],
               writer: StoreWriter | None) -> tuple[bytes, int, int]:
    """Build (and store) the trees of a scanned directory.

    ``file_info`` maps each file to ``(manifest_id, size, exec)``. Returns the root tree
    id, total size and file count.
    """
    children: dict[str, list[TreeEntry]] = {"": []}
    for d in scan.dirs:
        children.setdefault(d, [])
    for rel, (mid, size, exe) in file_info.items():
        parent, _, name = rel.rpartition("/")
        children[parent].append(TreeEntry(name, ENTRY_FILE, size, 1, mid, bool(exe)))
    for rel, target in scan.links.items():
        parent, _, name = rel.rpartition("/")
        tb = target.encode("utf-8", "surrogateescape")
        children[parent].append(TreeEntry(name, ENTRY_LINK, len(tb), 0, None, False, target))
    # deepest directories first, so each child's id exists before its parent's
    result: tuple[bytes, int, int] = (b"", 0, 0)
    for d in sorted(children, key=lambda p: -p.count("/") - (1 if p else 0)):
        tree = Tree.build(children[d])
        data = tree.encode()
        tid = object_id(KIND_TREE, data)
        if writer is not None:
            writer.add(KIND_TREE, tid, data)
        size, files = tree.size, tree.files
        if d:
            parent, _, name = d.rpartition("/")
            children[parent].append(TreeEntry(name, ENTRY_TREE, size, files, tid))
        else:
            result = (tid, size, files)
    return result


def flatten_tree(store, tree_id: bytes) -> tuple[dict[str, tuple[bytes, int, int]],  # type: ignore[no-untyped-def]
                                                 dict[str, str], set[str]]:
    """All files ``rel -> (manifest id, size, exec)``, links and dirs below a tree."""
    files: dict[str, tuple[bytes, int, int]] = {}
    links: dict[str, str] = {}
    dirs: set[str] = set()
    stack = [("", tree_id)]
    while stack:
        prefix, tid = stack.pop()
        for e in store.read_tree(tid).entries:
            rel = prefix + e.name
            if e.kind == ENTRY_FILE:
                files[rel] = (e.oid, e.size, 1 if e.executable else 0)
            elif e.kind == ENTRY_TREE:
                dirs.add(rel)
                stack.append((rel + "/", e.oid))
            else:
                links[rel] = e.target
    return files, links, dirs


def ensure_writable_store(exc: OSError) -> StoreError:
    return os_error(exc, "write to the DVX store")
