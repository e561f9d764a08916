"""``dvx log``: the versions of tracked data through git history.

One pass over the commits (newest first) resolves each commit's pointer blobs through
trees cached by id; a version is a commit whose pointer blob differs from its first
parent's. Data ids, sizes and file counts come from the pointers; per-file change
counts come from the DVX trees when they are in the local store.
"""

from __future__ import annotations

from dataclasses import dataclass

from dvx.errors import DvxError, GitError, NotTrackedError
from dvx.gitio import CommitInfo, GitRepo
from dvx.pointer import POINTER_SUFFIX, Pointer, parse_pointer
from dvx.repo import Repository


@dataclass
class LogEntry:
    commit: str
    date: str
    author: str
    message: str
    path: str
    change: str  # added | modified | deleted
    id: str | None
    size: int | None
    files: int | None
    added: int | None = None
    modified: int | None = None
    deleted: int | None = None

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


def log(repo: Repository, path: str | None = None, max_count: int | None = None,
        rev: str = "HEAD") -> list[LogEntry]:
    git = GitRepo(repo.root)
    if git.head() is None:
        raise GitError("this repository has no commits yet", "make one with `dvx commit -m MSG`")
    start = git.resolve(rev)
    target: str | None = None
    if path:
        target = repo.relpath(path)
        if target.endswith(POINTER_SUFFIX):
            target = target[: -len(POINTER_SUFFIX)]
    commits = list(git.walk(start))
    by_sha = {c.sha: c for c in commits}
    out: list[LogEntry] = []
    parsed: dict[bytes, Pointer | None] = {}

    def pointer(blob: bytes | None, where: str) -> Pointer | None:
        if blob is None:
            return None
        if blob not in parsed:
            try:
                parsed[blob] = parse_pointer(git.read_blob(blob), where)
            except DvxError:
                parsed[blob] = None
        return parsed[blob]

    def blobs(c: CommitInfo) -> dict[str, bytes]:
        if target is not None:
            b = git.blob_id_at(c, target + POINTER_SUFFIX)
            return {target: b} if b is not None else {}
        return {k[: -len(POINTER_SUFFIX)]: v for k, v in git.pointer_blobs(c).items()}

    seen_target = False
    for c in commits:
        mine = blobs(c)
        parent = by_sha.get(c.parents[0]) if c.parents else None
        if parent is None and c.parents:
            parent = git.commit_info(c.parents[0])
        theirs = blobs(parent) if parent is not None else {}
        for t in sorted(set(mine) | set(theirs)):
            new_blob, old_blob = mine.get(t), theirs.get(t)
            if new_blob == old_blob:
                continue
            seen_target = True
            new_p = pointer(new_blob, f"{c.sha[:12]}:{t}.dvx")
            old_p = pointer(old_blob, f"{c.sha[:12]}^:{t}.dvx")
            change = "added" if old_blob is None else "deleted" if new_blob is None else "modified"
            entry = LogEntry(c.sha, c.iso_time(), c.author, c.summary, t, change,
                             new_p.id if new_p else None, new_p.size if new_p else None,
                             new_p.files if new_p else None)
            _count_changes(repo, entry, old_p, new_p)
            out.append(entry)
            if max_count is not None and len(out) >= max_count:
                return out
    if target is not None and not seen_target:
        raise NotTrackedError(f"{path} has no versions in the history of {rev}",
                              "check the path with `dvx ls --rev REV`")
    return out


def _count_changes(repo: Repository, entry: LogEntry, old: Pointer | None, new: Pointer | None) -> None:
    """Per-file counts between two versions, when their trees are in the local store."""
    from dvx.ops.diff import diff_pointers

    if old is None or new is None or old.kind != "tree" or new.kind != "tree":
        if new is not None and old is None:
            entry.added = new.files
        elif old is not None and new is None:
            entry.deleted = old.files
        elif old is not None and new is not None:
            entry.modified = 1
        return
    if not (repo.store.contains(old.oid) and repo.store.contains(new.oid)):
        return
    try:
        changes = diff_pointers(repo, {"x": old}, {"x": new})
    except DvxError:
        return
    entry.added = sum(1 for c in changes if c.status == "added")
    entry.deleted = sum(1 for c in changes if c.status == "deleted")
    entry.modified = sum(1 for c in changes if c.status in ("modified", "renamed"))
