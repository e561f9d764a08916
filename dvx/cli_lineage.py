"""``dvx lineage TARGET``: parse, call ``dvx.api.lineage``, render (text, JSON, DOT,
Mermaid). The text form is a rich tree: the target, then what made it (upstream) and
what was made from it (downstream), one edge per branch.
(No ``from __future__ import annotations``: typer reads the annotations.)
"""

from typing import Annotated, Any

import typer

# how an edge reads from the node it hangs under: (upstream, downstream) wording
_WORDS = {
    "used": ("used", "used by"),
    "produced": ("produced by", "produced"),
    "committed-in": ("committed", "committed in"),
    "derived-from": ("derived from", "replaced by"),
    "code": ("code", "ran"),
    "via": ("via", "via"),
}


def _size(n: Any) -> str:
    from dvx.cli import human

    return human(n) if isinstance(n, int) else "?"


def _describe(node: Any, esc: Any) -> str:
    a = node.attrs
    if node.kind == "data":
        names = list(a.get("artifacts") or [])
        paths = list(a.get("paths") or [])
        head = ", ".join(names + paths[:3]) + (f" (+{len(paths) - 3} paths)" if len(paths) > 3 else "")
        what = f"{a.get('kind', 'data')}, {_size(a.get('size'))}"
        return f"[bold]{esc(head or '(no name)')}[/] [dim]{node.id[:12]} {what}[/]"
    if node.kind == "run":
        name = a.get("name")
        extra = f" {esc(str(name))}" if name and name != node.id else ""
        return f"[bold cyan]run {esc(node.id)}[/]{extra} [dim]{esc(str(a.get('state') or ''))}[/]"
    return f"[yellow]commit {node.id[:12]}[/] {esc(str(a.get('summary') or ''))}"


def _branches(graph: Any, up: bool, esc: Any) -> list[tuple[int, str]]:
    """``(level, text)`` of the tree below the target, one direction, depth first."""
    adj: dict[str, list[Any]] = {}
    for e in graph.edges:
        near, far = (e.target, e.source) if up else (e.source, e.target)
        adj.setdefault(near, []).append((e.kind, far))
    arrow = "←" if up else "→"
    shown = {graph.target.key}
    lines: list[tuple[int, str]] = []
    stack = [(1, graph.target.key)]
    while stack:
        level, key = stack.pop()
        kids = sorted(adj.get(key, ()), key=lambda kf: (kf[0], kf[1]))
        for kind, far in reversed(kids):  # pushed in reverse: shown in order
            stack.append((-level - 1, far + "\0" + kind))
        while stack and stack[-1][0] < 0:
            lv, packed = stack.pop()
            far, kind = packed.split("\0")
            word = _WORDS.get(kind, (kind, kind))[0 if up else 1]
            again = far in shown
            text = f"{arrow} [italic]{esc(word)}[/] {_describe(graph.node(far), esc)}"
            lines.append((-lv, text + (" [dim](see above)[/]" if again else "")))
            if not again:
                shown.add(far)
                stack.append((-lv, far))
                break
    return lines


def _draw(lines: list[tuple[int, str]]) -> list[str]:
    """Box-drawing guides for ``(level, text)`` lines in depth-first order (one pass
    from the end: ``later[L]`` says a line at level L comes before anything shallower)."""
    out: list[str] = []
    later: dict[int, bool] = {}
    for level, text in reversed(lines):
        guides = "".join("│   " if later.get(lv) else "    " for lv in range(1, level))
        out.append(guides + ("├── " if later.get(level) else "└── ") + text)
        later = {lv: v for lv, v in later.items() if lv < level}
        later[level] = True
    return out[::-1]


def render_text(graph: Any, color: bool = False) -> str:
    """The tree, as text; with rich markup (colour) when ``color``. rich is imported
    only then: a pipe or a script gets the same layout for less start-up time."""
    def esc(value: str) -> str:  # a name's own brackets survive the markup's removal below
        return str(value).replace("[", "\x01")

    if color:
        from rich.markup import escape as esc  # type: ignore[assignment]
    lines: list[tuple[int, str]] = []
    for up, title in ((True, "upstream (what made it)"), (False, "downstream (what was made from it)")):
        if graph.direction in (("up", "both") if up else ("down", "both")):
            below = _branches(graph, up, esc)
            lines.append((1, title))
            lines += below or [(2, "[dim](nothing)[/]")]
    body = [_describe(graph.target, esc), *_draw(lines)]
    text = "\n".join(body)
    if color:
        from rich.console import Console

        console = Console(highlight=False, soft_wrap=True)
        with console.capture() as cap:
            console.print(text)
        return cap.get()
    import re

    return re.sub(r"\[(?:/|bold|dim|italic|yellow|bold cyan)\]", "", text).replace("\x01", "[") + "\n"


def lineage_cmd(
    target: Annotated[str, typer.Argument(help="PATH[@REV], artifact:NAME[:vN|:ALIAS], run:ID or id:HEX")],
    upstream: Annotated[bool, typer.Option("--upstream", help="what made it (the default)")] = False,
    downstream: Annotated[bool, typer.Option("--downstream", help="what was made from it")] = False,
    both: Annotated[bool, typer.Option("--both", help="upstream and downstream")] = False,
    depth: Annotated[int | None, typer.Option("--depth", min=0, help="at most N hops")] = None,
    types: Annotated[list[str] | None, typer.Option(
        "--type", help="keep only these nodes: data, artifact, run, commit (repeatable; others become "
                       "'via' edges)")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="at most N nodes, nearest first")] = None,
    fmt: Annotated[str, typer.Option("--format", help="text, json, dot or mermaid")] = "text",
    as_json: Annotated[bool, typer.Option("--json", help="the same as --format json")] = False,
) -> None:
    """The lineage of data, a run or an artifact: which data and code made it, and what
    was made from it, across every branch, run and artifact."""
    from dvx.cli import _emit_json, _run, _warn, out
    from dvx.errors import UsageError

    def go() -> None:
        from dvx.api import lineage

        chosen = [name for name, on in (("up", upstream), ("down", downstream), ("both", both)) if on]
        if len(chosen) > 1:
            raise UsageError("give at most one of --upstream, --downstream, --both")
        form = "json" if as_json else fmt
        if form not in ("text", "json", "dot", "mermaid"):
            raise UsageError(f"unknown format {fmt!r}", "use text, json, dot or mermaid")
        graph = lineage(target, direction=chosen[0] if chosen else "up", depth=depth, types=types, limit=limit)
        for note in graph.notices:
            _warn(note)
        for cycle in graph.cycles:
            _warn("cycle in the lineage data (a run used what it, or what came from it, produced): "
                  + " -> ".join(cycle))
        if graph.truncated:
            _warn(f"only the nearest {limit} nodes are shown (--limit)")
        if form == "json":
            _emit_json(graph.to_json())
        elif form == "dot":
            out.print(graph.to_dot().rstrip("\n"))
        elif form == "mermaid":
            out.print(graph.to_mermaid().rstrip("\n"))
        else:
            import sys

            out.print(render_text(graph, color=sys.stdout.isatty()).rstrip("\n"))

    _run(go)
