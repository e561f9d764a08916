"""``dvx checkout``: make the work tree's data match the pointers.

Safety rules:

* Unsaved data is never overwritten or deleted without ``--force``: a work-tree file
  whose content is not in the store blocks the checkout, and all conflicts are found
  before anything is changed.
* Files are rebuilt in a temporary file (``.dvx/tmp/checkout``), every chunk verified
  against its id, then renamed into place: a kill leaves the old file or the new one.
  A small file that is missing is rebuilt as an unnamed file in its directory and
  linked into place when complete (``_NewFiles``): a kill leaves nothing.
* Nothing is written through a symlink: parents are checked with ``lstat``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat as stat_mod
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from blake3 import blake3

from dvx import treescan
from dvx.errors import DvxError, MissingObjectError, WorkspaceConflictError
from dvx.fsutil import os_error, random_token
from dvx.lock import store_lock
from dvx.objects import ENTRY_FILE, ENTRY_LINK, ENTRY_TREE
from dvx.pointer import Pointer
from dvx.progress import NULL_PROGRESS, Progress
from dvx.repo import Repository
from dvx.statcache import (
    NO_ID,
    RACY_NS,
    CacheRecord,
    DirRecord,
    Stat,
    StatCache,
    TreeRecord,
    record_digests,
    stat_key,
)
from dvx.store.local import Store
from dvx.tracked import Tracked
from dvx.treescan import scan_dirs
from dvx.workspace import hash_file


@dataclass
class CheckoutResult:
    """What checkout did to one tracked path. ``error`` is set when the path (or some of
    its files) could not be checked out; the other paths are done regardless."""

    target: str
    restored: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    error: str | None = None
    failed: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"path": self.target, "restored": self.restored,
                                  "removed": self.removed, "unchanged": self.unchanged}
        if self.error:
            out["error"] = self.error
            out["failed"] = self.failed
        return out


def failed(results: list[CheckoutResult]) -> list[CheckoutResult]:
    return [r for r in results if r.error]


@dataclass
class _Rescan:
    """A directory to record in the stat cache after checkout: what the pointer has."""

    tree: bytes
    size: int
    files: int
    subs: bytes
    names: list[tuple[str, int]]  # (name, kind) of its entries


@dataclass
class _Plan:
    tracked: Tracked
    pointer: Pointer
    # rel, manifest id, size, exec, absent (nothing at rel when it is written)
    restore: list[tuple[str, bytes, int, int, bool]] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)
    record: CacheRecord = field(default_factory=CacheRecord)
    unchanged: int = 0
    restored_names: list[str] = field(default_factory=list)  # "" for a tracked file
    # trees: files found unchanged (name -> (stat, id)), and the stat cache's directories
    # after checkout (None: rescan it then; with the pointer's tree there)
    verified: dict[str, tuple[Stat, bytes]] = field(default_factory=dict)
    tree_dirs: dict[str, DirRecord | _Rescan] | None = None
    at: dict[str, tuple[str, int]] = field(default_factory=dict)  # file -> (dir, index in cached record)


def checkout(repo: Repository, paths: list[str] | None = None, *, force: bool = False,
             pointers: dict[str, Pointer] | None = None, bad: dict[str, DvxError] | None = None,
             progress: Progress = NULL_PROGRESS) -> list[CheckoutResult]:
    """Restore tracked data. ``pointers`` (target -> pointer) overrides the work tree's
    pointer files, e.g. with those of another revision; ``bad`` names pointers that
    could not be read (they are reported as failed results).

    A path that cannot be checked out (broken or unsafe pointer, data missing from the
    store, a file that cannot be written) does not stop the others: its result carries
    the error. Unsaved data in the way stops everything before anything changes."""
    with store_lock(repo.store.path):
        results = _checkout(repo, paths, force, pointers, dict(bad or {}), progress)
    from dvx.ops.stale import note_checked_out

    note_checked_out(repo, [r.target for r in results if not r.error])  # see dvx/ops/stale.py
    return results


def _checkout(repo: Repository, paths: list[str] | None, force: bool,
              pointers: dict[str, Pointer] | None, bad: dict[str, DvxError],
              progress: Progress) -> list[CheckoutResult]:
    cache = StatCache(repo.state_dir)
    clean_restore_tmp(repo)
    if pointers is None:
        from dvx.history import history_of

        found: dict[str, DvxError] = {}
        pointers = history_of(repo).workspace(paths, bad=found)
        bad.update(found)
    plans: list[_Plan] = []
    conflicts: list[str] = []
    results: dict[str, CheckoutResult] = {t: CheckoutResult(t, error=str(e)) for t, e in bad.items()}
    for target, pointer in sorted(pointers.items()):
        if target in bad:
            continue
        t = Tracked(target, target + ".dvx")
        try:
            plans.append(_plan(repo, t, pointer, cache, force, conflicts))
        except DvxError as exc:
            results[target] = CheckoutResult(target, error=str(exc))
    if conflicts:
        shown = ", ".join(conflicts[:5]) + (f" and {len(conflicts) - 5} more" if len(conflicts) > 5 else "")
        raise WorkspaceConflictError(
            f"checkout would overwrite unsaved data: {shown}",
            "save it with `dvx add`, or re-run with --force to discard it",
        )
    total = sum(len(p.restore) for p in plans)
    progress.start("checking out", total)
    tmp_dir = restore_tmp_dir(repo)
    try:
        for plan in plans:
            results[plan.tracked.target] = _apply(repo, plan, cache, progress, tmp_dir)
    finally:
        progress.finish()
    _settle(repo, plans, cache)
    return [results[t] for t in sorted(results)]


def _content_saved(repo: Repository, path: str, where: str, cached: bytes | None,
                   seen: dict[str, tuple[bytes, Stat]] | None = None) -> bytes | None:
    """Manifest id of a work-tree file if its content is in the store, else None.

    A file that had to be hashed is remembered in ``seen`` (with the stat its content
    corresponds to) when that stat is old enough to be trusted (the racy rule of
    ``dvx.statcache``), so an identical file need not be rewritten."""
    if cached is not None and repo.store.contains(cached):
        return cached
    start = time.time_ns()
    try:
        manifest, st = hash_file(path, where, repo.chunker, None)
    except DvxError:
        return None
    mid = manifest.object_id()
    if seen is not None and st[2] < start - RACY_NS:
        seen[path] = (mid, st)
    return mid if repo.store.contains(mid) else None


def _plan(repo: Repository, t: Tracked, pointer: Pointer, cache: StatCache, force: bool,
          conflicts: list[str]) -> _Plan:
    plan = _Plan(t, pointer)
    abs_path = repo.data_path(t.target, t.pointer_path)  # refuses unsafe names and links above
    record = cache.load(t.target)
    seen: dict[str, tuple[bytes, Stat]] = {}
    try:
        st = os.lstat(abs_path)
    except FileNotFoundError:
        st = None
    scan: list[treescan.Record] = []
    if pointer.kind == "tree" and st is not None and stat_mod.S_ISDIR(st.st_mode):
        # the store's indexes are read (and checksummed) on another thread while the
        # work tree is scanned: the scan's threads run without the GIL
        import threading

        found: list[bool] = []

        def load() -> None:
            with contextlib.suppress(DvxError):  # raised again below, on this thread
                found.append(repo.store.contains(pointer.oid))

        loader = threading.Thread(target=load, name="dvx-index", daemon=True)
        loader.start()
        try:
            scan = scan_dirs(abs_path, t.target)
        finally:
            loader.join()
        present = found[0] if found else repo.store.contains(pointer.oid)  # (its error, raised here)
    else:
        present = repo.store.contains(pointer.oid)
    if not present:
        from dvx.ops.revs import pull_hint

        raise MissingObjectError(
            f"the data of {t.target} ({pointer.id[:12]}) is not in the local store",
            pull_hint(repo),
        )
    if pointer.kind == "file":
        if st is not None:
            if stat_mod.S_ISREG(st.st_mode):
                key = stat_key(st)
                cached = record.ids.get("") if record.stats.get("") == key else None
                if cached == pointer.oid and bool(key[4]) == pointer.exec:
                    plan.unchanged = 1
                    plan.record = record
                    return plan
                if cached != pointer.oid:
                    mid = _content_saved(repo, abs_path, t.target, cached, seen)
                    if mid == pointer.oid and bool(key[4]) == pointer.exec:
                        plan.unchanged = 1  # same content, stat not cached: nothing to write
                        if abs_path in seen:
                            plan.record = CacheRecord(pointer.oid, 0, {"": seen[abs_path][1]},
                                                      {"": pointer.oid})
                        return plan
                    if mid is None and not force:
                        conflicts.append(t.target)
            elif stat_mod.S_ISDIR(st.st_mode):
                if not force:
                    conflicts.append(t.target + "/")
                plan.remove.append("")
        plan.restore.append(("", pointer.oid, pointer.size, 1 if pointer.exec else 0, st is None))
        return plan
    _plan_tree(repo, plan, abs_path, st, scan, cache, force, conflicts, seen)
    return plan


# a pointer's entry in one directory: kind, exec, size, files, id (file/tree) or link target
_PEntry = tuple[int, int, int, int, "bytes | str"]


def _plan_tree(repo: Repository, plan: _Plan, abs_path: str, st: os.stat_result | None,
               scan: list[treescan.Record], cache: StatCache, force: bool, conflicts: list[str],
               seen: dict[str, tuple[bytes, Stat]]) -> None:
    """Plan a tracked directory (``scan``: the work tree's, if a directory is there),
    doing work in proportion to what differs.

    The pointer's tree is walked from the root. A work-tree directory whose record and
    subdirectories match the stat cache and whose cached tree id is the pointer's is
    skipped whole. A directory the cache knows (its cached tree id is the pointer's)
    is compared with its cached record in C, so only the entries that changed are
    looked at; others are read from the store and compared entry by entry."""
    t = plan.tracked
    rec = cache.load_tree(t.target)
    if st is not None and not stat_mod.S_ISDIR(st.st_mode):
        if not force and (not stat_mod.S_ISREG(st.st_mode) or
                          _content_saved(repo, abs_path, t.target, None) is None):
            conflicts.append(t.target)
        plan.remove.append("")
    ws = dict(scan)
    clean: dict[str, bytes] = {}  # work-tree directories whose whole subtree is as cached
    kids = treescan.children_of(scan)
    for (rel, _record), digest in zip(reversed(scan), reversed(record_digests(scan)), strict=True):
        c = rec.dirs.get(rel)
        if (c is not None and c.digest == digest and c.trusted and all(k in clean for k in kids[rel])
                and b"".join(clean[k] for k in kids[rel]) == c.subs):
            clean[rel] = c.tree
    ckids = treescan.children_of([(r, b"") for r in rec.dirs])
    new_dirs: dict[str, DirRecord | _Rescan] = {}  # the cache after checkout

    def keep(rel: str) -> None:  # a clean subtree: its cache entries stay as they are
        new_dirs[rel] = rec.dirs[rel]
        for k in ckids.get(rel, []):
            keep(k)

    stack = [("", plan.pointer.oid)]
    while stack:
        rel, tid = stack.pop()
        where = f"{t.target}/{rel}" if rel else t.target
        if clean.get(rel) == tid:
            keep(rel)
            plan.unchanged += rec.dirs[rel].files
            continue
        if rel:
            plan.dirs.append(rel)
        cur = ws.get(rel)
        c = rec.dirs.get(rel)
        diffs: list[tuple[str, _PEntry | None, treescan.Entry | None, bytes | None]] = []
        if c is not None and c.tree == tid and c.trusted and c.available():
            # the cache describes the pointer's tree here: compare records (in C)
            new_dirs[rel] = c
            sub_ids = {k: c.subs[i * 32:(i + 1) * 32] for i, k in enumerate(ckids.get(rel, []))}
            for k, kid in sub_ids.items():
                stack.append((k, kid))
            plan.unchanged += c.files - sum(rec.dirs[k].files for k in sub_ids if k in rec.dirs)
            for name, ai, _bi, oe, ne in treescan.diff_entries(c.record, cur or b""):
                if oe is not None and oe[1] == treescan.K_FILE:
                    plan.unchanged -= 1  # counted above; _plan_entry decides
                    plan.at[treescan.join(rel, name)] = (rel, ai)
                pe: _PEntry | None = None
                if oe is not None and oe[1] != treescan.K_SPECIAL:
                    ref: bytes | str = c.ids[ai * 32:(ai + 1) * 32] if oe[1] == treescan.K_FILE else \
                        (oe[7] or "") if oe[1] == treescan.K_LINK else sub_ids[treescan.join(rel, name)]
                    pe = (oe[1], oe[2], oe[4], 1, ref)
                diffs.append((name, pe, ne, None))
        else:
            tree = repo.store.read_tree(tid)
            new_dirs[rel] = _Rescan(tid, tree.size, tree.files,
                                    b"".join(e.oid or b"" for e in tree.entries if e.kind == ENTRY_TREE),
                                    [(e.name, e.kind) for e in tree.entries])
            cached: dict[str, tuple[tuple[int, ...], bytes]] = {}
            if c is not None and c.available():
                for i, e in enumerate(treescan.parse_entries(c.record)):
                    if e[1] == treescan.K_FILE and c.ids[i * 32:(i + 1) * 32] != NO_ID:
                        cached[e[0]] = (e[1:7], c.ids[i * 32:(i + 1) * 32])
            pentries: dict[str, _PEntry] = {}
            for e in tree.entries:
                ref = e.target or "" if e.kind == ENTRY_LINK else e.oid or b""
                pentries[e.name] = (e.kind, 1 if e.executable else 0, e.size, e.files, ref)
                if e.kind == ENTRY_TREE:
                    stack.append((treescan.join(rel, e.name), ref))  # type: ignore[arg-type]
            for ne in treescan.parse_entries(cur) if cur else []:
                pe = pentries.pop(ne[0], None)
                hit = cached.get(ne[0])
                diffs.append((ne[0], pe, ne, hit[1] if hit is not None and hit[0] == ne[1:7] else None))
            diffs.extend((name, pe, None, None) for name, pe in pentries.items())
        for name, pe, ne, cached_id in diffs:
            _plan_entry(repo, plan, abs_path, treescan.join(rel, name), f"{where}/{name}", pe, ne,
                        cached_id, force, conflicts, seen, ws)
    plan.tree_dirs = new_dirs


def _plan_entry(repo: Repository, plan: _Plan, abs_path: str, name: str, where: str,
                pe: _PEntry | None, ne: treescan.Entry | None, cached: bytes | None, force: bool,
                conflicts: list[str], seen: dict[str, tuple[bytes, Stat]], ws: dict[str, bytes]) -> None:
    """One name of a directory where the pointer (``pe``) and the work tree (``ne``)
    may differ."""
    path = os.path.join(abs_path, name)
    wkind = ne[1] if ne is not None else 0
    pkind = pe[0] if pe is not None else 0
    if wkind == treescan.K_FILE:
        stat = (ne[3], ne[4], ne[5], ne[6], ne[2])  # type: ignore[index]
        if pkind == ENTRY_FILE:
            assert pe is not None
            if cached == pe[4] and stat[4] == pe[1]:
                plan.unchanged += 1
                plan.verified[name] = (stat, cached)
                return
            now = _content_saved(repo, path, where, cached, seen)
            if now == pe[4] and stat[4] == pe[1]:
                plan.unchanged += 1
                if path in seen and seen[path][1] == stat:
                    plan.verified[name] = (stat, now)
                return
        else:
            now = _content_saved(repo, path, where, cached, seen)
        if now is None and not force:
            conflicts.append(where)
        if pkind != ENTRY_FILE:
            plan.remove.append(name)
    elif wkind == treescan.K_DIR:
        if pkind == ENTRY_TREE:
            return  # compared directory by directory
        if pkind == ENTRY_FILE:
            if not force:
                conflicts.append(f"{where}/")
        else:
            _check_unsaved_below(repo, abs_path, name, where, ws, force, conflicts, seen)
        plan.remove.append(name)
    elif wkind == treescan.K_LINK:
        assert ne is not None
        if pkind == ENTRY_LINK and pe is not None and pe[4] == ne[7]:
            return
        plan.remove.append(name)
    if pkind == ENTRY_FILE:
        assert pe is not None
        # absent: nothing there, or what is there goes first (a directory, a link)
        plan.restore.append((name, pe[4], pe[2], pe[1], wkind in (0, treescan.K_DIR, treescan.K_LINK)))  # type: ignore[arg-type]
    elif pkind == ENTRY_LINK:
        assert pe is not None
        plan.links.append((name, pe[4]))  # type: ignore[arg-type]


def _check_unsaved_below(repo: Repository, abs_path: str, rel: str, where: str, ws: dict[str, bytes],
                         force: bool, conflicts: list[str], seen: dict[str, tuple[bytes, Stat]]) -> None:
    """A work-tree directory the pointer does not have: every file in it must be saved
    in the store before it may go."""
    if force:
        return
    base = where[:len(where) - len(rel)]
    for d, record in ws.items():
        if d != rel and not d.startswith(rel + "/"):
            continue
        for e in treescan.parse_entries(record):
            if e[1] == treescan.K_FILE:
                name = treescan.join(d, e[0])
                if _content_saved(repo, os.path.join(abs_path, name), base + name, None, seen) is None:
                    conflicts.append(base + name)


def _safe_dir(root: str, rel_dir: str, replace: bool = True) -> str:
    """Create ``root/rel_dir`` component by component, never through a symlink.

    ``replace``: a file or link where a directory belongs is removed (only ever inside
    a tracked directory, where the plan checked it); otherwise it is an error, so
    nothing above a tracked path is ever deleted."""
    path = root
    for part in [p for p in rel_dir.split("/") if p]:
        path = os.path.join(path, part)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            os.mkdir(path)
            continue
        if not stat_mod.S_ISDIR(st.st_mode):
            if not replace:
                raise NotADirectoryError(errno.ENOTDIR, "not a directory (left as it is)", path)
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


_FATAL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def _apply(repo: Repository, plan: _Plan, cache: StatCache, progress: Progress,
           tmp_dir: str | None) -> CheckoutResult:
    t = plan.tracked
    res = CheckoutResult(t.target, unchanged=plan.unchanged)
    abs_path = repo.abspath(t.target)
    rec = plan.record
    problems: list[str] = []
    try:
        # deepest first, so directories are empty before they go
        for name in sorted(plan.remove, key=lambda n: -n.count("/")):
            _remove(os.path.join(abs_path, name) if name else abs_path)
            res.removed.append(name or t.target)
        parent = os.path.dirname(t.target)
        if parent:
            _safe_dir(repo.root, parent, replace=False)  # above the tracked path: never replaced
        if plan.pointer.kind == "tree":
            _safe_dir(repo.root, t.target, replace=False)
            for d in plan.dirs:
                _safe_dir(abs_path, d)
    except OSError as exc:
        cache.drop(t.target)
        res.error = str(os_error(exc, f"check out {t.target}"))
        return res
    new_files = _NewFiles(repo.store)
    dest_dirs: dict[str, str] = {}

    def fail(name: str, exc: OSError | DvxError) -> bool:
        """Record a file that could not be written; True when the disk is full."""
        why = str(os_error(exc, "write it")) if isinstance(exc, OSError) else str(exc)
        res.failed.append(name or t.target)
        problems.append(f"{t.target + '/' + name if name else t.target}: {why}")
        rec.stats.pop(name, None)
        rec.ids.pop(name, None)
        return isinstance(exc, OSError) and exc.errno in _FATAL_ERRNOS

    def done(name: str, mid: bytes, st: Stat) -> None:
        rec.stats[name], rec.ids[name] = st, mid
        res.restored.append(name or t.target)
        plan.restored_names.append(name)
        progress.advance()

    try:
        # small files that are missing: written whole, in batches, on two threads;
        # then the others (and any the batch could not place) one by one
        later: list[tuple[str, bytes, int, str, str]] = []
        full = False
        for name, mid, size, exe, absent in plan.restore:
            try:
                if name:
                    parent, _, base = name.rpartition("/")
                    dest_dir = dest_dirs.get(parent) or dest_dirs.setdefault(
                        parent, _safe_dir(abs_path, parent) if parent else abs_path)
                else:
                    dest_dir, base = os.path.split(abs_path)
                if not (absent and size <= SMALL_FILE and new_files.add(name, mid, size, exe, dest_dir, base)):
                    later.append((name, mid, exe, dest_dir, base))
            except (OSError, DvxError) as exc:
                if fail(name, exc):
                    full = True
                    break
            if new_files.pending_bytes >= BATCH_BYTES:
                full = new_files.flush(done, fail, later)
                if full:
                    break
        if not full:
            full = new_files.flush(done, fail, later)
        for name, mid, exe, dest_dir, base in [] if full else later:
            try:
                st = restore_file(repo.store, mid, os.path.join(dest_dir, base), bool(exe), tmp_dir)
            except (OSError, DvxError) as exc:
                if fail(name, exc):
                    break  # the disk is full: every other file would fail the same way
                continue
            done(name, mid, st)
    finally:
        new_files.close()
    for name, target in plan.links:
        try:
            parent = name.rpartition("/")[0]
            dest_dir = _safe_dir(abs_path, parent) if parent else abs_path
            dest = os.path.join(dest_dir, name.rpartition("/")[2])
            _remove(dest)
            os.symlink(target, dest)
            res.restored.append(name)
        except OSError as exc:
            res.failed.append(name)
            problems.append(f"{t.target}/{name}: {os_error(exc, 'create the link')}")
    if problems or len(res.restored) + len(res.failed) < len(plan.restore) + len(plan.links):
        skipped = len(plan.restore) + len(plan.links) - len(res.restored) - len(res.failed)
        more = f" (and {skipped} not tried)" if skipped else ""
        res.error = (f"{len(res.failed)} file(s) of {t.target} could not be checked out{more}: "
                     + "; ".join(problems[:3]) + (" ..." if len(problems) > 3 else ""))
        rec.root_id = None  # the work tree does not match the pointer: nothing is trusted
        cache.drop(t.target)
    else:
        rec.root_id = plan.pointer.oid
    if res.restored or res.removed:
        # the data must be ignored by git even when the pointer came without its
        # .gitignore line (a teammate who committed with plain git)
        from dvx.gitignore import ensure_ignored

        try:
            ensure_ignored(abs_path)
        except (OSError, DvxError) as exc:
            why = str(os_error(exc, "update its .gitignore")) if isinstance(exc, OSError) else str(exc)
            res.error = f"{t.target}: checked out, but git does not ignore it: {why}"
    plan.record = rec
    return res


def _settle(repo: Repository, plans: list[_Plan], cache: StatCache) -> None:
    """Record what checkout wrote, so that the next checkout or status trusts it
    without reading or rewriting anything.

    The stat cache trusts an entry only when its mtime is older than the moment its
    stat was taken by more than the timestamp granularity (git's racy-clean rule). A
    file just written is always that young, so wait out the window once (≤ 20 ms),
    then stat the written files again: unchanged ones are trusted from now on."""
    written = [p for p in plans if p.restored_names]
    if written:
        newest = max(p.record.stats[n][2] for p in written for n in p.restored_names
                     if n in p.record.stats)
        wait = newest + RACY_NS + 1_000_000 - time.time_ns()
        if wait > 0:
            time.sleep(wait / 1e9)
    now = time.time_ns()
    for p in plans:
        rec = p.record
        if rec.root_id is None:
            continue
        abs_path = repo.abspath(p.tracked.target)
        if p.tree_dirs is not None:
            _settle_tree(p, abs_path, cache, now)
            continue
        for name in p.restored_names:
            try:
                st = stat_key(os.lstat(os.path.join(abs_path, name) if name else abs_path))
            except OSError:
                st = None
            if st != rec.stats.get(name):  # changed since we wrote it: re-hash next time
                rec.stats.pop(name, None)
                rec.ids.pop(name, None)
        rec.scan_start_ns = now
        cache.save(p.tracked.target, rec)


def _settle_tree(p: _Plan, abs_path: str, cache: StatCache, now: int) -> None:
    """The stat cache of a tracked directory after checkout. Directories the cache
    already described keep their entries (a restored file is re-hashed once, by the next
    status, when its directory's record no longer matches); directories planned from
    the store are scanned again and recorded with the ids checkout knows."""
    assert p.tree_dirs is not None
    limit = now - RACY_NS
    dirs: dict[str, DirRecord] = {}
    # directories the cache described: their records with the stats of the files this
    # checkout wrote or found unchanged under a new stat, so the next command trusts them
    patches: dict[str, dict[int, Stat]] = {}
    untrusted: dict[str, list[int]] = {}
    for name, (rel, i) in p.at.items():
        st: Stat | None = None
        if name in p.restored_names:
            with contextlib.suppress(OSError):
                st = stat_key(os.lstat(os.path.join(abs_path, name)))
            if st != p.record.stats.get(name) or st is None or st[2] >= limit:
                untrusted.setdefault(rel, []).append(i)  # changed since written: re-hash next time
                continue
        elif name in p.verified:
            st = p.verified[name][0]
        if st is not None:
            patches.setdefault(rel, {})[i] = st
    for rel, d in p.tree_dirs.items():
        if isinstance(d, DirRecord):
            if rel in patches or rel in untrusted:
                if not d.available():
                    continue
                patched = treescan.patch_entries(d.record, patches.get(rel, {}))
                new_ids, trusted = d.ids, d.trusted
                if rel in untrusted:
                    buf = bytearray(new_ids)
                    for i in untrusted[rel]:
                        buf[i * 32:(i + 1) * 32] = NO_ID
                    new_ids, trusted = bytes(buf), False
                d = DirRecord(blake3(patched).digest(), d.tree, d.size, d.files, d.subs, trusted,
                              record=patched, ids=new_ids)
            dirs[rel] = d
            continue
        try:
            record = scan_dirs(os.path.join(abs_path, rel) if rel else abs_path, rel, recursive=False)[0][1]
        except DvxError:
            continue
        entries = treescan.parse_entries(record)
        ids = []
        trusted = [(e[0], e[1]) for e in entries if e[1] != treescan.K_SPECIAL] == d.names
        for e in entries:
            mid = NO_ID
            if e[1] == treescan.K_FILE:
                name = treescan.join(rel, e[0])
                st = (e[3], e[4], e[5], e[6], e[2])
                if name in p.restored_names and p.record.stats.get(name) == st:
                    mid = p.record.ids[name]
                elif name in p.verified and p.verified[name][0] == st:
                    mid = p.verified[name][1]
                if mid == NO_ID or e[5] >= limit:
                    mid, trusted = NO_ID, False
            ids.append(mid)
        dirs[rel] = DirRecord(blake3(record).digest(), d.tree, d.size, d.files, d.subs, trusted,
                              record=record, ids=b"".join(ids))
    order = sorted(dirs, key=lambda r: [x.encode("utf-8", "surrogateescape") for x in r.split("/") if x])
    cache.save_tree(p.tracked.target, TreeRecord(p.pointer.oid, now, {r: dirs[r] for r in order}), None)


def restore_tmp_dir(repo: Repository) -> str | None:
    """``.dvx/tmp/checkout``: where files are rebuilt before being renamed into place
    (git ignores it, and a killed checkout leaves nothing in the work tree)."""
    path = os.path.join(repo.dvx_dir, "tmp", "checkout")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return None  # rebuild beside the target instead
    return path


def clean_restore_tmp(repo: Repository) -> None:
    """Remove what killed checkouts left behind (files no running checkout holds)."""
    for path, _size in stale_restore_files(repo):
        with contextlib.suppress(OSError):
            os.unlink(path)


def stale_restore_files(repo: Repository) -> list[tuple[str, int]]:
    """Temporary files of checkouts that are no longer running: ``(path, size)``."""
    import fcntl

    path = os.path.join(repo.dvx_dir, "tmp", "checkout")
    found: list[tuple[str, int]] = []
    try:
        names = os.listdir(path)
    except OSError:
        return found
    for name in names:
        full = os.path.join(path, name)
        try:
            fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held by a running checkout?
            found.append((full, os.fstat(fd).st_size))
        except OSError:
            pass
        finally:
            os.close(fd)
    return found


def _tmp_for(dest: str, tmp_dir: str | None) -> str:
    """A temporary name of fixed length (so any file name fits NAME_MAX): in
    ``tmp_dir`` when it is on the destination's filesystem, else beside ``dest``."""
    token = random_token(8)
    if tmp_dir is not None:
        try:
            if os.stat(tmp_dir).st_dev == os.stat(os.path.dirname(dest) or ".").st_dev:
                return os.path.join(tmp_dir, f"restore-{token}.tmp")
        except OSError:
            pass
    return os.path.join(os.path.dirname(dest), f".dvx-{token}.tmp")


SMALL_FILE = 1 << 20  # files up to this size that do not exist yet: _NewFiles
BATCH_BYTES = 64 << 20  # content held for one batch of _NewFiles
_NO_TMPFILE = (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL)


class _NewFiles:
    """Writes small files that do not exist yet straight into their directory, in
    batches: each an unnamed file (``O_TMPFILE``) filled with its verified content,
    then linked into place (``linkat``), so it appears whole or not at all and a kill
    leaves nothing behind; the contents of a batch are read from the store together
    (``Store.read_files_bytes``) and its system calls run on two threads without the
    GIL (``dvx.workspace.write_new_files``). One inode and five system calls per file,
    against a named temporary file that must be locked, renamed and stat'ed again.
    Where the kernel or the file system cannot (no ``O_TMPFILE``, no ``/proc``), or a
    name exists after all, the file goes to the caller's ``later`` list, for
    ``restore_file``."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.ok = hasattr(os, "O_TMPFILE")
        self.dirs: dict[str, int] = {}
        self.pending: list[tuple[str, bytes, int, str, str]] = []
        self.pending_bytes = 0

    def add(self, name: str, mid: bytes, size: int, exe: int, dest_dir: str, base: str) -> bool:
        """Queue a file; False: it cannot be written this way."""
        if not self.ok:
            return False
        if dest_dir not in self.dirs:
            self.dirs[dest_dir] = os.open(dest_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        self.pending.append((name, mid, exe, dest_dir, base))
        self.pending_bytes += size
        return True

    def flush(self, done: Callable[[str, bytes, Stat], None], fail: Callable[[str, OSError | DvxError], bool],
              later: list[tuple[str, bytes, int, str, str]]) -> bool:
        """Write the queued files; True when the disk filled up (stop everything)."""
        from dvx.workspace import write_new_files

        queued, self.pending, self.pending_bytes = self.pending, [], 0
        if not queued:
            return False
        full = False
        batch = []
        for item, data in zip(queued, self.store.read_files_bytes([q[1] for q in queued]), strict=True):
            if isinstance(data, DvxError):
                full = fail(item[0], data) or full
            else:
                batch.append((item, data))
        got = write_new_files([(self.dirs[d], os.fsencode(b), data, bool(exe))
                               for (_n, _m, exe, d, b), data in batch], 2)
        for ((name, mid, exe, dest_dir, base), _data), r in zip(batch, got, strict=True):
            if not isinstance(r, int):
                done(name, mid, r)
            elif r in _NO_TMPFILE or (r == errno.ENOENT and not os.path.isdir("/proc/self/fd")):
                self.ok = False  # not on this file system (or kernel, or without /proc)
                later.append((name, mid, exe, dest_dir, base))
            elif r == errno.EEXIST:
                later.append((name, mid, exe, dest_dir, base))  # appeared meanwhile: replaced as usual
            elif r < 0:
                full = True  # not tried: the disk filled up
            elif fail(name, OSError(r, os.strerror(r), os.path.join(dest_dir, base))):
                full = True
        return full

    def close(self) -> None:
        for fd in self.dirs.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self.dirs.clear()


def restore_file(store: Store, manifest_id: bytes, dest: str, executable: bool,
                 tmp_dir: str | None = None) -> tuple[int, int, int, int, int]:
    """Rebuild one file from the store at ``dest`` (atomically); returns its stat key."""
    import fcntl

    with store.open_file(manifest_id) as src:  # every chunk verified as it is copied
        tmp = _tmp_for(dest, tmp_dir)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                     0o777 if executable else 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # marks it as in use (see stale_restore_files)
            src.copy_to(fd)
            mode = os.fstat(fd).st_mode
            if executable:
                os.fchmod(fd, mode | ((mode & 0o444) >> 2))
            else:
                os.fchmod(fd, mode & ~0o111)
            os.replace(tmp, dest)
            os.close(fd)
            fd = -1
        except BaseException:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    return stat_key(os.lstat(dest))
