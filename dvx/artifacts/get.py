"""``dvx artifacts get``: materialise one version at a path (``protocols/artifacts.md`` §9).

The data comes from the local store, else it is fetched from the default DVX remote
first. It is rebuilt in a temporary sibling of the destination and renamed into place,
so an interrupted get leaves nothing half-written; an existing destination is replaced
only with ``force``. Names inside the version come from the store's verified tree
objects and are checked again here: each is one path component, so nothing is ever
written outside the destination (links are created last, and nothing is written
through them).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from typing import Any

from dvx.artifacts.names import ArtifactError, parse_reference
from dvx.artifacts.read import get_artifact, pick, version_pointer
from dvx.errors import DvxError, WorkspaceConflictError
from dvx.fsutil import random_token
from dvx.pointer import Pointer
from dvx.repo import Repository


@dataclass
class GetResult:
    name: str
    version: int
    id: str
    path: str  # where it was written (absolute)
    size: int
    files: int
    fetched: bool  # its data came from the remote

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def default_destination(name: str, version: int, source_path: str) -> str:
    """``artifacts/NAME/vN/<last component of the path it came from>`` (wandb's
    ``./artifacts/NAME:vN``, without a ``:`` in a file name)."""
    base = source_path.rstrip("/").rsplit("/", 1)[-1]
    if base in ("", ".", "..") or "\\" in base or "\0" in base:
        base = name
    return os.path.join("artifacts", name, f"v{version}", base)


def get_version(repo: Repository, ref: str, dest: str | None, *, force: bool = False,
                remote: str | None = None, progress: Any = None) -> GetResult:
    from dvx.ops.fetch import complete_locally

    parsed = parse_reference(ref)
    art = get_artifact(repo, parsed.name)
    version = pick(art, ref)
    pointer = version_pointer(repo, art, version.version)
    target = os.path.abspath(dest if dest is not None else default_destination(art.name, version.version,
                                                                                version.path))
    if dest is not None and pointer.kind == "file" and os.path.isdir(target):
        # a file into an existing directory goes inside it (as cp and `dvx get` do):
        # with --force it used to replace the whole directory by the file
        target = os.path.join(target, os.path.basename(default_destination(art.name, version.version,
                                                                            version.path)))
    _check_destination(repo, target, force)
    fetched = False
    if not complete_locally(repo.store, pointer):
        _fetch(repo, pointer, f"{art.name}:v{version.version}", remote, progress)
        fetched = True
    _materialise(repo, pointer, target, force)
    return GetResult(art.name, version.version, version.id, target, pointer.size, pointer.files, fetched)


def _check_destination(repo: Repository, target: str, force: bool) -> None:
    from dvx.gitio import refuse_git_dir

    real = os.path.realpath(target)
    for inside in (repo.dvx_dir, os.path.join(repo.root, ".git")):
        inside = os.path.realpath(inside)
        if real == inside or real.startswith(inside + os.sep):
            raise ArtifactError(f"{target} is inside {inside}", "choose a destination outside DVX's and git's "
                                                                "own directories")
    refuse_git_dir(target)
    for keep in (os.path.realpath(repo.root), os.path.realpath(os.getcwd())):
        if keep == real or keep.startswith(real.rstrip(os.sep) + os.sep):
            raise ArtifactError(f"refusing to replace {target}: it holds {keep}", "name a new path with -o")
    if os.path.lexists(target) and not force:
        raise WorkspaceConflictError(f"{target} already exists", "choose another path with -o, or replace it "
                                                                  "with --force")


def _fetch(repo: Repository, pointer: Pointer, label: str, remote: str | None, progress: Any) -> None:
    from dvx.ops.fetch import complete_locally, fetch
    from dvx.progress import NULL_PROGRESS

    try:
        report = fetch(repo, remote, pointers={f"{label}@{pointer.id[:12]}": pointer}, runs=False,
                       progress=progress or NULL_PROGRESS)
    except DvxError as exc:
        raise ArtifactError(f"the data of {label} is not in the local store, and fetching it failed: "
                            f"{exc.message}", exc.hint) from None
    repo.store.refresh()
    if not complete_locally(repo.store, pointer):
        why = report.errors[0] if report.errors else "the remote lacks it"
        raise ArtifactError(f"the data of {label} is in neither the local store nor remote {report.remote}: "
                            f"{why}",
                            "push it from a machine that has it (`dvx push`)")


def _materialise(repo: Repository, pointer: Pointer, target: str, force: bool) -> None:
    from dvx.ops.checkout import restore_file

    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".dvx-get-{random_token(6)}.tmp")
    try:
        if pointer.kind == "file":
            restore_file(repo.store, pointer.oid, tmp, pointer.exec)
        else:
            _restore_tree(repo, pointer.oid, tmp)
        if os.path.lexists(target):
            if not force:
                raise WorkspaceConflictError(f"{target} appeared meanwhile", "retry with --force to replace it")
            aside = os.path.join(parent, f".dvx-old-{random_token(6)}.tmp")
            os.rename(target, aside)
            os.rename(tmp, target)
            _remove(aside)
        else:
            os.rename(tmp, target)
    except BaseException:
        _remove(tmp)
        raise


def _restore_tree(repo: Repository, tree_id: bytes, top: str) -> None:
    from dvx.objects import ENTRY_FILE, ENTRY_TREE, check_name
    from dvx.ops.checkout import restore_file

    os.mkdir(top)
    links: list[tuple[str, str]] = []
    stack = [(top, tree_id)]
    while stack:
        here, tid = stack.pop()
        for e in repo.store.read_tree(tid).entries:
            check_name(e.name)  # one component: never a path out of ``top``
            path = os.path.join(here, e.name)
            assert e.oid is not None or e.kind not in (ENTRY_FILE, ENTRY_TREE)
            if e.kind == ENTRY_FILE and e.oid is not None:
                restore_file(repo.store, e.oid, path, e.executable)
            elif e.kind == ENTRY_TREE and e.oid is not None:
                os.mkdir(path)
                stack.append((path, e.oid))
            else:
                links.append((path, e.target or ""))
    for path, link_target in links:  # last: nothing is written through a link
        os.symlink(link_target, path)


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
