"""``dvx push``: upload what the remote lacks, packed, in parallel, lock-free.

Order (``protocols/remote.md`` §3): learn the remote's indexes, build packs of the
missing objects, upload each pack and then its index, and only when a root's whole
closure is uploaded write its root record. A re-run after an interruption uploads only
what is still missing. The order itself is kept by ``Remote`` (``put_pack`` writes a
pack before its index; ``write_root`` refuses a record whose packs it has not seen
uploaded or listed); the store exports the packs (``export_pack``, ``export_objects``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from dvx.errors import CorruptObjectError, DvxError, MissingObjectError
from dvx.lock import store_lock
from dvx.ops.remotes import open_remote
from dvx.ops.transfer import DEFAULT_JOBS, parallel, select_pointers
from dvx.pointer import Pointer
from dvx.progress import NULL_PROGRESS, Progress
from dvx.remote.layout import Remote, RootRecord
from dvx.repo import Repository
from dvx.store.local import Store
from dvx.store.pack import PackFile
from dvx.store.reach import reachable, root_kind

REMOTE_PACK_TARGET = 32 << 20


@dataclass
class PushReport:
    remote: str
    url: str
    roots: int = 0
    roots_already_there: int = 0
    objects_uploaded: int = 0
    bytes_uploaded: int = 0
    packs_uploaded: int = 0
    requests: int = 0
    missing_locally: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # malformed or refused pointers, skipped
    runs_git_remote: str | None = None  # the git remote run refs went to (protocols/runs.md §9)
    runs_pushed: list[str] = field(default_factory=list)  # ids of the runs whose refs were sent
    runs_note: str | None = None  # why runs did not travel, when they did not
    artifacts_pushed: list[str] = field(default_factory=list)  # names of the artifacts whose refs were sent

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


def push(repo: Repository, remote_name: str | None = None, rev: str | None = None,
         all_commits: bool = False, paths: list[str] | None = None, jobs: int = DEFAULT_JOBS,
         progress: Progress = NULL_PROGRESS, verify: bool = False, create: bool = False,
         pointers: dict[str, Pointer] | None = None, runs: bool = True) -> PushReport:
    """Upload what the remote lacks. A version whose data the local store lacks is
    skipped and named in ``missing_locally`` (the rest is pushed); the caller decides
    how to fail. ``create``: start a directory remote whose directory does not exist.
    ``pointers`` (label -> pointer, label ``PATH@...``): push exactly these instead of
    choosing by ``rev`` / ``all_commits`` / ``paths`` (the pre-push hook's commits).
    ``runs`` (without ``pointers`` or ``paths``): also the data of the runs the git
    remote lacks, then their refs (``dvx.runs.travel``, protocols/runs.md §9)."""
    remote = open_remote(repo, remote_name, progress)
    bad: dict[str, DvxError] = {}
    plan = None
    if pointers is None:
        pointers = select_pointers(repo, rev, all_commits, paths, bad)
        if runs and not paths:
            from dvx.artifacts import travel as artifact_travel
            from dvx.runs.travel import plan_push

            plan = plan_push(repo)
            art_plan = artifact_travel.plan_push(repo)
            pointers = {**pointers, **plan.pointers, **art_plan.pointers}
    skipped: set[str] = set()
    report = _push(repo, remote, pointers, bad, jobs, progress, verify, create, skipped)
    if plan is not None:
        from dvx.runs.travel import send_refs

        report.runs_git_remote = plan.remote.name
        report.runs_note = plan.remote.why or None
        report.runs_pushed, errors = send_refs(repo, plan, skipped)
        report.errors += errors
        report.artifacts_pushed, errors = artifact_travel.send_refs(repo, art_plan, skipped)
        report.errors += errors
    return report


def _push(repo: Repository, remote: Remote, pointers: dict[str, Pointer], bad: dict[str, DvxError], jobs: int,
          progress: Progress, verify: bool, create: bool, skipped: set[str]) -> PushReport:
    report = PushReport(remote.name, remote.url)
    report.errors = [str(e) for e in bad.values()]
    roots: dict[str, Pointer] = {}
    labels: dict[str, str] = {}
    for label, p in pointers.items():
        roots.setdefault(p.id, p)
        labels.setdefault(p.id, label.split("@")[0])
    report.roots = len(roots)
    known = set() if verify else remote.known_roots()
    if not remote.root_exists():  # a directory remote's directory: one stat, no request
        if not create:
            raise remote.missing_root_error()
        known = set()  # what this machine remembers pushing there is gone
    unknown = [r for r in roots if r not in known]
    if not unknown:  # nothing new: one request (the marker, see Remote.known_roots)
        report.roots_already_there = len(roots)
        report.requests = remote.requests
        return report
    remote.check_format(create=True, create_root=create)
    present = parallel(remote.has_root, unknown, jobs)
    todo = [roots[r] for r, there in zip(unknown, present, strict=True) if not there]
    report.roots_already_there = len(roots) - len(todo)
    if todo:
        with store_lock(repo.store.path):
            skipped.update(_upload(repo, remote, todo, labels, jobs, progress, report))
    remote.remember_roots(set(roots) - skipped)
    report.requests = remote.requests
    return report


def _upload(repo: Repository, remote: Remote, todo: list[Pointer], labels: dict[str, str], jobs: int,
            progress: Progress, report: PushReport) -> set[str]:
    """Upload the closures of ``todo``; returns the roots skipped for missing data."""
    store = repo.store
    closures: dict[str, dict[bytes, int]] = {}
    skipped: set[str] = set()
    for p in todo:
        try:
            closures[p.id] = reachable(store, [(p.oid, root_kind(p.kind))])
        except (MissingObjectError, CorruptObjectError) as exc:
            # one version with missing data must not hold back the others
            skipped.add(p.id)
            report.missing_locally.append(f"{labels.get(p.id, p.id[:12])} ({p.id[:12]}): {exc.message}")
    todo = [p for p in todo if p.id not in skipped]
    if not todo:
        return skipped
    # what the remote already holds, from its (cached) indexes
    names = remote.list_pack_names()
    where: dict[bytes, str] = {}
    for name, idx in zip(names, parallel(remote.index, names, jobs), strict=True):
        for oid, _kind, _off, _ln in idx.raw_items():
            where.setdefault(oid, name)
    needed: dict[bytes, int] = {}
    for closure in closures.values():
        for oid, kind in closure.items():
            if oid not in where:
                needed.setdefault(oid, kind)
    index = store.full_index()
    total = sum(index[o][3] for o in needed)
    progress.start(f"pushing to {remote.name}", total, unit="bytes")
    try:
        uploaded = _send(store, remote, needed, jobs, progress, report)
    finally:
        progress.finish()
    where.update(uploaded)
    records = []
    for p in todo:
        closure = closures[p.id]
        packs = sorted({where[o] for o in closure})
        size = sum(index[o][3] for o in closure)
        records.append(RootRecord(p.id, p.kind, packs, len(closure), size))
    parallel(remote.write_root, records, jobs)  # last (the remote refuses it earlier)
    return skipped


def _send(store: Store, remote: Remote, needed: dict[bytes, int], jobs: int, progress: Progress,
          report: PushReport) -> dict[bytes, str]:
    """Upload ``needed`` objects; returns oid -> remote pack name."""
    placed: dict[bytes, str] = {}
    lock = threading.Lock()
    index = store.full_index()
    # Local packs whose every object is needed are uploaded as they are (same format).
    by_pack: dict[str, list[bytes]] = {}
    for oid in needed:
        by_pack.setdefault(index[oid][0], []).append(oid)
    whole: list[str] = []
    rest: list[bytes] = []
    for name, oids in by_pack.items():
        idx = store.pack_index(name)
        if idx.count == len(oids) and not idx.delta_ids():  # remotes hold whole chunks only
            whole.append(name)
        else:
            rest.extend(oids)
    order = {oid: i for i, oid in enumerate(needed)}
    rest.sort(key=order.__getitem__)

    def sent(pack: PackFile) -> None:
        with lock:
            report.packs_uploaded += 1
            report.objects_uploaded += len(pack.entries)
            report.bytes_uploaded += pack.size
            for e in pack.entries:
                placed[e.oid] = pack.name
        progress.advance(pack.payload)

    def packs() -> Iterator[PackFile]:
        for name in whole:
            yield store.export_pack(name)
        yield from store.export_objects(rest, REMOTE_PACK_TARGET)  # verified on read

    remote.put_packs(packs(), jobs, sent)  # each pack, then its index
    return placed
