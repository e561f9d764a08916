"""The ``dvx`` command line (typer + rich). Parses arguments, calls ``dvx.ops``, renders.

No logic lives here: every command is a thin wrapper over an operation that the Python
API uses too. Errors become one ``error: ...`` line on stderr and a non-zero exit.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from dvx.errors import DvxError
from dvx.progress import NULL_PROGRESS, Progress

app = typer.Typer(add_completion=False, rich_markup_mode=None,
                  help="DVX: git for data and experiments.")
_state = {"verbose": False}


class _Out:
    """Plain text on stdout. rich is imported only where it draws something (progress
    bars and colours on a terminal), which keeps `dvx status` start-up fast."""

    @staticmethod
    def print(text: str = "") -> None:
        sys.stdout.write(f"{text}\n")


out = _Out()


def _stderr_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _print_error(message: str) -> None:
    if _stderr_tty():
        from rich.console import Console
        from rich.markup import escape

        Console(stderr=True, highlight=False, soft_wrap=True).print(
            f"[bold red]error:[/] {escape(message)}")
    else:
        sys.stderr.write(f"error: {message}\n")
T = TypeVar("T")

JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]


class RichProgress(Progress):
    """Draws progress on a terminal; silent when stderr is not a TTY (scripts, CI)."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._task: Any = None
        self._enabled = not os.environ.get("DVX_NO_PROGRESS")

    def start(self, description: str, total: int | None = None, unit: str = "files") -> None:
        if not self._enabled:
            return
        self.finish()
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as RichBar

        cols: list[Any] = [TextColumn("{task.description}"), BarColumn()]
        cols += ([DownloadColumn(), TransferSpeedColumn()] if unit == "bytes"
                 else [MofNCompleteColumn()])
        cols.append(TimeRemainingColumn())
        self._bar = RichBar(*cols, console=Console(stderr=True), transient=True)
        self._bar.start()
        self._task = self._bar.add_task(description, total=total)

    def advance(self, amount: int = 1) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, amount)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def _progress() -> Progress:
    return RichProgress() if _stderr_tty() else NULL_PROGRESS


def _run(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except DvxError as exc:
        if _state["verbose"]:
            import traceback

            traceback.print_exc()
        _print_error(str(exc))
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        _print_error("interrupted; nothing was lost, re-run the command to finish")
        raise typer.Exit(130) from None


def _emit_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _repo():  # type: ignore[no-untyped-def]
    import atexit

    from dvx.repo import Repository

    repo = Repository.find()
    atexit.register(repo.memo.save)
    return repo


def human(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)


@app.callback(invoke_without_command=True)
def _main(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="tracebacks on errors")] = False,
    version: Annotated[bool, typer.Option("--version", help="print the version")] = False,
) -> None:
    _state["verbose"] = verbose
    if version:
        from dvx import __version__

        out.print(f"dvx {__version__}")
        raise typer.Exit(0)
    if ctx.invoked_subcommand is None:
        out.print(ctx.get_help())
        raise typer.Exit(0)


@app.command()
def init(
    path: Annotated[str, typer.Argument(help="work tree (default: current directory)")] = ".",
) -> None:
    """Make a git work tree a DVX repository (creates the git repository if absent)."""

    def go() -> None:
        from dvx.ops.init import init as do_init

        repo, created, git_created = do_init(path)
        what = "Initialized" if created else "Reinitialized existing"
        out.print(f"{what} DVX repository in {repo.dvx_dir}"
                  + (" (and a new git repository)" if git_created else ""))

    _run(go)


@app.command()
def add(paths: Annotated[list[str], typer.Argument(help="files or directories to track")]) -> None:
    """Track files and directories: store their content, write PATH.dvx pointers."""

    def go() -> None:
        from dvx.ops.add import add as do_add

        results = do_add(_repo(), paths, _progress())
        for r in results:
            if not r.changed:
                out.print(f"unchanged {r.target}")
            else:
                out.print(f"added {r.target} ({human(r.pointer.size)}, {r.pointer.files} files, "
                          f"{r.hashed_files} hashed, {human(r.bytes_stored)} new in store)")

    _run(go)


