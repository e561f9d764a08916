"""``dvx ls``: tracked paths, or the files inside a tracked directory."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
    """One listed path. ``dvx._trees.ls_entries`` fills the slots of new instances
    directly (what the generated ``__init__`` does, without the call): keep it a plain
    slotted dataclass of these seven fields, with no ``__post_init__`` (it checks, and
    falls back to calling the class)."""

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
            data_of: Callable[[bytes], bytes] | None = None) -> list[LsEntry]:
    """The files (and links) below a stored tree, sorted by path; with ``recursive``
    False, its entries (subtrees as ``path/``). ``data_of(tree id)`` gives a tree's
    bytes (default: read from ``store``; the read API passes its cache). Every tree is
    checked as ``objects.tree_rows`` checks it."""
    if data_of is None:
        def data_of(tid: bytes) -> bytes:
            return store.read(tid, KIND_TREE)
    out: list[LsEntry] = []
    stack: list[tuple[str, bytes]] = [(prefix, tree_id)]
    with _gc_paused():  # 100,000 new objects would set off several full collections
        while stack:
            pre, tid = stack.pop()
            if _ls_entries is not None:  # Cython: the loop below, in C
                _ls_entries(data_of(tid), pre, recursive, out, stack, LsEntry)
            else:
                _add_entries(tree_rows(data_of(tid)), pre, recursive, out, stack)
        out.sort(key=attrgetter("path"))
    return out


def _add_entries(rows: list[TreeRow], pre: str, recursive: bool, out: list[LsEntry],
                 stack: list[tuple[str, bytes]]) -> None:
    """Pure-Python ``dvx._trees.ls_entries`` (after its parse): one tree's entries."""
    append = out.append
    for name, kind, size, _files, oid, executable, target in rows:
        path = f"{pre}/{name}"
        if kind == ENTRY_FILE:
            append(LsEntry(path, "file", size, 1, oid.hex() if oid else None, executable))
        elif kind == ENTRY_TREE:
            assert oid is not None
            if recursive:
                stack.append((path, oid))
            else:
                append(LsEntry(path + "/", "tree", size, _files, oid.hex()))
        elif kind == ENTRY_LINK:
            append(LsEntry(path, "link", size, 0, None, False, target))


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a listing builds its (acyclic) entries;
    collected as usual afterwards. Another thread's pause is left as it is."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def ls(repo: Repository, path: str | None = None, pointers: dict[str, Pointer] | None = None,
       recursive: bool = True, bad: dict[str, DvxError] | None = None,
       data_of: Callable[[bytes], bytes] | None = None) -> list[LsEntry]:
    """Tracked paths (of the work tree, or ``pointers``). With ``bad``, malformed or
    unsafe pointers are recorded there and left out instead of raising. ``data_of``:
    a tree's bytes by id (default: read from the store; the read API passes its
    cache)."""
    if data_of is None:
        def data_of(tid: bytes) -> bytes:
            return repo.store.read(tid, KIND_TREE)
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
        return ls_tree(repo.store, rel, p.oid, recursive, data_of)
    for target, p in pointers.items():
        if rel.startswith(target + "/") and p.kind == "tree":
            sub = rel[len(target) + 1:].split("/")
            tid = p.oid
            for i, part in enumerate(sub):
                entry = next((e for e in tree_rows(data_of(tid)) if e[0] == part), None)
                if entry is None:
                    break
                if entry[1] != ENTRY_TREE:
                    if i == len(sub) - 1:
                        return [x for x in ls_tree(repo.store, target + "/" + "/".join(sub[:-1]),
                                                   tid, False, data_of)
                                if x.path == f"{target}/{rel[len(target)+1:]}"]
                    break
                assert entry[4] is not None
                tid = entry[4]
            else:
                return ls_tree(repo.store, rel, tid, recursive, data_of)
    under = {t: p for t, p in pointers.items() if t.startswith(rel + "/")}
    if under:
        return ls_pointers(under)
    raise NotTrackedError(f"{path} is not tracked by DVX", "see `dvx ls` for tracked paths")


try:
    from dvx._trees import ls_entries as _ls_entries  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - the extension was not built
    _ls_entries = None


__all__ = ["LsEntry", "ls", "ls_pointers", "ls_tree", "DvxError"]
