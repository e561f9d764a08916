"""``dvx ls``: tracked paths, or the files inside a tracked directory."""

from __future__ import annotations

from dataclasses import dataclass

from dvx.errors import DvxError, NotTrackedError
from dvx.objects import ENTRY_FILE, ENTRY_LINK, ENTRY_TREE
from dvx.pointer import Pointer
from dvx.repo import Repository
from dvx.store.local import Store


@dataclass
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


def ls_tree(store: Store, prefix: str, tree_id: bytes, recursive: bool = True) -> list[LsEntry]:
    out: list[LsEntry] = []
    stack = [(prefix, tree_id)]
    while stack:
        pre, tid = stack.pop()
        for e in store.read_tree(tid).entries:
            path = f"{pre}/{e.name}"
            if e.kind == ENTRY_FILE:
                out.append(LsEntry(path, "file", e.size, 1, e.oid.hex() if e.oid else None,
                                   e.executable))
            elif e.kind == ENTRY_TREE:
                assert e.oid is not None
                if recursive:
                    stack.append((path, e.oid))
                else:
                    out.append(LsEntry(path + "/", "tree", e.size, e.files, e.oid.hex()))
            elif e.kind == ENTRY_LINK:
                out.append(LsEntry(path, "link", e.size, 0, None, target=e.target))
    out.sort(key=lambda x: x.path)
    return out


def ls(repo: Repository, path: str | None = None, pointers: dict[str, Pointer] | None = None,
       recursive: bool = True, bad: dict[str, DvxError] | None = None) -> list[LsEntry]:
    """Tracked paths (of the work tree, or ``pointers``). With ``bad``, malformed or
    unsafe pointers are recorded there and left out instead of raising."""
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
        return ls_tree(repo.store, rel, p.oid, recursive)
    for target, p in pointers.items():
        if rel.startswith(target + "/") and p.kind == "tree":
            sub = rel[len(target) + 1:].split("/")
            tid = p.oid
            for i, part in enumerate(sub):
                entry = next((e for e in repo.store.read_tree(tid).entries if e.name == part), None)
                if entry is None:
                    break
                if entry.kind != ENTRY_TREE:
                    if i == len(sub) - 1:
                        return [x for x in ls_tree(repo.store, target + "/" + "/".join(sub[:-1]),
                                                   tid, False) if x.path == f"{target}/{rel[len(target)+1:]}"]
                    break
                assert entry.oid is not None
                tid = entry.oid
            else:
                return ls_tree(repo.store, rel, tid, recursive)
    under = {t: p for t, p in pointers.items() if t.startswith(rel + "/")}
    if under:
        return ls_pointers(under)
    raise NotTrackedError(f"{path} is not tracked by DVX", "see `dvx ls` for tracked paths")


__all__ = ["LsEntry", "ls", "ls_pointers", "ls_tree", "DvxError"]
