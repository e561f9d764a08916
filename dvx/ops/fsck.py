"""``dvx fsck``: verify every pack, object and pointer; name what is bad and who uses it.

Checks, in order: each pack's footer and index agree; every object's bytes hash to its
id and manifests/trees parse; every pointer parses and everything it reaches is present
and sound. Problems are collected, never raised, so one run reports them all.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dvx.errors import DvxError
from dvx.hashing import CONTEXTS, KIND_CHUNK, KIND_CHUNK_LIST, KIND_MANIFEST, KIND_NAMES, KIND_TREE, id_matches
from dvx.objects import ENTRY_FILE, ENTRY_TREE, LAYOUT_FLAT, ManifestHead, Tree, parse_chunk_list, tree_refs
from dvx.pointer import POINTER_SUFFIX, Pointer
from dvx.progress import NULL_PROGRESS, Progress
from dvx.repo import Repository
from dvx.store.pack import COMP_DELTA, PackEntry
from dvx.tracked import find_tracked

if TYPE_CHECKING:
    from dvx.ops.fetch import RepairReport


@dataclass
class Problem:
    what: str  # "object", "pack", "pointer"
    name: str  # object id, pack name or pointer path
    message: str
    used_by: list[str] = field(default_factory=list)  # files (paths) that need the object
    pointers: list[str] = field(default_factory=list)  # tracked paths whose data needs it

    @property
    def missing(self) -> bool:
        return self.what == "object" and self.message.endswith(MISSING)

    def to_json(self) -> dict[str, object]:
        return {"what": self.what, "name": self.name, "message": self.message,
                "used_by": self.used_by, "pointers": self.pointers}


MISSING = "is missing from the store"


@dataclass
class FsckReport:
    packs: int = 0
    objects: int = 0
    pointers: int = 0
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # harmless leftovers, not failures
    repair: RepairReport | None = None  # what `fsck --repair` did before this check

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"ok": self.ok, "packs": self.packs, "objects": self.objects,
               "pointers": self.pointers, "problems": [p.to_json() for p in self.problems],
               "notes": self.notes}
        if self.repair is not None:
            out["repair"] = self.repair.to_json()
        return out


def fsck(repo: Repository, progress: Progress = NULL_PROGRESS,
         pointers: dict[str, Pointer] | None = None) -> FsckReport:
    report = FsckReport()
    store = repo.store
    bad: dict[bytes, Problem] = {}
    names = store.pack_names()
    total = sum(store.pack_size(n) for n in names)
    progress.start("verifying packs", total, unit="bytes")
    verified: set[str] = set()  # packs whose every object was hashed and parsed here
    index: dict[bytes, int | bytes] = {}  # every object of a visible pack (see _Index)
    for no, name in enumerate(names):
        report.packs += 1
        if _check_pack(repo, name, no, report, bad, index, progress):
            verified.add(name)
    progress.finish()
    for leftover, _mtime in store.orphan_packs():
        # what a kill between publishing a pack and its index leaves: invisible to
        # readers, unreferenced, removed by gc after the grace period
        report.notes.append(f"pack {leftover} has no index (an interrupted write); "
                            "`dvx gc` removes it")
    from dvx.ops.checkout import stale_restore_files

    leftovers = stale_restore_files(repo)
    if leftovers:
        report.notes.append(leftover_note(leftovers))
    if pointers is None:
        pointers = {}
        for t in find_tracked(repo):
            report.pointers += 1
            try:
                pointers[t.target] = t.load(repo)
            except DvxError as exc:
                report.problems.append(Problem("pointer", t.pointer_path, str(exc)))
    else:
        report.pointers = len(pointers)
    missing: dict[bytes, Problem] = {}
    for target, p in sorted(pointers.items()):
        kind = KIND_MANIFEST if p.kind == "file" else KIND_TREE
        _reach(store, index, names, p.oid, kind, target, bad, missing, verified)
        _check_pointer_fields(store, index, target, p, bad, report)
    report.problems.extend(missing.values())
    report.problems.extend(bad.values())
    return report


def leftover_note(leftovers: list[tuple[str, int]]) -> str:
    size = sum(n for _, n in leftovers)
    return (f"{len(leftovers)} temporary file(s) of an interrupted checkout ({size:,} bytes) in "
            ".dvx/tmp/checkout; the next `dvx checkout` removes them")


# fsck's index of the objects of every visible pack, lighter than the store's full
# index (a Location tuple per object: ~0.5 GB at 2M objects): an object id maps to
#   its kind (a chunk: the walk needs to know only that it is there),
#   its only chunk's id (a one-chunk manifest the pack scan verified: the walk reads
#   nothing more), or
#   a packed location (``_location``) for everything else.
# The first pack (in name order) holding an object names it, as in the store's index.
_LOC_BASE = 1 << 72


def _location(pack_no: int, kind: int, offset: int, length: int) -> int:
    return ((pack_no << 8 | kind) << 72) | offset << 32 | length


def _kind(value: int | bytes) -> int:
    if isinstance(value, bytes):
        return KIND_MANIFEST
    return value if value < _LOC_BASE else (value >> 72) & 0xFF


def _unpack(value: int, names: list[str]) -> tuple[str, int, int, int]:
    return names[value >> 80], (value >> 72) & 0xFF, (value >> 32) & 0xFFFFFFFFFF, value & 0xFFFFFFFF


def _check_pack(repo: Repository, name: str, no: int, report: FsckReport, bad: dict[bytes, Problem],
                index: dict[bytes, int | bytes], progress: Progress) -> bool:
    """Check one pack and enter its objects in ``index``; returns whether every object
    in it was hashed and parsed."""
    store = repo.store
    try:
        footer, footer_name = store.pack_footer(name)
        idx = store.pack_index(name)
    except (DvxError, OSError) as exc:
        report.problems.append(Problem("pack", name, str(exc)))
        with contextlib.suppress(DvxError, OSError):  # readers still see what its index lists
            for oid, kind, off, length in store.pack_index(name).raw_items():
                index.setdefault(oid, _location(no, kind, off, length))
        return False
    if footer_name != name:
        report.problems.append(Problem("pack", name, f"pack footer names it {footer_name}"))
    if sorted(footer, key=_by_oid) != idx.entries():  # PackEntry tuples: every field compared
        report.problems.append(Problem("pack", name, "index does not match the pack footer"))
    del idx
    parse = {KIND_CHUNK_LIST: parse_chunk_list, KIND_TREE: Tree.check}
    known = index.get
    done = 0
    try:
        for (oid, kind, offset, length, comp), data in store.pack_objects(name, footer):
            report.objects += 1
            if known(oid) is None:
                index[oid] = kind if kind == KIND_CHUNK else _location(no, kind, offset, length)
            done += length
            if done >= PROGRESS_STEP:
                progress.advance(done)
                done = 0
            if kind not in CONTEXTS:
                bad[oid] = Problem("object", oid.hex(), f"unknown kind {kind} in pack {name}")
                continue
            if comp == COMP_DELTA:
                try:
                    data = store.expand_delta(oid, bytes(data), name)
                except DvxError as exc:
                    bad[oid] = Problem("object", oid.hex(), f"delta in pack {name}: {exc.message}")
                    continue
            if not id_matches(kind, data, oid):
                bad[oid] = Problem("object", oid.hex(),
                                   f"{KIND_NAMES[kind]} in pack {name} is corrupted (hash mismatch)")
                continue
            try:
                if kind == KIND_MANIFEST:
                    head = ManifestHead.parse(data)
                    if (head.layout == LAYOUT_FLAT and len(head.entries) == 1
                            and index[oid] == _location(no, kind, offset, length)):
                        index[oid] = head.entries[0][1]  # type: ignore[assignment]
                else:
                    check = parse.get(kind)
                    if check is not None:
                        check(data)
            except DvxError as exc:
                bad[oid] = Problem("object", oid.hex(), str(exc))
    except (DvxError, OSError) as exc:  # e.g. a pack shorter than its footer says
        report.problems.append(Problem("pack", name, str(exc)))
        return False
    progress.advance(done)
    return True


PROGRESS_STEP = 1 << 20


def _by_oid(e: PackEntry) -> bytes:
    return e.oid


def _reach(store, index: dict[bytes, int | bytes], names: list[str], root: bytes, kind: int,  # type: ignore[no-untyped-def]
           target: str, bad: dict[bytes, Problem], missing: dict[bytes, Problem],
           verified: set[str]) -> None:
    """Walk everything a pointer reaches, recording users of bad or missing objects.
    What the pack scan verified is not hashed or checked again: a one-chunk manifest's
    chunk is in the index, and a tree's entries are read without building them."""
    stack = [(root, kind, target)]
    while stack:  # paths are unique, so each (object, path) is visited once
        oid, k, path = stack.pop()
        if oid in bad:
            _used(bad[oid], path, target)
            continue
        value = index.get(oid)
        if value is None:
            prob = missing.setdefault(oid, Problem("object", oid.hex(), f"{KIND_NAMES[k]} {MISSING}"))
            _used(prob, path, target)
            continue
        got = _kind(value)
        if got != k:
            bad[oid] = Problem("object", oid.hex(), f"expected a {KIND_NAMES[k]}, store has a "
                               f"{KIND_NAMES.get(got, got)}", [path], [target])
            continue
        if k == KIND_CHUNK:
            continue
        if isinstance(value, bytes):  # a verified one-chunk manifest: its chunk's id
            if value in bad or value not in index:
                stack.append((value, KIND_CHUNK, path))
            continue
        loc = _unpack(value, names)
        try:
            _k, data = store.read_raw(oid, loc)
        except (DvxError, OSError):
            continue  # reported by the pack scan
        if k == KIND_MANIFEST:
            head = ManifestHead.parse(data)
            child = KIND_CHUNK if head.layout == LAYOUT_FLAT else KIND_CHUNK_LIST
            for ref in (e[-1] for e in head.entries):
                if child == KIND_CHUNK_LIST or ref in bad or ref not in index:
                    stack.append((ref, child, path))
        elif k == KIND_CHUNK_LIST:
            for _n, cid in parse_chunk_list(data):
                if cid in bad or cid not in index:
                    stack.append((cid, KIND_CHUNK, path))
        else:
            for name, ekind, eid in (tree_refs(data) if loc[0] in verified else
                                     [(e.name, e.kind, e.oid) for e in Tree.parse(data).entries]):
                if ekind == ENTRY_FILE and eid is not None:
                    stack.append((eid, KIND_MANIFEST, f"{path}/{name}"))
                elif ekind == ENTRY_TREE and eid is not None:
                    stack.append((eid, KIND_TREE, f"{path}/{name}"))


