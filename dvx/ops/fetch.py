"""``dvx fetch`` and ``dvx pull``: download what the local store lacks.

Reads only what root records name (``protocols/remote.md`` §4): the record, the indexes
of its packs, then objects level by level. A pack most of which is needed is
downloaded whole to a temporary file, every object verified, and adopted as a local
pack; otherwise coalesced byte ranges are fetched and each object verified before it is
stored. Nothing unverified ever enters the store, and the work tree is written only
from the store.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from dvx.errors import CorruptObjectError, DvxError, MissingObjectError, RemoteError
from dvx.hashing import KIND_CHUNK, KIND_NAMES, id_matches
from dvx.lock import store_lock
from dvx.ops.remotes import open_remote
from dvx.ops.transfer import DEFAULT_JOBS, parallel, select_pointers
from dvx.pointer import Pointer
from dvx.progress import NULL_PROGRESS, Progress
from dvx.remote.layout import Remote
from dvx.repo import Repository
from dvx.store.local import Store
from dvx.store.reach import children, root_kind

WHOLE_PACK_FRACTION = 0.5
RANGE_GAP = 1 << 20
BUFFERED_PACK_MAX = 256 << 20  # larger packs are downloaded to a file, not to memory

RemoteLoc = tuple[str, int, int, int]  # pack, kind, offset, length


@dataclass
class FetchReport:
    remote: str
    url: str
    roots: int = 0
    roots_already_local: int = 0
    objects_fetched: int = 0
    bytes_downloaded: int = 0
    packs_downloaded: int = 0
    ranges_downloaded: int = 0
    requests: int = 0
    checkout: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # pointers/paths that failed: one line each
    runs_git_remote: str | None = None  # the git remote run refs came from (protocols/runs.md §9)
    runs_fetched: list[str] = field(default_factory=list)  # ids of the runs whose refs arrived or moved
    runs_note: str | None = None  # why runs did not travel, when they did not
    artifacts_fetched: list[str] = field(default_factory=list)  # artifacts whose refs arrived, moved or merged
    artifacts_notes: list[str] = field(default_factory=list)  # e.g. versions renumbered by a merge

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


def complete_locally(store: Store, p: Pointer) -> bool:
    """Whether every object the pointer reaches is in the local store."""
    return _complete_locally(store, p)


def _complete_locally(store: Store, p: Pointer) -> bool:
    from dvx.store.reach import reachable

    try:
        reachable(store, [(p.oid, root_kind(p.kind))])
        return True
    except MissingObjectError:
        return False


def fetch(repo: Repository, remote_name: str | None = None, rev: str | None = None,
          all_commits: bool = False, paths: list[str] | None = None, jobs: int = DEFAULT_JOBS,
          progress: Progress = NULL_PROGRESS, pointers: dict[str, Pointer] | None = None,
          runs: bool = True) -> FetchReport:
    """Download what the selected pointers need. A malformed or unsafe pointer is
    reported in ``errors`` and skipped; the others are fetched. ``runs`` (without
    ``pointers`` or ``paths``): also the run refs of the git remote and their data
    (``dvx.runs.travel``, protocols/runs.md §9)."""
    if runs and pointers is None and not paths:
        from dvx.artifacts import travel as artifact_travel
        from dvx.runs import travel

        got = travel.fetch_refs(repo)
        arts = artifact_travel.fetch_refs(repo)
        report = fetch(repo, remote_name, rev, all_commits, paths, jobs, progress, runs=False)
        subs = [travel.fetch_data(repo, got, remote_name, jobs, progress),
                artifact_travel.fetch_data(repo, arts, remote_name, jobs, progress)]
        for sub in subs:
            if sub is None:
                continue
            for name in ("roots", "roots_already_local", "objects_fetched", "bytes_downloaded",
                         "packs_downloaded", "ranges_downloaded", "requests"):
                setattr(report, name, getattr(report, name) + getattr(sub, name))
        report.runs_git_remote, report.runs_note = got.remote.name, got.remote.why or None
        report.runs_fetched = got.changed
        report.artifacts_fetched, report.artifacts_notes = arts.changed, arts.notes
        report.errors += got.errors + arts.errors
        return report
    remote = open_remote(repo, remote_name, progress)
    report = FetchReport(remote.name, remote.url)
    if pointers is None:
        bad: dict[str, DvxError] = {}
        pointers = select_pointers(repo, rev, all_commits, paths, bad)
        report.errors.extend(str(exc) for exc in bad.values())
    roots: dict[str, tuple[str, Pointer]] = {}
    for label, p in pointers.items():
        roots.setdefault(p.id, (label, p))
    report.roots = len(roots)
    store = repo.store
    with store_lock(repo.store.path):
        todo = [(label, p) for label, p in roots.values() if not _complete_locally(store, p)]
        report.roots_already_local = len(roots) - len(todo)
        if todo:
            remote.check_format(create=False)
            _fetch_roots(repo, remote, todo, jobs, progress, report)
    report.requests = remote.requests
    return report


def _fetch_roots(repo: Repository, remote: Remote, todo: list[tuple[str, Pointer]], jobs: int,
                 progress: Progress, report: FetchReport) -> None:
    store = repo.store
    records = parallel(lambda lp: remote.read_root(lp[1].id), todo, jobs)
    pack_names: set[str] = set()
    for (label, p), rec in zip(todo, records, strict=True):
        if rec is None:
            raise RemoteError(
                f"remote {remote.name!r} ({remote.url}) does not have the data of {label.split('@')[0]} "
                f"({p.id[:12]})", "push it from a machine that has it (`dvx push`)")
        pack_names.update(rec.packs)
    remote.remember_roots({p.id for _, p in todo})
    names = sorted(pack_names)
    locs: dict[bytes, RemoteLoc] = {}
    pack_sizes: dict[str, int] = {}
    for name, idx in zip(names, parallel(remote.index, names, jobs), strict=True):
        pack_sizes[name] = idx.pack_size
        for oid, kind, off, ln in idx.raw_items():
            locs.setdefault(oid, (name, kind, off, ln))
    objects_by_pack: dict[str, list[tuple[bytes, RemoteLoc]]] = {}
    for oid, loc in locs.items():
        objects_by_pack.setdefault(loc[0], []).append((oid, loc))
    frontier = [(p.oid, root_kind(p.kind)) for _, p in todo]
    seen: set[bytes] = set()
    fetched: dict[str, list[tuple[int, int]]] = {}  # byte ranges of each pack already read
    progress.start(f"fetching from {remote.name}", None, unit="bytes")
    try:
        while frontier:
            index = store.full_index()
            wanted = [(o, k) for o, k in frontier if o not in index]
            if wanted:
                _download(store, remote, wanted, locs, objects_by_pack, pack_sizes, fetched, jobs, progress,
                          report)
                store.refresh()
            nxt: list[tuple[bytes, int]] = []
            for oid, kind in frontier:
                if oid in seen:
                    continue
                seen.add(oid)
                if kind != KIND_CHUNK:
                    nxt.extend(c for c in children(kind, store.read(oid, kind)) if c[0] not in seen)
            # chunks already local need no visit; keep the frontier small
            index = store.full_index()
            frontier = [(o, k) for o, k in nxt if k != KIND_CHUNK or o not in index]
    finally:
        progress.finish()


def _download(store: Store, remote: Remote, wanted: list[tuple[bytes, int]], locs: dict[bytes, RemoteLoc],
              objects_by_pack: dict[str, list[tuple[bytes, RemoteLoc]]], pack_sizes: dict[str, int],
              fetched: dict[str, list[tuple[int, int]]], jobs: int, progress: Progress,
              report: FetchReport) -> None:
    """Download ``wanted``: whole packs, or coalesced ranges. No byte is read twice in
    one fetch: a pack some of whose ranges were read (at an earlier level) is never
    downloaded whole, and later ranges skip the bytes already read (``fetched``)."""
    by_pack: dict[str, list[tuple[bytes, RemoteLoc]]] = {}
    for oid, kind in wanted:
        loc = locs.get(oid)
        if loc is None:
            raise RemoteError(f"remote {remote.name!r} ({remote.url}): {KIND_NAMES[kind]} {oid.hex()} "
                              "is not in the packs its root record lists",
                              "run `dvx fsck --remote` and push again from a machine that has the data")
        by_pack.setdefault(loc[0], []).append((oid, loc))
    whole: list[str] = []
    ranges: list[tuple[str, int, int]] = []
    for name, items in by_pack.items():
        items.sort(key=lambda x: x[1][2])
        need = sum(loc[3] for _, loc in items)
        span = items[-1][1][2] + items[-1][1][3] - items[0][1][2]
        if name not in fetched and (need >= WHOLE_PACK_FRACTION * pack_sizes[name]
                                    or span >= WHOLE_PACK_FRACTION * pack_sizes[name]):
            whole.append(name)
            continue
        start, end = items[0][1][2], items[0][1][2] + items[0][1][3]
        merged: list[tuple[int, int]] = []
        for _, (_, _, off, ln) in items[1:]:
            if off - end <= RANGE_GAP:
                end = max(end, off + ln)
            else:
                merged.append((start, end))
                start, end = off, off + ln
        merged.append((start, end))
        done = fetched.setdefault(name, [])
        for s0, e0 in merged:
            # range bounds are object bounds, so what is left of a range after taking
            # out the bytes already read still holds whole objects only
            for s1, e1 in _subtract(s0, e0, done):
                ranges.append((name, s1, e1))
        done.extend(merged)
    lock = threading.Lock()

    def get_pack(name: str) -> None:
        # downloaded into the store's buffer (a temporary file if large), verified
        # whole, then written and published
        where = f"remote {remote.name!r} ({remote.url})"
        size = pack_sizes[name]
        if size <= BUFFERED_PACK_MAX:
            n = store.adopt_pack_buffer(name, size, lambda view: remote.read_pack_into(name, view), where)
        else:
            n = store.adopt_pack(name, lambda path: remote.get_pack(name, path), where)
        with lock:
            report.packs_downloaded += 1
            report.bytes_downloaded += n
        progress.advance(n)

    def get_range(r: tuple[str, int, int]) -> list[tuple[bytes, int, memoryview]]:
        name, start, end = r
        data = memoryview(remote.read_pack_range(name, start, end))  # pieces without copies
        with lock:
            report.ranges_downloaded += 1
            report.bytes_downloaded += len(data)
        progress.advance(len(data))
        out = []
        # every whole object inside the range is verified and kept (neighbours are
        # usually needed next: the manifest's chunks sit beside it)
        for oid, (pack, kind, off, ln) in _objects_in(objects_by_pack, name, start, end):
            piece = data[off - start:off - start + ln]
            if not id_matches(kind, piece, oid):
                raise CorruptObjectError(
                    f"remote {remote.name!r} ({remote.url}): pack {pack} holds a corrupted "
                    f"{KIND_NAMES[kind]} {oid.hex()} (hash mismatch); nothing was written",
                    "run `dvx fsck --remote` and push the data again from a machine that has it")
            out.append((oid, kind, piece))
        return out

    # Whole packs and ranges share one pool: the ranges' objects are stored (by this
    # thread, the writer's only user) while the packs still download, so a level
    # that needs both is not served one after the other.
    pool = ThreadPoolExecutor(max(1, jobs), thread_name_prefix="dvx-transfer")
    try:
        # in batches, so memory stays bounded (each range is under half a pack); the
        # first batch is queued before the packs, so no range waits for all of them
        batch = max(1, jobs) * 2
        pending = [pool.submit(get_range, r) for r in ranges[:batch]]
        packs = [pool.submit(get_pack, name) for name in whole]
        if ranges:
            with store.writer() as writer:
                for i in range(0, len(ranges), batch):
                    if i:
                        pending = [pool.submit(get_range, r) for r in ranges[i:i + batch]]
                    for fut in pending:
                        for oid, kind, piece in fut.result():
                            if writer.add(kind, oid, piece):
                                report.objects_fetched += 1
        for f in packs:
            f.result()
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _subtract(start: int, end: int, done: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``[start, end)`` less the intervals in ``done``."""
    out = []
    pos = start
    for s, e in sorted(done):
        if e <= pos or s >= end:
            continue
        if s > pos:
            out.append((pos, s))
        pos = max(pos, e)
        if pos >= end:
            break
    if pos < end:
        out.append((pos, end))
    return out


