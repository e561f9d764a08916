"""Artifact names, aliases and references (``protocols/artifacts.md`` §2).

A reference names one version: ``NAME`` (its ``latest``), ``NAME:vN`` or ``NAME:ALIAS``.
Everything here is pure: no git, no disk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dvx.errors import DvxError

REF_PREFIX = "refs/dvx/artifacts/"
LATEST = "latest"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_ALIAS = re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,63}")
_VERSION = re.compile(r"v(0|[1-9][0-9]{0,8})")
_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class ArtifactError(DvxError):
    """A bad artifact name, reference or record; an unknown artifact, version or alias."""


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_name(name: object) -> str:
    """``name`` if it is a valid artifact name, else ArtifactError."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name.endswith(".lock") or ".." in name:
        raise ArtifactError(f"invalid artifact name {_show(name)}",
                            "a name is 1-128 letters, digits, '.', '_' or '-', starting with a letter or "
                            "digit, without '..' and not ending in '.lock'")
    return name


def check_alias(alias: object) -> str:
    """``alias`` if it is a valid alias (``latest`` included), else ArtifactError."""
    if not isinstance(alias, str) or not _ALIAS.fullmatch(alias) or re.fullmatch(r"v[0-9]+", alias):
        raise ArtifactError(f"invalid alias {_show(alias)}",
                            "an alias is 1-64 letters, digits, '.', '_' or '-', starting with a letter, "
                            "and does not look like a version (v0, v1, ...)")
    return alias


def check_type(kind: object) -> str:
    """``kind`` if it is a valid artifact type (``model``, ``dataset``...), else ArtifactError."""
    if not isinstance(kind, str) or not _TYPE.fullmatch(kind):
        raise ArtifactError(f"invalid artifact type {_show(kind)}",
                            "a type is 1-64 letters, digits, '.', '_' or '-' (e.g. model, dataset)")
    return kind


@dataclass(frozen=True)
class Reference:
    """A parsed reference: the name and at most one of ``version`` / ``alias``."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}:v{self.version}"
        return f"{self.name}:{self.alias}" if self.alias else self.name


def parse_reference(text: object) -> Reference:
    """``NAME``, ``NAME:vN`` or ``NAME:ALIAS`` (ArtifactError for anything else)."""
    if not isinstance(text, str) or text.count(":") > 1:
        raise ArtifactError(f"invalid artifact reference {_show(text)}",
                            "write NAME, NAME:vN (a version) or NAME:ALIAS")
    name, _, tail = text.partition(":")
    check_name(name)
    if ":" not in text:
        return Reference(name)
    if _VERSION.fullmatch(tail):
        return Reference(name, version=int(tail[1:]))
    if re.fullmatch(r"v[0-9]+", tail):
        raise ArtifactError(f"invalid version {_show(tail)} in {_show(text)}",
                            "a version is v0, v1, ... without leading zeros")
    return Reference(name, alias=check_alias(tail))


def ref_name(name: str) -> str:
    """The git ref of an artifact."""
    return REF_PREFIX + check_name(name)
