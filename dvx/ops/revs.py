"""Pointers at a git revision or in the work tree: thin wrappers over ``dvx.history``.

Kept for the callers that import them (the CLI, tests). Every function takes an
optional ``bad`` dict. Without it the first malformed or unsafe pointer raises; with
it, each one is recorded there (tracked path -> error) and skipped, so a command can do
the rest, report the bad ones and exit non-zero.
"""

from __future__ import annotations

from dvx.errors import DvxError
from dvx.history import history_of
from dvx.pointer import Pointer
from dvx.repo import Repository

Bad = dict[str, DvxError]


def workspace_pointers(repo: Repository, strict: bool = True, bad: Bad | None = None) -> dict[str, Pointer]:
    """The work tree's pointers; ``strict=False`` (without ``bad``) skips bad ones silently."""
    if bad is None and not strict:
        bad = {}
    return history_of(repo).workspace(bad=bad)


def pointers_at_rev(repo: Repository, rev: str, bad: Bad | None = None) -> dict[str, Pointer]:
    return history_of(repo).at(rev, bad=bad)


def pointers_at_rev_for_paths(repo: Repository, rev: str, paths: list[str] | None,
                              bad: Bad | None = None) -> dict[str, Pointer]:
    return history_of(repo).at(rev, paths, bad=bad)


def pull_hint(repo: Repository) -> str:
    """What to tell a user whose data is not in the local store."""
    remote = repo.config.core.default_remote
    if remote:
        return f"fetch it with `dvx pull -r {remote}`"
    if repo.config.remotes:
        return f"fetch it with `dvx pull -r {sorted(repo.config.remotes)[0]}`"
    return "fetch it from a remote with `dvx pull` (add one with `dvx remote add`)"
