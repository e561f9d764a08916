"""``dvx add``: store files and directories, write their pointers.

Order (``protocols/format.md`` §7): chunks, manifests and trees go into packs, the packs
are published, then the pointer file is replaced atomically, then ``.gitignore`` and the
stat cache are updated. A kill at any point leaves the old pointer or the new one, and
every object the pointer names is present.
"""

from __future__ import annotations

import contextlib
import os
import stat as stat_mod
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from dvx import treescan
from dvx.errors import DvxError
from dvx.fsutil import atomic_write_bytes, os_error
from dvx.gitignore import check_writable, ensure_ignored
from dvx.hashing import KIND_TREE
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
from dvx.statcache import CacheRecord, Stat, StatCache, TreeRecord, record_digests, scan_fingerprint, stat_key
from dvx.store.local import StoreWriter
from dvx.tracked import find_tracked, owning_tracked
from dvx.treescan import scan_dirs
from dvx.workspace import (
    SMALL_FILE,
    DeltaBase,
    add_small_files,
    check_utf8,
    flatten_tree,
    hash_file,
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
    staged: list[tuple[str, Pointer, CacheRecord | TreeRecord, bytes | None, int, int]] = []
    try:
        for rel in targets:
            abs_path = repo.abspath(rel)
            old = _old_pointer(repo, rel)
            record = cache.load(rel)
            scan_start = time.time_ns()
            skipped: list[str] = []
            if os.path.isdir(abs_path):
                scan = scan_dirs(abs_path, rel)
                skipped = [f"{rel}/{x}" for x in treescan.skipped(scan)]
                head_root, head_fp = cache.load_head(rel)
                digests = record_digests(scan)
                fp = scan_fingerprint(scan, digests)
                if (old is not None and old.kind == "tree" and head_root == old.oid and head_fp == fp
                        and repo.store.contains(old.oid)):
                    _ensure_ignored(abs_path, rel)  # unchanged data, but the line may be gone
                    results.append(AddResult(rel, old, False, 0, 0, skipped))
                    continue
                if writer is None:
                    writer = repo.store.writer()
                prev = old if old is not None and old.kind == "tree" else None
                pointer, tree_rec, hashed, stored = _add_dir(repo, rel, scan, digests, cache.load_tree(rel),
                                                             writer, progress, scan_start, prev)
                staged.append((rel, pointer, tree_rec, fp, hashed, stored))
                results.append(AddResult(rel, pointer, old is None or old != pointer, hashed, stored, skipped))
                continue
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
            staged.append((rel, pointer, rec, None, hashed, stored))
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
    for rel, pointer, saved, scan_fp, _, _ in staged:
        abs_path = repo.abspath(rel)
        _ensure_ignored(abs_path, rel)  # first: never a pointer whose data git would see
        try:
            atomic_write_bytes(abs_path + POINTER_SUFFIX, pointer.render().encode(),
                               fsync=repo.config.core.fsync)
        except OSError as exc:
            raise os_error(exc, f"write {rel}{POINTER_SUFFIX}") from None
        if isinstance(saved, TreeRecord):
            cache.save_tree(rel, saved, scan_fp)
        else:
            cache.save(rel, saved)
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


def _add_dir(repo: Repository, rel: str, scan: list[tuple[str, bytes]], digests: list[bytes],
             record: TreeRecord,
             writer: StoreWriter, progress: Progress, scan_start: int, old: Pointer | None = None
             ) -> tuple[Pointer, TreeRecord, int, int]:
    """Store a directory: only directories whose entries changed since the cached scan
    are parsed, only their changed files read, only their trees and their ancestors'
    encoded (``dvx.treescan.build``)."""
    abs_path = repo.abspath(rel)
    before = writer.bytes_written
    hashed = [0]
    old_files: list[dict[str, tuple[bytes, int, int]] | None] = [None]
    progress.start(f"adding {rel}", None)

    def hash_files(top: str, where: str, todo: list[tuple[str, Stat]]) -> Iterator[tuple[str, bytes, Stat]]:
        expected = dict(todo)
        small = [n for n, st in todo if st[1] <= SMALL_FILE]
        # Small files: read in batches (GIL released per batch, not per file), hashed here.
        for name, mid, _size, st in add_small_files(top, where, small, expected, repo.chunker, writer):
            hashed[0] += 1
            progress.advance()
            yield name, mid, st
        for name, st in todo:
            if st[1] <= SMALL_FILE:
                continue
            if old_files[0] is None:  # the previous version of large files: delta bases
                old_files[0] = {}
                if old is not None and repo.store.contains(old.oid):
                    with contextlib.suppress(DvxError):
                        old_files[0] = flatten_tree(repo.store, old.oid)[0]
            inner = where[len(rel) + 1:] + "/" + name if where != rel else name
            prev = (old_files[0] or {}).get(inner)
            manifest, got = hash_file(os.path.join(top, name), f"{where}/{name}", repo.chunker, writer,
                                      st, _delta_base(repo, prev[0] if prev else None))
            hashed[0] += 1
            progress.advance()
            yield name, manifest.object_id(), got

    def store_tree(tid: bytes, data: bytes) -> None:
        writer.add(KIND_TREE, tid, data)

    states = treescan.build(abs_path, rel, scan, digests, record, hash_files, store_tree=store_tree,
                            known=writer.has, check_names=True)
    root = states[""]
    pointer = Pointer.create(dvx=POINTER_VERSION, kind="tree", id=root.tree.hex(), size=root.size,
                             files=root.files)
    return pointer, treescan.to_cache(states, scan, scan_start), hashed[0], writer.bytes_written - before
