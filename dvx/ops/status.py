"""``dvx status``: which tracked paths differ from their pointers, file by file.

A tracked path whose scan fingerprint and cached tree id match the pointer is clean
without reading any file or object. Otherwise only directories whose entries changed
are looked at, only files whose stat changed are re-hashed, and only the trees on the
way from a changed directory to the root are rebuilt (``dvx.treescan``).
"""

from __future__ import annotations

import os
import stat as stat_mod
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from dvx import treescan
from dvx.errors import DvxError, MissingObjectError
from dvx.ops import stale
from dvx.pointer import Pointer
from dvx.progress import NULL_PROGRESS, Progress
from dvx.repo import Repository
from dvx.statcache import CacheRecord, Stat, StatCache, record_digests, scan_fingerprint, stat_key
from dvx.tracked import Tracked, select_tracked
from dvx.treescan import scan_dirs
from dvx.workspace import flatten_tree, hash_file


@dataclass
class PathStatus:
    target: str
    kind: str
    state: str  # clean | modified | stale | diverged | deleted | missing-object | broken-pointer | not-in-store
    added: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    message: str | None = None
    content_id: bytes | None = None  # id of the data as it is (when it was hashed)
    skipped: list[str] = field(default_factory=list)  # FIFOs, sockets, devices inside: not data

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"path": self.target, "kind": self.kind, "state": self.state}
        if self.kind == "tree" and self.state in ("modified", "stale", "diverged"):
            out.update(added=self.added, modified=self.modified, deleted=self.deleted)
        if self.message:
            out["message"] = self.message
        if self.skipped:
            out["skipped"] = self.skipped
        return out


def status(repo: Repository, paths: list[str] | None = None,
           progress: Progress = NULL_PROGRESS) -> list[PathStatus]:
    cache = StatCache(repo.state_dir)
    out = []
    for t in select_tracked(repo, paths):
        out.append(path_status(repo, t, cache, progress))
    return out


def leftovers(repo: Repository) -> list[str]:
    """Notes about harmless leftovers of interrupted commands (not changes)."""
    if not os.path.isdir(os.path.join(repo.dvx_dir, "tmp", "checkout")):
        return []  # nothing was ever checked out here
    from dvx.ops.checkout import stale_restore_files
    from dvx.ops.fsck import leftover_note

    found = stale_restore_files(repo)
    return [leftover_note(found)] if found else []


def path_status(repo: Repository, t: Tracked, cache: StatCache,
                progress: Progress = NULL_PROGRESS) -> PathStatus:
    try:
        pointer = t.load(repo)
        abs_path = repo.data_path(t.target, t.pointer_path)
    except DvxError as exc:
        return PathStatus(t.target, "?", "broken-pointer", message=str(exc))
    try:
        st = os.lstat(abs_path)
    except FileNotFoundError:
        if _complete(repo, pointer):
            return PathStatus(t.target, pointer.kind, "deleted")
        from dvx.ops.revs import pull_hint

        return PathStatus(t.target, pointer.kind, "missing-object",
                          message=f"data missing from the local store; {pull_hint(repo)}")
    if pointer.kind == "file":
        res = _file_status(repo, t, pointer, st, cache.load(t.target), cache)
    else:
        skipped: list[str] = []
        res = _tree_status(repo, t, pointer, st, cache, progress, skipped)
        res.skipped = skipped
    stale.classify(repo, pointer, res, cache)  # edited here, or the pointer moved under it?
    if res.state == "clean" and not repo.store.contains(pointer.oid):
        res.state = "not-in-store"
        res.message = (f"the work tree has this data but the local store does not; "
                       f"`dvx add {t.target}` stores it again, `dvx pull` fetches it")
    return res


def _complete(repo: Repository, pointer: Pointer) -> bool:
    """Whether every object the pointer reaches is in the local store (a killed fetch
    can leave the root without its chunks)."""
    from dvx.store.reach import reachable, root_kind

    try:
        reachable(repo.store, [(pointer.oid, root_kind(pointer.kind))])
    except DvxError:
        return False
    return True


