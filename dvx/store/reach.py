"""Walking the object graph: everything reachable from root objects."""

from __future__ import annotations

from dvx.errors import MissingObjectError
from dvx.hashing import KIND_CHUNK, KIND_CHUNK_LIST, KIND_MANIFEST, KIND_NAMES, KIND_TREE
from dvx.objects import ENTRY_LINK, ENTRY_TREE, ManifestHead, Tree, parse_chunk_list
from dvx.store.local import Store


def root_kind(pointer_kind: str) -> int:
    return KIND_MANIFEST if pointer_kind == "file" else KIND_TREE


def children(kind: int, data: bytes) -> list[tuple[bytes, int]]:
    """The objects an object refers to, in order."""
    if kind == KIND_TREE:
        return [(e.oid, KIND_TREE if e.kind == ENTRY_TREE else KIND_MANIFEST)
                for e in Tree.parse(data).entries if e.kind != ENTRY_LINK and e.oid is not None]
    if kind == KIND_MANIFEST:
        head = ManifestHead.parse(data)
        child = KIND_CHUNK if head.layout == 0 else KIND_CHUNK_LIST
        return [(e[-1], child) for e in head.entries]
    if kind == KIND_CHUNK_LIST:
        return [(cid, KIND_CHUNK) for _, cid in parse_chunk_list(data)]
    return []


def reachable(store: Store, roots: list[tuple[bytes, int]], *, skip_missing: bool = False,
              seen: dict[bytes, int] | None = None) -> dict[bytes, int]:
    """``{id: kind}`` of every object reachable from ``roots`` (depth first, so objects
    of one file or directory stay together). Missing objects raise unless skipped."""
    index = store.full_index()
    out: dict[bytes, int] = {} if seen is None else seen
    stack = list(reversed(roots))
    while stack:
        oid, kind = stack.pop()
        if oid in out:
            continue
        if oid not in index:
            if skip_missing:
                continue
            raise MissingObjectError(f"{KIND_NAMES[kind]} {oid.hex()} is not in the local store",
                                     "fetch it with `dvx pull`")
        out[oid] = kind
        if kind != KIND_CHUNK:
            stack.extend(reversed(children(kind, store.read(oid, kind))))
    return out
