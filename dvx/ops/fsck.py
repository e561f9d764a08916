"""``dvx fsck``: verify every pack, object and pointer; name what is bad and who uses it.

Checks, in order: each pack's footer and index agree; every object's bytes hash to its
id and manifests/trees parse; every pointer parses and everything it reaches is present
and sound. Problems are collected, never raised, so one run reports them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dvx.errors import DvxError
from dvx.hashing import CONTEXTS, KIND_CHUNK, KIND_CHUNK_LIST, KIND_MANIFEST, KIND_NAMES, KIND_TREE, id_matches
from dvx.objects import ENTRY_FILE, ENTRY_TREE, LAYOUT_FLAT, ManifestHead, Tree, parse_chunk_list
from dvx.pointer import POINTER_SUFFIX, Pointer
from dvx.progress import NULL_PROGRESS, Progress
from dvx.repo import Repository
from dvx.store.pack import COMP_DELTA
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
    for name in names:
        report.packs += 1
        _check_pack(repo, name, report, bad, progress)
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
        _reach(store, index, p.oid, kind, target, bad, missing)
        _check_pointer_fields(store, index, target, p, bad, report)
    report.problems.extend(missing.values())
    report.problems.extend(bad.values())
    return report


def leftover_note(leftovers: list[tuple[str, int]]) -> str:
    size = sum(n for _, n in leftovers)
    return (f"{len(leftovers)} temporary file(s) of an interrupted checkout ({size:,} bytes) in "
            ".dvx/tmp/checkout; the next `dvx checkout` removes them")


def _check_pack(repo: Repository, name: str, report: FsckReport, bad: dict[bytes, Problem],
                progress: Progress) -> None:
    store = repo.store
    try:
        footer, footer_name = store.pack_footer(name)
        idx = store.pack_index(name)
    except (DvxError, OSError) as exc:
        report.problems.append(Problem("pack", name, str(exc)))
        return
    if footer_name != name:
        report.problems.append(Problem("pack", name, f"pack footer names it {footer_name}"))
    if sorted((e.oid, e.kind, e.offset, e.length, e.comp) for e in footer) != \
            [(e.oid, e.kind, e.offset, e.length, e.comp) for e in idx.entries()]:
        report.problems.append(Problem("pack", name, "index does not match the pack footer"))
    try:
        for e, data in store.pack_objects(name, footer):
            report.objects += 1
            progress.advance(e.length)
            if e.kind not in CONTEXTS:
                bad[e.oid] = Problem("object", e.oid.hex(), f"unknown kind {e.kind} in pack {name}")
                continue
            if e.comp == COMP_DELTA:
                try:
                    data = store.expand_delta(e.oid, data, name)
                except DvxError as exc:
                    bad[e.oid] = Problem("object", e.oid.hex(), f"delta in pack {name}: {exc.message}")
                    continue
            if not id_matches(e.kind, data, e.oid):
                bad[e.oid] = Problem("object", e.oid.hex(),
                                     f"{KIND_NAMES[e.kind]} in pack {name} is corrupted (hash mismatch)")
                continue
            try:
                if e.kind == KIND_MANIFEST:
                    ManifestHead.parse(data)
                elif e.kind == KIND_CHUNK_LIST:
                    parse_chunk_list(data)
                elif e.kind == KIND_TREE:
                    Tree.parse(data)
            except DvxError as exc:
                bad[e.oid] = Problem("object", e.oid.hex(), str(exc))
    except (DvxError, OSError) as exc:  # e.g. a pack shorter than its footer says
        report.problems.append(Problem("pack", name, str(exc)))


def _reach(store, index, root: bytes, kind: int, target: str, bad: dict[bytes, Problem],  # type: ignore[no-untyped-def]
           missing: dict[bytes, Problem]) -> None:
    """Walk everything a pointer reaches, recording users of bad or missing objects."""
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
            data = store.read(oid, k)
        except DvxError:
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
            for e in Tree.parse(data).entries:
                if e.kind == ENTRY_FILE and e.oid is not None:
                    stack.append((e.oid, KIND_MANIFEST, f"{path}/{e.name}"))
                elif e.kind == ENTRY_TREE and e.oid is not None:
                    stack.append((e.oid, KIND_TREE, f"{path}/{e.name}"))


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
