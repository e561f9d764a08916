"""``dvx init``: create ``.dvx/`` in a git work tree (creating the git repository if absent)."""

from __future__ import annotations

import os

from dvx.repo import Repository


def init(path: str = ".") -> tuple[Repository, bool, bool]:
    """Returns ``(repo, dvx_created, git_created)``. Idempotent."""
    from dvx import gitio

    root = os.path.realpath(path)
    gitio.refuse_git_dir(root)  # a bare repository or .git/ itself: no work tree
    os.makedirs(root, exist_ok=True)
    git_created = gitio.ensure_repo(root)
    repo, created = Repository.init(root)
    return repo, created, git_created
