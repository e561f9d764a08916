"""The one module that talks to git (through dulwich).

Everything DVX needs from git goes through here, so the rest of the code never touches
dulwich objects directly, and what DVX writes stays acceptable to the git CLI.
"""

from __future__ import annotations

import os

from dulwich.repo import Repo

from dvx.errors import GitError


def find_git_root(path: str) -> str | None:
    cur = os.path.realpath(path)
    while True:
        if os.path.exists(os.path.join(cur, ".git")):
            return cur
        parent = os.path.dirname(cur)
        if parent == cur:
            return None
        cur = parent


def ensure_repo(root: str) -> bool:
    """Create a git repository at ``root`` unless one contains it. Returns created."""
    if find_git_root(root) is not None:
        return False
    try:
        Repo.init(root)
    except OSError as exc:
        raise GitError(f"cannot create a git repository in {root}: {exc.strerror}") from None
    return True
