"""``dvx status``: which tracked paths differ from their pointers, file by file.

A tracked path whose files all match the stat cache (same inode, size, mtime_ns,
ctime_ns, mode) and whose cached tree id equals the pointer's id is clean without
reading any file or object. Otherwise only files whose stat changed are re-hashed.
"""

from __future__ import annotations

import os
import stat as stat_mod
import time
from dataclasses import dataclass, field

from dvx.errors import DvxError, MissingObjectError
from dvx.ops import stale
from dvx.pointer import Pointer
from dvx.progress import NULL_PROGRESS, Progress
from dvx.repo import Repository
from dvx.statcache import CacheRecord, StatCache, fingerprint, stat_key
from dvx.tracked import Tracked, select_tracked
from dvx.workspace import build_tree, flatten_tree, hash_file, scan_dir


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
    scan = scan_dir(abs_path, t.target)
    skipped.extend(f"{t.target}/{x}" for x in scan.skipped())
    fp = fingerprint(scan.files, scan.links, scan.dirs)
    if head_root == pointer.oid and head_fp == fp:
        return PathStatus(t.target, "tree", "clean")  # without loading the whole cache
    record = cache.load(t.target)
    if (record.root_id == pointer.oid and scan.files == record.stats
            and scan.links == record.links and scan.dirs == record.dirs):
        cache.save_head(t.target, record.root_id, fp)  # same scan, other order: remember it
        return PathStatus(t.target, "tree", "clean")
    # Something differs: hash the files whose stat changed and compare with the tree.
    ids = dict(record.ids)
    info: dict[str, tuple[bytes, int, int]] = {}
    stats = dict(scan.files)
    changed = [n for n, s in scan.files.items() if record.stats.get(n) != s or n not in ids]
    progress.start(f"checking {t.target}", len(changed))
    for name in changed:
        manifest, stats[name] = hash_file(os.path.join(abs_path, name), f"{t.target}/{name}",
                                          repo.chunker, None)
        ids[name] = manifest.object_id()
        progress.advance()
    progress.finish()
    for name, s in stats.items():
        info[name] = (ids[name], s[1], s[4])
    tree_id, _, _ = build_tree(scan, info, None)
    cache.save(t.target, CacheRecord(tree_id, scan_start, stats,
                                     {n: ids[n] for n in stats}, dict(scan.links),
                                     frozenset(scan.dirs)))
    if tree_id == pointer.oid:
        return PathStatus(t.target, "tree", "clean")
    try:
        old_files, old_links, _ = flatten_tree(repo.store, pointer.oid)
    except MissingObjectError:
        return PathStatus(t.target, "tree", "missing-object",
                          message="the tree is not in the local store; run `dvx pull`")
    res = PathStatus(t.target, "tree", "modified", content_id=tree_id)
    for name, (mid, _size, exe) in info.items():
        old = old_files.get(name)
        if old is None:
            res.added.append(name)
        elif old[0] != mid or old[2] != exe:
            res.modified.append(name)
    res.deleted = [n for n in old_files if n not in info]
    for name, target in scan.links.items():
        if name not in old_links:
            res.added.append(name)
        elif old_links[name] != target:
            res.modified.append(name)
    res.deleted += [n for n in old_links if n not in scan.links]
    res.added.sort()
    res.modified.sort()
    res.deleted.sort()
    if not (res.added or res.modified or res.deleted):
        res.state = "modified"
        res.message = "empty directories differ"
    return res


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
