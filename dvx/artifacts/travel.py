"""Artifacts travel with ``dvx push`` / ``dvx fetch`` / ``dvx pull`` and ``git push``
exactly like runs (``protocols/artifacts.md`` §8, ``protocols/runs.md`` §9): the same
git remote (``dvx.runs.travel.runs_remote``), data first, then each ref with a
compare-and-swap through dulwich's client.

Push: an artifact is sent when the git remote lacks its ref or has an ancestor of it;
otherwise someone else changed it meanwhile and the push of that artifact is refused
with a message that names what conflicts (their commits are downloaded to say so; no
ref moves). Fetch: a remote ref that descends from the local one moves it forward; one
that diverged is merged (``merge.py``) into a merge commit whose second parent is
theirs, so both sides stay recoverable.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from dvx.artifacts.merge import merge, version_label
from dvx.artifacts.names import REF_PREFIX, ArtifactError, check_name
from dvx.artifacts.read import read_commit, version_file, version_pointer
from dvx.artifacts.record import Artifact
from dvx.errors import DvxError, ErrorText
from dvx.pointer import Pointer
from dvx.repo import Repository
from dvx.runs.travel import RunRemote, runs_remote, send_planned


def _pointers(git: Any, art: Artifact, bad: list[str]) -> dict[str, Pointer]:
    out = {}
    for v in art.live:
        try:
            p = version_pointer(git, art, v.version)
        except DvxError as exc:
            bad.append(str(exc))
            continue
        out[f"artifact {art.name}:v{v.version}@{p.id[:12]}"] = p
    return out


def merge_base(git: Any, a: str, b: str, limit: int = 100000) -> str | None:
    """The newest commit both ``a`` and ``b`` descend from (None: none)."""
    seen: set[str] = set()
    todo = [a]
    while todo and len(seen) < limit:
        sha = todo.pop()
        if sha in seen:
            continue
        seen.add(sha)
        try:
            todo.extend(git.commit_info(sha).parents)
        except DvxError:
            continue
    for info in git.walk(b, max_entries=limit):
        if info.sha in seen:
            return str(info.sha)
    return None


def _read(git: Any, name: str, sha: str | None) -> Artifact | None:
    return read_commit(git, name, sha) if sha else None


def describe_divergence(git: Any, name: str, mine: str, theirs: str, remote: str) -> str:
    """Why a push of artifact ``name`` is refused, naming the aliases in conflict."""
    hint = (f"run `dvx fetch` (it merges {remote}'s changes into yours and reports what conflicts), "
            "then `dvx push`")
    try:  # theirs first: a damaged remote ref is refused by fetch too, so fetching cannot help
        there = read_commit(git, name, theirs)
        for v in there.live:
            version_pointer(git, there, v.version)
    except DvxError as exc:
        return ErrorText(f"artifact {name}: {remote}'s ref is damaged ({exc.message}); not pushed",
                         f"`dvx fetch` refuses it too; if yours is right, replace it: "
                         f"`git push --force {remote} {REF_PREFIX}{name}`")
    try:
        base_sha = merge_base(git, mine, theirs)
        base = _read(git, name, base_sha)
        here = read_commit(git, name, mine)
    except DvxError:
        return ErrorText(f"artifact {name}: {remote} has changes you have not fetched; not pushed", hint)
    result = merge(base, there, here, remote)  # type: ignore[arg-type]
    if result.artifact is None:  # created on both sides with other types
        return ErrorText(f"artifact {name} has type {here.type!r} here and {there.type!r} on {remote}; "
                         "not pushed", getattr(result.conflicts[0], "hint", None) if result.conflicts else None)
    if result.alias_conflicts:
        alias, m, t = result.alias_conflicts[0]
        return ErrorText(f"artifact {name}: alias {alias} was moved to {version_label(m)} here and to "
                         f"{version_label(t)} on {remote}; not pushed",
                         "run `dvx fetch` (it merges and keeps yours), then `dvx push` to keep "
                         f"{version_label(m)}, or "
                         f"`dvx artifacts alias {name}:{version_label(t)} {alias}` first to take theirs")
    added = len(there.versions) - len(base.versions) if base else len(there.versions)
    what = f"{added} new version(s)" if added > 0 else "alias or retention changes"
    return ErrorText(f"artifact {name}: {remote} has {what} you have not fetched; not pushed", hint)


# -- push -------------------------------------------------------------------------------------
@dataclass
class PushPlan:
    remote: RunRemote
    refs: dict[str, tuple[str | None, str]] = field(default_factory=dict)
    roots: dict[str, set[str]] = field(default_factory=dict)
    pointers: dict[str, Pointer] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def plan_push(repo: Repository, name: str | None = None, skip_refs: set[str] | None = None) -> PushPlan:
    """What push sends for artifacts: refs the git remote lacks or has at an ancestor,
    and the data of their versions."""
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
        plan.errors.append(f"artifacts not pushed: {exc.message}")
        return plan
    fetched = False
    for ref, sha in sorted(local.items()):
        if skip_refs and ref in skip_refs:
            continue
        art_name = ref[len(REF_PREFIX):]
        old = theirs.get(ref)
        if old == sha:
            continue
        if old is not None and not git.is_ancestor(old, sha):
            if not git.has_commit(old) and not fetched:
                with contextlib.suppress(DvxError):
                    git.fetch_objects(remote.location, REF_PREFIX)  # to say what conflicts
                fetched, git = True, git.reopened()
            plan.errors.append(describe_divergence(git, art_name, sha, old, remote.name or remote.location))
            continue
        bad: list[str] = []
        try:
            check_name(art_name)
            pointers = _pointers(git, read_commit(git, art_name, sha), bad)
        except DvxError as exc:
            bad.append(str(exc))
        if bad:
            plan.errors += [f"{ref} not pushed: {e}" for e in bad]
            continue
        plan.refs[ref] = (old, sha)
        plan.roots[ref] = {p.id for p in pointers.values()}
        plan.pointers.update(pointers)
    return plan


def send_refs(repo: Repository, plan: PushPlan, data_missing: set[str]) -> tuple[list[str], list[str]]:
    """Push the planned refs whose data reached the DVX remote. Returns (artifact names
    pushed, error lines)."""
    return send_planned(repo, plan, data_missing, REF_PREFIX, "artifacts",
                        "the data of one of its versions is not in the local store",
                        "run `dvx fetch`, then `dvx push` again")


# -- fetch ------------------------------------------------------------------------------------
@dataclass
class FetchedArtifacts:
    remote: RunRemote
    changed: list[str] = field(default_factory=list)  # names whose ref arrived, moved or was merged
    notes: list[str] = field(default_factory=list)  # renumbered versions, merges
    pointers: dict[str, Pointer] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def fetch_refs(repo: Repository, name: str | None = None) -> FetchedArtifacts:
    """Bring the git remote's artifact refs here: new ones are created, ones that
    descend from the local ref move it forward, diverged ones are merged; then say which
    data to fetch (the live versions of every artifact that changed)."""
    from dvx.gitio import GitRepo

    git = GitRepo(repo.root)
    remote = runs_remote(git, name)
    got = FetchedArtifacts(remote)
    if remote.location is None:
        return got
    try:
        theirs = git.fetch_objects(remote.location, REF_PREFIX)
    except DvxError as exc:
        got.errors.append(f"artifacts not fetched: {exc.message}")
        return got
    git = git.reopened()
    local = git.refs_under(REF_PREFIX)
    label = remote.name or remote.location
    for ref, sha in sorted(theirs.items()):
        art_name = ref[len(REF_PREFIX):]
        try:  # a name from the remote: only a valid artifact name may become a local ref
            check_name(art_name)
            if len(sha) != 40 or sha.strip("0123456789abcdef"):
                raise ArtifactError(f"invalid commit id {sha[:50]!r}")
            if not git.has_commit(sha):
                raise ArtifactError(f"its commit {sha[:12]} did not arrive")
            there = read_commit(git, art_name, sha)  # refuse a malformed artifact before it lands
            for v in there.live:  # and one whose pointers contradict its record
                version_pointer(git, there, v.version)
        except DvxError as exc:
            got.errors.append(f"{ref[:160]!r} on the git remote is refused: {exc.message}")
            continue
        mine = local.get(ref)
        if mine == sha or (mine is not None and git.is_ancestor(sha, mine)):
            continue
        if mine is None or git.is_ancestor(mine, sha):
            if git.set_ref(ref, sha, mine):
                got.changed.append(art_name)
                got.pointers.update(_pointers(git, there, got.errors))
            else:
                got.errors.append(f"{ref} changed here meanwhile; run `dvx fetch` again")
            continue
        try:
            _merge_into(git, ref, art_name, mine, sha, label, got)
        except DvxError as exc:
            got.errors.append(ErrorText(f"artifact {art_name}: cannot merge {label}'s changes: {exc.message}",
                                        exc.hint or "kept yours"))
    return got


def _merge_into(git: Any, ref: str, name: str, mine: str, theirs: str, remote: str,
                got: FetchedArtifacts) -> None:
    from dvx.artifacts.write import commit_state

    base_sha = merge_base(git, mine, theirs)
    here, there = read_commit(git, name, mine), read_commit(git, name, theirs)
    result = merge(_read(git, name, base_sha), there, here, remote)
    got.errors += result.conflicts
    if result.artifact is None:
        return
    pointers: dict[int, bytes] = {}
    back = {new: old for old, new in result.renumbered.items()}
    info_here, info_there = git.commit_info(mine), git.commit_info(theirs)
    for v in result.artifact.live:
        if v.version < len(there.versions) and not there.versions[v.version].dropped:
            found = git.blob_at(info_there, version_file(v.version))
        else:
            found = git.blob_at(info_here, version_file(back.get(v.version, v.version)))
        if found is None:
            raise ArtifactError(f"the pointer of v{v.version} is missing from both sides")
        pointers[v.version] = found[1]
    what = "; ".join([*(f"v{a} is now v{b}" for a, b in sorted(result.renumbered.items())),
                      *(f"conflict on alias {a}: kept {version_label(m)}, theirs {version_label(t)}"
                        for a, m, t in result.alias_conflicts)])
    message = f"artifacts: {name} merge {remote}" + (f" ({what})" if what else "")
    sha = commit_state(git, result.artifact, pointers, message, [mine, theirs])
    if not git.set_ref(ref, sha, mine):
        got.errors.append(f"{ref} changed here meanwhile; run `dvx fetch` again")
        return
    got.changed.append(name)
    got.notes += result.notes
    from dataclasses import replace

    got.pointers.update(_pointers(git, replace(result.artifact, commit=sha), got.errors))


def fetch_data(repo: Repository, got: FetchedArtifacts, remote_name: str | None, jobs: int,
               progress: Any) -> Any:
    """Fetch the data of the artifact versions that arrived. Returns the FetchReport of
    the data fetch, or None."""
    from dvx.ops.fetch import fetch

    if not got.pointers:
        return None
    try:
        report = fetch(repo, remote_name, jobs=jobs, progress=progress, pointers=got.pointers, runs=False)
    except DvxError as exc:
        got.errors.append(f"data of artifacts not fetched: {exc}")
        return None
    got.errors += report.errors
    repo.store.refresh()
    return report
