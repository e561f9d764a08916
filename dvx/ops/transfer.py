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
    """label -> pointer for the work tree, one revision, or every commit of every ref
    and the work tree (labels ``TARGET@ID12``, one per distinct version).

    With ``bad``, malformed or unsafe pointers are recorded there (label -> error) and
    left out instead of stopping the command (see ``dvx.history``)."""
    from dvx.history import history_of

    history = history_of(repo)
    if all_commits:
        return history.all_commits(paths, bad=bad, workspace=True)
    if rev is not None:
        return history.at(rev, paths, bad=bad)
    return history.workspace(paths, bad=bad)


def parallel(fn: Callable[[T], R], items: Iterable[T], jobs: int) -> list[R]:
    items = list(items)
    if jobs <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(min(jobs, len(items)), thread_name_prefix="dvx-transfer") as pool:
        return list(pool.map(fn, items))
