"""``lineage(repo, target, direction, depth, types, limit)``: the entry point
(``dvx.api.lineage``, ``dvx.Api().lineage``, ``dvx lineage``).

:class:`LineageIndex` keeps the mapped index of one repository between queries and
brings it up to date first when the refs' signature changed (``protocols/lineage.md``
§5): incrementally when it can, from git when the file is missing, damaged, of another
format, or when history was rewritten; a rebuild of an index that existed leaves a
notice on the answer.
"""

from __future__ import annotations

import os
from typing import Any

from dvx.lineage.graph import Edge, LineageGraph, Node, label_of
from dvx.lineage.model import DATA, EDGE_KINDS, FLOW_EDGES, NODE_KINDS, LineageError
from dvx.lineage.store import FILE_NAME, Index, IndexDamaged, encode, index_dir, open_index
from dvx.repo import Repository

DIRECTIONS = {"up": "up", "upstream": "up", "down": "down", "downstream": "down", "both": "both"}
TYPES = ("data", "artifact", "run", "commit")


class LineageIndex:
    """The lineage index of one repository, kept up to date on each :meth:`get`."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.path = os.path.join(index_dir(repo.dvx_dir), FILE_NAME)
        self.ix: Index | None = None
        self.last_commits_read = 0

    def get(self, notices: list[str] | None = None, rebuild: bool = False) -> Index:
        from dvx.lineage.refs import signature

        notices = notices if notices is not None else []
        sig = signature(self.repo)
        if not rebuild and self.ix is not None and self.ix.signature == sig:
            return self.ix
        base = None
        if not rebuild:
            try:
                found = open_index(self.path)
            except IndexDamaged as exc:
                notices.append(f"{exc}; rebuilt from git")
                found = None
            if found is not None and found.signature == sig:
                self.ix = found
                return found
            base = found
        from dvx.lineage.build import Rebuild, build  # numpy: only when building

        try:
            tables, self.last_commits_read = build(self.repo, base)
        except IndexDamaged as exc:  # a section only an update reads
            notices.append(f"{exc}; rebuilt from git")
            tables, self.last_commits_read = build(self.repo, None)
        except Rebuild as why:
            notices.append(f"lineage index rebuilt from git: {why}")
            tables, self.last_commits_read = build(self.repo, None)
        data = encode(tables, sig)
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            tmp = f"{self.path}.{os.getpid()}.tmp"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, self.path)
        except OSError:  # a read-only disk: the answer is still right, only slower next time
            pass
        self.ix = Index(data, self.path)
        return self.ix


def _types(types: Any) -> set[str] | None:
    if types is None:
        return None
    items = [types] if isinstance(types, str) else list(types)
    out = set()
    for t in items:
        for part in str(t).split(","):
            part = part.strip()
            if part not in TYPES:
                raise LineageError(f"unknown node type {part!r}", f"use {', '.join(TYPES)}")
            out.add(part)
    return out or None


def lineage(repo: Repository, target: str, direction: str = "up", depth: int | None = None,
            types: Any = None, limit: int | None = None, *, index: LineageIndex | None = None) -> LineageGraph:
    """The lineage of ``target`` (see :mod:`dvx.lineage.target`): what made it
    (``up``), what was made from it (``down``), or both, at most ``depth`` hops away,
    keeping the node ``types`` asked for (data, artifact, run, commit; nodes of other
    types in between become ``via`` edges) and at most ``limit`` nodes (nearest first)."""
    from dvx.lineage.target import resolve
    from dvx.lineage.walk import closure, flow_cycles

    if direction not in DIRECTIONS:
        raise LineageError(f"unknown direction {direction!r}", "use up, down or both")
    d = DIRECTIONS[direction]
    if depth is not None and (not isinstance(depth, int) or isinstance(depth, bool) or depth < 0):
        raise LineageError(f"depth must be a non-negative integer, not {depth!r}")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise LineageError(f"limit must be a positive integer, not {limit!r}")
    wanted = _types(types)
    notices: list[str] = []
    li = index or LineageIndex(repo)
    ix = li.get(notices)
    key = resolve(repo, ix, target)
    start = ix.find(key)
    if start is None:  # e.g. a commit with no data in it, a path version no run touched
        return _lonely(key, d, notices, ix, str(target))
    depth_of: dict[int, int] = {start: 0}
    edge_ids: set[int] = set()
    for up in ((True,) if d == "up" else (False,) if d == "down" else (True, False)):
        levels, eids = closure(ix, start, up, depth)
        for lv, nodes in enumerate(levels):
            for i in nodes:
                depth_of.setdefault(i, -lv if up else lv)
        edge_ids.update(eids)
    order = sorted(depth_of, key=lambda i: (abs(depth_of[i]), depth_of[i], i))
    truncated = limit is not None and len(order) > limit
    if truncated:
        order = order[:limit]
    artifacts = _artifact_labels(ix)

    def materialize() -> tuple[list[Node], list[Edge], list[list[str]]]:
        """Nodes with their attributes, edges and cycles: built when first asked for,
        so a caller that only counts or checks membership pays for the walk alone."""
        nonlocal order
        keep = set(order)
        src, dst, kind = ix.edge_src, ix.edge_dst, ix.edge_kind
        pairs = [(src[e], dst[e], kind[e]) for e in sorted(edge_ids)]
        pairs = [(a, b, k) for a, b, k in pairs if a in keep and b in keep]
        cycles = flow_cycles([(a, b) for a, b, k in pairs if k in FLOW_EDGES])
        made = {i: _node(ix, i, depth_of[i], artifacts, m) for i, m in zip(order, ix.metas(order), strict=True)}
        if wanted is not None:
            shown = [i for i in order if i == start or _wanted(made[i], wanted)]
            pairs = _contract(pairs, set(shown), start, d)
            order = shown
        edges = [Edge(made[a].key, made[b].key, EDGE_KINDS[k] if k >= 0 else "via") for a, b, k in pairs]
        return [made[i] for i in order], edges, [[made[i].key for i in c] for c in cycles]

    problems = list(ix.state.get("problems") or [])
    walked = list(order)

    def keys() -> list[str]:
        return [ix.key(i) for i in walked]

    plain = wanted is None  # without a type filter the walk is the answer: count and keys need no nodes
    return LineageGraph(_node(ix, start, 0, artifacts), d, None, None, None, truncated, notices, problems,
                        loader=materialize, keys=keys if plain else None, count=len(walked) if plain else None)


def _artifact_labels(ix: Index) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, entry in sorted((ix.state.get("artifacts") or {}).items()):
        for v in (entry or {}).get("versions") or []:
            if isinstance(v, dict) and isinstance(v.get("id"), str):
                label = f"{name}:v{v.get('version')}"
                aliases = [a for a in v.get("aliases") or [] if isinstance(a, str)]
                out.setdefault(v["id"], []).append(label + (f" ({', '.join(aliases)})" if aliases else ""))
    return out


def _node(ix: Index, i: int, depth: int, artifacts: dict[str, list[str]],
          attrs: dict[str, Any] | None = None) -> Node:
    key = ix.key(i)
    kind = NODE_KINDS[int(ix.node_kind[i])]
    ident = key.partition(":")[2]
    attrs = ix.meta(i) if attrs is None else attrs
    if kind == "data":
        attrs["artifacts"] = artifacts.get(ident, [])
    return Node(key, kind, ident, label_of(kind, ident, attrs), depth, attrs)


def _wanted(node: Node, wanted: set[str]) -> bool:
    if node.kind == "data":
        return "data" in wanted or ("artifact" in wanted and bool(node.attrs.get("artifacts")))
    return node.kind in wanted


def _contract(pairs: list[tuple[int, int, int]], shown: set[int], start: int,
              d: str) -> list[tuple[int, int, int]]:
    """Edges among ``shown`` nodes: direct ones as they are, paths through hidden
    nodes as one ``via`` edge (kind -1)."""
    succ: dict[int, list[int]] = {}
    for a, b, _ in pairs:
        succ.setdefault(a, []).append(b)
    out = {(a, b, k) for a, b, k in pairs if a in shown and b in shown}
    direct = {(a, b) for a, b, _ in out}
    for a in shown:
        stack, seen = [b for b in succ.get(a, ()) if b not in shown], set()
        while stack:
            x = stack.pop()
            if x in seen:
                continue
            seen.add(x)
            for y in succ.get(x, ()):
                if y in shown:
                    if (a, y) not in direct and a != y:
                        out.add((a, y, -1))
                        direct.add((a, y))
                elif y not in seen:
                    stack.append(y)
    return sorted(out)


def _lonely(key: str, d: str, notices: list[str], ix: Index, target: str) -> LineageGraph:
    from dvx.lineage.model import split_key

    kind, ident = split_key(key)
    attrs: dict[str, Any] = {}
    if kind == DATA and not target.partition(":")[1]:  # named by a path: show it
        attrs["paths"] = [target.removeprefix("./")]
    node = Node(key, NODE_KINDS[kind], ident, label_of(NODE_KINDS[kind], ident, attrs), 0, attrs)
    if kind == DATA:
        notices.append("this data version is in no commit, run or artifact yet (commit it, or use it in a run)")
    return LineageGraph(node, d, [node], [], notices=notices, problems=list(ix.state.get("problems") or []))
