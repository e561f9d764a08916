"""``dvx gc``: delete objects nothing refers to, safely.

Mark: every pointer in every commit reachable from any ref (branches, tags, remote
branches, ``refs/dvx/*``) or from a reflog entry younger than ``[gc] reflog_expire_days``
(default 90, as git), plus the work tree's pointers (or only the latter with
``--workspace-only``). Sweep, under the store's exclusive lock: a pack whose objects
are all dead is deleted (index first, then pack); a pack that is mostly dead is
rewritten with its live objects, then deleted. Packs (and temporary files) younger
than the grace period are never touched, whatever they hold, so work that a
concurrent or crashed command wrote but did not yet point to is safe.

Artifacts (protocols/artifacts.md §6-7): first each artifact's retention policy drops
the versions it names (a commit on the artifact's ref; with ``--dry-run`` only listed);
an artifact ref keeps live only the versions its newest commit holds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dvx.lock import store_lock
from dvx.pointer import Pointer
from dvx.progress import NULL_PROGRESS, Progress
from dvx.repo import Repository
from dvx.statcache import StatCache
from dvx.store.local import Location, Store
from dvx.store.reach import reachable, root_kind

if TYPE_CHECKING:
    from dvx.artifacts.retention import Drop

GRACE_SECONDS = 3600
TMP_GRACE_SECONDS = 24 * 3600
REWRITE_DEAD_FRACTION = 0.5


@dataclass
class GcReport:
    dry_run: bool
    pointers: int = 0
    commits: int = 0
    live_objects: int = 0
    dead_objects: int = 0
    packs_deleted: list[str] = field(default_factory=list)
    packs_rewritten: list[str] = field(default_factory=list)
    packs_kept_young: int = 0
    bytes_reclaimed: int = 0
    tmp_removed: int = 0
    artifact_versions_dropped: list[dict[str, object]] = field(default_factory=list)  # retention
    errors: list[str] = field(default_factory=list)  # artifacts whose retention could not be read

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


def collect_roots(repo: Repository, workspace_only: bool,
                  pending_drops: list[Drop] | None = None) -> tuple[dict[str, Pointer], int]:
    """The pointers whose data is live (labelled) and the number of commits walked.
    ``pending_drops``: artifact versions retention would drop (a dry run): what the
    artifact's newest commit still holds for them is not counted.

    A broken pointer protects nothing; a pointer with a refused name in history still
    protects its data (gc only keeps, it never writes there)."""
    from dvx.history import history_of

    history = history_of(repo)
    roots: dict[str, Pointer] = {f"workspace:{k}": v for k, v in history.workspace(bad={}).items()}
    commits = 0
    if not workspace_only:
        shas = history.commits(reflog_days=repo.config.gc.reflog_expire_days)
        if pending_drops:
            from dvx.artifacts.retention import live_pointers, tips

            skip = tips(repo, {d.name for d in pending_drops})
            shas = [s for s in shas if s not in skip]
            roots.update(live_pointers(repo, pending_drops, names={d.name for d in pending_drops}))
        commits = len(shas)
        roots.update(history.all_commits(bad={}, commits=shas, check_names=False))
        # staged but not yet committed (git add PATH.dvx): the next commit names them
        from dvx.errors import DvxError
        from dvx.pointer import parse_pointer

        seen = {p.id for p in roots.values()}
        for blob in history.git.index_pointer_blobs():
            try:
                p = parse_pointer(history.git.read_blob(blob), "a staged pointer")
            except (DvxError, KeyError):
                continue
            if p.id not in seen:
                roots[f"index:{blob.hex()[:12]}"] = p
    return roots, commits


def mark(store: Store, roots: list[Pointer]) -> set[bytes]:
    """Every object reachable from the roots that is present in the store, plus the base
    chunk of every delta copy of a live chunk (in any pack: which copy is read can change
    when packs are rewritten)."""
    live = set(reachable(store, [(p.oid, root_kind(p.kind)) for p in roots], skip_missing=True))
    for name in store.pack_names():
        for oid in store.pack_index(name).delta_ids() & live:
            live.add(store.delta_base(oid, name))
    return live


def gc(repo: Repository, *, dry_run: bool = False, workspace_only: bool = False,
       grace_seconds: int = GRACE_SECONDS, progress: Progress = NULL_PROGRESS) -> GcReport:
    from dvx.artifacts.retention import apply_retention

    report = GcReport(dry_run)
    with store_lock(repo.store.path, exclusive=True, wait=False):
        drops = [] if workspace_only else apply_retention(repo, dry_run=dry_run, problems=report.errors)
        report.artifact_versions_dropped = [d.to_json() for d in drops]
        roots, report.commits = collect_roots(repo, workspace_only, drops if dry_run else None)
        report.pointers = len(roots)
        store = repo.store
        store.refresh()
        live = mark(store, list(roots.values()))
        report.live_objects = len(live)
        now = time.time()
        by_pack: dict[str, list[tuple[bytes, Location]]] = {}
        for oid, loc in store.full_index().items():
            by_pack.setdefault(loc[0], []).append((oid, loc))
        # objects may sit in several packs: the copy in a pack being dropped is dead
        # only if the object is dead; rewriting keeps one copy.
        to_rewrite: list[str] = []
        for name in store.pack_names():
            mtime = store.pack_mtime(name)
            if mtime is None:
                continue
            age = now - mtime
            entries = _pack_entries(store, name)
            dead = [e for e in entries if e[0] not in live]
            if not dead:
                continue
            if age < grace_seconds:
                report.packs_kept_young += 1
                continue
            report.dead_objects += len(dead)
            dead_bytes = sum(e[2] for e in dead)
            total = sum(e[2] for e in entries) or 1
            if len(dead) == len(entries):
                report.packs_deleted.append(name)
                report.bytes_reclaimed += store.pack_disk_usage(name)
            elif dead_bytes / total >= REWRITE_DEAD_FRACTION:
                to_rewrite.append(name)
                report.packs_rewritten.append(name)
                report.bytes_reclaimed += dead_bytes
        if not dry_run:
            if to_rewrite:
                _rewrite(store, to_rewrite, live, progress)
            for name in report.packs_deleted + to_rewrite:
                store.delete_pack(name)  # index first, then pack
            report.tmp_removed = store.clean_tmp(TMP_GRACE_SECONDS, now)
            # packs without an index (an interrupted publish) are invisible and
            # unreferenced: deleted once past the grace period
            store.delete_orphan_packs(grace_seconds, now)
            StatCache(repo.state_dir).clear()
            store.refresh()
    return report


def _pack_entries(store: Store, name: str) -> list[tuple[bytes, int, int]]:
    idx = store.pack_index(name)
    return [(oid, kind, ln) for oid, kind, _off, ln in idx.raw_items()]


def _rewrite(store: Store, names: list[str], live: set[bytes], progress: Progress) -> None:
    """Copy the live objects of ``names`` into new packs (verified), then publish."""
    keep: set[str] = set(store.pack_names()) - set(names)
    elsewhere: set[bytes] = set()
    for other in keep:
        elsewhere.update(oid for oid, *_ in store.pack_index(other).raw_items())
    with store.writer() as writer:
        writer.known = {}  # write even objects the old packs hold
        for name in names:
            for oid, kind, _off, _ln in store.pack_index(name).raw_items():
                if oid in live and oid not in elsewhere and not writer.has(oid):
                    _kind, data = store.read_raw(oid, (name, kind, _off, _ln))
                    writer.add(kind, oid, data)
                    progress.advance()
