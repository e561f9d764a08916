"""Changing an artifact (``protocols/artifacts.md`` §5): each change is a new commit
on the artifact's ref whose parent is the previous one, and the ref moves by
compare-and-swap. A writer that loses the race (another process moved the ref
meanwhile) reads the new state and applies its change again, so concurrent writers
never lose an update.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from dvx.artifacts.names import (
    LATEST,
    ArtifactError,
    check_alias,
    check_name,
    check_type,
    parse_reference,
    ref_name,
)
from dvx.artifacts.read import RECORD, _git, pick, read_commit, version_file, version_pointers
from dvx.artifacts.record import Artifact, ArtifactVersion, Retention, encode_artifact, now_iso
from dvx.pointer import Pointer
from dvx.repo import Repository

ATTEMPTS = 50


@dataclass
class Change:
    """What one write did: the new state (None: nothing to change) and its message."""

    artifact: Artifact | None
    message: str
    pointers: dict[int, bytes] | None = None  # new pointer files (number -> bytes)


def commit_state(git: object, art: Artifact, pointers: dict[int, bytes], message: str,
                 parents: list[str]) -> str:
    """Write the commit of ``art`` (its tree: artifact.json and the live versions'
    pointers) and return its id; no ref moves."""
    files = {RECORD: encode_artifact(art)}
    for v in art.live:
        files[version_file(v.version)] = pointers[v.version]
    return git.write_commit(base=None, subtree="", files=files, parents=parents,  # type: ignore[attr-defined, no-any-return]
                            message=message + "\n")


def update(repo: Repository | object, name: str, change: Callable[[Artifact | None], Change]) -> Artifact:
    """Apply ``change`` to the current state of ``name`` (None when the artifact does not
    exist yet) and commit the result; retried on a lost compare-and-swap."""
    from dvx.errors import GitError

    git = _git(repo)
    ref = ref_name(name)
    for _ in range(ATTEMPTS):
        old = git.ref_value(ref)
        current = read_commit(git, name, old) if old is not None else None
        done = change(current)
        if done.artifact is None:
            if current is None:  # deleted meanwhile, and nothing to create
                raise ArtifactError(f"no artifact named {name!r}", "see `dvx artifacts list`")
            return current
        pointers = version_pointers(git, current) if current is not None else {}
        pointers.update(done.pointers or {})
        sha = commit_state(git, done.artifact, pointers, done.message, [old] if old else [])
        if git.set_ref(ref, sha, old):
            return replace(done.artifact, commit=sha)
        git = git.reopened()  # another writer moved the ref: read its state, apply again
    raise GitError(f"{ref} kept changing while DVX tried to update it ({ATTEMPTS} attempts)",
                   "retry; another process is writing this artifact in a loop")


def _aliases_text(aliases: list[str]) -> str:
    return f" (alias {', '.join(aliases)})" if aliases else ""


def add_version(repo: Repository | object, name: str, type: str, pointer: Pointer, path: str, *,
                aliases: list[str] | tuple[str, ...] = (), run: str | None = None,
                commit: str | None = None) -> tuple[ArtifactVersion, bool]:
    """Record ``pointer`` (the data of repository path ``path``) as the newest version of
    ``name``, unless a version not dropped already has its content id: then that one is
    re-logged (``latest`` and ``aliases`` move to it). Returns (the version, whether
    it is new)."""
    check_name(name)
    check_type(type)
    wanted = [check_alias(a) for a in dict.fromkeys(aliases) if a != LATEST]
    kind = "file" if pointer.kind == "file" else "dir"
    created: list[bool] = []

    def change(cur: Artifact | None) -> Change:
        created.clear()
        if cur is not None and cur.type != type:
            raise ArtifactError(f"artifact {name} has type {cur.type!r}, not {type!r}",
                                f"use its type, or another name for a {type} artifact")
        cur = cur or Artifact(name, type)
        same = [v for v in cur.live if v.id == pointer.id]
        moved = {a: n for a, n in cur.aliases.items()}
        if same:
            number = same[-1].version
            if all(moved.get(a) == number for a in [LATEST, *wanted]):
                return Change(None, "")
            versions = cur.versions
            new_files: dict[int, bytes] = {}
            verb = "re-logged"
        else:
            number = len(cur.versions)
            entry = ArtifactVersion(name, number, pointer.id, kind, pointer.size,
                                    pointer.files if kind == "dir" else 1, path, run, commit, now_iso())
            versions = (*cur.versions, entry)
            new_files = {number: pointer.render().encode()}
            verb = ""
            created.append(True)
        for a in [LATEST, *wanted]:
            moved[a] = number
        art = replace(cur, versions=versions, aliases=moved)
        label = f"{verb} " if verb else ""
        return Change(art, f"artifacts: {name} {label}v{number}{_aliases_text([LATEST, *wanted])}", new_files)

    art = update(repo, name, change)
    version = pick(art, f"{name}:{LATEST}")
    return version, bool(created)


def set_alias(repo: Repository | object, ref: str, alias: str) -> ArtifactVersion:
    """Point ``alias`` at the version ``ref`` names (an alias moves; its history is the
    commit chain). ``latest`` is DVX's."""
    check_alias(alias)
    if alias == LATEST:
        raise ArtifactError("`latest` is managed by DVX (the version logged last)",
                            "choose another alias, e.g. best or production")
    parsed = parse_reference(ref)

    def change(cur: Artifact | None) -> Change:
        if cur is None:
            raise ArtifactError(f"no artifact named {parsed.name!r}", "see `dvx artifacts list`")
        target = pick(cur, ref).version
        if cur.aliases.get(alias) == target:
            return Change(None, "")
        before = cur.aliases.get(alias)
        aliases = {**cur.aliases, alias: target}
        was = f" (was v{before})" if before is not None else ""
        return Change(replace(cur, aliases=aliases), f"artifacts: {cur.name} alias {alias} -> v{target}{was}")

    art = update(repo, parsed.name, change)
    return art.with_aliases().versions[art.aliases[alias]]


