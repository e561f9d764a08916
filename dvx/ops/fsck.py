"""``dvx fsck``: verify every pack, object and pointer; name what is bad and who uses it.

Checks, in order: each pack's footer and index agree; every object's bytes hash to its
id and manifests/trees parse; every pointer parses and everything it reaches is present
and sound. Problems are collected, never raised, so one run reports them all.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass, field

from blake3 import blake3

from dvx.errors import DvxError
from dvx.hashing import CONTEXTS, KIND_CHUNK, KIND_CHUNK_LIST, KIND_MANIFEST, KIND_NAMES, KIND_TREE
from dvx.objects import ENTRY_FILE, ENTRY_TREE, LAYOUT_FLAT, ManifestHead, Tree, parse_chunk_list, tree_refs
from dvx.pointer import POINTER_SUFFIX, Pointer
from dvx.progress import NULL_PROGRESS, Progress
from dvx.repo import Repository
from dvx.store.pack import COMP_DELTA, IdxFile, PackEntry, read_footer
from dvx.tracked import find_tracked


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

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, object]:
        return {"ok": self.ok, "packs": self.packs, "objects": self.objects,
                "pointers": self.pointers, "problems": [p.to_json() for p in self.problems],
                "notes": self.notes}


def fsck(repo: Repository, progress: Progress = NULL_PROGRESS,
         pointers: dict[str, Pointer] | None = None) -> FsckReport:
    report = FsckReport()
    store = repo.store
    bad: dict[bytes, Problem] = {}
    names = store.pack_names()
    total = sum(os.path.getsize(store.pack_path(n)) for n in names
                if os.path.exists(store.pack_path(n)))
    progress.start("verifying packs", total, unit="bytes")
    verified: set[str] = set()  # packs whose every object was hashed and parsed here
    for name in names:
        report.packs += 1
        if _check_pack(repo, name, report, bad, progress):
            verified.add(name)
    progress.finish()
    for leftover in sorted(os.listdir(store.packs_dir)) if os.path.isdir(store.packs_dir) else []:
        if leftover.endswith(".pack") and leftover[:-5] not in names:
            # what a kill between publishing a pack and its index leaves: invisible to
            # readers, unreferenced, removed by gc after the grace period
            report.notes.append(f"pack {leftover[:-5]} has no index (an interrupted write); "
                                "`dvx gc` removes it")
    from dvx.ops.checkout import stale_restore_files

    leftovers = stale_restore_files(repo)
    if leftovers:
        report.notes.append(leftover_note(leftovers))
    store.refresh()
    index = store.full_index()
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
        _reach(store, index, p.oid, kind, target, bad, missing, verified)
        _check_pointer_fields(store, index, target, p, bad, report)
    report.problems.extend(missing.values())
    report.problems.extend(bad.values())
    return report


def leftover_note(leftovers: list[tuple[str, int]]) -> str:
    size = sum(n for _, n in leftovers)
    return (f"{len(leftovers)} temporary file(s) of an interrupted checkout ({size:,} bytes) in "
            ".dvx/tmp/checkout; the next `dvx checkout` removes them")


def _check_pack(repo: Repository, name: str, report: FsckReport, bad: dict[bytes, Problem],
                progress: Progress) -> bool:
    """Check one pack; returns whether every object in it was hashed and parsed."""
    store = repo.store
    try:
        footer, footer_name = read_footer(store.pack_path(name))
        idx = IdxFile(store.idx_path(name), name)
    except (DvxError, OSError) as exc:
        report.problems.append(Problem("pack", name, str(exc)))
        return False
    if footer_name != name:
        report.problems.append(Problem("pack", name, f"pack footer names it {footer_name}"))
    if sorted(footer, key=_by_oid) != idx.entries():  # PackEntry tuples: every field compared
        report.problems.append(Problem("pack", name, "index does not match the pack footer"))
    parse = {KIND_MANIFEST: ManifestHead.parse, KIND_CHUNK_LIST: parse_chunk_list, KIND_TREE: Tree.check}
    with open(store.pack_path(name), "rb") as f:
        try:
            view: memoryview | None = memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
        except (OSError, ValueError):
            view = None
        done = 0
        for e in footer:  # in offset order, as written
            report.objects += 1
            if view is not None:
                data: bytes | memoryview = view[e.offset:e.offset + e.length]
            else:
                f.seek(e.offset)
                data = f.read(e.length)
            done += e.length
            if done >= PROGRESS_STEP:
                progress.advance(done)
                done = 0
            if e.kind not in CONTEXTS:
                bad[e.oid] = Problem("object", e.oid.hex(), f"unknown kind {e.kind} in pack {name}")
                continue
            if e.comp == COMP_DELTA:
                try:
                    data = store.expand_delta(e.oid, bytes(data), name)
                except DvxError as exc:
                    bad[e.oid] = Problem("object", e.oid.hex(), f"delta in pack {name}: {exc.message}")
                    continue
            if blake3(data, derive_key_context=CONTEXTS[e.kind]).digest() != e.oid:
                bad[e.oid] = Problem("object", e.oid.hex(),
                                     f"{KIND_NAMES[e.kind]} in pack {name} is corrupted (hash mismatch)")
                continue
            check = parse.get(e.kind)
            if check is not None:
                try:
                    check(data)
                except DvxError as exc:
                    bad[e.oid] = Problem("object", e.oid.hex(), str(exc))
        progress.advance(done)
    return True


PROGRESS_STEP = 1 << 20


def _by_oid(e: PackEntry) -> bytes:
    return e.oid


def _reach(store, index, root: bytes, kind: int, target: str, bad: dict[bytes, Problem],  # type: ignore[no-untyped-def]
           missing: dict[bytes, Problem], verified: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    """Walk everything a pointer reaches, recording users of bad or missing objects.
    Objects of ``verified`` packs were hashed and parsed by the pack scan: they are read
    straight from the pack's mapping, without hashing or checking them again."""
    stack = [(root, kind, target)]
    while stack:  # paths are unique, so each (object, path) is visited once
        oid, k, path = stack.pop()
        if oid in bad:
            _used(bad[oid], path, target)
            continue
        loc = index.get(oid)
        if loc is None:
            prob = missing.setdefault(oid, Problem("object", oid.hex(), f"{KIND_NAMES[k]} {MISSING}"))
            _used(prob, path, target)
            continue
        if loc[1] != k:
            bad[oid] = Problem("object", oid.hex(), f"expected a {KIND_NAMES[k]}, store has a "
                               f"{KIND_NAMES.get(loc[1], loc[1])}", [path], [target])
            continue
        if k == KIND_CHUNK:
            continue
        try:
            if loc[0] in verified:
                data: bytes | memoryview = store._reader(loc[0]).view()[loc[2]:loc[2] + loc[3]]
            else:
                data = store.read(oid, k)
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
    loc = index.get(p.oid)
    if loc is None or p.oid in bad or loc[1] != (KIND_MANIFEST if p.kind == "file" else KIND_TREE):
        return  # reported as a missing or bad object
    try:
        data = store.read(p.oid, loc[1])
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
