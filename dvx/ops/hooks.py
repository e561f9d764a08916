"""``dvx hooks install / uninstall`` and what each hook does (``protocols/git.md`` §4).

Installed hooks are small shell scripts that first run any hook the user already had
(moved aside to ``NAME.dvx-chained``, never overwritten) and then ``dvx hooks run NAME``.
Uninstall removes DVX's scripts and moves the user's hooks back.
"""

from __future__ import annotations

import os
import shlex
import stat as stat_mod
import sys
from dataclasses import dataclass

from dvx.errors import DvxError
from dvx.gitio import GitRepo
from dvx.repo import Repository

HOOKS = ("pre-commit", "post-checkout", "post-merge", "post-rewrite", "pre-push")
MARKER = "# dvx-managed-hook v1"
CHAINED = ".dvx-chained"

_TEMPLATE = """#!/bin/sh
{marker}
# Installed by `dvx hooks install`; `dvx hooks uninstall` removes it and restores any
# hook that was here before (kept as {name}{chained} and run first).
hookdir=$(dirname "$0")
{stdin_capture}if [ -x "$hookdir/{name}{chained}" ]; then
    {feed}"$hookdir/{name}{chained}" "$@" || exit $?
fi
if [ -x {python} ]; then
    {feed}{python} -m dvx hooks run {name} "$@"
    exit $?
fi
{feed}dvx hooks run {name} "$@"
"""


@dataclass
class HookChange:
    name: str
    action: str  # installed | chained | unchanged | removed | restored


def _script(name: str) -> str:
    uses_stdin = name == "pre-push"
    return _TEMPLATE.format(
        marker=MARKER, name=name, chained=CHAINED, python=shlex.quote(sys.executable),
        stdin_capture='input=$(cat)\n' if uses_stdin else "",
        feed='printf "%s\\n" "$input" | ' if uses_stdin else "",
    )


def _is_ours(path: str) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return MARKER in f.read(4096)
    except OSError:
        return False


def install(repo: Repository) -> list[HookChange]:
    hooks_dir = GitRepo(repo.root).hooks_dir()
    os.makedirs(hooks_dir, exist_ok=True)
    changes = []
    for name in HOOKS:
        path = os.path.join(hooks_dir, name)
        action = "installed"
        if os.path.lexists(path):
            if _is_ours(path):
                action = "unchanged"
            else:
                chained = path + CHAINED
                if os.path.lexists(chained):
                    raise DvxError(f"both {name} and {name}{CHAINED} exist in {hooks_dir}",
                                   f"merge them by hand, then remove {name}{CHAINED}")
                os.rename(path, chained)
                action = "chained"
        tmp = path + ".dvx-tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(_script(name))
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
        changes.append(HookChange(name, action))
    return changes


def uninstall(repo: Repository) -> list[HookChange]:
    hooks_dir = GitRepo(repo.root).hooks_dir()
    changes = []
    for name in HOOKS:
        path = os.path.join(hooks_dir, name)
        chained = path + CHAINED
        if os.path.lexists(path) and _is_ours(path):
            os.unlink(path)
            if os.path.lexists(chained):
                os.rename(chained, path)
                changes.append(HookChange(name, "restored"))
            else:
                changes.append(HookChange(name, "removed"))
    return changes


def is_executable(path: str) -> bool:
    try:
        return bool(os.stat(path).st_mode & stat_mod.S_IXUSR)
    except OSError:
        return False


# -- what the hooks do ------------------------------------------------------------------

def run_hook(repo: Repository, name: str, args: list[str]) -> int:
    """Returns the exit code for git. Hooks with nothing to do return at once."""
    if name == "pre-commit":
        return _pre_commit(repo)
    if name == "post-checkout":
        # args: previous HEAD, new HEAD, 1 for a branch checkout (0 for a file checkout)
        if len(args) >= 3 and args[2] == "0":
            return 0
        if len(args) >= 2 and args[0] == args[1]:
            return 0
        return _sync_data(repo, "post-checkout", args[0] if args else None)
    if name == "post-merge":
        return _sync_data(repo, "post-merge", "ORIG_HEAD")
    if name == "post-rewrite":
        # args: "rebase" or "amend"; an amend does not change the work tree's pointers
        if args and args[0] == "rebase":
            return _sync_data(repo, "post-rewrite", "ORIG_HEAD")
        return 0
    if name == "pre-push":
        return _pre_push(repo, args)
    raise DvxError(f"unknown hook {name!r}", f"DVX manages {', '.join(HOOKS)}")


def _pre_commit(repo: Repository) -> int:
    from dvx.ops.status import status

    if os.environ.get("DVX_IN_COMMIT"):
        return 0  # run by `dvx commit`, which re-added the data it commits

    # stale data (the pointer moved under it) is no reason to stop a commit: the pointer
    # being committed is the right one; `dvx checkout` brings the data
    dirty = [s for s in status(repo) if s.state in ("modified", "diverged", "broken-pointer")]
    if not dirty:
        return 0
    if repo.config.core.autostage and all(s.state == "modified" for s in dirty):
        from dvx.ops.add import add
        from dvx.ops.commit import stage_paths_for

        targets = [s.target for s in dirty]
        add(repo, targets)
        GitRepo(repo.root).stage(stage_paths_for(repo, targets))
        sys.stderr.write(f"dvx: re-added and staged {', '.join(targets)}\n")
        return 0
    first = dirty[0]
    if first.state != "modified":
        sys.stderr.write(f"dvx: {first.target}: {first.message}\n")
        return 1
    sys.stderr.write(
        f"dvx: the data of {first.target} changed since {first.target}.dvx was written"
        + (f" (and {len(dirty) - 1} more)" if len(dirty) > 1 else "")
        + f"; run `dvx add {first.target}` (or `dvx commit`) and stage the pointer, "
        "or set `autostage = true` in [core] of .dvx/config\n"
    )
    return 1


