"""``dvx add``: store files and directories, write their pointers.

Order (``protocols/format.md`` §7): chunks, manifests and trees go into packs, the packs
are published, then the pointer file is replaced atomically, then ``.gitignore`` and the
stat cache are updated. A kill at any point leaves the old pointer or the new one, and
every object the pointer names is present.
"""

from __future__ import annotations

import os
import stat as stat_mod
import time
from dataclasses import dataclass, field

from dvx.errors import DvxError
from dvx.fsutil import atomic_write_bytes, os_error
from dvx.gitignore import check_writable, ensure_ignored
from dvx.lock import store_lock
from dvx.pointer import (
    POINTER_SUFFIX,
    POINTER_VERSION,
    Pointer,
    pointer_path_for,
    read_pointer,
    target_problem,
)
from dvx.progress import NULL_PROGRESS, Progress
from dvx.repo import Repository
from dvx.statcache import CacheRecord, StatCache, stat_key
from dvx.store.local import StoreWriter
from dvx.tracked import find_tracked, owning_tracked
from dvx.workspace import (
    SMALL_FILE,
    DeltaBase,
    add_small_files,
    build_tree,
    check_utf8,
    flatten_tree,
    hash_file,
    scan_dir,
)

NAME_MAX = 255  # bytes in one file name (Linux, macOS)


@dataclass
class AddResult:
    target: str
    pointer: Pointer
    changed: bool
    hashed_files: int
    bytes_stored: int
    skipped: list[str] = field(default_factory=list)  # FIFOs, sockets, devices inside: not data
    in_git: list[str] = field(default_factory=list)  # files git's index also holds (should not)

    def to_json(self) -> dict[str, object]:
        return {"path": self.target, "pointer": self.pointer.to_json(), "changed": self.changed,
                "hashed_files": self.hashed_files, "bytes_stored": self.bytes_stored,
                "skipped": self.skipped, "in_git": self.in_git}


def _validate_target(repo: Repository, user_path: str) -> str:
    rel = repo.relpath(user_path, must_exist=True)
    if not rel:
        raise DvxError("cannot track the repository root", "add a file or directory inside it")
    if rel.endswith(POINTER_SUFFIX):
        raise DvxError(f"{rel} is a pointer file", f"add {rel[: -len(POINTER_SUFFIX)]} instead")
    st = os.lstat(repo.abspath(rel))
    if stat_mod.S_ISLNK(st.st_mode):
        raise DvxError(f"{rel} is a symbolic link", "add the file or directory it points to")
    if not (stat_mod.S_ISREG(st.st_mode) or stat_mod.S_ISDIR(st.st_mode)):
        raise DvxError(f"{rel} is not a regular file or directory")
    check_utf8(rel, rel)
    if any(c in rel for c in "\n\r"):
        raise DvxError(f"{rel!r}: a tracked path cannot hold a newline (a .gitignore line cannot "
                       "express it, so git would see the data)",
                       "rename it, or track the directory that holds it")
    problem = target_problem(rel)
    if problem is not None:
        raise DvxError(f"cannot track {rel}: {problem}", "pick another path")
    if len(os.fsencode(rel.rsplit("/", 1)[-1])) + len(POINTER_SUFFIX) > NAME_MAX:
        raise DvxError(f"{rel}: the name is too long for its pointer file "
                       f"({NAME_MAX - len(POINTER_SUFFIX)} bytes at most)",
                       "rename it, or track the directory that holds it")
    check_writable(repo.abspath(rel))  # a .gitignore that is a link or not a file: refuse early
    return rel


def add(repo: Repository, paths: list[str], progress: Progress = NULL_PROGRESS) -> list[AddResult]:
    """Track ``paths``. Unchanged paths return immediately without touching the store."""
    with store_lock(repo.store.path):
        return _add(repo, paths, progress)


