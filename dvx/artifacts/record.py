"""``artifact.json``: the state of one artifact (``protocols/artifacts.md`` §3-4).

``decode_artifact`` refuses anything that breaks a rule of the spec with an
:class:`~dvx.artifacts.names.ArtifactError` naming the ref; ``encode_artifact`` writes
the canonical bytes (keys sorted, two-space indent, UTF-8, one final newline).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field, replace
from typing import Any

from dvx.artifacts.names import LATEST, ArtifactError, check_alias, check_name, check_type
from dvx.pointer import target_problem

FORMAT = 1
_HEX = re.compile(r"[0-9a-f]{64}")
_SHA = re.compile(r"[0-9a-f]{40}")
_RUN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_ISO = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
KINDS = ("file", "dir")
_VERSION_KEYS = ("version", "id", "kind", "size", "files", "path", "run", "commit", "created", "dropped")


@dataclass(frozen=True)
class Retention:
    """When ``dvx gc`` drops versions (§6). None: no limit."""

    keep_last: int | None = None
    keep_aliased: bool = True
    ttl_days: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"keep_last": self.keep_last, "keep_aliased": self.keep_aliased, "ttl_days": self.ttl_days}

    def describe(self) -> str:
        parts = []
        if self.keep_last is not None:
            parts.append(f"keep last {self.keep_last}")
        if self.ttl_days is not None:
            parts.append(f"ttl {self.ttl_days} days")
        if not parts:
            return "keep every version"
        return ", ".join(parts) + (", keep aliased" if self.keep_aliased else ", aliased ones too")


@dataclass(frozen=True)
class ArtifactVersion:
    """One version. ``aliases``: the aliases naming it now (derived, not stored)."""

    name: str
    version: int
    id: str
    kind: str  # "file" | "dir"
    size: int
    files: int | None
    path: str
    run: str | None
    commit: str | None
    created: str
    dropped: bool = False
    aliases: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        """``NAME:vN``."""
        return f"{self.name}:v{self.version}"

    @property
    def created_time(self) -> float:
        return _parse_time(self.created)

    def stored(self) -> dict[str, Any]:
        """The entry as ``artifact.json`` holds it."""
        return {"version": self.version, "id": self.id, "kind": self.kind, "size": self.size,
                "files": self.files, "path": self.path, "run": self.run, "commit": self.commit,
                "created": self.created, "dropped": self.dropped}

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, **self.stored(), "aliases": list(self.aliases)}


@dataclass(frozen=True)
class Artifact:
    """An artifact as one commit of its ref holds it. ``commit``: that commit (None
    for a state not written yet)."""

    name: str
    type: str
    versions: tuple[ArtifactVersion, ...] = ()
    aliases: dict[str, int] = field(default_factory=dict)
    retention: Retention = Retention()
    commit: str | None = None

    def version(self, number: int) -> ArtifactVersion:
        if 0 <= number < len(self.versions):
            return self.versions[number]
        raise ArtifactError(f"artifact {self.name} has no version v{number}",
                            f"its versions: {self.describe_versions()}")

    @property
    def live(self) -> list[ArtifactVersion]:
        """The versions not dropped, oldest first."""
        return [v for v in self.versions if not v.dropped]

    def describe_versions(self) -> str:
        live = [f"v{v.version}" for v in self.live]
        if not live:
            return "none (every version was dropped)" if self.versions else "none"
        return ", ".join(live if len(live) <= 12 else [*live[:5], "...", *live[-5:]])

    def describe_aliases(self) -> str:
        return ", ".join(f"{a} (v{n})" for a, n in sorted(self.aliases.items())) or "none"

    def with_aliases(self) -> Artifact:
        """The same state with each version's ``aliases`` filled in."""
        by: dict[int, list[str]] = {}
        for alias, n in sorted(self.aliases.items()):
            by.setdefault(n, []).append(alias)
        versions = tuple(replace(v, aliases=tuple(by.get(v.version, ()))) for v in self.versions)
        return replace(self, versions=versions)

    def to_json(self) -> dict[str, Any]:
        """What ``dvx artifacts show --json`` prints."""
        full = self.with_aliases()
        return {"name": self.name, "type": self.type, "commit": self.commit,
                "versions": [v.to_json() for v in full.versions], "aliases": dict(sorted(self.aliases.items())),
                "retention": self.retention.to_json()}


def now_iso(when: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if when is None else when))


