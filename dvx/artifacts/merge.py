"""Merging two histories of one artifact (``protocols/artifacts.md`` §8): what
``dvx fetch`` does when the git remote and this repository both changed it.

Three-way, from their common ancestor (``base``): their versions keep their numbers;
versions added only here are renumbered after theirs (one with the same content id as a
version they added becomes that version); a version dropped on either side is dropped;
an alias moved on one side takes that side's value; moved to the same version on both,
that version; moved to different versions on both: a conflict — this side's value is
kept and the conflict reported (theirs stays in the merge commit's second parent).
``latest``: the version logged last on either side.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from dvx.artifacts.names import LATEST
from dvx.artifacts.record import Artifact, ArtifactVersion
from dvx.errors import ErrorText


@dataclass
class Merged:
    artifact: Artifact | None  # None: cannot be merged (different types)
    renumbered: dict[int, int] = field(default_factory=dict)  # my number -> merged number
    notes: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    # (alias, mine, theirs) of each alias moved to different versions on both sides
    alias_conflicts: list[tuple[str, int | None, int | None]] = field(default_factory=list)


def merge(base: Artifact | None, theirs: Artifact, mine: Artifact, remote: str) -> Merged:
    name = mine.name
    if theirs.type != mine.type:
        return Merged(None, conflicts=[ErrorText(
            f"artifact {name} has type {mine.type!r} here and {theirs.type!r} on {remote}; kept yours",
            f"rename one of them (a new name, then delete the old ref with `git update-ref -d "
            f"refs/dvx/artifacts/{name}`)")])
    b = base or Artifact(name, mine.type)
    shared = len(b.versions)
    theirs_new = {v.id: v.version for v in theirs.versions[shared:] if not v.dropped}
    number = {n: n for n in range(min(shared, len(mine.versions)))}
    versions = list(theirs.versions)
    merged = Merged(None)
    for v in mine.versions[shared:]:
        if v.id in theirs_new and not v.dropped:
            number[v.version] = theirs_new[v.id]
            continue
        number[v.version] = len(versions)
        versions.append(replace(v, version=len(versions)))
        if number[v.version] != v.version:
            merged.renumbered[v.version] = number[v.version]
    for n in range(min(shared, len(mine.versions), len(versions))):
        if mine.versions[n].dropped and not versions[n].dropped:
            versions[n] = replace(versions[n], dropped=True)
    if merged.renumbered:
        moves = ", ".join(f"v{a} is now v{b}" for a, b in sorted(merged.renumbered.items()))
        merged.notes.append(f"artifact {name}: {remote} added versions too; yours were renumbered after "
                            f"theirs ({moves})")
    live = {v.version for v in versions if not v.dropped}

    def mapped(n: int | None) -> int | None:
        return None if n is None else number.get(n)

    aliases: dict[str, int] = {}
    for alias in sorted((set(theirs.aliases) | set(mine.aliases)) - {LATEST}):
        was, t, m = b.aliases.get(alias), theirs.aliases.get(alias), mapped(mine.aliases.get(alias))
        if t == m or m == was:
            value = t
        elif t == was:
            value = m
        else:
            value = m
            merged.alias_conflicts.append((alias, m, t))
            merged.conflicts.append(ErrorText(
                f"artifact {name}: alias {alias} was moved to {version_label(m)} here and to "
                f"{version_label(t)} on {remote}; "
                f"kept {version_label(m)} (theirs is in the history: `dvx artifacts show {name} --json`)",
                f"keep yours with `dvx push`, or take theirs with "
                f"`dvx artifacts alias {name}:{version_label(t)} {alias}`"
                if t is not None else f"keep yours with `dvx push`, or remove it with "
                                      f"`dvx artifacts alias --remove {name} {alias}`"))
        if value is not None and value in live:
            aliases[alias] = value
        elif value is not None and value != was:
            # moved on one side to a version the other side dropped: the alias cannot
            # stay, but the move was someone's intent: say so instead of losing it
            where, side = ("here", remote) if value == m else (f"on {remote}", "this repository")
            text = (f"artifact {name}: alias {alias} was moved to v{value} {where}, but {side} dropped "
                    f"v{value} (retention); the alias was removed")
            if value == m:
                merged.conflicts.append(ErrorText(text, f"move it to a live version with "
                                                        f"`dvx artifacts alias {name}:vN {alias}`"))
            else:
                merged.notes.append(text)
    latest = _latest(b, theirs, mine, mapped, versions)
    if latest is not None:
        aliases[LATEST] = latest
    was_r, t_r, m_r = b.retention, theirs.retention, mine.retention
    retention = t_r if m_r == was_r else (m_r if t_r == was_r else t_r)
    if m_r != was_r and t_r != was_r and m_r != t_r:
        merged.notes.append(f"artifact {name}: its retention policy was changed here and on {remote}; "
                            f"kept theirs ({t_r.describe()})")
    merged.artifact = Artifact(name, mine.type, tuple(versions), aliases, retention)
    return merged


def version_label(n: int | None) -> str:
    return "(removed)" if n is None else f"v{n}"


def _latest(b: Artifact, theirs: Artifact, mine: Artifact, mapped: object,
            versions: list[ArtifactVersion]) -> int | None:
    live = [v.version for v in versions if not v.dropped]
    if not live:
        return None
    was, t, m = b.aliases.get(LATEST), theirs.aliases.get(LATEST), mapped(mine.aliases.get(LATEST))  # type: ignore[operator]
    if m == was or m is None:
        pick = t
    elif t == was or t is None:
        pick = m
    else:  # logged on both sides: the one logged last
        pick = max((t, m), key=lambda n: (versions[n].created, n == t))
    return pick if pick is not None and pick in live else live[-1]
