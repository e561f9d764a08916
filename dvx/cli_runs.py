"""``dvx runs ...``: list and show recorded runs (``protocols/runs.md``).

A typer app the main CLI registers with ``app.add_typer(runs_app, name="runs")``.
Like ``dvx/cli.py``, it only parses and renders; ``dvx.runs.catalog`` does the work.
(No ``from __future__ import annotations``: typer reads the annotations.)
"""

import time
from typing import Annotated, Any

import typer

runs_app = typer.Typer(add_completion=False, rich_markup_mode=None, no_args_is_help=True,
                       help="Runs recorded with dvx.init(): list and show them.")

_JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]


def _when(t: Any) -> str:
    if not isinstance(t, (int, float)):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _duration(r: dict) -> str:  # type: ignore[type-arg]
    start, end = r.get("start_time"), r.get("end_time")
    if not isinstance(start, (int, float)):
        return "-"
    seconds = (end if isinstance(end, (int, float)) else time.time()) - start
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def _value(v: Any) -> str:
    import json

    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, str):
        return v
    return json.dumps(v, ensure_ascii=False)


def _json_safe(obj: Any) -> Any:
    import math

    if isinstance(obj, float) and not math.isfinite(obj):
        return {"$float": "nan" if obj != obj else ("inf" if obj > 0 else "-inf")}
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_json_safe(v) for v in obj]
    return obj


@runs_app.command("list")
def list_cmd(
    as_json: _JsonOpt = False,
    limit: Annotated[int | None, typer.Option("--limit", "-n", min=1, help="show at most N runs")] = None,
) -> None:
    """Runs, newest first (a run whose process died is committed as crashed first)."""
    from dvx.cli import _emit_json, _run, out
    from dvx.repo import Repository

    def go() -> None:
        from dvx.runs.catalog import list_runs

        runs = list_runs(Repository.find(), limit)
        if as_json:
            _emit_json([_json_safe({k: r.get(k) for k in (
                "id", "name", "project", "group", "tags", "state", "exit_code", "start_time", "end_time",
                "config", "summary", "ref", "commit")} | {"code_commit": r["code"].get("commit")})
                for r in runs])
            return
        if not runs:
            out.print("no runs yet (record one with dvx.init() in Python)")
            return
        rows = [(r["id"], r["state"], _when(r.get("start_time")), _duration(r), r.get("name") or "",
                 r.get("project") or "") for r in runs]
        heads = ("ID", "STATE", "STARTED", "DURATION", "NAME", "PROJECT")
        widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(heads)]
        for row in (heads, *rows):
            out.print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())

    _run(go)


@runs_app.command("show")
def show_cmd(
    run_id: Annotated[str, typer.Argument(help="run id (or a unique prefix)")],
    as_json: _JsonOpt = False,
) -> None:
    """A run's record: state, code, config, summary, metrics, inputs and outputs."""
    from dvx.cli import _emit_json, _run, out
    from dvx.repo import Repository

    def go() -> None:
        from dvx.runs.catalog import find_run

        r = find_run(Repository.find(), run_id)
        if as_json:
            _emit_json(_json_safe(r))
            return
        code = r.get("code") or {}
        lines = [
            f"run {r['id']}  {r.get('name') or ''}",
            f"state:    {r['state']}"
            + (f" (exit code {r['exit_code']})" if r.get("exit_code") is not None else "")
            + (f" ({r['signal']})" if r.get("signal") else ""),
            f"project:  {r.get('project') or '-'}" + (f"   group: {r['group']}" if r.get("group") else ""),
            f"started:  {_when(r.get('start_time'))}   duration: {_duration(r)}",
            f"ref:      {r['ref']}" + (f" ({r['commit'][:12]})" if r.get("commit") else " (not committed yet)"),
            f"code:     {code.get('commit') or 'no commit'}"
            + (" + uncommitted changes" if code.get("dirty") else "")
            + (f" on {code['branch']}" if code.get("branch") else ""),
        ]
        if r.get("tags"):
            lines.append(f"tags:     {', '.join(r['tags'])}")
        if r.get("notes"):
            lines.append(f"notes:    {r['notes']}")
        for title, values in (("config", r.get("config") or {}), ("summary", r.get("summary") or {})):
            if values:
                lines.append(f"{title}:")
                lines.extend(f"  {k} = {_value(v)}" for k, v in sorted(values.items()))
        hist = r.get("history") or {}
        if hist.get("keys"):
            lines.append(f"metrics:  {hist.get('points', 0)} points")
            for k, s in hist["keys"].items():
                lines.append(f"  {k}: {s['count']} points, steps {s['first_step']}..{s['last_step']}, "
                             f"last {_value(s['last'])}"
                             + (f", min {_value(s['min'])}, max {_value(s['max'])}" if s.get("min") is not None
                                else ""))
        for title in ("inputs", "outputs"):
            for e in r.get(title) or []:
                extra = f" [{e['type']}]" if e.get("type") else ""
                lines.append(f"{title[:-1]}:   {e['path']} ({e['kind']} {e['id'][:12]}, "
                             f"{e['size']} bytes){extra}")
        for line in lines:
            out.print(line)

    _run(go)


