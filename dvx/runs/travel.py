"""Runs travel with ``dvx push`` / ``dvx fetch`` / ``dvx pull`` and ``git push``
(``protocols/runs.md`` §9).

Push: the data of every local run the git remote does not have at the same commit
(the pointers its record names) goes to the DVX remote first, then the run refs go to
the git remote, each with a compare-and-swap against the value the remote had, through
dulwich's client (no hook runs, so the pre-push hook can call it: no recursion, and no
lock git holds is needed). One ref per run: pushes of different runs never contend.

Fetch: the run refs of the git remote are downloaded (objects first, then each local
ref moved by compare-and-swap, only forward), then the data of the runs that arrived
or changed from the DVX remote. Runs whose data could not be fetched are remembered in
``.dvx/state/runs-pending-data`` and retried by the next fetch.

Which git remote: git config ``dvx.runsRemote`` (a remote name or a URL; ``none``
turns run travel off), else the remote the current branch tracks, else ``origin``;
with none of these, runs stay local and the report says so.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from dvx.errors import DvxError, ErrorText
from dvx.pointer import Pointer
from dvx.repo import Repository
from dvx.runs.record import REF_PREFIX, RUN_DIR, check_run_id, decode_record

OFF = ("none", "false", "off", "no", "0")
PENDING = os.path.join("state", "runs-pending-data")


@dataclass
class RunRemote:
    name: str | None  # what to call it in messages
    location: str | None  # URL or path; None: runs do not travel
    why: str = ""  # when location is None


def runs_remote(git: Any, name: str | None = None) -> RunRemote:
    """The git remote runs travel to/from (module docstring). ``name``: a remote name or
    URL chosen by the caller (the pre-push hook passes git's)."""
    configured = git.config_value("dvx", "runsremote")
    if configured is not None and configured.strip().lower() in OFF:
        return RunRemote(None, None, "run travel is off (git config dvx.runsRemote)")
    chosen = name or configured or git.upstream_remote()
    if chosen is None and git.remote_location("origin") is not None:
        chosen = "origin"
    if chosen is None:
        return RunRemote(None, None, "runs stay local: no git remote (the branch tracks none and there is "
                                     "no `origin`; set one with `git config dvx.runsRemote NAME`)")
    location = git.remote_location(chosen) or chosen
    return RunRemote(chosen, location)


def run_pointers(git: Any, run_id: str, sha: str, bad: dict[str, DvxError] | None = None) -> dict[str, Pointer]:
    """label -> pointer of every pointer a run commit's record names (metrics, system,
    console, inputs, outputs)."""
    from dvx.pointer import parse_pointer

    info = git.commit_info(sha)
    found = git.blob_at(info, f"{RUN_DIR}/run.json")
    if found is None:
        return {}
    record = decode_record(found[1], REF_PREFIX + run_id)
    paths = [f"{RUN_DIR}/{v}" for v in (record.get("files") or {}).values() if isinstance(v, str)]
    for kind in ("inputs", "outputs"):
        paths += [e["pointer"] for e in record.get(kind) or [] if isinstance(e, dict) and e.get("pointer")]
    out: dict[str, Pointer] = {}
    for path in paths:
        blob = git.blob_at(info, path)
        if blob is None:
            continue
        label = f"run {run_id}:{path[len(RUN_DIR) + 1:-len('.dvx')]}"
        try:
            p = parse_pointer(blob[1], f"{REF_PREFIX}{run_id}:{path}")
        except DvxError as exc:
            if bad is not None:
                bad[label] = exc
            continue
        out[f"{label}@{p.id[:12]}"] = p
    return out


# -- push -------------------------------------------------------------------------------------
@dataclass
class PushPlan:
    remote: RunRemote
    refs: dict[str, tuple[str | None, str]] = field(default_factory=dict)  # ref -> (remote old, local new)
    roots: dict[str, set[str]] = field(default_factory=dict)  # ref -> root ids of its data
    pointers: dict[str, Pointer] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)