@app.command()
def status(
    paths: Annotated[list[str] | None, typer.Argument(help="limit to these paths")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show tracked paths that changed, were deleted, or whose data is missing."""

    def go() -> int:
        from dvx.ops.status import status as do_status

        results = do_status(_repo(), paths or None, _progress())
        dirty = [r for r in results if r.state != "clean"]
        if as_json:
            _emit_json({"clean": not dirty, "paths": [r.to_json() for r in results]})
            return 0
        if not results:
            out.print("nothing tracked yet (track data with `dvx add PATH`)")
        elif not dirty:
            out.print("data is up to date with the pointers")
        for r in dirty:
            extra = f" ({r.message})" if r.message else ""
            out.print(f"{r.state}: {r.target}{extra}")
            for name in r.added:
                out.print(f"    added:    {r.target}/{name}")
            for name in r.modified:
                out.print(f"    modified: {r.target}/{name}")
            for name in r.deleted:
                out.print(f"    deleted:  {r.target}/{name}")
        return 0

    _run(go)


@app.command()
def checkout(
    paths: Annotated[list[str] | None, typer.Argument(help="limit to these paths")] = None,
    rev: Annotated[str | None, typer.Option("--rev", help="git revision to take pointers from")] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="discard unsaved changes")] = False,
) -> None:
    """Make the work tree's data match the pointers (of REV)."""

    def go() -> None:
        from dvx.ops.checkout import checkout as do_checkout

        repo = _repo()
        pointers = None
        if rev is not None:
            from dvx.ops.revs import pointers_at_rev_for_paths

            pointers = pointers_at_rev_for_paths(repo, rev, paths or None)
        results = do_checkout(repo, paths or None, force=force, pointers=pointers,
                              progress=_progress())
        restored = sum(len(r.restored) for r in results)
        removed = sum(len(r.removed) for r in results)
        for r in results:
            if r.restored or r.removed:
                out.print(f"{r.target}: {len(r.restored)} restored, {len(r.removed)} removed")
        if not restored and not removed:
            out.print("data already matches the pointers")

    _run(go)


@app.command("ls")
def ls_cmd(
    path: Annotated[str | None, typer.Argument(help="tracked path (default: all)")] = None,
    rev: Annotated[str | None, typer.Option("--rev", help="git revision")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List tracked data, or the files of a tracked directory."""

    def go() -> None:
        from dvx.ops.ls import ls as do_ls

        repo = _repo()
        pointers = None
        if rev is not None:
            from dvx.ops.revs import pointers_at_rev

            pointers = pointers_at_rev(repo, rev)
        entries = do_ls(repo, path, pointers)
        if as_json:
            _emit_json([e.to_json() for e in entries])
            return
        for e in entries:
            extra = f" -> {e.target}" if e.kind == "link" else ""
            files = f"{e.files} files" if e.kind == "tree" else ""
            ident = (e.id or "")[:12]
            out.print(f"{e.kind:5} {human(e.size):>10} {files:>12} {ident:12} {e.path}{extra}")

    _run(go)


@app.command()
def fsck(as_json: JsonOpt = False) -> None:
    """Verify every object, pack and pointer; exits non-zero if anything is wrong."""

    def go() -> int:
        from dvx.ops.fsck import fsck as do_fsck

        report = do_fsck(_repo(), _progress())
        if as_json:
            _emit_json(report.to_json())
        else:
            for p in report.problems:
                users = f"; used by {', '.join(p.used_by[:5])}" if p.used_by else ""
                more = f" and {len(p.used_by) - 5} more" if len(p.used_by) > 5 else ""
                out.print(f"bad {p.what} {p.name}: {p.message}{users}{more}")
            verdict = "ok" if report.ok else f"{len(report.problems)} problem(s)"
            out.print(f"checked {report.packs} packs, {report.objects} objects, "
                      f"{report.pointers} pointers: {verdict}")
        return 0 if report.ok else 1

    code = _run(go)
    if code:
        raise typer.Exit(code)


def main() -> None:
    # pydantic looks for plugins through importlib.metadata on first use (~20 ms); the
    # CLI uses none. Library users keep their own setting.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    try:
        app()
    except BrokenPipeError:  # e.g. `dvx ls | head`
        sys.stderr.close()
        sys.exit(1)
