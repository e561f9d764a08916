"""``dvx get REPO PATH [--rev REV] [-o OUT]``: one version of tracked data, from any
DVX repository (a local path or a git URL), into a plain directory that does not
become a DVX repository (DVC's ``get``; ``protocols/read.md`` §4).

Names come from git trees and DVX trees, so possibly from an attacker: every output
path is built from checked components below ``OUT``, no directory on the way may be
a symbolic link, and a symbolic link stored in a tracked directory is recreated only
when it points inside ``OUT`` (otherwise it is skipped and reported). Existing files
are never overwritten without ``force``: every destination is checked before the
first byte is written. Each file is written to a temporary name beside it, verified
chunk by chunk on the way, and renamed into place.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from dataclasses import dataclass, field
from typing import Any

from dvx.access.source import Node
from dvx.errors import DvxError, PathOutsideRepoError, UsageError, WorkspaceConflictError
from dvx.fsutil import os_error
from dvx.progress import NULL_PROGRESS, Progress


@dataclass
class GetResult:
    source: str  # the repository, as given
    path: str  # the path in that repository
    rev: str | None
    commit: str | None
    out: str  # where it was written
    files: int = 0
    bytes: int = 0
    overwritten: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # links pointing outside OUT

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


def _parts(rel: str) -> list[str]:
    parts = rel.split("/") if rel else []
    for p in parts:
        if p in ("", ".", "..") or "\0" in p or os.sep in p:
            raise PathOutsideRepoError(f"refused name {rel!r} in the source",
                                       "the repository is damaged or forged")
    return parts


def _check_parents(out: str, parts: list[str]) -> None:
    """No directory between ``out`` and the file may be a symbolic link or a file."""
    cur = out
    for part in parts[:-1]:
        cur = os.path.join(cur, part)
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(st.st_mode):
            what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "a file"
            raise WorkspaceConflictError(f"{cur} is {what}; dvx get writes only into real directories",
                                         "remove it or pick another -o")


def get(repo: Any, path: str, rev: str | None = None, out: str | None = None, *, force: bool = False,
        remote: str | None = None, progress: Progress = NULL_PROGRESS) -> GetResult:
    from dvx.access.files import resolve

    # one committed version, as DVC's get: a local repository's HEAD, not its work tree
    src, node, commit = resolve(path, "HEAD" if rev is None else rev, repo, remote)
    if not node.path:
        raise UsageError("name the tracked path to get", "e.g. `dvx get REPO data/train.csv`")
    if node.kind == "link":
        raise UsageError(f"{node.path} is a symbolic link", "get the file it points to")
    if out is None:
        out = node.name
    out = os.path.abspath(out)
    if node.kind == "file" and os.path.isdir(out):
        out = os.path.join(out, node.name)
    result = GetResult(os.fspath(repo), node.path, rev, commit, out)

    # what goes where: (parts below out, node)
    plan: list[tuple[list[str], Node]]
    if node.kind == "file":
        plan = [([], node)]
    else:
        pre = node.path + "/" if node.path else ""
        plan = [(_parts(n.path[len(pre):]), n) for n in src.walk_files(node, commit)]
    if node.kind != "file" and os.path.lexists(out) and not os.path.isdir(out):
        raise WorkspaceConflictError(f"{out} exists and is not a directory", "remove it or pick another -o")
    if node.kind != "file" and os.path.islink(out):
        raise WorkspaceConflictError(f"{out} is a symbolic link", "pick another -o")
    existing = []
    for parts, _n in plan:
        _check_parents(out, parts)
        dest = os.path.join(out, *parts)
        if os.path.lexists(dest):
            if os.path.isdir(dest) and not os.path.islink(dest):
                raise WorkspaceConflictError(f"{dest} is a directory", "remove it or pick another -o")
            existing.append(dest)
    if existing and not force:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise WorkspaceConflictError(f"{existing[0]}{more} already exist; nothing was written",
                                     "pass --force to overwrite, or pick another -o")
    result.overwritten = existing

    links = {"/".join(parts) for parts, n in plan if n.kind == "link"}
    total = sum(n.size for _p, n in plan if n.kind == "file")
    progress.start(f"get {node.path}", total, "bytes")
    try:
        for parts, n in plan:
            dest = os.path.join(out, *parts)
            try:
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                if n.kind == "link":
                    if _write_link(out, dest, n, links):
                        result.files += 1
                    else:
                        result.skipped.append(n.path)
                    continue
                written = _write_file(src, n, dest)
            except OSError as exc:
                raise os_error(exc, f"write {dest}") from None
            result.files += 1
            result.bytes += written
            progress.advance(written)
    finally:
        progress.finish()
    return result


def _write_link(out: str, dest: str, n: Node, links: set[str]) -> bool:
    """Recreate a stored link when it resolves inside ``out``; False (skipped) otherwise.

    The target is walked component by component from the link's directory, as the
    file system would: a lexical check alone is fooled by ``l -> a/s/../..`` with
    ``a/s -> .``, which normalizes to ``out`` but resolves to its parent. So the walk
    may not climb above ``out`` and may not pass *through* another link (``links``:
    the stored ones, relative to ``out``; or one already on disk); ending on a stored
    link is fine, as that link is checked the same way."""
    target = n.link_target or ""
    if not _link_stays_inside(out, os.path.relpath(os.path.dirname(dest), out), target, links):
        return False
    if os.path.lexists(dest):
        os.unlink(dest)
    os.symlink(target, dest)
    return True


def _link_stays_inside(out: str, here: str, target: str, links: set[str]) -> bool:
    if not target or os.path.isabs(target) or "\0" in target:
        return False
    cur = [] if here in ("", ".") else here.split(os.sep)
    steps = [c for c in target.split("/") if c not in ("", ".")]
    for i, comp in enumerate(steps):
        if comp == "..":
            if not cur:
                return False
            cur.pop()
            continue
        cur.append(comp)
        rel = "/".join(cur)
        last = i == len(steps) - 1
        if (rel in links and not last) or (rel not in links and os.path.islink(os.path.join(out, *cur))):
            return False
    return True


def _write_file(src: Any, n: Node, dest: str) -> int:
    fd, tmp = tempfile.mkstemp(prefix=".dvx-get-", dir=os.path.dirname(dest))
    try:
        with src.open_raw(n) as f:
            written = f.copy_to(fd)
        mode = 0o777 if n.executable else 0o666
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, mode & ~umask)
        os.close(fd)
        fd = -1
        os.replace(tmp, dest)
        return int(written)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


__all__ = ["DvxError", "GetResult", "get"]
