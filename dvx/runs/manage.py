"""``dvx runs rm`` and ``dvx runs promote`` (``protocols/runs.md`` §11)."""

from __future__ import annotations

import os
from typing import Any

from dvx.repo import Repository
from dvx.runs.record import REF_PREFIX, RunError


def _committed(repo: Repository, run_id: str) -> dict[str, Any]:
    from dvx.runs.catalog import find_run

    run = find_run(repo, run_id)
    if run.get("state") == "running" or run.get("commit") is None:
        raise RunError(f"run {run['id']} is being recorded", "wait for it to finish (or stop it), then retry")
    return run


def remove_run(repo: Repository, run_id: str, remote: bool = False) -> dict[str, Any]:
    """Delete ``refs/dvx/runs/<id>`` (compare-and-swap); with ``remote`` also on the
    git remote runs travel to. The data stays until ``dvx gc``."""
    from dvx.gitio import GitRepo
    from dvx.runs.travel import runs_remote

    run = _committed(repo, run_id)
    ref, sha = REF_PREFIX + run["id"], run["commit"]
    git = GitRepo(repo.root)
    out: dict[str, Any] = {"id": run["id"], "ref": ref, "commit": sha, "deleted": False, "remote": None,
                           "remote_deleted": False}
    if remote:
        where = runs_remote(git)
        if where.location is None:
            raise RunError(f"cannot delete run {run['id']} on the git remote: {where.why}",
                           "or run without --remote")
        status = git.push_refs(where.location, {ref: (sha, None)})
        if status.get(ref) is not None:
            raise RunError(f"run {run['id']} not deleted on {where.name}: {status[ref]}",
                           "check `git ls-remote`")
        out["remote"], out["remote_deleted"] = where.name, True
    if not git.set_ref(ref, None, sha):
        raise RunError(f"{ref} was changed by another process meanwhile", "look again with `dvx runs show`")
    out["deleted"] = True
    return out


def promote_run(repo: Repository, run_id: str) -> dict[str, Any]:
    """Commit the run's inputs and outputs (their pointers at their paths) on the
    current branch, as ``dvx commit PATH...`` would, with ``Run-Id``/``Run-Commit``
    trailers. Refused when the branch changed one of those paths since the run's code
    commit, or the work tree has uncommitted changes to one of their pointers."""
    from dvx.gitignore import ensure_ignored
    from dvx.gitio import GitRepo
    from dvx.ops.commit import stage_paths_for
    from dvx.pointer import POINTER_SUFFIX

    run = _committed(repo, run_id)
    git = GitRepo(repo.root)
    info = git.commit_info(run["commit"])
    code = (run.get("code") or {}).get("commit")
    head = git.head()
    base_info = git.commit_info(code) if code and git.has_commit(code) else None
    head_info = git.commit_info(head) if head else None
    wanted: dict[str, bytes] = {}
    for kind in ("inputs", "outputs"):
        for entry in run.get(kind) or []:
            path = entry.get("path") if isinstance(entry, dict) else None
            if not isinstance(path, str) or not isinstance(entry.get("pointer"), str):
                raise RunError(f"run {run['id']}: a malformed {kind} entry in its record",
                               "the run was not written by dvx; promote it by hand")
            # a path from a run record (a teammate's push) is untrusted: it must be a safe
            # tracked path with no link or file above it, or nothing is written
            repo.data_path(path, f"{REF_PREFIX}{run['id']}:{kind} {path!r}")
            blob = git.blob_at(info, entry["pointer"])
            if blob is not None:
                wanted[path] = blob[1]
    changes: dict[str, bytes] = {}
    conflicts: list[str] = []
    for path, data in sorted(wanted.items()):
        pfile = path + POINTER_SUFFIX
        cur = git.blob_at(head_info, pfile) if head_info else None
        base = git.blob_at(base_info, pfile) if base_info else None
        cur_b, base_b = (cur[1] if cur else None), (base[1] if base else None)
        try:
            with open(repo.abspath(pfile), "rb") as f:
                wt: bytes | None = f.read()
        except FileNotFoundError:
            wt = None
        if wt not in (cur_b, data):
            conflicts.append(f"{pfile} has uncommitted changes")
            continue
        if cur_b == data:
            continue
        if cur_b != base_b:
            conflicts.append(f"the branch changed {pfile} since the run's code commit "
                             f"{(code or 'none')[:12]}")
            continue
        changes[path] = data
    if conflicts:
        more = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
        raise RunError(f"cannot promote run {run['id']}: {conflicts[0]}{more}",
                       f"commit or restore your changes, or take the run's version by hand: "
                       f"`git show {REF_PREFIX}{run['id']}:.dvx-run/outputs/PATH.dvx > PATH.dvx`, "
                       "then `dvx commit`")
    if not changes:
        raise RunError(f"nothing to promote: the branch already holds the inputs and outputs of run "
                       f"{run['id']}",
                       "see `dvx runs show " + run["id"] + "`")
    from dvx.fsutil import atomic_write_bytes

    for path, data in changes.items():
        target = repo.data_path(path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        atomic_write_bytes(target + POINTER_SUFFIX, data, fsync=False)
        ensure_ignored(target)
    message = (f"Promote run {run['id']}: {run.get('name') or run['id']}\n\n"
               f"Run-Id: {run['id']}\nRun-Commit: {run['commit']}\n")
    sha = git.commit(message, stage=stage_paths_for(repo, sorted(changes), config=False), only=True)
    from dvx.ops.checkout import checkout

    problems = [r.error for r in checkout(repo, sorted(changes)) if r.error]
    return {"id": run["id"], "run_commit": run["commit"], "commit": sha, "branch": git.head_branch(),
            "paths": sorted(changes), "errors": problems}