def _add(repo: Repository, paths: list[str], progress: Progress) -> list[AddResult]:
    targets: list[str] = []
    tracked = find_tracked(repo)
    for p in paths:
        rel = _validate_target(repo, p)
        owner = owning_tracked(tracked, rel)
        if owner is not None:
            raise DvxError(f"{rel} is inside the tracked directory {owner.target}",
                           f"run `dvx add {owner.target}` instead")
        inner = [t.target for t in tracked if t.target.startswith(rel + "/")]
        if inner:
            raise DvxError(f"{rel} contains tracked paths ({inner[0]}...)",
                           "track them together by removing their .dvx files first")
        if rel not in targets:
            targets.append(rel)
    cache = StatCache(repo.state_dir)
    results: list[AddResult] = []
    writer: StoreWriter | None = None
    staged: list[tuple[str, Pointer, CacheRecord, int, int]] = []
    try:
        for rel in targets:
            abs_path = repo.abspath(rel)
            old = _old_pointer(repo, rel)
            record = cache.load(rel)
            scan_start = time.time_ns()
            skipped: list[str] = []
            if os.path.isdir(abs_path):
                scan = scan_dir(abs_path, rel)
                skipped = [f"{rel}/{x}" for x in scan.skipped()]
                if (old is not None and old.kind == "tree" and record.root_id == old.oid
                        and scan.files == record.stats and scan.links == record.links
                        and scan.dirs == record.dirs and repo.store.contains(old.oid)):
                    _ensure_ignored(abs_path, rel)  # unchanged data, but the line may be gone
                    results.append(AddResult(rel, old, False, 0, 0, skipped))
                    continue
                if writer is None:
                    writer = repo.store.writer()
                pointer, rec, hashed, stored = _add_dir(repo, rel, scan, record, writer, progress,
                                                        old if old is not None and old.kind == "tree" else None)
            else:
                st = stat_key(os.lstat(abs_path))
                if (old is not None and old.kind == "file" and record.root_id == old.oid
                        and record.stats.get("") == st and repo.store.contains(old.oid)):
                    _ensure_ignored(abs_path, rel)
                    results.append(AddResult(rel, old, False, 0, 0))
                    continue
                if writer is None:
                    writer = repo.store.writer()
                before = writer.bytes_written
                progress.start(f"adding {rel}", 1)
                base = _delta_base(repo, old.oid if old is not None and old.kind == "file" else None)
                manifest, st = hash_file(abs_path, rel, repo.chunker, writer, base=base)
                progress.advance()
                mid = manifest.object_id()
                pointer = Pointer.create(dvx=POINTER_VERSION, kind="file", id=mid.hex(),
                                  size=manifest.size, files=1, b3=manifest.digest.hex(),
                                  exec=bool(st[4]))
                rec = CacheRecord(mid, 0, {"": st}, {"": mid})
                hashed, stored = 1, writer.bytes_written - before
            rec.scan_start_ns = scan_start
            staged.append((rel, pointer, rec, hashed, stored))
            results.append(AddResult(rel, pointer, old is None or old != pointer, hashed, stored, skipped))
        if writer is not None:
            writer.commit()  # every object is now durable and visible
            writer = None
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        progress.finish()
    for rel, pointer, rec, _, _ in staged:
        abs_path = repo.abspath(rel)
        _ensure_ignored(abs_path, rel)  # first: never a pointer whose data git would see
        try:
            atomic_write_bytes(abs_path + POINTER_SUFFIX, pointer.render().encode(),
                               fsync=repo.config.core.fsync)
        except OSError as exc:
            raise os_error(exc, f"write {rel}{POINTER_SUFFIX}") from None
        cache.save(rel, rec)
    for r in results:  # the version now checked out here (dvx/ops/stale.py)
        cache.save_base(r.target, r.pointer.oid)
    # only where a pointer was written: an unchanged re-add stays instant (no dulwich)
    in_git = _tracked_by_git(repo, [r.target for r in results if r.changed or r.bytes_stored])
    for r in results:
        r.in_git = in_git.get(r.target, [])
    return results


