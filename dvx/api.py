"""DVX's Python API: one function per CLI verb, each returning a typed result.

    import dvx

    dvx.add(["data", "models/model.pt"])
    st = dvx.status()
    if not st.clean:
        dvx.commit("new data")
    dvx.push(remote="origin")

Rules shared by every function (``docs/python.md`` has the full reference):

* ``repo=`` is a path inside the repository (default ``"."``, the current directory)
  or an open :class:`dvx.Repository`. Given a path, the function opens the repository,
  and saves its caches and closes it before returning. Given a ``Repository``, it uses
  it and leaves it open (``with dvx.Repository.find(path) as r:`` saves and closes).
* Relative paths (``paths=``, ``path=``) are relative to ``repo`` when it is a path
  (as for ``git -C DIR``), and to the repository root when it is a ``Repository``.
* Options are keyword arguments named like the CLI's (``--all-commits`` is
  ``all_commits=``; ``commit --all`` is ``all_files=``).
* The result holds the same data as the CLI's ``--json``; ``result.to_json()`` gives
  exactly that.
* Errors raise :class:`dvx.DvxError` subclasses (``message`` and ``hint``; an
  ``OSError`` no operation mapped closer to its cause becomes a ``StoreError``);
  :class:`dvx.UsageError` for arguments that cannot work together. A failure of *one
  part* (a malformed pointer, one path that cannot be checked out, a version the
  local store lacks for push) does not raise: the rest is done and the failure is in
  the result (``errors``, ``CheckoutResult.error``, ``PushReport.missing_locally``,
  ``FsckReport.problems``). :func:`raise_on_error` turns those into an exception.
* ``progress=`` takes a :class:`dvx.progress.Progress`, or ``True`` for the CLI's
  bars on stderr; by default nothing is drawn.

Nothing heavy is imported here: each function imports what it needs when called.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from dvx.errors import DvxError, PartialFailureError, UsageError
from dvx.progress import NULL_PROGRESS, Progress

if TYPE_CHECKING:
    from dvx.ops.add import AddResult
    from dvx.ops.checkout import CheckoutResult
    from dvx.ops.commit import CommitResult
    from dvx.ops.diff import DiffEntry
    from dvx.ops.fetch import FetchReport, RepairReport
    from dvx.ops.fsck import FsckReport
    from dvx.ops.gc import GcReport
    from dvx.ops.hooks import HookChange
    from dvx.ops.log import LogEntry
    from dvx.ops.ls import LsEntry
    from dvx.ops.push import PushReport
    from dvx.ops.remote_maint import RemoteFsckReport, RemoteGcReport
    from dvx.ops.remotes import RemoteInfo
    from dvx.ops.status import PathStatus
    from dvx.repo import Repository

    # for type checkers only: building these unions at import costs ~1 ms
    RepoArg = str | os.PathLike[str] | Repository
    PathsArg = str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None
    ProgressArg = Progress | bool | None

__all__ = [
    "AddReport", "CheckoutReport", "DiffReport", "HooksReport", "InitResult", "LogReport",
    "LsReport", "RemoteChange", "RemoteList", "StatusReport",
    "add", "checkout", "commit", "diff", "failures", "fetch", "fsck", "gc", "get", "hooks_install",
    "hooks_uninstall", "info", "init_repo", "lineage", "log", "ls", "open", "pull", "push", "raise_on_error",
    "read", "remote_add",
    "remote_list", "remote_modify", "remote_remove", "run_command", "runs_promote", "runs_rm", "status",
    "artifacts_add", "artifacts_alias", "artifacts_get", "artifacts_list", "artifacts_retention",
    "artifacts_show", "artifacts_unalias",
]


# -- plumbing ------------------------------------------------------------------------

@contextmanager
def _opened(repo: RepoArg) -> Iterator[tuple[Repository, str]]:
    """The repository and the directory relative paths start from. An OSError that no
    operation mapped closer to its cause becomes a StoreError (a DvxError)."""
    from dvx.repo import Repository

    try:
        if isinstance(repo, Repository):
            yield repo, repo.root
            return
        base = os.fspath(repo)
        with Repository.find(base) as r:
            yield r, base
    except OSError as exc:
        raise _os_error(exc) from exc


def _os_error(exc: OSError) -> DvxError:
    from dvx.fsutil import os_error

    return os_error(exc, f"access {exc.filename if exc.filename else 'a file'}")


def _paths(base: str, paths: PathsArg) -> list[str] | None:
    """User paths as the operations take them (relative to the current directory)."""
    if paths is None:
        return None
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    out = [os.fspath(p) for p in items]
    if os.path.abspath(base) == os.path.abspath(os.curdir):
        return out  # as typed: messages name them as the user wrote them
    return [os.path.join(base, p) for p in out]


def _path(base: str, path: str | os.PathLike[str] | None) -> str | None:
    got = _paths(base, None if path is None else [path])
    return got[0] if got else None


def _progress(progress: ProgressArg) -> Progress:
    if progress is True:
        from dvx.progress import terminal

        return terminal()
    if progress is None or progress is False:
        return NULL_PROGRESS
    return progress


def _jobs(jobs: int | None) -> int:
    if jobs is None:
        from dvx.ops.transfer import DEFAULT_JOBS

        return DEFAULT_JOBS
    if jobs < 1:
        raise UsageError(f"jobs must be at least 1, not {jobs}", "e.g. jobs=8")
    return jobs


def failures(result: object) -> list[str]:
    """Every part of an operation that failed, one line each (``"message; hint"``);
    empty when everything worked. Accepts any result of this module."""
    errors = getattr(result, "errors", None)
    out = list(errors) if isinstance(errors, list) else []
    missing = getattr(result, "missing_locally", None)
    if missing:  # push: versions whose data the local store lacks
        from dvx.errors import MissingObjectError

        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        out.append(str(MissingObjectError(
            f"not pushed: {missing[0]}{more} (the rest was pushed)",
            "the local store lacks that data; run `dvx fsck`, or `dvx fsck --repair` to "
            "restore it from a remote")))
    problems = getattr(result, "problems", None)
    if problems:  # fsck
        out += [f"bad {p.what} {p.name}: {p.message}" for p in problems]
    return out


def raise_on_error(result: Any) -> Any:
    """``result`` itself when every part of the operation worked; otherwise raise
    :class:`dvx.PartialFailureError` listing each failure. For scripts that want
    all or nothing: ``dvx.raise_on_error(dvx.pull())``."""
    errors = failures(result)
    if errors:
        raise PartialFailureError(errors)
    return result


# -- result types the operations do not have themselves --------------------------------
# Plain classes, not dataclasses: building ten dataclasses costs ~1.5 ms at import,
# which every `dvx` command would pay. _Result gives them __repr__ and __eq__.

class _Result:
    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items())
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]  # mutable


class InitResult(_Result):
    """``dvx.init_repo``: where the repository is and what was created."""

    def __init__(self, root: str, dvx_dir: str, created: bool, git_created: bool) -> None:
        self.root = root
        self.dvx_dir = dvx_dir
        self.created = created  # False: it was a DVX repository already (nothing changed)
        self.git_created = git_created  # a git repository was created too

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


class AddReport(_Result):
    """``dvx.add``: one :class:`~dvx.ops.add.AddResult` per tracked path (iterable);
    ``target`` of each is relative to ``root``, the repository's root."""

    def __init__(self, paths: list[AddResult], root: str = "") -> None:
        self.paths = paths
        self.root = root

    def __iter__(self) -> Iterator[AddResult]:
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def to_json(self) -> list[dict[str, object]]:
        return [r.to_json() for r in self.paths]


