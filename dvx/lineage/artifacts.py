"""Artifact versions as the lineage graph sees them (``protocols/lineage.md`` §3.3).

Read from ``refs/dvx/artifacts/<NAME>``: the commit's ``artifact.json`` (the format the
artifacts module writes, ``protocols/artifacts.md``). When ``dvx.artifacts`` offers its
reading API (``list_artifacts``) it is used; until then the ref's tree is read here.
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

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
ALIAS_RE = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,63}$")


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


def read_artifacts(repo: Repository, refs: dict[str, str],
                   problems: list[str]) -> dict[str, list[ArtifactVersion]]:
    """``name -> versions`` of the artifact refs ``refs`` (name -> commit); each one
    that cannot be read adds a line to ``problems``."""
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
                found = git.blob_at(info, "artifact.json")
                blob = found[0] if found else None
            if blob is None:
                raise ValueError("its commit has no artifact.json")
            out[name] = _from_record(name, json.loads(git.read_blob(blob)))
        except Exception as exc:  # noqa: BLE001 - any damage: report and skip this artifact
            problems.append(f"{where}: skipped, {exc}")
    return out
