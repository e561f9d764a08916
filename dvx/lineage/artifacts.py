"""Artifact versions as the lineage graph sees them (``protocols/lineage.md`` §3.3).

Read from ``refs/dvx/artifacts/<NAME>``: the commit's ``artifact.json`` at the DVX
root's path in its tree (the format the artifacts module writes,
``protocols/artifacts.md``). When ``dvx.artifacts`` offers its reading API
(``list_artifacts``) it is used; without it, or for an artifact it skips, the ref's
tree is read here.
Either way the reader is tolerant: an artifact whose record is malformed is reported
(``problems``) and skipped, never a crash.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from dvx.lineage.model import HEX_ID
from dvx.repo import Repository

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
ALIAS_RE = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,63}\Z")


@dataclass
class ArtifactVersion:
    name: str
    version: int
    id: str
    path: str | None
    run: str | None
    dropped: bool
    aliases: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.name}:v{self.version}"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "id": self.id, "path": self.path,
                "run": self.run, "dropped": self.dropped, "aliases": self.aliases}


def _from_record(name: str, record: Any) -> list[ArtifactVersion]:
    if not isinstance(record, dict) or record.get("format") != 1 \
            or not isinstance(record.get("versions"), list):
        raise ValueError("artifact.json is not format 1 with a list of versions")
    aliases = record.get("aliases") or {}
    if not isinstance(aliases, dict):
        raise ValueError("aliases is not an object")
    out: list[ArtifactVersion] = []
    for v in record["versions"]:
        number = v.get("version") if isinstance(v, dict) else None
        if not isinstance(number, int) or isinstance(number, bool):
            raise ValueError("a version entry has no integer version")
        ident = v.get("id")
        if not isinstance(ident, str) or not HEX_ID.match(ident):
            raise ValueError(f"version {v['version']} has no valid content id")
        path, run = v.get("path"), v.get("run")
        out.append(ArtifactVersion(name, v["version"], ident, path if isinstance(path, str) else None,
                                   run if isinstance(run, str) else None, bool(v.get("dropped"))))
    by_number = {v.version: v for v in out}
    for alias, number in sorted(aliases.items()):
        if isinstance(alias, str) and ALIAS_RE.match(alias) and number in by_number:
            by_number[number].aliases.append(alias)
    return out


def _through_api(repo: Repository, refs: dict[str, str]) -> dict[str, list[ArtifactVersion]] | None:
    """The versions through ``dvx.artifacts.list_artifacts`` (the artifacts module's
    reading API), or None when it is not there or fails (then the refs are read here)."""
    import importlib

    try:
        list_artifacts = importlib.import_module("dvx.artifacts").list_artifacts
    except (ImportError, AttributeError):
        return None
    try:
        out: dict[str, list[ArtifactVersion]] = {}
        for a in list_artifacts(repo, problems=[]):  # what it skips is read (and reported) below
            if a.name not in refs or getattr(a, "commit", refs[a.name]) != refs[a.name]:
                continue
            by_version: dict[int, list[str]] = {}
            for alias, number in (getattr(a, "aliases", None) or {}).items():
                by_version.setdefault(number, []).append(alias)
            out[a.name] = [ArtifactVersion(a.name, int(v.version), str(v.id), v.path, v.run, bool(v.dropped),
                                           sorted(by_version.get(v.version, [])))
                           for v in a.versions if isinstance(v.id, str) and HEX_ID.match(v.id)]
        return out if set(out) == set(refs) else None
    except Exception:  # noqa: BLE001 - a malformed artifact there: read each ref here, tolerantly
        return None


def read_artifacts(repo: Repository, refs: dict[str, str],
                   problems: list[str]) -> dict[str, list[ArtifactVersion]]:
    """``name -> versions`` of the artifact refs ``refs`` (name -> commit); each one
    that cannot be read adds a line to ``problems``."""
    found = _through_api(repo, refs)
    if found is not None:
        return found
    from dvx.history import history_of

    git = history_of(repo).git
    out: dict[str, list[ArtifactVersion]] = {}
    for name, sha in sorted(refs.items()):
        where = f"refs/dvx/artifacts/{name}"
        try:
            if not NAME_RE.match(name):
                raise ValueError("not a valid artifact name")
            info = git.commit_info(sha)
            entries = {n: s for n, _m, s in git.tree_entries(info.tree)}
            blob = entries.get(b"artifact.json")
            if blob is None and git.prefix:  # a DVX root below the top of the git tree
                inside = git.blob_at(info, "artifact.json")
                blob = inside[0] if inside else None
            if blob is None:
                raise ValueError("its commit has no artifact.json")
            out[name] = _from_record(name, json.loads(git.read_blob(blob)))
        except Exception as exc:  # noqa: BLE001 - any damage: report and skip this artifact
            problems.append(f"{where}: skipped, {exc}")
    return out