class StatusReport(_Result):
    """``dvx.status``: one :class:`~dvx.ops.status.PathStatus` per tracked path
    (iterable), and notes about leftovers of interrupted commands."""

    def __init__(self, paths: list[PathStatus], notes: list[str] | None = None) -> None:
        self.paths = paths
        self.notes = notes or []

    def __iter__(self) -> Iterator[PathStatus]:
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def clean(self) -> bool:
        """Every tracked path's data matches its pointer."""
        return all(r.state == "clean" for r in self.paths)

    @property
    def errors(self) -> list[str]:
        """Broken or refused pointers (their state is ``broken-pointer``)."""
        return [r.message or r.target for r in self.paths if r.state == "broken-pointer"]

    def to_json(self) -> dict[str, object]:
        return {"clean": self.clean, "paths": [r.to_json() for r in self.paths], "notes": self.notes}


class CheckoutReport(_Result):
    """``dvx.checkout``: one :class:`~dvx.ops.checkout.CheckoutResult` per tracked
    path (iterable). ``side`` is ``"ours"``/``"theirs"`` when a merge conflict was
    settled."""

    def __init__(self, paths: list[CheckoutResult], side: str | None = None) -> None:
        self.paths = paths
        self.side = side

    def __iter__(self) -> Iterator[CheckoutResult]:
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def restored(self) -> int:
        return sum(len(r.restored) for r in self.paths)

    @property
    def removed(self) -> int:
        return sum(len(r.removed) for r in self.paths)

    @property
    def errors(self) -> list[str]:
        return [r.error for r in self.paths if r.error]

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"paths": [r.to_json() for r in self.paths]}
        if self.side:
            out["side"] = self.side
        return out


