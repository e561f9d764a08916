"""Reading artifacts from their refs (``protocols/artifacts.md`` §3, §5).

Every reader is tolerant: a ref whose commit or ``artifact.json`` is malformed is
reported (``problems``) and skipped by listings, and named in the error of a lookup.
"""

from __future__ import annotations

import os
from typing import Any

from dvx.artifacts.names import LATEST, REF_PREFIX, ArtifactError, check_name, parse_reference
from dvx.artifacts.record import Artifact, ArtifactVersion, decode_artifact
from dvx.errors import DvxError
from dvx.pointer import POINTER_SUFFIX, Pointer
from dvx.repo import Repository

RECORD = "artifact.json"
VERSIONS_DIR = "versions"


def version_file(number: int) -> str:
    """Path of a version's pointer in the artifact commit's tree (below the DVX root)."""
    return f"{VERSIONS_DIR}/v{number}{POINTER_SUFFIX}"


def _git(repo: Repository | Any) -> Any:
    if isinstance(repo, Repository):
        from dvx.gitio import GitRepo

        return GitRepo(repo.root)
    return repo


def artifact_refs(git: Any) -> dict[str, str]:
    """name -> commit of every ``refs/dvx/artifacts/*`` (names not valid are skipped:
    ``list_artifacts`` reports them)."""
    return {ref[len(REF_PREFIX):]: sha for ref, sha in git.refs_under(REF_PREFIX).items()}


def read_commit(git: Any, name: str, sha: str) -> Artifact:
    """The artifact as commit ``sha`` of its ref holds it."""
    where = f"{REF_PREFIX}{name} ({sha[:12]})"
    try:
        info = git.commit_info(sha)
        found = git.blob_at(info, RECORD)
    except DvxError as exc:
        raise ArtifactError(f"{where}: cannot read the commit: {exc.message}", exc.hint) from None
    if found is None:
        raise ArtifactError(f"{where}: the commit holds no {RECORD}",
                            "the ref was not written by DVX; delete it with `git update-ref -d`")
    return decode_artifact(found[1], where, name, sha)


def list_artifacts(repo: Repository | Any, problems: list[str] | None = None) -> list[Artifact]:
    """Every artifact, by name. A malformed one is skipped and described in ``problems``."""
    git = _git(repo)
    out = []
    for name, sha in sorted(artifact_refs(git).items()):
        try:
            check_name(name)
            out.append(read_commit(git, name, sha))
        except DvxError as exc:
            if problems is not None:
                problems.append(str(exc) if name in exc.message else f"{REF_PREFIX}{name[:140]}: {exc}")
    return out


def get_artifact(repo: Repository | Any, name: str) -> Artifact:
    """The artifact ``name`` (ArtifactError naming the ones that exist when unknown)."""
    git = _git(repo)
    check_name(name)
    sha = git.ref_value(REF_PREFIX + name)
    if sha is None:
        refs = artifact_refs(git)
        known = sorted(n for n in refs if n != name)
        listed = ", ".join(known[:20]) + (f" (and {len(known) - 20} more)" if len(known) > 20 else "")
        raise ArtifactError(f"no artifact named {name!r}",
                            f"artifacts here: {listed}" if known else
                            "there are no artifacts yet: `dvx artifacts add PATH --name NAME --type TYPE`")
    return read_commit(git, name, sha)


def pick(art: Artifact, ref: str) -> ArtifactVersion:
    """The version of ``art`` that ``ref`` (``NAME[:vN|:ALIAS]``) names."""
    parsed = parse_reference(ref)
    if parsed.version is not None:
        v = art.version(parsed.version)
        if v.dropped:
            raise ArtifactError(f"{art.name}:v{v.version} was dropped (retention)",
                                f"its versions now: {art.describe_versions()}")
        return art.with_aliases().versions[v.version]
    alias = parsed.alias or LATEST
    if alias not in art.aliases:
        raise ArtifactError(f"artifact {art.name} has no alias {alias!r}",
                            f"its aliases: {art.describe_aliases()}; versions: {art.describe_versions()}")
    return art.with_aliases().versions[art.aliases[alias]]


def resolve(repo: Repository | Any, ref: str) -> ArtifactVersion:
    """The version ``NAME``, ``NAME:vN`` or ``NAME:ALIAS`` names."""
    git = _git(repo)
    return pick(get_artifact(git, parse_reference(ref).name), ref)


def version_pointer(repo: Repository | Any, art: Artifact, number: int) -> Pointer:
    """The pointer of version ``number`` in the artifact's commit (checked against the
    record's id)."""
    from dvx.pointer import parse_pointer

    git = _git(repo)
    if art.commit is None:
        raise ArtifactError(f"artifact {art.name} is not written yet")
    where = f"{REF_PREFIX}{art.name}:{version_file(number)}"
    found = git.blob_at(git.commit_info(art.commit), version_file(number))
    if found is None:
        raise ArtifactError(f"{where} is missing",
                            "the artifact's commit is damaged; check `git log` of its ref")
    pointer = parse_pointer(found[1], where)
    v = art.versions[number]
    if pointer.id != v.id:
        raise ArtifactError(f"{where} names {pointer.id[:12]}, but artifact.json says "
                            f"{v.id[:12]}", "the artifact's commit is damaged")
    kind = "file" if pointer.kind == "file" else "dir"
    if kind != v.kind or pointer.size != v.size:
        raise ArtifactError(f"{where} is a {kind} of {pointer.size} bytes, but artifact.json says a "
                            f"{v.kind} of {v.size} bytes", "the artifact's commit is damaged")
    return pointer


def version_pointers(repo: Repository | Any, art: Artifact) -> dict[int, bytes]:
    """number -> pointer file bytes of every live version (what the next commit keeps)."""
    git = _git(repo)
    if art.commit is None:
        return {}
    info = git.commit_info(art.commit)
    out = {}
    for v in art.live:
        found = git.blob_at(info, version_file(v.version))
        if found is None:
            raise ArtifactError(f"{REF_PREFIX}{art.name}:{version_file(v.version)} is missing",
                                "the artifact's commit is damaged; check `git log` of its ref")
        out[v.version] = found[1]
    return out


def looks_like_reference(text: str) -> bool:
    """Whether ``use_artifact(text)`` means an artifact (``NAME:vN`` / ``NAME:ALIAS``)
    rather than a path: it has one ``:``, no ``/``, and no file of that name exists
    (relative to the current directory, as paths are)."""
    return text.count(":") == 1 and "/" not in text and not os.path.lexists(text)
