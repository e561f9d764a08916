"""``dvx checkout``: make the work tree's data match the pointers.

Safety rules:

* Unsaved data is never overwritten or deleted without ``--force``: a work-tree file
  whose content is not in the store blocks the checkout, and all conflicts are found
  before anything is changed.
* Files are rebuilt in a temporary file beside the target, every chunk verified
  against its id, then renamed into place: a kill leaves the old file or the new one.
* Nothing is written through a symlink: parents are checked with ``lstat``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat as stat_mod
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from blake3 import blake3

from dvx.errors import CorruptObjectError, DvxError, MissingObjectError, WorkspaceConflictError
from dvx.fsutil import os_error, tmp_name
from dvx.hashing import CHUNK_CONTEXT, KIND_CHUNK
from dvx.lock import store_lock
from dvx.objects import Manifest
from dvx.pointer import Pointer
from dvx.progress import NULL_PROGRESS, Progress
from dvx.repo import Repository
from dvx.statcache import CacheRecord, StatCache, stat_key
from dvx.store.local import Store
from dvx.tracked import Tracked, select_tracked
from dvx.workspace import flatten_tree, hash_file, scan_dir

RUN_LIMIT = 8 << 20
COPY_RANGE_MIN = 1 << 20
PREFETCH = 4  # runs (of up to RUN_LIMIT bytes) read ahead
_HAVE_COPY_RANGE = hasattr(os, "copy_file_range")
_read_pool = ThreadPoolExecutor(1, thread_name_prefix="dvx-restore-read")


@dataclass
class CheckoutResult:
    target: str
    restored: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0


@dataclass
class _Plan:
    tracked: Tracked
    pointer: Pointer
    restore: list[tuple[str, bytes, int, int]] = field(default_factory=list)  # rel, mid, size, exec
    links: list[tuple[str, str]] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)
    record: CacheRecord = field(default_factory=CacheRecord)
    unchanged: int = 0


def checkout(repo: Repository, paths: list[str] | None = None, *, force: bool = False,
             pointers: dict[str, Pointer] | None = None,
             progress: Progress = NULL_PROGRESS) -> list[CheckoutResult]:
    """Restore tracked data. ``pointers`` (target -> pointer) overrides the work tree's
    pointer files, e.g. with those of another revision."""
    with store_lock(repo.store.path):
        return _checkout(repo, paths, force, pointers, progress)


def _checkout(repo: Repository, paths: list[str] | None, force: bool,
              pointers: dict[str, Pointer] | None, progress: Progress) -> list[CheckoutResult]:
    cache = StatCache(repo.state_dir)
    if pointers is None:
        tracked = select_tracked(repo, paths)
        pointers = {t.target: t.load(repo) for t in tracked}
    plans: list[_Plan] = []
    conflicts: list[str] = []
    for target, pointer in sorted(pointers.items()):
        t = Tracked(target, target + ".dvx")
        plans.append(_plan(repo, t, pointer, cache, force, conflicts))
    if conflicts:
        shown = ", ".join(conflicts[:5]) + (f" and {len(conflicts) - 5} more" if len(conflicts) > 5 else "")
        raise WorkspaceConflictError(
            f"checkout would overwrite unsaved data: {shown}",
            "save it with `dvx add`, or re-run with --force to discard it",
        )
    total = sum(len(p.restore) for p in plans)
    progress.start("checking out", total)
    results = []
    try:
        for plan in plans:
            results.append(_apply(repo, plan, cache, progress))
    finally:
        progress.finish()
    return results


def _content_saved(repo: Repository, path: str, where: str, cached: bytes | None) -> bytes | None:
    """Manifest id of a work-tree file if its content is in the store, else None."""
    if cached is not None and repo.store.contains(cached):
        return cached
    try:
        manifest, _ = hash_file(path, where, repo.chunker, None)
    except DvxError:
        return None
    mid = manifest.object_id()
    return mid if repo.store.contains(mid) else None


def _plan(repo: Repository, t: Tracked, pointer: Pointer, cache: StatCache, force: bool,
          conflicts: list[str]) -> _Plan:
    plan = _Plan(t, pointer)
    abs_path = repo.abspath(t.target)
    record = cache.load(t.target)
    if not repo.store.contains(pointer.oid):
        from dvx.ops.revs import pull_hint

        raise MissingObjectError(
            f"the data of {t.target} ({pointer.id[:12]}) is not in the local store",
            pull_hint(repo),
        )
    try:
        st = os.lstat(abs_path)
    except FileNotFoundError:
        st = None
    if pointer.kind == "file":
        if st is not None:
            if stat_mod.S_ISREG(st.st_mode):
                key = stat_key(st)
                cached = record.ids.get("") if record.stats.get("") == key else None
                if cached == pointer.oid and bool(key[4]) == pointer.exec:
                    plan.unchanged = 1
                    plan.record = record
                    return plan
                if cached != pointer.oid and not force:
                    have = _content_saved(repo, abs_path, t.target, cached)
                    if have is None:
                        conflicts.append(t.target)
                    elif have == pointer.oid and bool(key[4]) == pointer.exec:
                        # right content, no stat cache (deleted, or it could not be
                        # written): nothing to rewrite, which a full disk may refuse
                        plan.unchanged = 1
                        plan.record = CacheRecord(pointer.oid, 0, {"": key}, {})
                        return plan
            elif stat_mod.S_ISDIR(st.st_mode) and not force:
                conflicts.append(t.target + "/")
        plan.restore.append(("", pointer.oid, pointer.size, 1 if pointer.exec else 0))
        return plan
    files, links, dirs = flatten_tree(repo.store, pointer.oid)
    plan.dirs = sorted(dirs)
    scan = scan_dir(abs_path, t.target) if st is not None and stat_mod.S_ISDIR(st.st_mode) else None
    if st is not None and not stat_mod.S_ISDIR(st.st_mode):
        if not force and (not stat_mod.S_ISREG(st.st_mode) or
                          _content_saved(repo, abs_path, t.target, None) is None):
            conflicts.append(t.target)
        plan.remove.append("")
    record_stats: dict[str, tuple[int, int, int, int, int]] = {}
    record_ids: dict[str, bytes] = {}
    for name, (mid, size, exe) in files.items():
        ws = scan.files.get(name) if scan else None
        if ws is not None:
            cached = record.ids.get(name) if record.stats.get(name) == ws else None
            if cached == mid and ws[4] == exe:
                record_stats[name], record_ids[name] = ws, mid
                plan.unchanged += 1
                continue
            if cached != mid and not force:
                have = _content_saved(repo, os.path.join(abs_path, name), f"{t.target}/{name}", cached)
                if have is None:
                    conflicts.append(f"{t.target}/{name}")
                elif have == mid and ws[4] == exe:  # right content, not in the stat cache
                    record_stats[name] = ws  # without its id: the next status re-hashes it
                    plan.unchanged += 1
                    continue
        elif scan is not None and (name in scan.dirs or name in scan.links):
            if name in scan.dirs and not force:
                conflicts.append(f"{t.target}/{name}/")
            plan.remove.append(name)
        plan.restore.append((name, mid, size, exe))
    if scan is not None:
        for name, ws in scan.files.items():
            if name in files:
                continue
            cached = record.ids.get(name) if record.stats.get(name) == ws else None
            if not force and _content_saved(repo, os.path.join(abs_path, name),
                                            f"{t.target}/{name}", cached) is None:
                conflicts.append(f"{t.target}/{name}")
            plan.remove.append(name)
        for name, target in scan.links.items():
            if links.get(name) != target:
                plan.remove.append(name)
        for name in scan.dirs:
            if name not in dirs:
                plan.remove.append(name)
    plan.links = [(n, tg) for n, tg in links.items() if not scan or scan.links.get(n) != tg]
    plan.record = CacheRecord(pointer.oid, 0, record_stats, record_ids, dict(links), frozenset(dirs))
    return plan


def _safe_dir(root: str, rel_dir: str, force: bool = True) -> str:
    """Create ``root/rel_dir`` component by component, never through a symlink."""
    path = root
    for part in [p for p in rel_dir.split("/") if p]:
        path = os.path.join(path, part)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            os.mkdir(path)
            continue
        if not stat_mod.S_ISDIR(st.st_mode):
            os.unlink(path)  # planned: a file or link where a directory belongs
            os.mkdir(path)
    return path


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        st = os.lstat(path)
        if stat_mod.S_ISDIR(st.st_mode):
            shutil.rmtree(path)
        else:
            os.unlink(path)


def _apply(repo: Repository, plan: _Plan, cache: StatCache, progress: Progress) -> CheckoutResult:
    t = plan.tracked
    res = CheckoutResult(t.target, unchanged=plan.unchanged)
    abs_path = repo.abspath(t.target)
    scan_start = time.time_ns()
    rec = plan.record
    try:
        # deepest first, so directories are empty before they go
        for name in sorted(plan.remove, key=lambda n: -n.count("/")):
            _remove(os.path.join(abs_path, name) if name else abs_path)
            res.removed.append(name or t.target)
        if plan.pointer.kind == "tree":
            _safe_dir(repo.root, t.target)
            for d in plan.dirs:
                _safe_dir(abs_path, d)
        else:
            parent = os.path.dirname(t.target)
            if parent:
                _safe_dir(repo.root, parent)
        for name, mid, _size, exe in plan.restore:
            if name:
                parent, _, _ = name.rpartition("/")
                dest_dir = _safe_dir(abs_path, parent) if parent else abs_path
                dest = os.path.join(dest_dir, name.rpartition("/")[2])
            else:
                dest = abs_path
            st = restore_file(repo.store, mid, dest, bool(exe))
            rec.stats[name], rec.ids[name] = st, mid
            res.restored.append(name or t.target)
            progress.advance()
        for name, target in plan.links:
            parent = name.rpartition("/")[0]
            dest_dir = _safe_dir(abs_path, parent) if parent else abs_path
            dest = os.path.join(dest_dir, name.rpartition("/")[2])
            _remove(dest)
            os.symlink(target, dest)
            res.restored.append(name)
    except OSError as exc:
        cache.drop(t.target)
        raise os_error(exc, f"check out {t.target}") from None
    rec.scan_start_ns = scan_start
    rec.root_id = plan.pointer.oid
    cache.save(t.target, rec)
    return res


def restore_file(store: Store, manifest_id: bytes, dest: str, executable: bool
                 ) -> tuple[int, int, int, int, int]:
    """Rebuild one file from the store at ``dest`` (atomically); returns its stat key."""
    manifest = store.read_manifest(manifest_id)
    tmp = tmp_name(dest)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                 0o777 if executable else 0o666)
    try:
        _write_chunks(store, manifest, fd)
        mode = os.fstat(fd).st_mode
        if executable:
            os.fchmod(fd, mode | ((mode & 0o444) >> 2))
        else:
            os.fchmod(fd, mode & ~0o111)
        os.close(fd)
        fd = -1
        os.replace(tmp, dest)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return stat_key(os.lstat(dest))


def _runs(store: Store, manifest: Manifest) -> list[tuple[str, int, list[tuple[int, bytes]]]]:
    """Group chunks that lie back to back in one pack into single reads."""
    index = store.full_index() if len(manifest.chunks) > 8 else None
    deltas = store.delta_ids() if index is not None else None
    runs: list[tuple[str, int, list[tuple[int, bytes]]]] = []
    cur_pack, cur_start, cur_end = "", -1, -1
    for length, cid in manifest.chunks:
        loc = index.get(cid) if index is not None else store.locate(cid)
        if loc is None:
            raise MissingObjectError(f"chunk {cid.hex()} is not in the local store",
                                     "fetch it with `dvx pull`")
        pack, kind, offset, ln = loc
        if (cid in deltas) if deltas is not None else store._stored_as_delta(cid, pack):
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


def _verify_run(store: Store, run: tuple[str, int, list[tuple[int, bytes]]]) -> tuple[int, memoryview]:
    """Check every chunk of a run against its id, reading the pack through its memory
    map (no copy). Returns the pack's fd and the verified bytes."""
    pack, offset, chunks = run
    if not pack:  # a chunk stored as a delta: rebuilt and verified by the store
        return -1, memoryview(store.read(chunks[0][1], KIND_CHUNK))
    reader = store._reader(pack)
    total = sum(n for n, _ in chunks)
    view = reader.view()
    if offset + total > len(view):
        raise CorruptObjectError(f"pack {pack} is truncated at offset {offset}",
                                 "run `dvx fsck`, then restore from a remote")
    pos = offset
    for n, cid in chunks:
        if blake3(view[pos:pos + n], derive_key_context=CHUNK_CONTEXT).digest() != cid:
            raise CorruptObjectError(
                f"chunk {cid.hex()} in pack {pack} is corrupted (hash mismatch)",
                "run `dvx fsck` to list affected files, then restore from a remote",
            )
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


def _prefetch(store: Store, run: tuple[str, int, list[tuple[int, bytes]]]) -> None:
    pack, offset, chunks = run
    if pack:
        store._reader(pack).prefetch(offset, sum(n for n, _ in chunks))


def _write_chunks(store: Store, manifest: Manifest, fd: int) -> None:
    runs = _runs(store, manifest)
    if len(runs) == 1:
        src, data = _verify_run(store, runs[0])
        _copy_run(src, data, runs[0][1], fd)
        return
    # Ask the kernel to read PREFETCH runs ahead in the background (new packs are
    # written with direct I/O, so they are often not cached), and verify the next run
    # (BLAKE3, GIL released) while this one is copied.
    for run in runs[:PREFETCH]:
        _prefetch(store, run)
    nxt = _read_pool.submit(_verify_run, store, runs[0]) if runs else None
    for i in range(len(runs)):
        assert nxt is not None
        src, data = nxt.result()
        if i + 1 < len(runs):
            nxt = _read_pool.submit(_verify_run, store, runs[i + 1])
        if i + PREFETCH < len(runs):
            _prefetch(store, runs[i + PREFETCH])
        _copy_run(src, data, runs[i][1], fd)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