def _parse_time(text: str) -> float:
    import calendar

    return float(calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")))


def _is_time(text: str) -> bool:
    """``YYYY-MM-DDTHH:MM:SSZ`` naming a real time (not month 99): retention computes with it."""
    if not _ISO.fullmatch(text):
        return False
    try:
        _parse_time(text)
    except (ValueError, OverflowError):
        return False
    return True


def encode_artifact(art: Artifact) -> bytes:
    """The canonical bytes of ``artifact.json`` for ``art``."""
    doc = {"format": FORMAT, "name": art.name, "type": art.type,
           "versions": [v.stored() for v in art.versions],
           "aliases": dict(sorted(art.aliases.items())), "retention": art.retention.to_json()}
    return (json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def _fail(where: str, why: str) -> ArtifactError:
    return ArtifactError(f"{where}: malformed artifact.json: {why}",
                         "the artifact's ref was written by something other than DVX, or damaged; "
                         "`git log` it and reset it to a good commit with `git update-ref`")


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def decode_artifact(data: bytes, where: str, name: str | None = None, commit: str | None = None) -> Artifact:
    """Parse and check ``artifact.json`` (``where`` names it in errors; ``name``: the
    name the ref says, which the record must repeat)."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _fail(where, f"not UTF-8 JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise _fail(where, "not a JSON object")
    if doc.get("format") != FORMAT:
        from dvx.errors import FormatVersionError

        raise FormatVersionError(f"{where}: artifact format {doc.get('format')!r} is not supported "
                                 f"(this DVX reads format {FORMAT})", "upgrade DVX")
    try:
        art_name = check_name(doc.get("name"))
        art_type = check_type(doc.get("type"))
    except ArtifactError as exc:
        raise _fail(where, exc.message) from None
    if name is not None and art_name != name:
        raise _fail(where, f"it names artifact {art_name!r}, not {name!r}")
    raw_versions = doc.get("versions")
    if not isinstance(raw_versions, list):
        raise _fail(where, "versions is not a list")
    versions = [_decode_version(v, i, art_name, where) for i, v in enumerate(raw_versions)]
    aliases = doc.get("aliases")
    if not isinstance(aliases, dict):
        raise _fail(where, "aliases is not an object")
    for alias, n in aliases.items():
        try:
            check_alias(alias)
        except ArtifactError as exc:
            raise _fail(where, exc.message) from None
        if not _int(n) or not 0 <= n < len(versions) or versions[n].dropped:
            raise _fail(where, f"alias {alias!r} names {n!r}, which is not a version it holds")
    if LATEST not in aliases and any(not v.dropped for v in versions):
        raise _fail(where, "it has versions but no `latest` alias")
    retention = _decode_retention(doc.get("retention"), where)
    return Artifact(art_name, art_type, tuple(versions), dict(aliases), retention,
                    commit)


def _decode_version(v: Any, i: int, name: str, where: str) -> ArtifactVersion:
    if not isinstance(v, dict):
        raise _fail(where, f"versions[{i}] is not an object")
    missing = [k for k in _VERSION_KEYS if k not in v]
    if missing:
        raise _fail(where, f"versions[{i}] lacks {', '.join(missing)}")
    checks = [
        (v["version"] == i and _int(v["version"]),
         f"version {v['version']!r} (versions are dense: expected {i})"),
        (isinstance(v["id"], str) and bool(_HEX.fullmatch(v["id"])), f"id {v['id']!r}"),
        (v["kind"] in KINDS, f"kind {v['kind']!r}"),
        (_int(v["size"]) and v["size"] >= 0, f"size {v['size']!r}"),
        (v["files"] is None or (_int(v["files"]) and v["files"] >= 0), f"files {v['files']!r}"),
        (isinstance(v["path"], str) and 0 < len(v["path"]) <= 4096 and target_problem(v["path"]) is None,
         f"path {v['path']!r} (a repository path, protocols/format.md §8)"),
        (v["run"] is None or (isinstance(v["run"], str) and bool(_RUN.fullmatch(v["run"]))),
         f"run {v['run']!r}"),
        (v["commit"] is None or (isinstance(v["commit"], str) and bool(_SHA.fullmatch(v["commit"]))),
         f"commit {v['commit']!r}"),
        (isinstance(v["created"], str) and _is_time(v["created"]), f"created {v['created']!r}"),
        (isinstance(v["dropped"], bool), f"dropped {v['dropped']!r}"),
    ]
    for ok, what in checks:
        if not ok:
            raise _fail(where, f"versions[{i}] has an invalid {what[:120]}")
    return ArtifactVersion(name, i, v["id"], v["kind"], v["size"], v["files"], v["path"], v["run"],
                           v["commit"], v["created"], v["dropped"])


def _decode_retention(r: Any, where: str) -> Retention:
    if not isinstance(r, dict):
        raise _fail(where, "retention is not an object")
    keep_last, keep_aliased, ttl = r.get("keep_last"), r.get("keep_aliased", True), r.get("ttl_days")
    if keep_last is not None and not (_int(keep_last) and keep_last >= 1):
        raise _fail(where, f"retention.keep_last {keep_last!r} is not null or a whole number >= 1")
    if ttl is not None and not (_int(ttl) and ttl >= 1):
        raise _fail(where, f"retention.ttl_days {ttl!r} is not null or a whole number >= 1")
    if not isinstance(keep_aliased, bool):
        raise _fail(where, f"retention.keep_aliased {keep_aliased!r} is not true or false")
    return Retention(keep_last, keep_aliased, ttl)
