"""``dvx init``: create ``.dvx/`` in a git work tree (creating the git repository if absent)."""

from __future__ import annotations

import os
import sys

from dvx.repo import Repository


def init(path: str = ".") -> tuple[Repository, bool, bool]:
    """Returns ``(repo, dvx_created, git_created)``. Idempotent."""
    from dvx import gitio

    root = os.path.realpath(path)
    gitio.refuse_git_dir(root)  # a bare repository or .git/ itself: no work tree
    os.makedirs(root, exist_ok=True)
    git_created = gitio.ensure_repo(root)
    repo, created = Repository.init(root)
    gitio.ensure_info_exclude(root)  # also done by every command that opens the repository
    if not _committed(root):
        sys.stderr.write("hint: commit .dvx/config and .dvx/.gitignore "
                         "(`git add .dvx/config .dvx/.gitignore`, or `dvx commit`); "
                         ".git/info/exclude keeps the store out of git on every branch\n")
    return repo, created, git_created


def _committed(root: str) -> bool:
    """Whether git already tracks ``.dvx/config`` and ``.dvx/.gitignore``."""
    from dvx.errors import DvxError
    from dvx.gitio import GitRepo

    try:
        found = GitRepo(root).index_paths_under([".dvx/config", ".dvx/.gitignore"])
    except (DvxError, OSError, ValueError):
        return False
    return len(found) == 2
