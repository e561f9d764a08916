"""``dvx log``: the versions of tracked data through git history.

The versions come from ``dvx.history.History.versions``: one pass over the commits
(newest first), a version being a commit whose pointer blob differs from its first
parent's, read through git trees cached by id. Data ids, sizes and file counts come
from the pointers; per-file change counts come from the DVX trees when they are in the
local store.
"""

from __future__ import annotations

from dataclasses import dataclass

from dvx.errors import DvxError, GitError, NotTrackedError
from dvx.pointer import POINTER_SUFFIX, Pointer
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
        rev: str = "HEAD", bad: dict[str, DvxError] | None = None) -> list[LogEntry]:
    """The versions of ``path`` (or of every tracked path) in the history of ``rev``,
    newest first. A pointer with a refused name is left out (recorded in ``bad``, key
    ``COMMIT12:PATH``, when given); a malformed one is shown without an id."""
    from dvx.history import history_of

    history = history_of(repo)
    if history.git.head() is None:
        raise GitError("this repository has no commits yet", "make one with `dvx commit -m MSG`")
    target: str | None = None
    if path:
        target = repo.relpath(path)
        if target.endswith(POINTER_SUFFIX):
            target = target[: -len(POINTER_SUFFIX)]
    out: list[LogEntry] = []
    for v in history.versions(target, rev=rev, bad=bad if bad is not None else {}):
        new_p = v.pointer
        entry = LogEntry(v.commit, v.date, v.author, v.summary, v.target, v.change,
                         new_p.id if new_p else None, new_p.size if new_p else None,
                         new_p.files if new_p else None)
        _count_changes(repo, entry, v.previous, new_p)
        out.append(entry)
        if max_count is not None and len(out) >= max_count:
            return out
    if target is not None and not out:
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
