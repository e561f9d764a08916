"""The ``dvx`` command line (typer): parses arguments, calls ``dvx.api``, renders.

No logic lives here: every command calls one function of the Python API
(``dvx/api.py``) and prints its result, as text or with ``--json``. One handler turns
errors into what git and pip print on stderr::

    error: <what is wrong>
    hint: <what to do>

with exit status 2 for a usage error (a bad option or argument: nothing was done) and
1 for a failure. Any progress bar is taken off the screen before such a line is
written (``dvx.progress.clear_live``).

(No ``from __future__ import annotations`` here: typer would then evaluate every
command's string annotations on every start, ~20 ms of each command's run time.)
"""

import os
import sys
from collections.abc import Callable
from typing import Annotated, Any, NoReturn, TypeVar

import click
import typer
from typer.core import TyperCommand, TyperGroup

from dvx.errors import DvxError, UsageError, error_parts
from dvx.progress import Progress, clear_live

T = TypeVar("T")
_state = {"verbose": False}

EXIT_SIGPIPE = 141  # what a shell reports for git killed by SIGPIPE in `git log | head`


class _StdoutClosed(Exception):
    """The reader of stdout went away (`dvx ls | head`): not an error, stop quietly."""


def _write_stdout(text: str) -> None:
    stream = sys.stdout
    try:
        raw = getattr(stream, "buffer", None)
        if len(text) <= 4096 or raw is None:
            stream.write(text)  # buffered: a closed pipe shows at a later flush
            return
        # A large write that the reader cuts short comes back short, with no error and
        # the rest dropped (io.BufferedWriter): write the rest too, which then raises.
        stream.flush()
        data = memoryview(text.encode(stream.encoding or "utf-8", stream.errors or "strict"))
        while data:
            n = raw.write(data)
            data = data[len(data) if n is None else n:]
    except BrokenPipeError:
        raise _StdoutClosed from None


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so what is still buffered cannot fail again at exit
    (Python would print "Exception ignored ... BrokenPipeError")."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError, AttributeError):
        pass  # not a real file (tests capture stdout): nothing is flushed at exit


class _Out:
    """Plain text on stdout. rich is imported only where it draws something (progress
    bars and colours on a terminal), which keeps `dvx status` start-up fast."""

    @staticmethod
    def print(text: str = "") -> None:
        _write_stdout(f"{text}\n")


out = _Out()


def _stderr_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _stderr_lines(lines: list[tuple[str, str, str]]) -> None:
    """``(label, colour, text)`` lines on stderr, after taking progress bars off the
    screen; the label coloured on a terminal."""
    clear_live()
    if _stderr_tty():
        from rich.console import Console
        from rich.markup import escape

        console = Console(stderr=True, highlight=False, soft_wrap=True)
        for label, colour, text in lines:
            console.print(f"[{colour}]{label}:[/] {escape(text)}")
    else:
        sys.stderr.write("".join(f"{label}: {text}\n" for label, _, text in lines))
        sys.stderr.flush()


def print_error(error: object) -> None:
    """``error: MESSAGE`` and, when there is one, ``hint: HINT`` on the next line. Takes
    a DvxError, the text of one (``str(exc)``, as results carry them), or any string."""
    message, hint = error_parts(error)
    lines = [("error", "bold red", message)]
    if hint:
        lines.append(("hint", "bold yellow", hint))
    _stderr_lines(lines)


def _warn(message: str) -> None:
    _stderr_lines([("warning", "yellow", message)])


def _fail_if(errors: list[str]) -> None:
    """After a command did all it could: each part that failed, and exit 1 if any."""
    for e in errors:
        print_error(e)
    if errors:
        raise typer.Exit(1)


def _run(fn: Callable[[], T]) -> T:
    """Run a command's body: the one place where errors become ``error:`` lines."""
    try:
        return fn()
    except DvxError as exc:
        _traceback()
        print_error(exc)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        print_error(DvxError("interrupted", "nothing was lost; re-run the command to finish"))
        raise typer.Exit(130) from None
    except _StdoutClosed:
        clear_live()
        _drop_stdout()
        raise typer.Exit(EXIT_SIGPIPE) from None
    except OSError as exc:  # environment trouble not mapped closer to its cause
        _traceback()
        from dvx.fsutil import os_error

        where = exc.filename if exc.filename else "a file"
        print_error(os_error(exc, f"access {where}"))
        raise typer.Exit(1) from None


def _traceback() -> None:
    if _state["verbose"]:
        import traceback

        clear_live()
        traceback.print_exc()


def _command_name(ctx: click.Context | None) -> str:
    """``dvx remote add``, whatever the program is called (`python -m dvx`...)."""
    names: list[str] = []
    while ctx is not None and ctx.parent is not None:
        names.insert(0, ctx.info_name or "")
        ctx = ctx.parent
    return " ".join(["dvx", *names])