def remove_alias(repo: Repository | object, name: str, alias: str) -> int:
    """Remove ``alias`` from ``name``; returns the version it named."""
    check_name(name)
    check_alias(alias)
    if alias == LATEST:
        raise ArtifactError("`latest` is managed by DVX and cannot be removed",
                            "it moves by itself to the version logged last; remove another alias")
    found: list[int] = []

    def change(cur: Artifact | None) -> Change:
        if cur is None:
            raise ArtifactError(f"no artifact named {name!r}", "see `dvx artifacts list`")
        if alias not in cur.aliases:
            raise ArtifactError(f"artifact {name} has no alias {alias!r}",
                                f"its aliases: {cur.describe_aliases()}")
        found[:] = [cur.aliases[alias]]
        aliases = {a: n for a, n in cur.aliases.items() if a != alias}
        return Change(replace(cur, aliases=aliases),
                      f"artifacts: {name} alias {alias} removed (was v{found[0]})")

    update(repo, name, change)
    return found[0]


def set_retention(repo: Repository | object, name: str, retention: Retention) -> Artifact:
    """Replace the retention policy of ``name``."""
    check_name(name)
    for label, value in (("keep_last", retention.keep_last), ("ttl_days", retention.ttl_days)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ArtifactError(f"{label} must be a whole number >= 1, not {value!r}")

    def change(cur: Artifact | None) -> Change:
        if cur is None:
            raise ArtifactError(f"no artifact named {name!r}", "see `dvx artifacts list`")
        if cur.retention == retention:
            return Change(None, "")
        return Change(replace(cur, retention=retention), f"artifacts: {name} retention: {retention.describe()}")

    return update(repo, name, change)


def drop(cur: Artifact, numbers: list[int], why: str) -> Change:
    """The change that drops versions ``numbers`` of ``cur`` (their entries stay with
    ``dropped``; aliases naming them are removed; ``latest`` falls back to the newest
    version left)."""
    gone = set(numbers)
    versions = tuple(replace(v, dropped=True) if v.version in gone else v for v in cur.versions)
    aliases = {a: n for a, n in cur.aliases.items() if n not in gone}
    left = [v.version for v in versions if not v.dropped]
    if LATEST not in aliases and left:
        aliases[LATEST] = left[-1]
    listed = ", ".join(f"v{n}" for n in sorted(gone))
    return Change(replace(cur, versions=versions, aliases=aliases),
                  f"artifacts: {cur.name} drop {listed} ({why})")