def plan_push(repo: Repository, name: str | None = None, skip_refs: set[str] | None = None) -> PushPlan:
    """What ``dvx push`` sends for runs: refs the git remote lacks (or has at an
    ancestor), and their pointers. Network: one ref listing of the git remote."""
    from dvx.gitio import GitRepo

    git = GitRepo(repo.root)
    remote = runs_remote(git, name)
    plan = PushPlan(remote)
    local = git.refs_under(REF_PREFIX)
    if remote.location is None or not local:
        return plan
    try:
        theirs = git.remote_refs(remote.location, REF_PREFIX)
    except DvxError as exc:
        plan.errors.append(f"runs not pushed: {exc.message}")
        return plan
    for ref, sha in sorted(local.items()):
        if skip_refs and ref in skip_refs:
            continue
        old = theirs.get(ref)
        if old == sha:
            continue
        if old is not None and not git.is_ancestor(old, sha):
            plan.conflicts.append(f"{ref}: the git remote has another version of this run ({old[:12]}); "
                                  "not pushed (`dvx runs rm` one of them, or resume under another id)")
            continue
        bad: dict[str, DvxError] = {}
        pointers = run_pointers(git, ref[len(REF_PREFIX):], sha, bad)
        if bad:
            plan.errors += [f"{ref} not pushed: {e}" for e in bad.values()]
            continue
        plan.refs[ref] = (old, sha)
        plan.roots[ref] = {p.id for p in pointers.values()}
        plan.pointers.update(pointers)
    return plan


def send_refs(repo: Repository, plan: PushPlan, data_missing: set[str]) -> tuple[list[str], list[str]]:
    """Push the planned refs whose data reached the DVX remote (``data_missing``: root
    ids that did not). Returns (run ids pushed, error lines)."""
    return send_planned(repo, plan, data_missing, REF_PREFIX, "runs", "its data is not in the local store")


def send_planned(repo: Repository, plan: Any, data_missing: set[str], prefix: str, what: str,
                 missing: str, rejected_hint: str | None = None) -> tuple[list[str], list[str]]:
    """Push ``plan.refs`` (ref -> (the remote's old value, the new one)) to the git
    remote in one compare-and-swap push, leaving out the refs whose data
    (``plan.roots``) did not reach the DVX remote; shared by runs and artifacts.
    Returns (the names pushed: refs less ``prefix``, error lines)."""
    from dvx.gitio import GitRepo

    errors = list(getattr(plan, "conflicts", ())) + list(plan.errors)
    updates: dict[str, tuple[str | None, str | None]] = {}
    for ref, (old, new) in plan.refs.items():
        if plan.roots.get(ref, set()) & data_missing:
            errors.append(f"{ref} not pushed: {missing}")
            continue
        updates[ref] = (old, new)
    if not updates or plan.remote.location is None:
        return [], errors
    try:
        status = GitRepo(repo.root).push_refs(plan.remote.location, updates)
    except DvxError as exc:
        return [], errors + [f"{what} not pushed to {plan.remote.name}: {exc.message}"]
    pushed = []
    for ref in updates:
        why = status.get(ref, "not sent")
        if why is None:
            pushed.append(ref[len(prefix):])
        elif rejected_hint is None:
            errors.append(f"{ref} not pushed to {plan.remote.name}: {why}")
        else:
            errors.append(ErrorText(f"{ref} not pushed to {plan.remote.name}: {why}", rejected_hint))
    return pushed, errors


# -- fetch ------------------------------------------------------------------------------------
@dataclass
class FetchedRuns:
    remote: RunRemote
    changed: list[str] = field(default_factory=list)  # run ids whose ref arrived or moved
    pointers: dict[str, Pointer] = field(default_factory=dict)  # data to fetch
    by_run: dict[str, set[str]] = field(default_factory=dict)  # run id -> root ids
    errors: list[str] = field(default_factory=list)