def _usage_exit(ctx: click.Context | None, message: str, hint: str | None = None) -> NoReturn:
    print_error(UsageError(message, hint or f"see `{_command_name(ctx)} --help`"))
    raise typer.Exit(UsageError.exit_code)


def _click_usage(exc: click.UsageError) -> NoReturn:
    """click's usage errors (missing argument, bad value, unknown command or option)
    in DVX's format: exit 2, with the command's --help as the hint."""
    text = exc.format_message().strip().rstrip(".")
    text = text[:1].lower() + text[1:]
    _usage_exit(exc.ctx, text)


def _usage_in_dvx_format(call: Callable[[], T]) -> T:
    """Run a click step; its usage errors (not `--help` for a bare group) become DVX's."""
    try:
        return call()
    except click.exceptions.NoArgsIsHelpError:
        raise
    except click.UsageError as exc:
        _click_usage(exc)


class DvxGroup(TyperGroup):
    """The ``dvx`` group (and its sub-groups): usage errors in DVX's format."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return _usage_in_dvx_format(lambda: super(DvxGroup, self).parse_args(ctx, args))

    def invoke(self, ctx: click.Context) -> Any:
        # resolves and parses the subcommand
        return _usage_in_dvx_format(lambda: super(DvxGroup, self).invoke(ctx))


class DvxCommand(TyperCommand):
    """A command whose usage errors come out in DVX's format."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return _usage_in_dvx_format(lambda: super(DvxCommand, self).parse_args(ctx, args))


