"""Retention (``protocols/artifacts.md`` §6): which versions ``dvx gc`` drops.

``keep_last N`` keeps the N newest versions not dropped yet; ``ttl_days D`` drops a
version created more than D days ago; with ``keep_aliased`` (the default) a version
an alias names — ``latest`` included — is never dropped. Dropping is a commit on the
artifact's ref (the entry stays, ``dropped: true``); the data goes with the next gc
that no longer finds it live.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from dvx.artifacts.read import _git, list_artifacts
from dvx.artifacts.record import Artifact
from dvx.pointer import Pointer
from dvx.repo import Repository


@dataclass(frozen=True)
class Drop:
    """A version retention drops, and why."""

    name: str
    version: int
    id: str
    size: int
    reason: str  # "keep_last" | "ttl"

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "version": self.version, "id": self.id, "size": self.size,
                "reason": self.reason}


def due(art: Artifact, now: float | None = None) -> list[Drop]:
    """The versions of ``art`` its policy drops at time ``now``."""
    policy = art.retention
    if policy.keep_last is None and policy.ttl_days is None:
        return []
    now = time.time() if now is None else now
    protected = set(art.aliases.values()) if policy.keep_aliased else set()
    live = art.live
    out: list[Drop] = []
    keep = {v.version for v in live[-policy.keep_last:]} if policy.keep_last is not None else None
    for v in live:
        if v.version in protected:
            continue
        if keep is not None and v.version not in keep:
            out.append(Drop(art.name, v.version, v.id, v.size, "keep_last"))
        elif policy.ttl_days is not None and now - v.created_time > policy.ttl_days * 86400:
            out.append(Drop(art.name, v.version, v.id, v.size, "ttl"))
    return out


def apply_retention(repo: Repository, *, dry_run: bool = False, now: float | None = None,
                    problems: list[str] | None = None) -> list[Drop]:
    """Drop what every artifact's policy says (nothing is written with ``dry_run``).
    Returns what was (or would be) dropped."""
    from dvx.artifacts.write import update

    git = _git(repo)
    dropped: list[Drop] = []
    for art in list_artifacts(git, problems):
        if not due(art, now):
            continue
        if dry_run:
            dropped += due(art, now)
            continue
        done: list[Drop] = []
        update(git, art.name, _dropper(now, done))
        dropped += done
    return dropped


def _dropper(now: float | None, done: list[Drop]) -> Any:
    from dvx.artifacts.write import Change, drop

    def change(cur: Artifact | None) -> Change:
        todo = due(cur, now) if cur is not None else []
        done[:] = todo
        if not todo or cur is None:
            return Change(None, "")
        return drop(cur, [d.version for d in todo], "retention: " + cur.retention.describe())

    return change


def tips(repo: Repository, names: set[str]) -> set[str]:
    """The commits the refs of the artifacts ``names`` point at."""
    from dvx.artifacts.read import artifact_refs

    return {sha for name, sha in artifact_refs(_git(repo)).items() if name in names}


def live_pointers(repo: Repository, drops: list[Drop], names: set[str] | None = None,
                  problems: list[str] | None = None) -> dict[str, Pointer]:
    """label -> pointer of every version (of the artifacts ``names``, default all) that
    stays live after ``drops``: the dry-run view of what gc keeps through artifacts."""
    from dvx.artifacts.read import version_pointer
    from dvx.errors import DvxError

    git = _git(repo)
    gone = {(d.name, d.version) for d in drops}
    out: dict[str, Pointer] = {}
    for art in list_artifacts(git, problems):
        if names is not None and art.name not in names:
            continue
        for v in art.live:
            if (art.name, v.version) in gone:
                continue
            try:
                out[f"artifact:{art.name}:v{v.version}@{v.id[:12]}"] = version_pointer(git, art, v.version)
            except DvxError as exc:
                if problems is not None:
                    problems.append(str(exc))
    return out
