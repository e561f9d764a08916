"""Data of paths that a git operation stopped tracking (used by the hooks).

Switching to a branch (or merging, rebasing onto one) where ``PATH.dvx`` does not
exist removes the pointer but not the data, which then shows up as untracked (``??``)
in ``git status``. As git does for its own files, DVX removes the data when it is
unchanged, i.e. exactly the version the previous HEAD committed, and that version is
saved in the store (``dvx checkout --rev OLD`` brings it back). Anything else is kept
and reported.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat as stat_mod

from dvx.errors import DvxError
from dvx.gitio import GitRepo
from dvx.pointer import POINTER_SUFFIX, Pointer, parse_pointer
from dvx.repo import Repository
from dvx.statcache import StatCache
from dvx.tracked import Tracked


def remove_vanished(repo: Repository, old_rev: str) -> list[tuple[str, str]]:
    """Remove the unchanged, saved data of paths ``old_rev`` tracked and the work tree no
    longer does (``old_rev``: a commit, or ``ORIG_HEAD``). Returns ``(path, reason)`` for
    the data kept."""
    git = GitRepo(repo.root)
    if old_rev == "ORIG_HEAD":
        old_rev = git.orig_head() or ""
    head = git.head()
    if head is None or not old_rev.strip("0"):
        return []
    try:
        old = git.commit_info(git.resolve(old_rev))
    except DvxError:
        return []  # e.g. ORIG_HEAD of a pruned commit: nothing to compare with
    new = git.commit_info(head)
    cache = StatCache(repo.state_dir)
    kept: list[tuple[str, str]] = []
    for ptr_path, blob in sorted(git.pointer_blobs(old).items()):
        target = ptr_path[: -len(POINTER_SUFFIX)]
        abs_path = repo.abspath(target)
        if (os.path.lexists(abs_path + POINTER_SUFFIX) or not os.path.lexists(abs_path)
                or git.tracks(new, target)):
            continue  # still tracked, already gone, or git's own file/directory now
        try:
            pointer = parse_pointer(git.read_blob(blob), f"{ptr_path} in {old.sha[:12]}")
        except DvxError:
            continue
        if not _unchanged(repo, target, pointer, cache):
            kept.append((target, "it is not tracked here any more and has changes not saved in the "
                                 f"store; save it with `dvx add {target}`, or delete it"))
            continue
        try:
            if os.path.isdir(abs_path) and not os.path.islink(abs_path):
                shutil.rmtree(abs_path)
            else:
                os.unlink(abs_path)
        except OSError as exc:
            kept.append((target, f"cannot remove it: {exc.strerror}"))
            continue
        cache.drop(target)
        cache.save_base(target, None)
        _remove_empty_parents(repo, os.path.dirname(abs_path))
    return kept


def _unchanged(repo: Repository, target: str, pointer: Pointer, cache: StatCache) -> bool:
    """The data is the version ``pointer`` names, and that version is in the store."""
    from dvx.ops import status

    if not repo.store.contains(pointer.oid):
        return False
    try:
        st = os.lstat(repo.abspath(target))
        t = Tracked(target, target + POINTER_SUFFIX)
        if pointer.kind == "file":
            res = status._file_status(repo, t, pointer, st, cache.load(target), cache)
        else:
            if not stat_mod.S_ISDIR(st.st_mode):
                return False
            res = status._tree_status(repo, t, pointer, st, cache, status.NULL_PROGRESS, [])
    except (OSError, DvxError):
        return False
    return res.state == "clean"


def _remove_empty_parents(repo: Repository, path: str) -> None:
    """Directories left empty go too, as git removes them, up to the work tree's root."""
    while path != repo.root and path.startswith(repo.root + os.sep):
        with contextlib.suppress(OSError):
            os.rmdir(path)
        if os.path.exists(path):
            return
        path = os.path.dirname(path)