def _objects_in(by_pack: dict[str, list[tuple[bytes, RemoteLoc]]], pack: str, start: int, end: int
                ) -> list[tuple[bytes, RemoteLoc]]:
    return [(o, loc) for o, loc in by_pack.get(pack, []) if loc[2] >= start and loc[2] + loc[3] <= end]


def pull(repo: Repository, remote_name: str | None = None, rev: str | None = None,
         all_commits: bool = False, paths: list[str] | None = None, jobs: int = DEFAULT_JOBS,
         force: bool = False, progress: Progress = NULL_PROGRESS) -> FetchReport:
    """fetch + checkout (of the work tree's pointers, or of REV's)."""
    from dvx.history import history_of
    from dvx.ops.checkout import checkout

    report = fetch(repo, remote_name, rev, all_commits, paths, jobs, progress)
    repo.store.refresh()
    bad: dict[str, DvxError] = {}
    pointers = history_of(repo).at(rev, paths, bad=bad) if rev else None
    results = checkout(repo, paths, force=force, pointers=pointers, bad=bad, progress=progress)
    report.checkout = [r.target for r in results if r.restored or r.removed]
    report.errors = [r.error for r in results if r.error]  # includes the bad pointers fetch skipped
    return report


@dataclass
class RepairReport:
    """What ``repair`` did (``dvx fsck --repair``)."""

    remote: str | None = None
    packs_set_aside: list[str] = field(default_factory=list)
    objects_unsaved: int = 0  # unreadable objects taken out of the store, to be fetched
    objects_fetched: int = 0
    bytes_downloaded: int = 0
    versions_restored: int = 0
    not_restored: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


