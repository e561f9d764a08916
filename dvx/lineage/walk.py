"""Closures over the index's adjacency arrays (``protocols/lineage.md`` §6).

A walk is breadth-first over the CSR arrays of the index (offsets, then the edges of
each node), and a node is entered once (a visited set), so a cycle in hand-edited
data ends the walk like any other node seen before. Commit
nodes end a walk: they are context (where a version was committed, which code a run
ran), so the walk does not go on from a commit to every other version committed in it
or every run of that code — except from the commit the walk starts at.
"""

from __future__ import annotations

from dvx.lineage.model import COMMIT
from dvx.lineage.store import Index


def closure(ix: Index, start: int, up: bool, depth: int | None = None) -> tuple[list[list[int]], list[int]]:
    """Nodes reached from ``start`` (itself first) level by level, and the ids of the
    edges walked. ``up``: against the edges (what made ``start``)."""
    offsets = ix.rev_offsets if up else ix.fwd_offsets
    other = ix.edge_src if up else ix.edge_dst
    rev = ix.rev_edges
    kinds = ix.node_kind
    seen = {start}
    levels = [[start]]
    walked: list[int] = []
    frontier = levels[0]
    level = 0
    while frontier and (depth is None or level < depth):
        new: list[int] = []
        for u in frontier:
            if level and kinds[u] == COMMIT:
                continue
            for pos in range(offsets[u], offsets[u + 1]):
                e = rev[pos] if up else pos
                walked.append(e)
                v = other[e]
                if v not in seen:
                    seen.add(v)
                    new.append(v)
        if not new:
            break
        levels.append(new)
        frontier = new
        level += 1
    return levels, walked


def flow_cycles(edges: list[tuple[int, int]], limit: int = 5) -> list[list[int]]:
    """Cycles among ``edges`` (node pairs), at most ``limit``, each as its nodes in order
    (iterative depth-first search: no recursion limit on a long chain)."""
    succ: dict[int, list[int]] = {}
    for a, b in edges:
        succ.setdefault(a, []).append(b)
    colour: dict[int, int] = {}  # 1 on the stack, 2 done
    found: list[list[int]] = []
    for root in sorted(succ):
        if root in colour:
            continue
        stack = [(root, iter(succ.get(root, ())))]
        path = [root]
        colour[root] = 1
        while stack and len(found) < limit:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                colour[node] = 2
                stack.pop()
                path.pop()
            elif colour.get(nxt) == 1:
                found.append(path[path.index(nxt):] + [nxt])
            elif nxt not in colour:
                colour[nxt] = 1
                stack.append((nxt, iter(succ.get(nxt, ()))))
                path.append(nxt)
    return found