class PathsCommand(DvxCommand):
    """A command that takes paths: a word that looks like an option but is none may be
    a file whose name starts with '-', which goes after `--` (as with git and rm)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        given = list(args)  # click consumes the list it parses
        try:
            return TyperCommand.parse_args(self, ctx, args)
        except click.NoSuchOption as exc:
            # click names only the first letter of `-dash.bin` (a cluster of short options)
            words = given[:given.index("--")] if "--" in given else given
            word = next((w for w in words if w.startswith(exc.option_name)), exc.option_name)
            cmd = _command_name(ctx)
            if os.path.lexists(word) or any(c in word for c in "./"):
                what = "to add a file" if ctx.info_name == "add" else "for a path"
                hint = f"{what} whose name starts with '-', use `{cmd} -- {word}`"
            else:
                hint = f"see `{cmd} --help`; a path that starts with '-' goes after `--`"
            _usage_exit(ctx, f"no such option {word}", hint)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            _click_usage(exc)


def _warn_skipped(target: str, skipped: list[str]) -> None:
    """FIFOs, sockets and devices inside a tracked directory are not data: say so."""
    if skipped:
        shown = ", ".join(quote_path(x) for x in skipped[:5])
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        _warn(f"{quote_path(target)}: not tracked, not regular files: {shown}{more} "
              "(DVX tracks files, symlinks and directories)")


def shell_quote(word: str) -> str:
    """``word`` as a POSIX shell reads it back (for commands DVX tells the user to run)."""
    import shlex

    return shlex.quote(word)


def quote_path(name: str) -> str:
    """A path as git prints it (core.quotePath, but UTF-8 letters kept): as is, unless it
    holds a control character, a backslash or a double quote; then C-style escapes
    inside double quotes, so one name is always one line. For text output only."""
    if name.isprintable() and '"' not in name and "\\" not in name:
        return name
    out = []
    quoted = False
    for ch in name:
        code = ord(ch)
        if ch in _C_ESCAPES:
            out.append(_C_ESCAPES[ch])
        elif code < 0x20 or 0x7F <= code < 0xA0 or code in (0x2028, 0x2029) \
                or 0xDC80 <= code <= 0xDCFF:  # last: a byte that is not UTF-8
            raw = ch.encode("utf-8", "surrogateescape")
            out.append("".join(f"\\{b:03o}" for b in raw))
        else:
            out.append(ch)
            continue
        quoted = True
    return '"' + "".join(out) + '"' if quoted else name


_C_ESCAPES = {"\a": "\\a", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\v": "\\v", "\f": "\\f",
              "\r": "\\r", '"': '\\"', "\\": "\\\\"}

app = typer.Typer(cls=DvxGroup, add_completion=False, rich_markup_mode=None,
                  help="DVX: git for data and experiments.")
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]


def _progress() -> Progress:
    from dvx.progress import terminal

    return terminal()


def _emit_json(data: object) -> None:
    import json  # only here: text output need not pay for it (~1.5 ms)

    _write_stdout(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


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


@app.command(cls=DvxCommand)
def init(
    path: Annotated[str, typer.Argument(help="work tree (default: current directory)")] = ".",
    as_json: JsonOpt = False,
) -> None:
    """Make a git work tree a DVX repository (creates the git repository if absent)."""

    def go() -> None:
        from dvx.api import init_repo

        res = init_repo(path)
        if as_json:
            _emit_json(res.to_json())
            return
        what = "Initialized" if res.created else "Reinitialized existing"
        out.print(f"{what} DVX repository in {res.dvx_dir}"
                  + (" (and a new git repository)" if res.git_created else ""))

    _run(go)


@app.command(cls=PathsCommand)
def add(
    paths: Annotated[list[str], typer.Argument(help="files or directories to track")],
    as_json: JsonOpt = False,
) -> None:
    """Track files and directories: store their content, write PATH.dvx pointers."""

    def go() -> None:
        from dvx.api import add as api_add

        rep = api_add(paths, progress=_progress())
        for r in rep:
            _warn_skipped(r.target, r.skipped)
            if r.in_git:
                where = os.path.relpath(os.path.join(rep.root, r.target))  # as the user can type it
                if r.in_git == [r.target]:
                    _warn(f"git also tracks {quote_path(where)}; run `git rm --cached {shell_quote(where)}` "
                          "so that only its pointer goes into git")
                else:
                    shown = ", ".join(quote_path(x) for x in r.in_git[:3]) + (
                        ", ..." if len(r.in_git) > 3 else "")
                    _warn(f"git also tracks {len(r.in_git)} files in {quote_path(where)} ({shown}); run "
                          f"`git rm -r --cached {shell_quote(where)}` so that only its pointer goes into git")
        if as_json:
            _emit_json(rep.to_json())
            return
        for r in rep:
            if not r.changed and not r.bytes_stored:
                out.print(f"unchanged {r.target}")
            else:
                out.print(f"added {r.target} ({human(r.pointer.size)}, {r.pointer.files} files, "
                          f"{r.hashed_files} hashed, {human(r.bytes_stored)} new in store)")

    _run(go)


@app.command(cls=PathsCommand)
def status(
    paths: Annotated[list[str] | None, typer.Argument(help="limit to these paths")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show tracked paths that changed, were deleted, or whose data is missing."""

    def go() -> None:
        from dvx.api import status as api_status

        rep = api_status(paths or None, progress=_progress())
        for r in rep:
            _warn_skipped(r.target, r.skipped)
        if as_json:
            _emit_json(rep.to_json())
            if rep.errors:  # named in the JSON
                raise typer.Exit(1)
            return
        if not rep.paths:
            out.print("nothing tracked yet (track data with `dvx add PATH`)")
        elif rep.clean:
            out.print("data is up to date with the pointers")
        for r in rep:
            if r.state in ("clean", "broken-pointer"):
                continue  # broken pointers: on stderr below
            extra = f" ({r.message})" if r.message else ""
            out.print(f"{r.state}: {quote_path(r.target)}{extra}")
            for name in r.added:
                out.print(f"    added:    {quote_path(r.target + '/' + name)}")
            for name in r.modified:
                out.print(f"    modified: {quote_path(r.target + '/' + name)}")
            for name in r.deleted:
                out.print(f"    deleted:  {quote_path(r.target + '/' + name)}")
        for note in rep.notes:
            out.print(f"note: {note}")
        _fail_if(rep.errors)

    _run(go)