def _sync_data(repo: Repository, hook: str, old_head: str | None = None) -> int:
    from dvx.ops.checkout import checkout

    try:
        if old_head:
            from dvx.ops.vanished import remove_vanished

            for target, why in remove_vanished(repo, old_head):
                sys.stderr.write(f"dvx ({hook}): kept {target}: {why}\n")
        checkout(repo)
    except DvxError as exc:  # the git operation already happened; say what to do
        sys.stderr.write(f"dvx ({hook}): data not updated: {exc}\n")
    return 0


ZERO_SHA = "0" * 40


def _pre_push(repo: Repository, args: list[str]) -> int:
    """Push the data of the commits git is pushing (not the work tree's).

    git passes one line per ref on stdin: ``<local ref> <local sha> <remote ref>
    <remote sha>``. The commits pushed are those reachable from each local sha and not
    from its remote sha when this repository has that commit; all reachable commits when
    the remote sha is zeros (a new ref) or unknown here; a deletion pushes nothing."""
    remote = repo.config.core.default_remote
    if not remote:
        return 0  # no DVX remote configured: nothing to push
    try:
        from dvx.ops.push import push
    except ImportError:  # pragma: no cover - remotes not built
        return 0
    lines = [] if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read().splitlines()
    try:
        pointers, bad = _pushed_pointers(repo, lines)
        if not pointers and not bad:
            return _push_runs(repo, remote, args, lines)
        report = push(repo, remote_name=remote, pointers=pointers)
    except DvxError as exc:
        sys.stderr.write(f"dvx (pre-push): {exc}\n")
        return 1
    problems = report.missing_locally + [str(e) for e in bad.values()]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        sys.stderr.write(f"dvx (pre-push): data of the pushed commits not pushed to {remote}: "
                         f"{problems[0]}{more}; run `dvx fsck` (or `dvx fsck --repair`), or "
                         "`git push --no-verify` to push the commits without it\n")
        return 1
    return _push_runs(repo, remote, args, lines)


def _push_runs(repo: Repository, remote: str, args: list[str], lines: list[str]) -> int:
    """Send the runs the git remote lacks (their data, then their refs) to the remote
    git is pushing to (protocols/runs.md §9). Never blocks git's push: problems are
    printed. Run refs git itself is pushing are left to git."""
    from dvx.artifacts import travel as artifact_travel
    from dvx.ops.push import push
    from dvx.runs.travel import plan_push, send_refs

    target = args[1] if len(args) > 1 and args[1] else (args[0] if args else None)
    own = {parts[2] for parts in (line.split() for line in lines) if len(parts) == 4}
    arts: list[str] = []
    try:
        plan = plan_push(repo, target, skip_refs=own)
        art_plan = artifact_travel.plan_push(repo, target, skip_refs=own)
        skipped: set[str] = set()
        pointers = {**plan.pointers, **art_plan.pointers}
        if pointers:
            report = push(repo, remote_name=remote, pointers=pointers)
            skipped = {p.id for p in pointers.values()
                       if any(f"({p.id[:12]})" in m for m in report.missing_locally)}
        pushed, errors = send_refs(repo, plan, skipped)
        arts, art_errors = artifact_travel.send_refs(repo, art_plan, skipped)
        errors += art_errors
    except DvxError as exc:
        pushed, errors = [], [str(exc)]
    if pushed:
        sys.stderr.write(f"dvx (pre-push): pushed {len(pushed)} run{'s' if len(pushed) != 1 else ''} "
                         f"(refs/dvx/runs/*) and their data\n")
    if arts:
        sys.stderr.write(f"dvx (pre-push): pushed {len(arts)} artifact{'s' if len(arts) != 1 else ''} "
                         f"(refs/dvx/artifacts/*) and their data\n")
    for line in errors:
        sys.stderr.write(f"dvx (pre-push): warning: {line}\n")
    return 0


def _pushed_pointers(repo: Repository, lines: list[str]) -> tuple[dict, dict[str, DvxError]]:  # type: ignore[type-arg]
    """label (``PATH@id``) -> pointer for every pointer of the commits being pushed, and
    the malformed ones (``sha:PATH`` -> error)."""
    from dvx.history import ARTIFACT_REFS, history_of

    history = history_of(repo)
    git = history.git
    commits: dict[str, None] = {}
    for line in lines:
        parts = line.split()
        if len(parts) != 4:
            continue
        _local_ref, local_sha, _remote_ref, remote_sha = parts
        if local_sha == ZERO_SHA:
            continue  # a deletion pushes no commits
        start = git.peel_commit(local_sha)
        if start is None:
            continue  # a tag of a tree or blob: no pointers to push
        if _local_ref.startswith(ARTIFACT_REFS):  # only its newest commit is live (artifacts.md §7)
            commits.setdefault(start)
            continue
        stop = git.peel_commit(remote_sha) if remote_sha != ZERO_SHA else None
        for sha in git.commits_between(start, [stop] if stop else []):
            commits.setdefault(sha)
    pointers: dict = {}  # type: ignore[type-arg]
    bad: dict[str, DvxError] = {}
    for sha in commits:
        b: dict[str, DvxError] = {}
        for target, p in history.at(sha, bad=b, label=sha[:12]).items():
            pointers.setdefault(f"{target}@{p.id[:12]}", p)
        for target, exc in b.items():
            bad.setdefault(f"{sha[:12]}:{target}", exc)
    return pointers, bad