def _tree_status(repo: Repository, t: Tracked, pointer: Pointer, st: os.stat_result,
                 cache: StatCache, progress: Progress, skipped: list[str]) -> PathStatus:
    abs_path = repo.abspath(t.target)
    if not stat_mod.S_ISDIR(st.st_mode):
        return PathStatus(t.target, "tree", "modified", message="a file replaced the directory")
    scan_start = time.time_ns()
    head_root, head_fp = cache.load_head(t.target)
    scan = scan_dirs(abs_path, t.target)
    skipped.extend(f"{t.target}/{x}" for x in treescan.skipped(scan))
    digests = record_digests(scan)
    fp = scan_fingerprint(scan, digests)
    if head_root == pointer.oid and head_fp == fp:
        return PathStatus(t.target, "tree", "clean")  # without loading the whole cache
    # Something differs: resolve the tree directory by directory, hashing only files
    # whose stat changed, in directories whose entries changed.
    record = cache.load_tree(t.target)
    hashed = [0]

    def hash_files(top: str, where: str, todo: list[tuple[str, Stat]]) -> Iterator[tuple[str, bytes, Stat]]:
        if not hashed[0]:
            progress.start(f"checking {t.target}", None)
        for name, _st in todo:
            manifest, got = hash_file(os.path.join(top, name), f"{where}/{name}", repo.chunker, None)
            hashed[0] += 1
            progress.advance()
            yield name, manifest.object_id(), got

    states = treescan.build(abs_path, t.target, scan, digests, record, hash_files)
    if hashed[0]:
        progress.finish()
    tree_id = states[""].tree
    if any(s.rebuilt for s in states.values()) or record.root_id != tree_id or head_fp != fp:
        cache.save_tree(t.target, treescan.to_cache(states, scan, scan_start), fp)
    if tree_id == pointer.oid:
        return PathStatus(t.target, "tree", "clean")
    res = PathStatus(t.target, "tree", "modified", content_id=tree_id)
    try:
        _compare(repo, pointer.oid, states, res)
    except MissingObjectError:
        return PathStatus(t.target, "tree", "missing-object",
                          message="the tree is not in the local store; run `dvx pull`")
    res.added.sort()
    res.modified.sort()
    res.deleted.sort()
    if not (res.added or res.modified or res.deleted):
        res.state = "modified"
        res.message = "empty directories differ"
    return res


def _compare(repo: Repository, old_root: bytes, states: dict[str, treescan.DirState],
             res: PathStatus) -> None:
    """Fill ``res`` with the files that differ between the stored tree ``old_root`` and
    the work tree, descending only into directories whose tree ids differ."""
    from dvx.objects import ENTRY_FILE, ENTRY_LINK, ENTRY_TREE

    def new_files(rel: str) -> Iterator[str]:  # every file and link below a new directory
        for name, kind, _x, _s, _i, _t in treescan.record_files(states[rel]):
            path = treescan.join(rel, name)
            if kind == treescan.K_DIR:
                yield from new_files(path)
            else:
                yield path

    def old_files(prefix: str, tid: bytes) -> Iterator[str]:
        files, links, _ = flatten_tree(repo.store, tid)
        for name in list(files) + list(links):
            yield f"{prefix}/{name}"

    stack = [("", old_root)]
    while stack:
        rel, old_tid = stack.pop()
        state = states[rel]
        if state.tree == old_tid:
            continue
        old = {e.name: e for e in repo.store.read_tree(old_tid).entries}
        for name, kind, exe, _size, mid, target in treescan.record_files(state):
            path = treescan.join(rel, name)
            prev = old.pop(name, None)
            if kind == treescan.K_DIR:
                if prev is not None and prev.kind == ENTRY_TREE:
                    assert prev.oid is not None
                    stack.append((path, prev.oid))
                    continue
                res.added.extend(new_files(path))
            elif prev is not None and prev.kind == kind == ENTRY_FILE:
                if prev.oid != mid or prev.executable != bool(exe):
                    res.modified.append(path)
                continue
            elif prev is not None and prev.kind == ENTRY_LINK and kind == treescan.K_LINK:
                if prev.target != target:
                    res.modified.append(path)
                continue
            else:
                res.added.append(path)
            if prev is not None:  # another kind of entry was there
                old[name] = prev
        for name, prev in old.items():
            path = treescan.join(rel, name)
            if prev.kind == ENTRY_TREE:
                assert prev.oid is not None
                res.deleted.extend(old_files(path, prev.oid))
            else:
                res.deleted.append(path)


def _file_status(repo: Repository, t: Tracked, pointer: Pointer, st: os.stat_result,
                 record: CacheRecord, cache: StatCache) -> PathStatus:
    if not stat_mod.S_ISREG(st.st_mode):
        return PathStatus(t.target, "file", "modified", message="no longer a regular file")
    key = stat_key(st)
    if record.root_id == pointer.oid and record.stats.get("") == key and bool(key[4]) == pointer.exec:
        return PathStatus(t.target, "file", "clean")
    scan_start = time.time_ns()
    manifest, key = hash_file(repo.abspath(t.target), t.target, repo.chunker, None)
    mid = manifest.object_id()
    cache.save(t.target, CacheRecord(mid, scan_start, {"": key}, {"": mid}))
    if mid == pointer.oid and bool(key[4]) == pointer.exec:
        return PathStatus(t.target, "file", "clean")
    return PathStatus(t.target, "file", "modified", content_id=mid)