class DiffReport(_Result):
    """``dvx.diff``: the changed files (iterable :class:`~dvx.ops.diff.DiffEntry`).
    ``errors``: pointers left out because they are malformed or refused (as
    ``REV:PATH: ...``). ``unsaved``: with ``unsaved=True`` against the work tree,
    tracked paths whose data has changes not yet added (not in the diff)."""

    def __init__(self, entries: list[DiffEntry], errors: list[str] | None = None,
                 unsaved: list[str] | None = None) -> None:
        self.entries = entries
        self.errors = errors or []
        self.unsaved = unsaved or []

    def __iter__(self) -> Iterator[DiffEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def to_json(self) -> list[dict[str, object]]:
        return [e.to_json() for e in self.entries]


class LogReport(_Result):
    """``dvx.log``: versions of tracked data, newest first (iterable
    :class:`~dvx.ops.log.LogEntry`)."""

    def __init__(self, entries: list[LogEntry]) -> None:
        self.entries = entries

    def __iter__(self) -> Iterator[LogEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def to_json(self) -> list[dict[str, object]]:
        return [e.to_json() for e in self.entries]


class LsReport(_Result):
    """``dvx.ls``: tracked paths or files (iterable :class:`~dvx.ops.ls.LsEntry`).
    ``errors``: pointers left out because they are malformed or refused."""

    def __init__(self, entries: list[LsEntry], errors: list[str] | None = None) -> None:
        self.entries = entries
        self.errors = errors or []

    def __iter__(self) -> Iterator[LsEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def to_json(self) -> list[dict[str, object]]:
        return [e.to_json() for e in self.entries]


class HooksReport(_Result):
    """``dvx.hooks_install`` / ``hooks_uninstall``: what happened to each git hook
    (``installed``, ``chained``, ``unchanged``, ``removed``, ``restored``)."""

    def __init__(self, changes: list[HookChange]) -> None:
        self.changes = changes

    def __iter__(self) -> Iterator[HookChange]:
        return iter(self.changes)

    def __len__(self) -> int:
        return len(self.changes)

    def to_json(self) -> list[dict[str, object]]:
        return [{"name": c.name, "action": c.action} for c in self.changes]


class RemoteChange(_Result):
    """``dvx.remote_add`` / ``remote_modify`` / ``remote_remove``."""

    def __init__(self, name: str, action: str, url: str | None = None, default: bool = False,
                 created_directory: str | None = None) -> None:
        self.name = name
        self.action = action  # added | modified | removed
        self.url = url
        self.default = default
        self.created_directory = created_directory  # a directory remote's directory, made now

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


class RemoteList(_Result):
    """``dvx.remote_list``: the remotes, secret options masked (iterable
    :class:`~dvx.ops.remotes.RemoteInfo`)."""

    def __init__(self, remotes: list[RemoteInfo]) -> None:
        self.remotes = remotes

    def __iter__(self) -> Iterator[RemoteInfo]:
        return iter(self.remotes)

    def __len__(self) -> int:
        return len(self.remotes)

    def to_json(self) -> list[dict[str, object]]:
        return [r.to_json() for r in self.remotes]


# -- the verbs -------------------------------------------------------------------------

def init_repo(path: str | os.PathLike[str] = ".") -> InitResult:
    """Make ``path`` (a git work tree; created, with its git repository, if absent) a
    DVX repository. Idempotent. (``dvx.init`` is reserved for starting a run.)"""
    from dvx.ops.init import init

    try:
        repo, created, git_created = init(os.fspath(path))
    except OSError as exc:
        raise _os_error(exc) from exc
    with repo:
        return InitResult(repo.root, repo.dvx_dir, created, git_created)


def add(paths: PathsArg, *, repo: RepoArg = ".", progress: ProgressArg = None) -> AddReport:
    """Track files and directories (``dvx add``): store their content, write their
    ``PATH.dvx`` pointers and ``.gitignore`` lines. Unchanged paths return at once."""
    from dvx.ops.add import add as do

    with _opened(repo) as (r, base):
        targets = _paths(base, paths) or []
        if not targets:
            raise UsageError("nothing to add", "name the files or directories to track")
        return AddReport(do(r, targets, _progress(progress)), r.root)


def status(paths: PathsArg = None, *, repo: RepoArg = ".", progress: ProgressArg = None) -> StatusReport:
    """Which tracked paths changed, were deleted, or lack data (``dvx status``)."""
    from dvx.ops.status import leftovers
    from dvx.ops.status import status as do

    with _opened(repo) as (r, base):
        results = do(r, _paths(base, paths) or None, _progress(progress))
        return StatusReport(results, leftovers(r))


def checkout(paths: PathsArg = None, *, repo: RepoArg = ".", rev: str | None = None,
             force: bool = False, ours: bool = False, theirs: bool = False,
             progress: ProgressArg = None) -> CheckoutReport:
    """Make the data match the pointers (of ``rev``), ``dvx checkout``. Never
    overwrites unsaved data (raises :class:`dvx.WorkspaceConflictError` before
    changing anything) unless ``force``. ``ours``/``theirs`` settle pointers in a
    merge conflict. A path that cannot be checked out has ``error`` set in its
    result; the others are done."""
    with _opened(repo) as (r, base):
        targets = _paths(base, paths) or None
        prog = _progress(progress)
        if ours or theirs:
            if ours and theirs or rev is not None:
                raise UsageError("--ours, --theirs and --rev exclude each other", "pick one")
            side = "ours" if ours else "theirs"
            if not targets:
                raise UsageError(f"--{side} needs the paths to resolve",
                                 f"e.g. `dvx checkout --{side} data`")
            from dvx.ops.resolve import take_side

            return CheckoutReport(take_side(r, targets, side, force=force, progress=prog), side)
        from dvx.ops.checkout import checkout as do

        pointers = None
        bad: dict[str, DvxError] = {}
        if rev is not None:
            from dvx.ops.revs import pointers_at_rev_for_paths

            pointers = pointers_at_rev_for_paths(r, rev, targets, bad)
        return CheckoutReport(do(r, targets, force=force, pointers=pointers, bad=bad, progress=prog))


def commit(message: str, paths: PathsArg = None, *, repo: RepoArg = ".", all_files: bool = False,
           progress: ProgressArg = None) -> CommitResult:
    """Re-add changed data, stage pointers and ``.gitignore``, and make a git commit
    (``dvx commit -m MESSAGE``; ``all_files`` is ``--all``). Malformed pointers are
    left out and listed in ``errors``."""
    from dvx.ops.commit import commit as do

    if not message.strip():
        raise UsageError("empty commit message", "pass one with -m")
    with _opened(repo) as (r, base):
        return do(r, message, _paths(base, paths) or None, all_files, _progress(progress))


def diff(rev_a: str | None = None, rev_b: str | None = None, *, repo: RepoArg = ".",
         unsaved: bool = False) -> DiffReport:
    """Per-file changes of tracked data from ``rev_a`` (default ``HEAD``) to ``rev_b``
    (default: the work tree's pointers), ``dvx diff``. With ``unsaved`` (and no
    ``rev_b``), also name the tracked paths whose data changed since its last add,
    which the comparison of pointers does not show (costs a ``status``)."""
    from dvx.ops.diff import diff as do

    with _opened(repo) as (r, _base):
        bad: dict[str, DvxError] = {}
        report = DiffReport(do(r, rev_a, rev_b, bad), [str(e) for e in bad.values()])
        if unsaved and rev_b is None:
            from dvx.ops.status import status as do_status

            report.unsaved = [s.target for s in do_status(r) if s.state in ("modified", "diverged")]
        return report


def log(path: str | os.PathLike[str] | None = None, *, repo: RepoArg = ".",
        max_count: int | None = None, rev: str = "HEAD") -> LogReport:
    """The versions of tracked data (of ``path``) through git history, newest first."""
    from dvx.ops.log import log as do

    if max_count is not None and max_count < 0:
        raise UsageError(f"max_count must not be negative, not {max_count}")
    with _opened(repo) as (r, base):
        return LogReport(do(r, _path(base, path), max_count, rev))


def lineage(target: str, *, repo: RepoArg = ".", direction: str = "up", depth: int | None = None,
            types: str | Sequence[str] | None = None, limit: int | None = None) -> Any:
    """The lineage graph around ``target`` (``dvx lineage``; ``docs/lineage.md``): a
    tracked path (``PATH`` or ``PATH@REV``, relative to the repository root),
    ``artifact:NAME[:vN|:ALIAS]``, ``run:ID`` or a content id; ``direction`` ``"up"``
    (what made it), ``"down"`` (what was made from it) or ``"both"``. Returns a
    :class:`dvx.lineage.graph.LineageGraph` (``.nodes``, ``.edges``, ``.to_json()``,
    ``.to_dot()``, ``.to_mermaid()``)."""
    from dvx.lineage.query import lineage as do

    with _opened(repo) as (r, _base):
        return do(r, target, direction, depth, types, limit)


def ls(path: str | os.PathLike[str] | None = None, *, repo: RepoArg = ".",
       rev: str | None = None, remote: str | None = None) -> LsReport:
    """Tracked paths, or the files of a tracked directory (at ``rev``), ``dvx ls``.
    ``repo`` may also be a git URL (read through the read API's cached clone; ``rev``
    None is its default branch); ``remote`` serves trees the local store lacks."""
    from dvx.ops.ls import ls as do

    if remote is not None or _is_url(repo):
        from dvx.access.files import ls_url

        return LsReport(ls_url(path, rev, repo, remote))
    bad: dict[str, DvxError] = {}
    if rev is not None:  # through the read API's per-process repository and tree cache
        from dvx.access.source import source_for
        from dvx.repo import Repository as OpenRepository

        try:
            src, base = source_for(repo, None)
        except OSError as exc:
            raise _os_error(exc) from exc
        try:
            pointers = src.history.at(rev, bad=bad)
            entries = do(src.repo, _path(base, path), pointers, bad=bad, data_of=src.tree_data)
        except OSError as exc:
            raise _os_error(exc) from exc
        finally:
            if not isinstance(repo, OpenRepository):
                src.repo.close()  # as every verb given a path: no pack left open (trees stay cached)
        return LsReport(entries, [str(e) for e in bad.values()])
    with _opened(repo) as (r, base):
        return LsReport(do(r, _path(base, path), None, bad=bad), [str(e) for e in bad.values()])


def _is_url(repo: object) -> bool:
    if not isinstance(repo, (str, os.PathLike)):
        return False
    from dvx.access.clones import is_git_url

    return is_git_url(os.fspath(repo))


# -- reading any version (protocols/read.md) --------------------------------------------------

def open(path: str | os.PathLike[str], rev: str | None = None, repo: RepoArg | None = None,  # noqa: A001
         remote: str | None = None, mode: str = "rb", encoding: str | None = None,
         errors: str | None = None, newline: str | None = None) -> Any:
    """A tracked file as it was at ``rev`` (a branch, tag or commit; None: the work
    tree's pointers, or a URL's default branch), without a checkout: a seekable,
    read-only file object whose every chunk is verified before a byte is returned.
    ``mode="rb"`` gives bytes, ``mode="r"`` text (UTF-8 unless ``encoding``).

    ``path`` may lie inside a tracked directory. ``repo``: a path inside a repository
    (relative paths start there), a git URL (cloned once into the user cache, only
    fetched afterwards; ``path`` is from its root), or a :class:`Repository`. Data the
    local store lacks comes from ``remote`` (default: the repository's default
    remote). The repository stays open for the process, so a warm call costs well
    under a millisecond plus the bytes read."""
    from dvx.access.files import open_path

    return open_path(path, rev, repo, remote, mode, encoding, errors, newline)


def read(path: str | os.PathLike[str], rev: str | None = None, repo: RepoArg | None = None,
         remote: str | None = None, mode: str = "rb", encoding: str | None = None,
         errors: str | None = None) -> bytes | str:
    """The whole content of a tracked file at ``rev``: ``bytes``, or ``str`` with
    ``mode="r"``. Same arguments as :func:`open`."""
    from dvx.access.files import read_path

    return read_path(path, rev, repo, remote, mode, encoding, errors)


def info(path: str | os.PathLike[str] | None = None, rev: str | None = None,
         repo: RepoArg | None = None, remote: str | None = None) -> Any:
    """What ``path`` is at ``rev`` (a ``dvx.access.source.Node``): ``kind`` (``file``,
    ``tree``, ``link``, or ``directory`` for a plain directory holding tracked
    paths), ``size``, ``files``, ``oid``, ``tracked`` (the tracked path that holds it).
    Read from git and DVX trees only."""
    from dvx.access.files import info_path

    return info_path(path, rev, repo, remote)


def get(repo: str | os.PathLike[str], path: str, *, rev: str | None = None,
        out: str | os.PathLike[str] | None = None, force: bool = False, remote: str | None = None,
        progress: ProgressArg = None) -> Any:
    """Download one version of tracked data (a file or a directory) from any DVX
    repository (a local path or a git URL) into ``out`` (default: its name, in the
    current directory), which does not become a DVX repository (``dvx get``).
    Existing files are not overwritten unless ``force``. Returns a
    ``dvx.ops.get.GetResult``."""
    from dvx.ops.get import get as do

    return do(repo, path, rev, None if out is None else os.fspath(out), force=force, remote=remote,
              progress=_progress(progress))


def push(paths: PathsArg = None, *, repo: RepoArg = ".", remote: str | None = None,
         rev: str | None = None, all_commits: bool = False, jobs: int | None = None,
         verify: bool = False, create: bool = False, progress: ProgressArg = None) -> PushReport:
    """Upload the data the remote lacks (``dvx push``). Versions whose data the local
    store lacks are skipped and listed in ``missing_locally``, malformed pointers in
    ``errors``; the rest is pushed."""
    from dvx.ops.push import push as do

    with _opened(repo) as (r, base):
        return do(r, remote, rev, all_commits, _paths(base, paths) or None, _jobs(jobs),
                  _progress(progress), verify, create)


def fetch(paths: PathsArg = None, *, repo: RepoArg = ".", remote: str | None = None,
          rev: str | None = None, all_commits: bool = False, jobs: int | None = None,
          progress: ProgressArg = None) -> FetchReport:
    """Download the data the local store lacks, verified, without touching the work
    tree (``dvx fetch``). Malformed pointers are skipped and listed in ``errors``."""
    from dvx.ops.fetch import fetch as do

    with _opened(repo) as (r, base):
        return do(r, remote, rev, all_commits, _paths(base, paths) or None, _jobs(jobs),
                  _progress(progress))


def pull(paths: PathsArg = None, *, repo: RepoArg = ".", remote: str | None = None,
         rev: str | None = None, all_commits: bool = False, jobs: int | None = None,
         force: bool = False, progress: ProgressArg = None) -> FetchReport:
    """``fetch`` then ``checkout`` (``dvx pull``). ``checkout`` in the result lists the
    paths that changed; paths that could not be checked out are in ``errors``."""
    from dvx.ops.fetch import pull as do

    with _opened(repo) as (r, base):
        return do(r, remote, rev, all_commits, _paths(base, paths) or None, _jobs(jobs), force,
                  _progress(progress))


def gc(*, repo: RepoArg = ".", dry_run: bool = False, workspace_only: bool = False,
       grace: int | None = None, remote: str | None = None,
       progress: ProgressArg = None) -> GcReport | RemoteGcReport:
    """Delete stored objects no commit or pointer refers to (``dvx gc``), or with
    ``remote``, the unreferenced packs of that remote. ``grace``: never touch packs
    younger than this many seconds (default 3600 local, 86400 on a remote).
    ``workspace_only`` deletes every version not checked out now: the CLI asks for
    confirmation, this function does not."""
    with _opened(repo) as (r, _base):
        if remote is not None:
            if workspace_only:
                raise UsageError("--workspace-only and --remote exclude each other", "pick one")
            from dvx.ops.remote_maint import REMOTE_GRACE_SECONDS, gc_remote

            return gc_remote(r, remote, dry_run, REMOTE_GRACE_SECONDS if grace is None else grace)
        from dvx.ops.gc import GRACE_SECONDS
        from dvx.ops.gc import gc as do

        return do(r, dry_run=dry_run, workspace_only=workspace_only,
                  grace_seconds=GRACE_SECONDS if grace is None else grace, progress=_progress(progress))


def fsck(*, repo: RepoArg = ".", remote: str | None = None, download: bool = False,
         repair: bool = False, repair_from: str | None = None,
         progress: ProgressArg = None) -> FsckReport | RemoteFsckReport:
    """Verify every pack, object and pointer (``dvx fsck``); ``ok`` is the verdict,
    ``problems`` what is wrong. With ``remote``, verify that remote instead
    (``download``: fetch and hash every pack). With ``repair``, restore damaged or
    missing data from ``repair_from`` (default: the default remote) and verify again;
    the report is that of the final check, with ``repair`` saying what was done."""
    prog = _progress(progress)
    with _opened(repo) as (r, _base):
        if remote is not None:
            if repair:
                raise UsageError("--repair and --remote exclude each other",
                                 "repair the local store with `dvx fsck --repair --from NAME`")
            from dvx.ops.remote_maint import fsck_remote

            return fsck_remote(r, remote, download, prog)
        if download:
            raise UsageError("--download needs --remote", "e.g. `dvx fsck --remote origin --download`")
        if repair_from is not None and not repair:
            raise UsageError("--from needs --repair", f"e.g. `dvx fsck --repair --from {repair_from}`")
        from dvx.ops.fsck import fsck as do

        report = do(r, prog)
        if repair and not report.ok:
            fixed = _repair(r, repair_from, report, prog)
            report = do(r, prog)
            report.repair = fixed
        return report


def _repair(r: Repository, remote: str | None, report: FsckReport, progress: Progress) -> RepairReport:
    """Set damaged packs aside (keeping what is sound in them) and fetch what the work
    tree's pointers lack (``dvx.ops.fetch.repair``)."""
    from dvx.ops.fetch import repair
    from dvx.ops.revs import workspace_pointers

    return repair(r, remote, report.problems, workspace_pointers(r, strict=False), progress=progress)


def hooks_install(*, repo: RepoArg = ".") -> HooksReport:
    """Install DVX's git hooks (pre-commit, post-checkout, post-merge, post-rewrite,
    pre-push); an existing hook of yours is kept and runs first."""
    from dvx.ops.hooks import install

    with _opened(repo) as (r, _base):
        return HooksReport(install(r))


def hooks_uninstall(*, repo: RepoArg = ".") -> HooksReport:
    """Remove DVX's git hooks and restore the ones they chained."""
    from dvx.ops.hooks import uninstall

    with _opened(repo) as (r, _base):
        return HooksReport(uninstall(r))


def _options(options: Mapping[str, str] | Sequence[str] | None) -> dict[str, str]:
    """A dict, or ``KEY=VALUE`` words as the CLI's ``-o`` takes them."""
    if options is None:
        return {}
    if isinstance(options, Mapping):
        return {str(k): str(v) for k, v in options.items()}
    if isinstance(options, str):
        options = [options]
    from dvx.ops.remotes import parse_options

    try:
        return parse_options(list(options))
    except DvxError as exc:
        raise UsageError(exc.message, exc.hint) from None


def remote_add(name: str, url: str, *, repo: RepoArg = ".",
               options: Mapping[str, str] | Sequence[str] | None = None, default: bool = False,
               local: bool = False) -> RemoteChange:
    """Add a remote: a directory, ``file://``, ``s3://``, ``gs://``, ``az://`` or
    ``abfs://`` URL. ``options`` are fsspec options (a dict, or ``"KEY=VALUE"``
    strings); ``local`` keeps the remote in ``.dvx/config.local`` (not committed)."""
    from dvx.ops.remotes import remote_add as do

    opts = _options(options)
    with _opened(repo) as (r, _base):
        created = do(r, name, url, opts, default=default, local=local)
        return RemoteChange(name, "added", url, default, created)


def remote_list(*, repo: RepoArg = ".") -> RemoteList:
    """The configured remotes (secret options masked)."""
    from dvx.ops.remotes import remote_list as do

    with _opened(repo) as (r, _base):
        return RemoteList(do(r))


def remote_remove(name: str, *, repo: RepoArg = ".") -> RemoteChange:
    """Remove a remote from the configuration (the data on it is not touched)."""
    from dvx.ops.remotes import remote_remove as do

    with _opened(repo) as (r, _base):
        do(r, name)
        return RemoteChange(name, "removed")


def remote_modify(name: str, *, repo: RepoArg = ".", url: str | None = None,
                  options: Mapping[str, str] | Sequence[str] | None = None,
                  unset: Sequence[str] | None = None, default: bool = False,
                  local: bool = False) -> RemoteChange:
    """Change a remote's URL or options (``unset`` removes options), or make it the
    default."""
    from dvx.ops.remotes import remote_modify as do

    opts = _options(options)
    with _opened(repo) as (r, _base):
        created = do(r, name, url, opts, list(unset or []), default=default, local=local)
        return RemoteChange(name, "modified", url, default, created)


def _run_hook(name: str, args: Sequence[str], *, repo: RepoArg = ".") -> int:
    """What an installed git hook runs (``dvx hooks run NAME``); the exit code for git."""
    from dvx.ops.hooks import run_hook

    with _opened(repo) as (r, _base):
        return run_hook(r, name, list(args))


# -- runs: `dvx run`, `dvx runs rm/promote` (protocols/runs.md §10-11) ----------------
def run_command(command: Sequence[str], *, repo: RepoArg = ".", name: str | None = None,
                inputs: PathsArg = None, outputs: PathsArg = None, project: str | None = None,
                tags: Sequence[str] | None = None) -> Any:
    """Record ``command`` as a run (``dvx run``): inputs verified and recorded, outputs
    added after a zero exit, console tee'd, system metrics; a Python child calling
    ``dvx.init()`` joins the run. Returns a ``CommandRun`` (``exit_code``, ``state``,
    ``id``, ``commit``...); a non-zero exit is a ``failed`` run, not an exception."""
    from dvx.runs.command import run_command as do

    with _opened(repo) as (r, base):
        return do(r, [str(c) for c in command], name, _paths(base, inputs), _paths(base, outputs),
                  project, list(tags) if tags else None)


def runs_rm(run_id: str, *, repo: RepoArg = ".", remote: bool = False) -> dict[str, Any]:
    """Delete run ``run_id`` (its ref; ``remote``: on the runs' git remote too). Its data
    stays in the store until ``dvx gc``."""
    from dvx.runs.manage import remove_run

    with _opened(repo) as (r, _base):
        return remove_run(r, run_id, remote)


def runs_promote(run_id: str, *, repo: RepoArg = ".") -> dict[str, Any]:
    """Commit run ``run_id``'s inputs and outputs on the current branch (``dvx runs
    promote``); refused when the branch changed one of those paths since the run's code
    commit."""
    from dvx.runs.manage import promote_run

    with _opened(repo) as (r, _base):
        return promote_run(r, run_id)


# -- artifacts (protocols/artifacts.md, docs/artifacts.md) -------------------------------------

def artifacts_add(path: str | os.PathLike[str], *, name: str, type: str, aliases: Sequence[str] = (),
                  repo: RepoArg = ".", progress: ProgressArg = None) -> Any:
    """Store ``path`` as ``dvx add`` does and record it as the newest version of artifact
    ``name`` (``dvx artifacts add``); a version with the same content is re-logged
    instead (``latest`` and ``aliases`` move to it). Returns an ``AddedVersion``
    (``version``, ``created``)."""
    from dvx.artifacts.add import add_artifact

    with _opened(repo) as (r, base):
        return add_artifact(r, _path(base, path) or "", name, type, list(aliases), _progress(progress))


def artifacts_list(*, type: str | None = None, repo: RepoArg = ".") -> Any:
    """Every artifact (of ``type``), by name: an ``ArtifactList`` of
    :class:`dvx.artifacts.Artifact` with ``problems`` (malformed refs, skipped)."""
    from dvx.artifacts.read import list_artifacts

    with _opened(repo) as (r, _base):
        problems: list[str] = []
        found = [a for a in list_artifacts(r, problems) if type is None or a.type == type]
        return ArtifactList(found, problems)


class ArtifactList(_Result, list):  # type: ignore[type-arg]
    def __init__(self, items: list[Any], problems: list[str]) -> None:
        list.__init__(self, items)
        self.errors = problems

    def to_json(self) -> list[dict[str, Any]]:
        return [a.to_json() for a in self]


def artifacts_show(ref: str, *, repo: RepoArg = ".") -> Any:
    """``NAME``: the whole artifact (:class:`dvx.artifacts.Artifact`); ``NAME:vN`` or
    ``NAME:ALIAS``: that version (:class:`dvx.artifacts.ArtifactVersion`)."""
    from dvx.artifacts.names import parse_reference
    from dvx.artifacts.read import get_artifact, pick

    with _opened(repo) as (r, _base):
        art = get_artifact(r, parse_reference(ref).name)
        return art.with_aliases() if ":" not in ref else pick(art, ref)


def artifacts_alias(ref: str, alias: str, *, repo: RepoArg = ".") -> Any:
    """Point ``alias`` at the version ``ref`` (``NAME:vN`` or ``NAME:ALIAS``) names; the
    alias moves if it named another version. Returns that version."""
    from dvx.artifacts.write import set_alias

    with _opened(repo) as (r, _base):
        return set_alias(r, ref, alias)


def artifacts_unalias(name: str, alias: str, *, repo: RepoArg = ".") -> int:
    """Remove ``alias`` from artifact ``name``; returns the version it named."""
    from dvx.artifacts.write import remove_alias

    with _opened(repo) as (r, _base):
        return remove_alias(r, name, alias)


def artifacts_get(ref: str, *, output: str | os.PathLike[str] | None = None, force: bool = False,
                  remote: str | None = None, repo: RepoArg = ".", progress: ProgressArg = None) -> Any:
    """Materialise the version ``ref`` names at ``output`` (default
    ``artifacts/NAME/vN/<file name>``), fetching its data from ``remote`` (default: the
    default remote) when the local store lacks it. An existing ``output`` is replaced
    only with ``force``. Returns a ``GetResult``."""
    from dvx.artifacts.get import get_version

    with _opened(repo) as (r, base):
        return get_version(r, ref, _path(base, output), force=force, remote=remote,
                           progress=_progress(progress))


def artifacts_retention(name: str, *, keep_last: int | None = -1, keep_aliased: bool | None = None,
                        ttl_days: int | None = -1, repo: RepoArg = ".") -> Any:
    """Show or change the retention policy ``dvx gc`` applies to ``name``. Arguments left
    out keep their value; ``keep_last`` / ``ttl_days`` None or 0 remove that limit.
    Returns the artifact (its ``retention``)."""
    from dataclasses import replace

    from dvx.artifacts.read import get_artifact
    from dvx.artifacts.write import set_retention

    with _opened(repo) as (r, _base):
        art = get_artifact(r, name)
        policy = art.retention
        if keep_last != -1:
            policy = replace(policy, keep_last=keep_last or None)
        if ttl_days != -1:
            policy = replace(policy, ttl_days=ttl_days or None)
        if keep_aliased is not None:
            policy = replace(policy, keep_aliased=keep_aliased)
        return set_retention(r, name, policy) if policy != art.retention else art
