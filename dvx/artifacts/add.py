"""``dvx artifacts add PATH --name NAME --type TYPE [--alias A]...``: store PATH as
``dvx add`` does and record it as the newest version of the artifact — or re-log the
version that already holds that content (``protocols/artifacts.md`` §5)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from dvx.artifacts.record import ArtifactVersion
from dvx.errors import NotTrackedError
from dvx.progress import NULL_PROGRESS, Progress
from dvx.repo import Repository


@dataclass
class AddedVersion:
    version: ArtifactVersion
    created: bool  # False: a version with this content existed; aliases moved to it

    def to_json(self) -> dict[str, Any]:
        return {**self.version.to_json(), "created": self.created}


def add_artifact(repo: Repository, path: str, name: str, type: str, aliases: list[str] | None = None,
                 progress: Progress = NULL_PROGRESS) -> AddedVersion:
    from dvx.artifacts.names import check_alias, check_name, check_type
    from dvx.artifacts.write import add_version
    from dvx.gitio import GitRepo
    from dvx.ops.add import add
    from dvx.pointer import POINTER_SUFFIX, read_pointer

    check_name(name)
    check_type(type)
    for a in aliases or []:
        check_alias(a)
    rel = repo.relpath(path)
    if os.path.lexists(repo.abspath(rel)):
        pointer = add(repo, [path], progress)[0].pointer
    elif os.path.exists(repo.abspath(rel + POINTER_SUFFIX)):
        pointer = read_pointer(repo.abspath(rel + POINTER_SUFFIX), rel + POINTER_SUFFIX)
    else:
        raise NotTrackedError(f"{path} does not exist and is not tracked", "check the path")
    head = GitRepo(repo.root).head()
    version, created = add_version(repo, name, type, pointer, rel, aliases=aliases or [], commit=head)
    return AddedVersion(version, created)
