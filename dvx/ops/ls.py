"""``dvx ls``: tracked paths, or the files inside a tracked directory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter

from dvx.errors import DvxError, NotTrackedError
from dvx.hashing import KIND_TREE
from dvx.objects import ENTRY_FILE, ENTRY_LINK, ENTRY_TREE, TreeRow, tree_rows
from dvx.pointer import Pointer
from dvx.repo import Repository
from dvx.store.local import Store


@dataclass(slots=True)  # slots: a listing of 100,000 files builds 100,000 of them
class LsEntry:
    path: str
    kind: str  # file | tree | link
    size: int
    files: int
    id: str | None
    executable: bool = False
    target: str | None = None

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"path": self.path, "kind": self.kind, "size": self.size,
                                  "files": self.files, "id": self.id}
        if self.executable:
            out["executable"] = True
        if self.target is not None:
            out["target"] = self.target
        return out


def ls_pointers(pointers: dict[str, Pointer]) -> list[LsEntry]:
    return [LsEntry(t, p.kind, p.size, p.files, p.id, p.exec) for t, p in sorted(pointers.items())]


def ls_tree(store: Store, prefix: str, tree_id: bytes, recursive: bool = True,
            rows_of: Callable[[bytes], list[TreeRow]] | None = None) -> list[LsEntry]:
    """The files (and links) below a stored tree, sorted by path; with ``recursive``
    False, its entries (subtrees as ``path/``). ``rows_of(tree id)`` gives a tree's
    parsed rows (default: read and parse from ``store``; the read API passes its
    cache)."""
    if rows_of is None:
        def rows_of(tid: bytes) -> list[TreeRow]:
            return tree_rows(store.read(tid, KIND_TREE))
    out: list[LsEntry] = []
    append = out.append
    stack = [(prefix, tree_id)]
    while stack:
        pre, tid = stack.pop()
        for name, kind, size, files, oid, executable, target in rows_of(tid):
            path = f"{pre}/{name}"
            if kind == ENTRY_FILE:
                append(LsEntry(path, "file", size, 1, oid.hex() if oid else None, executable))
            elif kind == ENTRY_TREE:
                assert oid is not None
                if recursive:
                    stack.append((path, oid))
                else:
                    append(LsEntry(path + "/", "tree", size, files, oid.hex()))
            elif kind == ENTRY_LINK:
                append(LsEntry(path, "link", size, 0, None, False, target))
    out.sort(key=attrgetter("path"))
    return out


def ls(repo: Repository, path: str | None = None, pointers: dict[str, Pointer] | None = None,
       recursive: bool = True, bad: dict[str, DvxError] | None = None,
       rows_of: Callable[[bytes], list[TreeRow]] | None = None) -> list[LsEntry]:
    """Tracked paths (of the work tree, or ``pointers``). With ``bad``, malformed or
    unsafe pointers are recorded there and left out instead of raising. ``rows_of``:
    a tree's parsed rows by id (default: read from the store; the read API passes its
    cache)."""
    if rows_of is None:
        def rows_of(tid: bytes) -> list[TreeRow]:
            return tree_rows(repo.store.read(tid, KIND_TREE))
    if pointers is None:
        from dvx.history import history_of

        pointers = history_of(repo).workspace(bad=bad)
    if bad is not None and path:
        rel = repo.relpath(path).removesuffix(".dvx")
        for name in [n for n in bad if not (not rel or n == rel or n.startswith(rel + "/"))]:
            del bad[name]  # only the bad pointers the user asked about
    if not path:
        return ls_pointers(pointers)
    rel = repo.relpath(path)
    if rel.endswith(".dvx"):
        rel = rel[:-4]
    if rel in pointers:
        p = pointers[rel]
        if p.kind == "file":
            return ls_pointers({rel: p})
        return ls_tree(repo.store, rel, p.oid, recursive, rows_of)
    for target, p in pointers.items():
        if rel.startswith(target + "/") and p.kind == "tree":
            sub = rel[len(target) + 1:].split("/")
            tid = p.oid
            for i, part in enumerate(sub):
                entry = next((e for e in rows_of(tid) if e[0] == part), None)
                if entry is None:
                    break
                if entry[1] != ENTRY_TREE:
                    if i == len(sub) - 1:
                        return [x for x in ls_tree(repo.store, target + "/" + "/".join(sub[:-1]),
                                                   tid, False, rows_of)
                                if x.path == f"{target}/{rel[len(target)+1:]}"]
                    break
                assert entry[4] is not None
                tid = entry[4]
            else:
                return ls_tree(repo.store, rel, tid, recursive, rows_of)
    under = {t: p for t, p in pointers.items() if t.startswith(rel + "/")}
    if under:
        return ls_pointers(under)
    raise NotTrackedError(f"{path} is not tracked by DVX", "see `dvx ls` for tracked paths")


__all__ = ["LsEntry", "ls", "ls_pointers", "ls_tree", "DvxError"]
