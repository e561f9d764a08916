"""What push and fetch both need: choosing the pointers to move, parallel execution."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from dvx.errors import DvxError
from dvx.pointer import Pointer
from dvx.repo import Repository

T = TypeVar("T")
R = TypeVar("R")
DEFAULT_JOBS = 8


def select_pointers(repo: Repository, rev: str | None, all_commits: bool,
                    paths: list[str] | None, bad: dict[str, DvxError] | None = None) -> dict[str, Pointer]:
    """label -> pointer for the work tree, one revision, or every commit of every ref.

    With ``bad``, malformed or unsafe pointers are recorded there (label -> error) and
    left out instead of stopping the command (see ``dvx.ops.revs``)."""
    from dvx.ops.revs import filter_pointers, pointers_at_commit, pointers_at_rev, workspace_pointers

    if all_commits:
        from dvx.gitio import GitRepo

        git = GitRepo(repo.root)
        out: dict[str, Pointer] = {}
        for sha in git.reachable_commits():
            b: dict[str, DvxError] | None = {} if bad is not None else None
            for target, p in filter_pointers(repo, pointers_at_commit(repo, git, sha, sha[:12], b),
                                             paths, sha[:12], b).items():
                out.setdefault(f"{target}@{p.id[:12]}", p)
            for target, exc in (b or {}).items():
                bad.setdefault(f"{sha[:12]}:{target}", exc)  # type: ignore[union-attr]
        for target, p in filter_pointers(repo, workspace_pointers(repo, bad=bad), paths,
                                         "the work tree", bad).items():
            out.setdefault(f"{target}@{p.id[:12]}", p)
        return out
    if rev is not None:
        return filter_pointers(repo, pointers_at_rev(repo, rev, bad), paths, rev, bad)
    return filter_pointers(repo, workspace_pointers(repo, bad=bad), paths, "the work tree", bad)


def parallel(fn: Callable[[T], R], items: Iterable[T], jobs: int) -> list[R]:
    items = list(items)
    if jobs <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(min(jobs, len(items)), thread_name_prefix="dvx-transfer") as pool:
        return list(pool.map(fn, items))
