"""``dvx commit``: re-add changed data, stage pointers and ``.gitignore``, commit (dulwich)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from dvx.errors import DvxError
from dvx.gitio import GitRepo, IndexLock
from dvx.ops.add import add
from dvx.ops.status import path_status
from dvx.pointer import POINTER_SUFFIX
from dvx.progress import NULL_PROGRESS, Progress
from dvx.repo import Repository
from dvx.statcache import StatCache
from dvx.tracked import select_tracked


@dataclass
class CommitResult:
    sha: str
    readded: list[str] = field(default_factory=list)
    staged: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # pointers left out: one line each
    stale: list[str] = field(default_factory=list)  # not re-added: the pointer moved under the data

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


def stage_paths_for(repo: Repository, targets: list[str], config: bool = True) -> list[str]:
    """Pointer files, the ``.gitignore`` files that hide their data, and (``config``)
    DVX's config."""
    paths: list[str] = []
    for target in targets:
        paths.append(target + POINTER_SUFFIX)
        parent = os.path.dirname(target)
        gi = f"{parent}/.gitignore" if parent else ".gitignore"
        if os.path.exists(repo.abspath(gi)) and gi not in paths:
            paths.append(gi)
    for p in (".dvx/config", ".dvx/.gitignore"):
        if config and os.path.exists(repo.abspath(p)):
            paths.append(p)
    return paths


def commit(repo: Repository, message: str, paths: list[str] | None = None, all_files: bool = False,
           progress: Progress = NULL_PROGRESS) -> CommitResult:
    """Re-add changed data, stage the pointers and commit, holding git's index lock
    (``.git/index.lock``) from before anything is staged until the branch has moved.

    With ``paths``, git's ``--only``: the commit is HEAD plus those paths' pointers and
    ``.gitignore`` files (and ``.dvx/config``, ``.dvx/.gitignore`` if HEAD lacks them);
    other staged changes stay staged. Without, the whole index is committed."""
    if not message.strip():
        raise DvxError("empty commit message", "pass one with -m")
    if paths and all_files:
        raise DvxError("paths with -a do not make sense", "commit either the named paths or all (-a)")
    git = GitRepo(repo.root)
    with git.index_lock() as lock:
        return _commit_locked(repo, git, lock, message, paths, all_files, progress)


def _commit_locked(repo: Repository, git: GitRepo, lock: IndexLock, message: str, paths: list[str] | None,
                   all_files: bool, progress: Progress) -> CommitResult:
    tracked = select_tracked(repo, paths)
    cache = StatCache(repo.state_dir)
    changed: list[str] = []
    errors: list[str] = []
    good: list[str] = []
    stale: list[str] = []
    for t in tracked:
        st = path_status(repo, t, cache, progress)
        if st.state == "broken-pointer":
            errors.append(st.message or t.pointer_path)  # left out; the rest is committed
            continue
        if st.state == "diverged":
            raise DvxError(f"cannot commit {t.target}: {st.message}")
        good.append(t.target)
        if st.state == "modified":
            changed.append(t.target)
        elif st.state == "stale":
            stale.append(t.target)  # never re-added: that would revert what git brought
    if changed:
        add(repo, [repo.abspath(t) for t in changed], progress)  # wherever the cwd is
    if paths:
        head = git.head()
        info = git.commit_info(head) if head else None
        stage = stage_paths_for(repo, good, config=False)
        stage += [p for p in (".dvx/config", ".dvx/.gitignore")  # a clone must be a DVX repository
                  if os.path.exists(repo.abspath(p)) and (info is None or not git.tracks(info, p))]
    else:
        stage = stage_paths_for(repo, good)
    if all_files:
        stage += [p for p in git.modified_tracked_files() if p not in stage]
    try:
        sha = git.commit(message, stage, only=bool(paths), lock=lock)
    except DvxError:
        if errors:  # the broken pointers are why: say so rather than "nothing to commit"
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise DvxError(f"{errors[0]}{more}") from None
        raise
    return CommitResult(sha, changed, stage, errors, stale)
