"""``dvx fsck --remote`` and ``dvx gc --remote`` (``protocols/remote.md`` §5-6)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from dvx.errors import DvxError
from dvx.hashing import id_matches
from dvx.ops.fsck import Problem
from dvx.ops.remotes import open_remote
from dvx.progress import NULL_PROGRESS, Progress
from dvx.remote.layout import Remote
from dvx.repo import Repository
from dvx.store.pack import read_footer
from dvx.store.reach import root_kind

REMOTE_GRACE_SECONDS = 24 * 3600


@dataclass
class RemoteFsckReport:
    remote: str
    url: str
    roots: int = 0
    packs: int = 0
    objects: int = 0  # distinct objects reachable from the root records
    temporary_files: int = 0  # left by interrupted uploads (directory remotes)
    temporary_bytes: int = 0
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # harmless leftovers, not failures

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, object]:
        return {"remote": self.remote, "url": self.url, "ok": self.ok, "roots": self.roots,
                "packs": self.packs, "objects": self.objects,
                "temporary_files": self.temporary_files, "temporary_bytes": self.temporary_bytes,
                "problems": [p.to_json() for p in self.problems], "notes": self.notes}


def fsck_remote(repo: Repository, remote_name: str | None, download: bool = False,
                progress: Progress = NULL_PROGRESS) -> RemoteFsckReport:
    remote = open_remote(repo, remote_name, progress)
    rep = RemoteFsckReport(remote.name, remote.url)
    remote.check_format(create=False)  # a missing directory is an error, not an empty remote
    roots = remote.list_roots()
    rep.roots = len(roots)
    checked: dict[str, bool] = {}
    objects: set[bytes] = set()
    index_cache: dict[str, dict[bytes, tuple[int, int, int]]] = {}
    progress.start(f"checking {remote.name}", len(roots))
    for root in roots:
        try:
            rec = remote.read_root(root)
        except DvxError as exc:
            rep.problems.append(Problem("root", root, str(exc)))
            continue
        if rec is None:
            continue  # removed meanwhile
        good = True
        for name in rec.packs:
            if name not in checked:
                checked[name] = _check_pack(remote, name, download, rep, index_cache)
            good = good and checked[name]
        if good:
            _check_closure(repo, remote, rec, index_cache, rep, objects)
        progress.advance()
    progress.finish()
    rep.packs = len(checked)
    rep.objects = len(objects)
    temps = remote.list_temporary()
    if temps:
        rep.temporary_files = len(temps)
        rep.temporary_bytes = sum(size for _k, size, _m in temps)
        rep.notes.append(f"{len(temps)} temporary files of interrupted uploads ({rep.temporary_bytes} bytes); "
                         f"`dvx gc --remote {remote.name}` removes those older than the grace period")
    return rep


def _check_pack(remote: Remote, name: str, download: bool, rep: RemoteFsckReport,
                index_cache: dict[str, dict[bytes, tuple[int, int, int]]]) -> bool:
    try:
        idx = remote.index(name)
    except DvxError as exc:
        rep.problems.append(Problem("pack", name, str(exc)))
        return False
    index_cache[name] = {oid: (kind, off, ln) for oid, kind, off, ln in idx.raw_items()}
    size = remote.pack_size(name)
    if size is None:
        rep.problems.append(Problem("pack", name, "pack is missing but its index exists"))
        return False
    if size != idx.pack_size:
        rep.problems.append(Problem("pack", name, f"pack has {size} bytes, its index says {idx.pack_size}"))
        return False
    if download:
        try:
            with remote.downloaded_pack(name) as tmp:
                entries, footer_name = read_footer(tmp)
                if footer_name != name or sorted(e.oid for e in entries) != sorted(index_cache[name]):
                    rep.problems.append(Problem("pack", name, "pack footer does not match its index"))
                    return False
                with open(tmp, "rb") as f:
                    for e in entries:
                        f.seek(e.offset)
                        if not id_matches(e.kind, f.read(e.length), e.oid):
                            rep.problems.append(Problem("object", e.oid.hex(),
                                                        f"corrupted in pack {name} (hash mismatch)"))
                            return False
        except DvxError as exc:
            rep.problems.append(Problem("pack", name, str(exc)))
            return False
    else:
        try:  # the footer must be where the index says the pack ends
            tail = remote.read_pack_range(name, size - 8, size)
            if tail != b"DVXPEND1":
                rep.problems.append(Problem("pack", name, "pack does not end with its footer"))
                return False
        except DvxError as exc:
            rep.problems.append(Problem("pack", name, str(exc)))
            return False
    return True


def _check_closure(repo: Repository, remote: Remote, rec, index_cache, rep: RemoteFsckReport,  # type: ignore[no-untyped-def]
                   objects: set[bytes]) -> None:
    """Every object reachable from the root is in the listed packs (structure read from
    the local store when present, else fetched by range and verified)."""
    from dvx.hashing import KIND_CHUNK, KIND_NAMES
    from dvx.store.reach import children

    where: dict[bytes, tuple[str, int, int, int]] = {}
    for name in rec.packs:
        for oid, (kind, off, ln) in index_cache.get(name, {}).items():
            where.setdefault(oid, (name, kind, off, ln))
    stack = [(bytes.fromhex(rec.root), root_kind(rec.kind))]
    seen: set[bytes] = set()
    while stack:
        oid, kind = stack.pop()
        if oid in seen:
            continue
        seen.add(oid)
        loc = where.get(oid)
        if loc is None:
            rep.problems.append(Problem("root", rec.root,
                                        f"{KIND_NAMES[kind]} {oid.hex()} is in none of the listed packs"))
            return
        if kind == KIND_CHUNK:
            continue
        if repo.store.contains(oid):
            data = repo.store.read(oid, kind)
        else:
            data = remote.read_pack_range(loc[0], loc[2], loc[2] + loc[3])
            if not id_matches(kind, data, oid):
                rep.problems.append(Problem("object", oid.hex(), f"corrupted in pack {loc[0]}"))
                return
        stack.extend(children(kind, data))
    objects.update(seen)  # counted once however many versions share them


@dataclass
class RemoteGcReport:
    remote: str
    url: str
    dry_run: bool
    roots: int = 0
    packs_live: int = 0
    packs_deleted: list[str] = field(default_factory=list)
    packs_kept_young: int = 0
    bytes_reclaimed: int = 0
    temporary_deleted: int = 0  # stale temporary files of interrupted uploads
    temporary_kept_young: int = 0

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


def gc_remote(repo: Repository, remote_name: str | None, dry_run: bool = False,
              grace_seconds: int = REMOTE_GRACE_SECONDS) -> RemoteGcReport:
    remote = open_remote(repo, remote_name)
    rep = RemoteGcReport(remote.name, remote.url, dry_run)
    remote.check_format(create=False)
    now = time.time()
    # temporary files of uploads killed mid-way (directory remotes): a young one may
    # belong to a push still running
    for key, size, mtime in remote.list_temporary():
        if mtime is None or now - mtime < grace_seconds:
            rep.temporary_kept_young += 1
            continue
        rep.temporary_deleted += 1
        rep.bytes_reclaimed += size
        if not dry_run:
            remote.delete_temporary(key)
    # list packs first: a pack uploaded after this listing is not even considered
    packs = remote.list_packs()
    indexes = remote.list_indexes()
    live: set[str] = set()
    roots = remote.list_roots()
    rep.roots = len(roots)
    for root in roots:
        rec = remote.read_root(root)
        if rec is not None:
            live.update(rec.packs)
    rep.packs_live = len(live & set(packs))
    for name in sorted(set(packs) | set(indexes)):
        if name in live:
            continue
        size, mtime = packs.get(name, (0, None))
        times = [t for t in (mtime, indexes.get(name)) if t is not None]
        if not times or now - max(times) < grace_seconds:
            rep.packs_kept_young += 1
            continue
        rep.packs_deleted.append(name)
        rep.bytes_reclaimed += size
        if not dry_run:
            remote.delete_pack(name)  # index first: the pack becomes invisible
    return rep