def _pending_path(repo: Repository) -> str:
    return os.path.join(repo.dvx_dir, PENDING)


def _read_pending(repo: Repository) -> set[str]:
    try:
        with open(_pending_path(repo), encoding="utf-8") as f:
            got = json.load(f)
        return {x for x in got if isinstance(x, str)} if isinstance(got, list) else set()
    except (OSError, ValueError):
        return set()


def write_pending(repo: Repository, run_ids: set[str]) -> None:
    from dvx.fsutil import atomic_write_bytes

    path = _pending_path(repo)
    if not run_ids:
        if os.path.exists(path):
            os.unlink(path)
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write_bytes(path, json.dumps(sorted(run_ids)).encode(), fsync=False)


def fetch_refs(repo: Repository, name: str | None = None) -> FetchedRuns:
    """Bring the git remote's run refs here (objects, then each ref by compare-and-swap,
    only forward: a local run that differs and is not behind is kept and reported) and
    say which runs' data to fetch."""
    from dvx.gitio import GitRepo

    git = GitRepo(repo.root)
    remote = runs_remote(git, name)
    got = FetchedRuns(remote)
    pending = _read_pending(repo)
    if remote.location is not None:
        try:
            theirs = git.fetch_objects(remote.location, REF_PREFIX)
        except DvxError as exc:
            got.errors.append(f"runs not fetched: {exc.message}")
            theirs = {}
        git = git.reopened()
        local = git.refs_under(REF_PREFIX)
        for ref, sha in sorted(theirs.items()):
            try:  # a name from the remote: only a valid run id may become a local ref
                check_run_id(ref[len(REF_PREFIX):])
                if len(sha) != 40 or sha.strip("0123456789abcdef"):
                    raise DvxError(f"invalid commit id {sha[:50]!r}")
            except DvxError as exc:
                got.errors.append(f"{ref[:120]!r} on the git remote is refused: {exc.message}")
                continue
            mine = local.get(ref)
            if mine == sha or (mine is not None and git.is_ancestor(sha, mine)):
                continue
            if mine is not None and not git.is_ancestor(mine, sha):
                got.errors.append(f"{ref}: the git remote has another version of this run ({sha[:12]}); "
                                  "kept the local one")
                continue
            if not git.has_commit(sha):
                got.errors.append(f"{ref}: the git remote's commit {sha[:12]} did not arrive")
                continue
            if git.set_ref(ref, sha, mine):
                got.changed.append(ref[len(REF_PREFIX):])
    local = git.refs_under(REF_PREFIX)
    for run_id in sorted(set(got.changed) | pending):
        run_sha = local.get(REF_PREFIX + run_id)
        if run_sha is None:
            continue
        bad: dict[str, DvxError] = {}
        pointers = run_pointers(git, run_id, run_sha, bad)
        got.errors += [f"run {run_id}: {e}" for e in bad.values()]
        got.pointers.update(pointers)
        got.by_run[run_id] = {p.id for p in pointers.values()}
    return got


def fetch_data(repo: Repository, got: FetchedRuns, remote_name: str | None, jobs: int, progress: Any) -> Any:
    """Fetch the data of ``got``'s runs; runs whose data did not arrive are remembered
    for the next fetch. Returns the FetchReport of the data fetch, or None."""
    from dvx.ops.fetch import complete_locally, fetch

    if not got.pointers:
        write_pending(repo, set())
        return None
    report = None
    try:
        report = fetch(repo, remote_name, jobs=jobs, progress=progress, pointers=got.pointers)
        got.errors += report.errors
    except DvxError as exc:
        got.errors.append(f"data of runs not fetched: {exc}")
    repo.store.refresh()
    missing = {run_id for run_id, roots in got.by_run.items()
               if any(not complete_locally(repo.store, p) for p in got.pointers.values() if p.id in roots)}
    write_pending(repo, missing)
    return report
