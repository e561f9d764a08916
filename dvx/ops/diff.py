"""``dvx diff``: per-file changes of tracked data between two revisions, or a revision
and the work tree's pointers, read from git trees and DVX objects (no checkout).

Subtrees with the same id on both sides are skipped without being read, so the cost
grows with what changed, not with the size of the dataset. Renames are paired by
content id (a deleted and an added file with the same manifest id).
"""

from __future__ import annotations

from dataclasses import dataclass

from dvx.errors import DvxError, MissingObjectError
from dvx.objects import ENTRY_FILE, ENTRY_LINK, ENTRY_TREE, TreeEntry
from dvx.pointer import Pointer
from dvx.repo import Repository
from dvx.store.local import Store


@dataclass
class DiffEntry:
    path: str
    status: str  # added | deleted | modified | renamed
    old_size: int | None = None
    new_size: int | None = None
    old_id: str | None = None
    new_id: str | None = None
    old_path: str | None = None

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"path": self.path, "status": self.status,
                                  "old_size": self.old_size, "new_size": self.new_size,
                                  "old_id": self.old_id, "new_id": self.new_id}
        if self.old_path is not None:
            out["old_path"] = self.old_path
        return out


def _entries(store: Store, tree_id: bytes) -> dict[str, TreeEntry]:
    return {e.name: e for e in store.read_tree(tree_id).entries}


def _content(e: TreeEntry) -> str:
    return e.oid.hex() if e.oid is not None else "link:" + (e.target or "")


def _all_files(store: Store, prefix: str, e: TreeEntry) -> list[tuple[str, TreeEntry]]:
    if e.kind != ENTRY_TREE:
        return [(prefix, e)]
    assert e.oid is not None
    out: list[tuple[str, TreeEntry]] = []
    for name, child in _entries(store, e.oid).items():
        out.extend(_all_files(store, f"{prefix}/{name}", child))
    return out


def _tree_diff(store: Store, prefix: str, old: bytes, new: bytes, out: list[DiffEntry]) -> None:
    if old == new:
        return
    a, b = _entries(store, old), _entries(store, new)
    for name in sorted(set(a) | set(b)):
        ea, eb = a.get(name), b.get(name)
        path = f"{prefix}/{name}"
        if ea is not None and eb is not None:
            if ea.kind == ENTRY_TREE and eb.kind == ENTRY_TREE:
                assert ea.oid is not None and eb.oid is not None
                _tree_diff(store, path, ea.oid, eb.oid, out)
                continue
            if ea.kind == eb.kind and _content(ea) == _content(eb) and ea.executable == eb.executable:
                continue
            if ea.kind != ENTRY_TREE and eb.kind != ENTRY_TREE:
                out.append(DiffEntry(path, "modified", ea.size, eb.size, _content(ea), _content(eb)))
                continue
        if ea is not None:
            for p, e in _all_files(store, path, ea):
                out.append(DiffEntry(p, "deleted", old_size=e.size, old_id=_content(e)))
        if eb is not None:
            for p, e in _all_files(store, path, eb):
                out.append(DiffEntry(p, "added", new_size=e.size, new_id=_content(e)))


def _root_entry(target: str, p: Pointer) -> TreeEntry:
    kind = ENTRY_TREE if p.kind == "tree" else ENTRY_FILE
    return TreeEntry(target.rsplit("/", 1)[-1], kind, p.size, p.files, p.oid, p.exec)


def diff_pointers(repo: Repository, old: dict[str, Pointer], new: dict[str, Pointer]) -> list[DiffEntry]:
    from dvx.ops.revs import pull_hint

    store = repo.store
    out: list[DiffEntry] = []
    try:
        for target in sorted(set(old) | set(new)):
            pa, pb = old.get(target), new.get(target)
            if pa is not None and pb is not None and pa.id == pb.id and pa.exec == pb.exec:
                continue
            if pa is not None and pb is not None and pa.kind == pb.kind == "tree":
                _tree_diff(store, target, pa.oid, pb.oid, out)
            elif pa is not None and pb is not None and pa.kind == pb.kind == "file":
                out.append(DiffEntry(target, "modified", pa.size, pb.size, pa.id, pb.id))
            else:
                if pa is not None:
                    for p, e in _all_files(store, target, _root_entry(target, pa)):
                        out.append(DiffEntry(p, "deleted", old_size=e.size, old_id=_content(e)))
                if pb is not None:
                    for p, e in _all_files(store, target, _root_entry(target, pb)):
                        out.append(DiffEntry(p, "added", new_size=e.size, new_id=_content(e)))
    except MissingObjectError as exc:
        raise MissingObjectError(exc.message.replace("is not in the local store",
                                                     "is not in the local store (needed for the diff)"),
                                 pull_hint(repo)) from None
    return _pair_renames(out)


def _pair_renames(entries: list[DiffEntry]) -> list[DiffEntry]:
    deleted: dict[str, list[DiffEntry]] = {}
    for e in entries:
        if e.status == "deleted" and e.old_id and not e.old_id.startswith("link:"):
            deleted.setdefault(e.old_id, []).append(e)
    gone: set[int] = set()
    out: list[DiffEntry] = []
    for e in entries:
        if e.status == "added" and e.new_id in deleted and deleted[e.new_id]:
            src = deleted[e.new_id].pop(0)
            gone.add(id(src))
            out.append(DiffEntry(e.path, "renamed", src.old_size, e.new_size, src.old_id, e.new_id,
                                 src.path))
        else:
            out.append(e)
    result = [e for e in out if id(e) not in gone]
    result.sort(key=lambda e: e.path)
    return result


def diff(repo: Repository, rev_a: str | None = None, rev_b: str | None = None,
         bad: dict[str, DvxError] | None = None) -> list[DiffEntry]:
    """``rev_a`` (default HEAD) against ``rev_b`` (default: the work tree's pointers).

    With ``bad``, malformed or unsafe pointers (of either side) are recorded there
    (``REV:PATH`` -> error) and left out of the comparison instead of raising."""
    from dvx.history import history_of

    history = history_of(repo)
    a_label = rev_a or "HEAD"
    bad_a: dict[str, DvxError] | None = {} if bad is not None else None
    bad_b: dict[str, DvxError] | None = {} if bad is not None else None
    old = history.at(a_label, bad=bad_a)
    new = history.at(rev_b, bad=bad_b) if rev_b else history.workspace(bad=bad_b)
    if bad is not None:
        for t in set(bad_a or ()) | set(bad_b or ()):  # leave such a path out on both sides
            old.pop(t, None)
            new.pop(t, None)
        bad.update({f"{a_label}:{t}": e for t, e in (bad_a or {}).items()})
        bad.update({f"{rev_b or 'work tree'}:{t}": e for t, e in (bad_b or {}).items()})
    return diff_pointers(repo, old, new)


__all__ = ["DiffEntry", "diff", "diff_pointers", "ENTRY_LINK"]