def _tracked_by_git(repo: Repository, targets: list[str]) -> dict[str, list[str]]:
    """Files under ``targets`` that git's index holds too: then both git and DVX would
    store them, and the new .gitignore line does not stop git (`git rm --cached` does)."""
    from dvx.gitio import GitRepo

    try:
        return GitRepo(repo.root).index_paths_under(targets)
    except (DvxError, OSError, ValueError):
        return {}  # no git repository, or an index dulwich cannot read: nothing to say


def _ensure_ignored(abs_path: str, rel: str) -> None:
    try:
        ensure_ignored(abs_path)
    except OSError as exc:
        where = os.path.join(os.path.dirname(rel), ".gitignore")
        raise os_error(exc, f"update {where} (the ignore line of {rel})") from None


def _old_pointer(repo: Repository, rel: str) -> Pointer | None:
    path = repo.abspath(pointer_path_for(rel))
    if not os.path.exists(path):
        return None
    try:
        return read_pointer(path, rel + POINTER_SUFFIX)
    except DvxError:
        return None  # a broken pointer is simply replaced by add


def _delta_base(repo: Repository, manifest_id: bytes | None) -> DeltaBase | None:
    """The previous version of a file, if its manifest is in the store."""
    if manifest_id is None or not repo.store.contains(manifest_id):
        return None
    try:
        return DeltaBase(repo.store, repo.store.read_manifest(manifest_id))
    except DvxError:
        return None


def _add_dir(repo: Repository, rel: str, scan, record: CacheRecord,  # type: ignore[no-untyped-def]
             writer: StoreWriter, progress: Progress, old: Pointer | None = None
             ) -> tuple[Pointer, CacheRecord, int, int]:
    abs_path = repo.abspath(rel)
    for name in list(scan.files) + list(scan.links) + list(scan.dirs):
        check_utf8(name, f"{rel}/{name}")
    for name, target in scan.links.items():
        check_utf8(target, f"link {rel}/{name}")
    info: dict[str, tuple[bytes, int, int]] = {}
    ids: dict[str, bytes] = {}
    stats = dict(scan.files)
    before = writer.bytes_written
    todo = []
    for name, st in scan.files.items():
        cached = record.ids.get(name)
        if cached is not None and record.stats.get(name) == st and writer.has(cached):
            info[name] = (cached, st[1], st[4])
            ids[name] = cached
        else:
            todo.append(name)
    progress.start(f"adding {rel}", len(todo))
    todo.sort()
    small = [n for n in todo if scan.files[n][1] <= SMALL_FILE]
    large = [n for n in todo if scan.files[n][1] > SMALL_FILE]

    # Small files: read in batches (GIL released per batch, not per file: per-file
    # worker threads were slower, 1.9 s vs 1.4 s for 20,000 files), hashed here.
    advance = progress.advance
    for name, mid, size, st in add_small_files(abs_path, rel, small, scan.files, repo.chunker, writer):
        info[name] = (mid, size, st[4])
        ids[name] = mid
        stats[name] = st
        advance()
    old_files: dict[str, tuple[bytes, int, int]] = {}
    if large and old is not None and repo.store.contains(old.oid):
        try:
            old_files = flatten_tree(repo.store, old.oid)[0]
        except DvxError:
            old_files = {}
    for name in large:
        prev = old_files.get(name)
        manifest, st = hash_file(os.path.join(abs_path, name), f"{rel}/{name}", repo.chunker, writer,
                                 scan.files[name], _delta_base(repo, prev[0] if prev else None))
        mid = manifest.object_id()
        info[name] = (mid, manifest.size, st[4])
        ids[name] = mid
        stats[name] = st
        progress.advance()
    tree_id, size, files = build_tree(scan, info, writer)
    pointer = Pointer.create(dvx=POINTER_VERSION, kind="tree", id=tree_id.hex(), size=size, files=files)
    rec = CacheRecord(tree_id, 0, stats, ids, dict(scan.links), frozenset(scan.dirs))
    return pointer, rec, len(todo), writer.bytes_written - before
