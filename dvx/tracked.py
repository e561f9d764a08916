"""Finding tracked paths: every ``PATH.dvx`` pointer file in the work tree.

The walk skips ``.git``, ``.dvx``, the contents of tracked directories and nested git
repositories (submodules: a directory with its own ``.git``, whose pointers belong to
that repository), so its cost grows with the code tree, not with the data.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from dvx.errors import NotTrackedError
from dvx.pointer import POINTER_SUFFIX, Pointer, check_target, read_pointer
from dvx.repo import Repository

SKIP_DIRS = {".git", ".dvx"}


@dataclass(frozen=True)
class Tracked:
    target: str  # repository-relative POSIX path of the data
    pointer_path: str  # repository-relative path of the pointer file

    def load(self, repo: Repository) -> Pointer:
        """The pointer; ``PointerError`` if it is malformed or its name is unsafe."""
        check_target(self.target, self.pointer_path)
        return read_pointer(repo.abspath(self.pointer_path), self.pointer_path)


def find_tracked(repo: Repository) -> list[Tracked]:
    found: list[Tracked] = []
    stack = [""]
    while stack:
        prefix = stack.pop()
        base = repo.abspath(prefix.rstrip("/")) if prefix else repo.root
        try:
            with os.scandir(base) as it:
                entries = list(it)
        except OSError:
            continue
        names = {e.name for e in entries}
        if prefix and ".git" in names:
            continue  # a submodule or other nested repository: not this repository's
        for e in entries:
            if e.name.endswith(POINTER_SUFFIX) and e.is_file(follow_symlinks=False):
                # every pointer file is listed, unsafe names too (``load`` refuses
                # them), so each command can name the bad file instead of ignoring it
                found.append(Tracked(prefix + e.name[: -len(POINTER_SUFFIX)], prefix + e.name))
        for e in entries:
            if e.name in SKIP_DIRS or not e.is_dir(follow_symlinks=False):
                continue
            if e.name + POINTER_SUFFIX in names:
                continue  # a tracked directory: its contents are data
            stack.append(prefix + e.name + "/")
    found.sort(key=lambda t: t.target)
    return found


def match_targets(repo: Repository, targets: Iterable[str], paths: list[str], where: str,
                  hint: str = "track it with `dvx add`") -> list[str]:
    """The tracked targets that user paths name: a target, its pointer file, or a
    directory holding tracked paths. A path that names none is an error."""
    targets = list(targets)
    chosen: set[str] = set()
    for p in paths:
        rel = repo.relpath(p)
        if rel.endswith(POINTER_SUFFIX):
            rel = rel[: -len(POINTER_SUFFIX)]
        hits = [t for t in targets if t == rel or not rel or t.startswith(rel + "/")]
        if not hits:
            raise NotTrackedError(f"{p} is not tracked by DVX{where}", hint)
        chosen.update(hits)
    return sorted(chosen)


def select_tracked(repo: Repository, paths: list[str] | None) -> list[Tracked]:
    """Tracked entries for user paths; all of them when ``paths`` is empty."""
    everything = find_tracked(repo)
    if not paths:
        return everything
    by_target = {t.target: t for t in everything}
    return [by_target[t] for t in match_targets(repo, by_target, paths, "")]


def owning_tracked(everything: list[Tracked], rel: str) -> Tracked | None:
    """The tracked directory that contains ``rel``, if any."""
    for t in everything:
        if rel.startswith(t.target + "/"):
            return t
    return None