@runs_app.command("rm")
def rm_cmd(
    run_id: Annotated[str, typer.Argument(help="run id (or a unique prefix)")],
    remote: Annotated[bool, typer.Option("--remote", help="also delete it on the git remote runs "
                                                          "travel to")] = False,
    as_json: _JsonOpt = False,
) -> None:
    """Delete a run (its ref refs/dvx/runs/ID); `dvx gc` can then reclaim its data."""
    from dvx.cli import _emit_json, _run, out

    def go() -> None:
        from dvx.api import runs_rm

        rep = runs_rm(run_id, remote=remote)
        if as_json:
            _emit_json(rep)
            return
        out.print(f"deleted run {rep['id']} ({rep['ref']} was {rep['commit'][:12]})"
                  + (f", also on {rep['remote']}" if rep["remote_deleted"] else ""))
        out.print("`dvx gc` can now reclaim its data"
                  + ("" if rep["remote_deleted"] else "; if it was pushed, it is still on the git remote "
                     "(`dvx runs rm --remote` deletes it there, else `dvx fetch` brings it back)"))

    _run(go)


@runs_app.command("promote")
def promote_cmd(
    run_id: Annotated[str, typer.Argument(help="run id (or a unique prefix)")],
    as_json: _JsonOpt = False,
) -> None:
    """Commit a run's inputs and outputs on the current branch (like `dvx commit`)."""
    from dvx.cli import _emit_json, _fail_if, _run, out

    def go() -> None:
        from dvx.api import runs_promote

        rep = runs_promote(run_id)
        if as_json:
            _emit_json(rep)
        else:
            where = (rep["branch"] or "HEAD").removeprefix("refs/heads/")
            out.print(f"[{where} {rep['commit'][:7]}] promoted run {rep['id']}: {', '.join(rep['paths'])}")
        _fail_if(rep["errors"])

    _run(go)


#: ``dvx run``: registered by ``dvx/cli.py`` with RUN_CONTEXT (options after the
#: command's first word belong to the command)
RUN_CONTEXT = {"allow_interspersed_args": False, "ignore_unknown_options": True}


def run_cmd(
    command: Annotated[list[str], typer.Argument(help="the command and its arguments", metavar="[--] CMD...")],
    name: Annotated[str | None, typer.Option("--name", "-n", help="the run's name")] = None,
    inputs: Annotated[list[str] | None, typer.Option("--input", "-i", help="data the command reads "
                                                     "(verified, recorded; added if untracked)")] = None,
    outputs: Annotated[list[str] | None, typer.Option("--output", "-o", help="data the command writes "
                                                      "(added to the store after a zero exit)")] = None,
    as_json: _JsonOpt = False,
) -> None:
    """Record any command as a run: inputs, outputs, console, system metrics, exit code.

    A Python child calling dvx.init() joins the run (DVX_RUN_ID, DVX_RUN_ROOT). The exit
    status is the command's."""
    from dvx.cli import _emit_json, _run, print_error

    def go() -> int:
        from dvx.api import run_command

        rep = run_command(command, name=name, inputs=inputs or None, outputs=outputs or None)
        for e in rep.errors:
            print_error(e)
        if as_json:
            _emit_json(rep.to_json())
        else:
            import sys

            sys.stderr.write(f"dvx run: run {rep.id} {rep.state} (exit code {rep.exit_code})"
                             + (f", committed as {rep.ref}\n" if rep.commit else "\n"))
        return int(rep.exit_code)

    code = _run(go)
    if code:
        raise typer.Exit(code)


def main() -> None:
    """``python -m dvx.cli_runs runs ...``: the main CLI with this app registered (the
    form tests use until ``dvx/cli.py`` registers it)."""
    from dvx.cli import app
    from dvx.cli import main as cli_main

    if not any(getattr(g, "name", None) == "runs" for g in app.registered_groups):
        app.add_typer(runs_app, name="runs")
    cli_main()


if __name__ == "__main__":
    main()