@app.command(cls=PathsCommand)
def checkout(
    paths: Annotated[list[str] | None, typer.Argument(help="limit to these paths")] = None,
    rev: Annotated[str | None, typer.Option("--rev", help="git revision to take pointers from")] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="discard unsaved changes")] = False,
    ours: Annotated[bool, typer.Option("--ours", help="pointer in merge conflict: take our side")] = False,
    theirs: Annotated[bool, typer.Option("--theirs", help="pointer in merge conflict: take theirs")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Make the work tree's data match the pointers (of REV)."""

    def go() -> None:
        from dvx.api import checkout as api_checkout

        rep = api_checkout(paths or None, rev=rev, force=force, ours=ours, theirs=theirs,
                           progress=_progress())
        if as_json:
            _emit_json(rep.to_json())
        elif rep.side:
            for r in rep:
                if r.error:
                    continue
                out.print(f"took {rep.side} version of {r.target} ({len(r.restored)} restored, "
                          f"{len(r.removed)} removed); `git add {r.target}.dvx` or `dvx commit` "
                          "marks it resolved")
        else:
            for r in rep:
                if r.restored or r.removed:
                    out.print(f"{r.target}: {len(r.restored)} restored, {len(r.removed)} removed")
            if not rep.restored and not rep.removed and not rep.errors:
                out.print("data already matches the pointers")
        _fail_if(rep.errors)

    _run(go)


@app.command("ls", cls=PathsCommand)
def ls_cmd(
    path: Annotated[str | None, typer.Argument(help="tracked path (default: all)")] = None,
    rev: Annotated[str | None, typer.Option("--rev", help="git revision")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List tracked data, or the files of a tracked directory."""

    def go() -> None:
        from dvx.api import ls as api_ls

        rep = api_ls(path, rev=rev)
        if as_json:
            _emit_json(rep.to_json())
        else:  # one write, sizes formatted once each: a directory may list 100,000 files
            sizes: dict[int, str] = {}
            lines = []
            for e in rep:
                extra = f" -> {quote_path(e.target or '')}" if e.kind == "link" else ""
                files = f"{e.files} files" if e.kind == "tree" else ""
                ident = (e.id or "")[:12]
                size = sizes.get(e.size)
                if size is None:
                    size = sizes[e.size] = human(e.size)
                lines.append(f"{e.kind:5} {size:>10} {files:>12} {ident:12} {quote_path(e.path)}{extra}\n")
            if lines:
                _write_stdout("".join(lines))
        _fail_if(rep.errors)

    _run(go)


@app.command(cls=DvxCommand)
def get(
    repo: Annotated[str, typer.Argument(help="the DVX repository: a local path or a git URL")],
    path: Annotated[str, typer.Argument(help="tracked file or directory, from the repository's root")],
    rev: Annotated[str | None, typer.Option("--rev", help="git revision (default: its HEAD)")] = None,
    output: Annotated[str | None, typer.Option(
        "--out", "-o", help="where to write (default: its name)")] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="overwrite existing files")] = False,
    remote: Annotated[str | None, typer.Option("--remote", "-r", help="DVX remote to read from")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Download one version of tracked data from any DVX repository into a plain
    directory (which does not become a DVX repository)."""

    def go() -> None:
        from dvx.api import get as api_get

        res = api_get(repo, path, rev=rev, out=output, force=force, remote=remote, progress=_progress())
        if as_json:
            _emit_json(res.to_json())
            return
        at = f" at {res.commit[:12]}" if res.commit else ""
        out.print(f"got {quote_path(res.path)}{at}: {res.files} files, {human(res.bytes)} -> "
                  f"{quote_path(res.out)}")
        if res.overwritten:
            out.print(f"overwrote {len(res.overwritten)} existing files (--force)")
        for link in res.skipped:
            _warn(f"{quote_path(link)}: a symbolic link pointing outside the output, not created")

    _run(go)


@app.command(cls=DvxCommand)
def fsck(
    remote: Annotated[str | None, typer.Option("--remote", "-r", help="verify this remote instead")] = None,
    download: Annotated[bool, typer.Option(
        "--download", help="with --remote: download and hash every pack")] = False,
    verbose: Annotated[bool, typer.Option(
        "--verbose", help="list every bad or missing object (default: a summary per path)")] = False,
    repair: Annotated[bool, typer.Option(
        "--repair", help="restore damaged or missing objects from a remote, then verify again")] = False,
    repair_from: Annotated[str | None, typer.Option(
        "--from", help="with --repair: the remote to restore from (default: the default remote)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify every object, pack and pointer; exits non-zero if anything is wrong."""

    def go() -> bool:
        from dvx.api import fsck as api_fsck

        rep = api_fsck(remote=remote, download=download, repair=repair, repair_from=repair_from,
                       progress=_progress())
        if as_json:
            _emit_json(rep.to_json())
            return rep.ok
        if remote is not None:
            from dvx.ops.remote_maint import RemoteFsckReport

            assert isinstance(rep, RemoteFsckReport)
            for p in rep.problems:
                out.print(f"bad {p.what} {p.name}: {p.message}")
            for note in rep.notes:
                out.print(f"note: {note}")
            verdict = "ok" if rep.ok else f"{len(rep.problems)} problem(s)"
            out.print(f"remote {rep.remote}: checked {rep.roots} versions, {rep.packs} packs, "
                      f"{rep.objects} objects: {verdict}")
            return rep.ok
        from dvx.ops.fsck import FsckReport

        assert isinstance(rep, FsckReport)
        fixed = rep.repair
        if fixed is not None:
            if fixed.packs_set_aside:
                out.print(f"repair: moved {len(fixed.packs_set_aside)} damaged packs to .dvx/store/damaged/ "
                          f"({fixed.objects_unsaved} objects could not be read back)")
            if fixed.remote is not None:
                out.print(f"repair: restored {fixed.versions_restored} versions from {fixed.remote} "
                          f"({fixed.objects_fetched} objects, {human(fixed.bytes_downloaded)})")
            for line in fixed.not_restored:
                out.print(f"repair: not restored: {line}")
        _print_fsck_problems(rep.problems, verbose or _state["verbose"])
        for note in rep.notes:
            out.print(f"note: {note}")
        verdict = "ok" if rep.ok else f"{len(rep.problems)} problem(s)"
        out.print(f"checked {rep.packs} packs, {rep.objects} objects, "
                  f"{rep.pointers} pointers: {verdict}")
        return rep.ok

    if not _run(go):
        raise typer.Exit(1)


FSCK_LIST_UP_TO = 10  # object problems listed one per line; more are summed up per path


def _print_fsck_problems(problems, verbose: bool) -> None:  # type: ignore[no-untyped-def]
    """One line per problem, except many bad or missing objects (a killed fetch leaves
    tens of thousands): then one line per tracked path and kind of problem, with counts
    and the first ids. ``--verbose`` (and --json) list them all."""
    objects = [p for p in problems if p.what == "object"]
    summed = not verbose and len(objects) > FSCK_LIST_UP_TO
    for p in problems:
        if summed and p.what == "object":
            continue
        users = f"; used by {', '.join(quote_path(u) for u in p.used_by[:5])}" if p.used_by else ""
        more = f" and {len(p.used_by) - 5} more" if len(p.used_by) > 5 else ""
        out.print(f"bad {p.what} {quote_path(p.name)}: {p.message}{users}{more}")
    if not summed:
        return
    groups: dict[tuple[str, bool], list[Any]] = {}
    for p in objects:
        for target in p.pointers or ["(no tracked path)"]:
            groups.setdefault((target, p.missing), []).append(p)
    for (target, missing), probs in sorted(groups.items()):
        ids = ", ".join(p.name[:12] for p in probs[:3]) + (", ..." if len(probs) > 3 else "")
        files = len({u for p in probs for u in p.used_by})
        if missing:
            out.print(f"{quote_path(target)}: {len(probs)} objects missing from the store, needed by "
                      f"{files} files ({ids}); `dvx fetch` downloads them")
        else:
            out.print(f"{quote_path(target)}: {len(probs)} bad objects, used by {files} files ({ids}); "
                      f"first: {probs[0].message}")
    out.print(f"({len(objects)} bad or missing objects in all; `dvx fsck --verbose` lists each one)")


@app.command(cls=PathsCommand)
def commit(
    message: Annotated[str, typer.Option("--message", "-m", help="commit message")],
    paths: Annotated[list[str] | None, typer.Argument(help="limit to these tracked paths")] = None,
    all_files: Annotated[bool, typer.Option("--all", "-a", help="also stage modified code files")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Re-add changed data, stage pointers and .gitignore, and make a git commit."""

    def go() -> None:
        from dvx.api import commit as api_commit

        res = api_commit(message, paths or None, all_files=all_files, progress=_progress())
        if as_json:
            _emit_json(res.to_json())
        else:
            for t in res.readded:
                out.print(f"re-added {t}")
            for t in res.stale:
                out.print(f"not re-added {t}: its data is older than {t}.dvx (changed in git); "
                          f"run `dvx checkout {t}`")
            out.print(f"committed {res.sha[:12]}: {message.splitlines()[0]}")
        _fail_if(res.errors)

    _run(go)


@app.command(cls=DvxCommand)
def diff(
    rev_a: Annotated[str | None, typer.Argument(metavar="[REV]", help="old side (default HEAD)")] = None,
    rev_b: Annotated[str | None, typer.Argument(metavar="[REV]", help="new side (default: work tree)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Per-file changes of tracked data between revisions (or a revision and the work tree)."""

    def go() -> None:
        from dvx.api import diff as api_diff

        rep = api_diff(rev_a, rev_b, unsaved=not as_json)
        if as_json:
            _emit_json(rep.to_json())
            _fail_if(rep.errors)
            return
        if not rep.entries:
            out.print("no changes in tracked data")
        if rep.unsaved:
            out.print(f"(not included: unsaved changes in {', '.join(rep.unsaved)}; see `dvx status`)")
        for e in rep:
            if e.status == "renamed":
                out.print(f"renamed:  {quote_path(e.old_path or '')} -> {quote_path(e.path)} "
                          f"({human(e.new_size or 0)})")
            elif e.status == "modified":
                out.print(f"modified: {quote_path(e.path)} "
                          f"({human(e.old_size or 0)} -> {human(e.new_size or 0)})")
            elif e.status == "added":
                out.print(f"added:    {quote_path(e.path)} ({human(e.new_size or 0)})")
            else:
                out.print(f"deleted:  {quote_path(e.path)} ({human(e.old_size or 0)})")
        _fail_if(rep.errors)

    _run(go)


@app.command(cls=PathsCommand)
def log(
    path: Annotated[str | None, typer.Argument(help="tracked path (default: all)")] = None,
    max_count: Annotated[int | None, typer.Option("--max-count", "-n", help="at most N versions")] = None,
    rev: Annotated[str, typer.Option("--rev", help="start from this revision")] = "HEAD",
    as_json: JsonOpt = False,
) -> None:
    """The versions of tracked data through git history."""

    def go() -> None:
        from dvx.api import log as api_log

        rep = api_log(path, max_count=max_count, rev=rev)
        if as_json:
            _emit_json(rep.to_json())
            return
        for e in rep:
            counts = ""
            if e.added is not None or e.modified is not None or e.deleted is not None:
                counts = f" +{e.added or 0} ~{e.modified or 0} -{e.deleted or 0}"
            what = f"{human(e.size)}, {e.files} files" if e.size is not None else "removed"
            out.print(f"{e.commit[:12]} {e.date} {e.change:8} {e.path} ({what}){counts}  {e.message}")

    _run(go)


hooks_app = typer.Typer(cls=DvxGroup, help="Install or remove DVX's git hooks.", add_completion=False)
app.add_typer(hooks_app, name="hooks")


@hooks_app.command("install", cls=DvxCommand)
def hooks_install() -> None:
    """Install pre-commit, post-checkout, post-merge and pre-push hooks (chaining yours)."""

    def go() -> None:
        from dvx.api import hooks_install as api_install

        for ch in api_install():
            extra = " (your existing hook runs first)" if ch.action == "chained" else ""
            out.print(f"{ch.action}: {ch.name}{extra}")

    _run(go)


@hooks_app.command("uninstall", cls=DvxCommand)
def hooks_uninstall() -> None:
    """Remove DVX's hooks and restore the ones they chained."""

    def go() -> None:
        from dvx.api import hooks_uninstall as api_uninstall

        rep = api_uninstall()
        for ch in rep:
            out.print(f"{ch.action}: {ch.name}")
        if not rep.changes:
            out.print("no DVX hooks were installed")

    _run(go)


@hooks_app.command("run", hidden=True, cls=DvxCommand)
def hooks_run(name: str, args: Annotated[list[str] | None, typer.Argument()] = None) -> None:
    """Run one hook (called by the installed scripts)."""
    from dvx.repo import Repository

    try:
        repo = Repository.find(os.getcwd())
    except DvxError:
        raise typer.Exit(0) from None  # not a DVX work tree: nothing to do
    from dvx.api import _run_hook

    with repo:
        code = _run(lambda: _run_hook(name, args or [], repo=repo))
    raise typer.Exit(code)


@app.command(cls=DvxCommand)
def gc(
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n", help="report, delete nothing")] = False,
    workspace_only: Annotated[bool, typer.Option("--workspace-only",
                                                 help="keep only what the current checkout needs")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
    grace: Annotated[int | None, typer.Option("--grace",
                                              help="never touch packs younger than this (seconds; "
                                                   "default 3600 local, 86400 remote)")] = None,
    remote: Annotated[str | None, typer.Option("--remote", "-r", help="collect a remote instead")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete stored objects that no commit or pointer refers to."""

    def go() -> None:
        from dvx.api import gc as api_gc

        if workspace_only and remote is None and not dry_run and not yes:
            if not sys.stdin.isatty():
                raise UsageError("--workspace-only deletes every version not checked out now",
                                 "re-run with --yes to confirm")
            if not typer.confirm("Delete every data version except the ones checked out now?"):
                raise typer.Exit(1)
        rep = api_gc(dry_run=dry_run, workspace_only=workspace_only, grace=grace, remote=remote,
                     progress=_progress())
        if as_json:
            _emit_json(rep.to_json())
            return
        if remote is not None:
            from dvx.ops.remote_maint import RemoteGcReport

            assert isinstance(rep, RemoteGcReport)
            verb = "would delete" if dry_run else "deleted"
            out.print(f"remote {rep.remote}: {verb} {len(rep.packs_deleted)} unreferenced packs "
                      f"({human(rep.bytes_reclaimed)}); {rep.packs_live} packs in use by "
                      f"{rep.roots} versions; {rep.packs_kept_young} young packs kept")
            if rep.temporary_deleted or rep.temporary_kept_young:
                out.print(f"remote {rep.remote}: {verb} {rep.temporary_deleted} temporary files of "
                          f"interrupted uploads; {rep.temporary_kept_young} young ones kept")
            return
        from dvx.ops.gc import GRACE_SECONDS, GcReport

        assert isinstance(rep, GcReport)
        verb = "would reclaim" if dry_run else "reclaimed"
        out.print(f"{verb} {human(rep.bytes_reclaimed)}: {rep.dead_objects} unreferenced objects, "
                  f"{len(rep.packs_deleted)} packs deleted, {len(rep.packs_rewritten)} rewritten "
                  f"({rep.live_objects} live objects from {rep.pointers} pointers in "
                  f"{rep.commits} commits)")
        if rep.packs_kept_young:
            out.print(f"kept {rep.packs_kept_young} packs younger than the "
                      f"{GRACE_SECONDS if grace is None else grace} s grace period")
        for d in rep.artifact_versions_dropped:
            out.print(f"{'would drop' if dry_run else 'dropped'} artifact version {d['name']}:v{d['version']} "
                      f"({human(int(str(d['size'])))}, {d['reason']})")
        _fail_if(rep.errors)

    _run(go)


remote_app = typer.Typer(cls=DvxGroup, help="Manage remotes (directories, S3, GCS, Azure).",
                         add_completion=False)
app.add_typer(remote_app, name="remote")

from dvx.cli_runs import runs_app  # noqa: E402  (a typer app; the runs code loads on use)

app.add_typer(runs_app, name="runs")
from dvx.cli_artifacts import artifacts_app  # noqa: E402  (a typer app; the artifacts code loads on use)
from dvx.cli_runs import RUN_CONTEXT, run_cmd  # noqa: E402

app.add_typer(artifacts_app, name="artifacts")

app.command("run", cls=DvxCommand, context_settings=RUN_CONTEXT)(run_cmd)
from dvx.cli_lineage import lineage_cmd  # noqa: E402  (the lineage code loads on use)

app.command("lineage", cls=DvxCommand)(lineage_cmd)
OptionsOpt = Annotated[list[str] | None, typer.Option("--option", "-o", metavar="KEY=VALUE",
                                                      help="fsspec option, e.g. endpoint_url=...")]
LocalOpt = Annotated[bool, typer.Option("--local", help="keep in .dvx/config.local (not committed)")]


@remote_app.command("add", cls=DvxCommand)
def remote_add(
    name: str, url: str,
    default: Annotated[bool, typer.Option("--default", "-d", help="make it the default remote")] = False,
    option: OptionsOpt = None, local: LocalOpt = False,
) -> None:
    """Add a remote: a directory, file://, s3://, gs://, az:// or abfs:// URL."""

    def go() -> None:
        from dvx.api import remote_add as api_remote_add

        res = api_remote_add(name, url, options=option or [], default=default, local=local)
        out.print(f"added remote {name} -> {url}" + (" (default)" if default else ""))
        if res.created_directory:
            out.print(f"created directory {res.created_directory}")

    _run(go)


@remote_app.command("list", cls=DvxCommand)
def remote_list(as_json: JsonOpt = False) -> None:
    """List remotes (secret options are masked)."""

    def go() -> None:
        from dvx.api import remote_list as api_remote_list

        rep = api_remote_list()
        if as_json:
            _emit_json(rep.to_json())
            return
        for r in rep:
            opts = " ".join(f"{k}={v}" for k, v in r.options.items())
            out.print(f"{r.name}{' (default)' if r.default else ''}\t{r.url}\t{opts}".rstrip())

    _run(go)


@remote_app.command("remove", cls=DvxCommand)
def remote_remove(name: str) -> None:
    """Remove a remote from the config (the data on it is not touched)."""

    def go() -> None:
        from dvx.api import remote_remove as api_remote_remove

        api_remote_remove(name)
        out.print(f"removed remote {name}")

    _run(go)


@remote_app.command("modify", cls=DvxCommand)
def remote_modify(
    name: str,
    url: Annotated[str | None, typer.Option("--url", help="new URL")] = None,
    default: Annotated[bool, typer.Option("--default", "-d", help="make it the default remote")] = False,
    option: OptionsOpt = None,
    unset: Annotated[list[str] | None, typer.Option("--unset", help="remove an option")] = None,
    local: LocalOpt = False,
) -> None:
    """Change a remote's URL or options, or make it the default."""

    def go() -> None:
        from dvx.api import remote_modify as api_remote_modify

        res = api_remote_modify(name, url=url, options=option or [], unset=unset or [],
                                default=default, local=local)
        out.print(f"modified remote {name}")
        if res.created_directory:
            out.print(f"created directory {res.created_directory}")

    _run(go)


RemoteOpt = Annotated[str | None, typer.Option("--remote", "-r",
                                               help="remote name (default: the default remote)")]
JobsOpt = Annotated[int, typer.Option("--jobs", "-j", min=1, help="parallel transfers")]
RevOpt = Annotated[str | None, typer.Option("--rev", help="the pointers of this git revision")]
AllCommitsOpt = Annotated[bool, typer.Option("--all-commits", help="every commit of every branch and tag")]


@app.command(cls=PathsCommand)
def push(
    paths: Annotated[list[str] | None, typer.Argument(help="limit to these tracked paths")] = None,
    remote: RemoteOpt = None, rev: RevOpt = None, all_commits: AllCommitsOpt = False,
    jobs: JobsOpt = 8,
    verify: Annotated[bool, typer.Option("--verify", help="ask the remote again what it holds "
                                                          "(ignore what this machine remembers)")] = False,
    create: Annotated[bool, typer.Option("--create", help="directory remote: create the directory "
                                                          "if it does not exist")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Upload the data the remote lacks (packed, parallel, resumable)."""

    def go() -> None:
        from dvx.api import failures
        from dvx.api import push as api_push

        rep = api_push(paths or None, remote=remote, rev=rev, all_commits=all_commits, jobs=jobs,
                       verify=verify, create=create, progress=_progress())
        if as_json:
            _emit_json(rep.to_json())
        elif rep.roots == rep.roots_already_there:
            out.print(f"{rep.remote}: everything is already there ({rep.roots} versions, "
                      f"{rep.requests} requests)")
        else:
            pushed = rep.roots - rep.roots_already_there - len(rep.missing_locally)
            out.print(f"{rep.remote}: uploaded {human(rep.bytes_uploaded)} in {rep.packs_uploaded} packs "
                      f"({rep.objects_uploaded} objects, {pushed} new versions, "
                      f"{rep.requests} requests)")
        if not as_json and rep.runs_pushed:
            out.print(f"{rep.runs_git_remote}: sent {len(rep.runs_pushed)} run(s) (refs/dvx/runs/)")
        if not as_json and rep.artifacts_pushed:
            out.print(f"{rep.runs_git_remote}: sent artifact(s) {', '.join(rep.artifacts_pushed)} "
                      "(refs/dvx/artifacts/)")
        _fail_if(failures(rep))

    _run(go)


def _fetch_summary(rep) -> str:  # type: ignore[no-untyped-def]
    runs = (f"\n{rep.runs_git_remote}: received {len(rep.runs_fetched)} run(s) (refs/dvx/runs/)"
            if rep.runs_fetched else "")
    if rep.artifacts_fetched:
        runs += (f"\n{rep.runs_git_remote}: received artifact(s) {', '.join(rep.artifacts_fetched)} "
                 "(refs/dvx/artifacts/)")
    runs += "".join(f"\nnote: {n}" for n in rep.artifacts_notes)
    if not rep.roots or rep.roots == rep.roots_already_local:
        return f"{rep.remote}: nothing to fetch, all {rep.roots} versions are local" + runs
    return (f"{rep.remote}: downloaded {human(rep.bytes_downloaded)} ({rep.packs_downloaded} packs, "
            f"{rep.ranges_downloaded} ranges, {rep.requests} requests)" + runs)


@app.command(cls=PathsCommand)
def fetch(
    paths: Annotated[list[str] | None, typer.Argument(help="limit to these tracked paths")] = None,
    remote: RemoteOpt = None, rev: RevOpt = None, all_commits: AllCommitsOpt = False,
    jobs: JobsOpt = 8, as_json: JsonOpt = False,
) -> None:
    """Download the data the local store lacks (verified), without touching the work tree."""

    def go() -> None:
        from dvx.api import fetch as api_fetch

        rep = api_fetch(paths or None, remote=remote, rev=rev, all_commits=all_commits, jobs=jobs,
                        progress=_progress())
        if as_json:
            _emit_json(rep.to_json())
        else:
            out.print(_fetch_summary(rep))
        _fail_if(rep.errors)

    _run(go)


@app.command(cls=PathsCommand)
def pull(
    paths: Annotated[list[str] | None, typer.Argument(help="limit to these tracked paths")] = None,
    remote: RemoteOpt = None, rev: RevOpt = None, all_commits: AllCommitsOpt = False,
    jobs: JobsOpt = 8,
    force: Annotated[bool, typer.Option("--force", "-f", help="discard unsaved changes")] = False,
    as_json: JsonOpt = False,
) -> None:
    """fetch + checkout."""

    def go() -> None:
        from dvx.api import pull as api_pull

        rep = api_pull(paths or None, remote=remote, rev=rev, all_commits=all_commits, jobs=jobs,
                       force=force, progress=_progress())
        if as_json:
            _emit_json(rep.to_json())
        else:
            out.print(_fetch_summary(rep))
            for t in rep.checkout:
                out.print(f"checked out {t}")
        _fail_if(rep.errors)

    _run(go)


def main() -> None:
    # pydantic looks for plugins through importlib.metadata on first use (~20 ms); the
    # CLI uses none. Library users keep their own setting.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    try:
        app()
    except SystemExit:
        # the last buffered output goes out here, where a closed pipe is still quiet
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            _drop_stdout()
            sys.exit(EXIT_SIGPIPE)
        raise
    except (_StdoutClosed, BrokenPipeError):  # e.g. `dvx --help | head -1`
        _drop_stdout()
        sys.exit(EXIT_SIGPIPE)