def repair(repo: Repository, remote_name: str | None, problems: list, pointers: dict[str, Pointer],  # type: ignore[type-arg]
           jobs: int = DEFAULT_JOBS, progress: Progress = NULL_PROGRESS) -> RepairReport:
    """Repair the local store after ``fsck`` found ``problems`` (its ``Problem`` list):
    take damaged packs out of the store, keeping every sound object
    (``Store.rescue_pack``), then fetch from the remote what ``pointers`` (the work
    tree's) now lack. Versions the remote cannot restore are listed, not raised."""
    store = repo.store
    rep = RepairReport()
    damaged: set[str] = set()
    for prob in problems:
        if prob.what == "pack":
            damaged.add(prob.name)
        elif prob.what == "object":
            try:
                loc = store.locate(bytes.fromhex(prob.name))
            except ValueError:
                continue
            if loc is not None:
                damaged.add(loc[0])
    with store_lock(store.path):
        visible = set(store.pack_names())
        for name in sorted(damaged & visible):
            lost = store.rescue_pack(name)
            if name not in store.pack_names():
                rep.packs_set_aside.append(name)
            rep.objects_unsaved += len(lost)
        todo = {label: p for label, p in pointers.items() if not _complete_locally(store, p)}
    if not todo:
        return rep
    remote = open_remote(repo, remote_name, progress)  # a clear error if none is configured
    rep.remote = remote.name
    for label, p in sorted(todo.items()):
        try:
            got = fetch(repo, remote.name, jobs=jobs, progress=progress, pointers={label: p})
        except DvxError as exc:
            rep.not_restored.append(f"{label}: {exc}")
            continue
        store.refresh()
        rep.objects_fetched += got.objects_fetched
        rep.bytes_downloaded += got.bytes_downloaded
        rep.versions_restored += 1
    return rep
