"""Pointers at a git revision or in the work tree (the inputs of ls/diff/log/checkout)."""

from __future__ import annotations

from dvx.errors import DvxError
from dvx.gitio import GitRepo
from dvx.pointer import POINTER_SUFFIX, Pointer, parse_pointer
from dvx.repo import Repository
from dvx.tracked import find_tracked, match_targets


def workspace_pointers(repo: Repository, strict: bool = True) -> dict[str, Pointer]:
    out: dict[str, Pointer] = {}
    for t in find_tracked(repo):
        try:
            out[t.target] = t.load(repo)
        except DvxError:
            if strict:
                raise
    return out


def pointers_at_commit(repo: Repository, git: GitRepo, sha: str, label: str) -> dict[str, Pointer]:
    info = git.commit_info(sha)
    out: dict[str, Pointer] = {}
    for path, blob in git.pointer_blobs(info).items():
        target = path[: -len(POINTER_SUFFIX)]
        out[target] = parse_pointer(git.read_blob(blob), f"{label}:{path}", repo.memo)
    return out


def pointers_at_rev(repo: Repository, rev: str) -> dict[str, Pointer]:
    git = GitRepo(repo.root)
    return pointers_at_commit(repo, git, git.resolve(rev), rev)


def filter_pointers(repo: Repository, pointers: dict[str, Pointer], paths: list[str] | None,
                    rev: str) -> dict[str, Pointer]:
    if not paths:
        return pointers
    chosen = match_targets(repo, pointers, paths, f" at {rev}", f"see `dvx ls --rev {rev}`")
    return {t: pointers[t] for t in chosen}


def pointers_at_rev_for_paths(repo: Repository, rev: str, paths: list[str] | None) -> dict[str, Pointer]:
    return filter_pointers(repo, pointers_at_rev(repo, rev), paths, rev)


def pull_hint(repo: Repository) -> str:
    """What to tell a user whose data is not in the local store."""
    remote = repo.config.core.default_remote
    if remote:
        return f"fetch it with `dvx pull -r {remote}`"
    if repo.config.remotes:
        return f"fetch it with `dvx pull -r {sorted(repo.config.remotes)[0]}`"
    return "fetch it from a remote with `dvx pull` (add one with `dvx remote add`)"
