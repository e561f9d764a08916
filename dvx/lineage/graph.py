"""The answer to a lineage query: nodes, edges, and their JSON, DOT and Mermaid forms
(``protocols/lineage.md`` §7 describes the JSON)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Node:
    """A data version, run or commit. ``key`` is ``kind:id``; ``depth`` the number of
    hops from the target (negative upstream, positive downstream, 0 the target)."""

    key: str
    kind: str  # data | run | commit
    id: str
    label: str
    depth: int
    attrs: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "kind": self.kind, "id": self.id, "label": self.label, "depth": self.depth,
                **self.attrs}


@dataclass(slots=True)
class Edge:
    """``source -> target`` in the direction data flows. ``kind``: used, produced,
    committed-in, derived-from, code, or ``via`` (a path through nodes that a type
    filter left out)."""

    source: str
    target: str
    kind: str

    def to_json(self) -> dict[str, str]:
        return {"source": self.source, "target": self.target, "kind": self.kind}


def label_of(kind: str, ident: str, attrs: dict[str, Any]) -> str:
    if kind == "data":
        names = list(attrs.get("artifacts") or []) + list(attrs.get("paths") or [])
        return f"{names[0]}@{ident[:12]}" if names else ident[:12]
    if kind == "run":
        name = attrs.get("name")
        return f"run {ident}" + (f" ({name})" if name and name != ident else "")
    summary = attrs.get("summary")
    return ident[:12] + (f" {summary}" if summary else "")


class LineageGraph:
    """What a query found: ``target`` (a :class:`Node`), ``nodes`` (the target first,
    then by distance), ``edges``, ``cycles`` (flow cycles met, as lists of node keys),
    ``truncated`` (``limit`` cut it short) and ``notices`` (an index rebuilt, records
    skipped)."""

    def __init__(self, target: Node, direction: str, nodes: list[Node] | None, edges: list[Edge] | None,
                 cycles: list[list[str]] | None = None, truncated: bool = False,
                 notices: list[str] | None = None, problems: list[str] | None = None, *,
                 loader: Callable[[], tuple[list[Node], list[Edge], list[list[str]]]] | None = None,
                 keys: Callable[[], list[str]] | None = None, count: int | None = None) -> None:
        self.target = target
        self.direction = direction
        self._nodes, self._edges, self._cycles = nodes, edges, cycles or []
        self._loader = loader if nodes is None else None
        self._keys: list[str] | None = None
        self._keys_loader = keys
        self._count = count
        self.truncated = truncated
        self.notices = notices or []
        self.problems = problems or []
        self._by_key: dict[str, Node] | None = None
        self._keyset: set[str] | None = None

    def _load(self) -> None:
        if self._loader is not None:
            self._nodes, self._edges, self._cycles = self._loader()
            self._loader = None

    @property
    def nodes(self) -> list[Node]:
        self._load()
        return self._nodes or []

    @property
    def edges(self) -> list[Edge]:
        self._load()
        return self._edges or []

    @property
    def cycles(self) -> list[list[str]]:
        self._load()
        return self._cycles

    @property
    def keys(self) -> list[str]:
        """The node keys, target first (without decoding any node's attributes)."""
        if self._keys is None:
            self._keys = self._keys_loader() if self._keys_loader is not None else [n.key for n in self.nodes]
        return self._keys

    def __repr__(self) -> str:
        return f"LineageGraph({self.target.key!r}, {self.direction}, {len(self)} nodes)"

    def __len__(self) -> int:
        return self._count if self._count is not None else len(self.keys)

    def __contains__(self, key: object) -> bool:
        if self._keyset is None:
            self._keyset = set(self.keys)
        return key in self._keyset

    def node(self, key: str) -> Node:
        if self._by_key is None:
            self._by_key = {n.key: n for n in self.nodes}
        return self._by_key[key]

    def upstream(self, key: str) -> list[tuple[Edge, Node]]:
        """The edges into ``key`` and their source nodes."""
        return [(e, self.node(e.source)) for e in self.edges if e.target == key]

    def downstream(self, key: str) -> list[tuple[Edge, Node]]:
        """The edges out of ``key`` and their target nodes."""
        return [(e, self.node(e.target)) for e in self.edges if e.source == key]

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target.key, "direction": self.direction,
                "nodes": [n.to_json() for n in self.nodes], "edges": [e.to_json() for e in self.edges],
                "cycles": self.cycles, "truncated": self.truncated, "notices": self.notices,
                "problems": self.problems}

    def _ids(self) -> dict[str, str]:
        return {n.key: f"n{i}" for i, n in enumerate(self.nodes)}

    def to_dot(self) -> str:
        """Graphviz DOT: data as boxes, runs as ellipses, commits as notes."""
        ids = self._ids()
        shape = {"data": "box", "run": "ellipse", "commit": "note"}
        lines = ["digraph lineage {", "  rankdir=LR;"]
        for n in self.nodes:
            extra = ", penwidth=2" if n.key == self.target.key else ""
            lines.append(f"  {ids[n.key]} [label={json.dumps(n.label, ensure_ascii=False)}, "
                         f"shape={shape[n.kind]}{extra}];")
        for e in self.edges:
            lines.append(f"  {ids[e.source]} -> {ids[e.target]} [label={json.dumps(e.kind)}];")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def to_mermaid(self) -> str:
        """A Mermaid flowchart (``flowchart LR``), as GitHub renders in Markdown."""
        ids = self._ids()

        def text(s: str) -> str:  # names come from records anyone can write: no markup passes
            return s.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")

        shape = {"data": ('["', '"]'), "run": ('(["', '"])'), "commit": ('[/"', '"/]')}
        lines = ["flowchart LR"]
        for n in self.nodes:
            a, b = shape[n.kind]
            lines.append(f"  {ids[n.key]}{a}{text(n.label)}{b}")
        for e in self.edges:
            lines.append(f"  {ids[e.source]} -->|{e.kind}| {ids[e.target]}")
        return "\n".join(lines) + "\n"