def _used(prob: Problem, path: str, target: str) -> None:
    prob.used_by.append(path)
    if not prob.pointers or prob.pointers[-1] != target:  # one pointer's walk at a time
        prob.pointers.append(target)


def _check_pointer_fields(store, index, target: str, p: Pointer,  # type: ignore[no-untyped-def]
                          bad: dict[bytes, Problem], report: FsckReport) -> None:
    """A pointer's size, files and b3 lines must say what its manifest or tree says
    (`dvx ls` and `dvx status` trust them). Its exec line has no counterpart in the
    store for a single file (the model already refuses it on a tree)."""
    value = index.get(p.oid)
    want = KIND_MANIFEST if p.kind == "file" else KIND_TREE
    if value is None or p.oid in bad or _kind(value) != want:
        return  # reported as a missing or bad object
    try:
        data = store.read(p.oid, want)
        if p.kind == "file":
            head = ManifestHead.parse(data)
            size, files, b3 = head.size, 1, head.digest.hex()
        else:
            tree = Tree.parse(data)
            size, files, b3 = tree.size, tree.files, None
    except DvxError:
        return  # reported by the pack scan
    wrong = [f"{name}: {said} but its {p.kind} says {real}"
             for name, said, real in (("size", p.size, size), ("files", p.files, files), ("b3", p.b3, b3))
             if said != real]
    if wrong:
        report.problems.append(Problem(
            "pointer", target + POINTER_SUFFIX,
            f"{'; '.join(wrong)}; restore it with `git checkout -- {target}{POINTER_SUFFIX}` "
            f"or delete it and run `dvx add {target}`", pointers=[target]))
