"""Pointers at a git revision or in the work tree (the inputs of ls/diff/log/checkout).

Every function takes an optional ``bad`` dict. Without it the first malformed or
unsafe pointer raises; with it, each one is recorded there (tracked path -> error) and
skipped, so a command can do the rest, report the bad ones and exit non-zero.
"""

from __future__ import annotations

from dvx.errors import DvxError
from dvx.gitio import GitRepo
from dvx.pointer import POINTER_SUFFIX, Pointer, check_target, parse_pointer
from dvx.repo import Repository
from dvx.tracked import find_tracked, match_targets

Bad = dict[str, DvxError]


def workspace_pointers(repo: Repository, strict: bool = True, bad: Bad | None = None) -> dict[str, Pointer]:
    out: dict[str, Pointer] = {}
    for t in find_tracked(repo):
        try:
            out[t.target] = t.load(repo)
        except DvxError as exc:
            if bad is not None:
                bad[t.target] = exc
            elif strict:
                raise
    return out


def pointers_at_commit(repo: Repository, git: GitRepo, sha: str, label: str,
                       bad: Bad | None = None) -> dict[str, Pointer]:
    info = git.commit_info(sha)
    out: dict[str, Pointer] = {}
    for path, blob in git.pointer_blobs(info).items():
        target = path[: -len(POINTER_SUFFIX)]
        try:
            check_target(target, f"{label}:{path}")
            out[target] = parse_pointer(git.read_blob(blob), f"{label}:{path}")
        except DvxError as exc:
            if bad is None:
                raise
            bad[target] = exc
    return out


def pointers_at_rev(repo: Repository, rev: str, bad: Bad | None = None) -> dict[str, Pointer]:
    git = GitRepo(repo.root)
    return pointers_at_commit(repo, git, git.resolve(rev), rev, bad)


def filter_pointers(repo: Repository, pointers: dict[str, Pointer], paths: list[str] | None,
                    rev: str, bad: Bad | None = None) -> dict[str, Pointer]:
    """The pointers that user paths select (all without paths); ``bad`` is narrowed to
    the selection too, so an unrelated broken pointer does not fail the command."""
    if not paths:
        return pointers
    everything = set(pointers) | set(bad or ())
    chosen = match_targets(repo, everything, paths, f" at {rev}", f"see `dvx ls --rev {rev}`")
    if bad is not None:
        for t in [t for t in bad if t not in chosen]:
            del bad[t]
    return {t: pointers[t] for t in chosen if t in pointers}


def pointers_at_rev_for_paths(repo: Repository, rev: str, paths: list[str] | None,
                              bad: Bad | None = None) -> dict[str, Pointer]:
    return filter_pointers(repo, pointers_at_rev(repo, rev, bad), paths, rev, bad)


def pull_hint(repo: Repository) -> str:
    """What to tell a user whose data is not in the local store."""
    remote = repo.config.core.default_remote
    if remote:
        return f"fetch it with `dvx pull -r {remote}`"
    if repo.config.remotes:
        return f"fetch it with `dvx pull -r {sorted(repo.config.remotes)[0]}`"
    return "fetch it from a remote with `dvx pull` (add one with `dvx remote add`)"
