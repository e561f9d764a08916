"""What a user names in ``dvx lineage TARGET`` (``protocols/lineage.md`` §6.1).

* ``PATH`` or ``PATH@REV``: the version of a tracked path in the work tree (else at
  HEAD), or at a revision;
* ``artifact:NAME``, ``artifact:NAME:vN``, ``artifact:NAME:ALIAS`` (``NAME`` alone is
  ``latest`` if set, else the newest version);
* ``run:ID`` (a unique prefix will do);
* ``id:HEX`` or a bare hex content id, whole or a unique prefix (6 digits at least);
* ``commit:REV``.

A bare word that could be more than one of these (a tracked path and an artifact name
alike) is refused with the spellings that say which.
"""

from __future__ import annotations

import re
from typing import Any

from dvx.errors import DvxError
from dvx.lineage.model import COMMIT, DATA, RUN, LineageError, node_key
from dvx.lineage.store import Index
from dvx.repo import Repository

_HEX = re.compile(r"^[0-9a-f]{6,64}\Z")
_VERSION = re.compile(r"^v(\d+)\Z")


def _artifact(ix: Index, ref: str) -> str:
    """``data:<id>`` of ``NAME[:vN|:ALIAS]``."""
    name, _, which = ref.partition(":")
    arts: dict[str, Any] = ix.state.get("artifacts") or {}
    entry = arts.get(name)
    if not isinstance(entry, dict):
        known = ", ".join(sorted(arts)[:8]) or "none"
        raise LineageError(f"no artifact {name!r} (artifacts: {known})", "see `dvx artifacts list`")
    versions = [v for v in entry.get("versions") or [] if isinstance(v, dict)]
    chosen = None
    if not which:
        chosen = next((v for v in versions if "latest" in (v.get("aliases") or [])), None)
        live = [v for v in versions if not v.get("dropped")]
        chosen = chosen or (max(live, key=lambda v: v.get("version", -1)) if live else None)
    elif (m := _VERSION.match(which)) is not None:
        chosen = next((v for v in versions if v.get("version") == int(m.group(1))), None)
    else:
        chosen = next((v for v in versions if which in (v.get("aliases") or [])), None)
    if chosen is None:
        have = ", ".join([f"v{v.get('version')}" for v in versions]
                         + sorted({a for v in versions for a in v.get("aliases") or []}))
        raise LineageError(f"artifact {name!r} has no version or alias {which or 'latest'!r} "
                           f"(it has {have or 'none'})", f"see `dvx artifacts show {name}`")
    return node_key(DATA, chosen["id"])


def _run(ix: Index, ident: str) -> str:
    exact = ix.find(node_key(RUN, ident))
    if exact is not None:
        return node_key(RUN, ident)
    hits = ix.find_prefix(node_key(RUN, ident)) if ident else []
    if len(hits) == 1:
        return ix.key(hits[0])
    if not hits:
        raise LineageError(f"no run {ident!r} in the lineage graph", "see `dvx runs list`")
    shown = ", ".join(ix.key(i)[4:] for i in hits[:5])
    raise LineageError(f"run id {ident!r} is ambiguous ({shown})", "give more of the id")


def _content(ix: Index, hexid: str) -> str | None:
    """``data:<id>`` for a content id or unique prefix; None when no node has it."""
    hits = ix.find_prefix(node_key(DATA, hexid))
    if len(hits) == 1:
        return ix.key(hits[0])
    if len(hits) > 1:
        shown = ", ".join(ix.key(i)[5:17] for i in hits[:5])
        raise LineageError(f"content id prefix {hexid!r} is ambiguous ({shown}...)", "give more digits")
    return None


def _path(repo: Repository, spec: str) -> str | None:
    """``data:<id>`` of a tracked path (``PATH`` or ``PATH@REV``); None when no pointer
    is there. A revision that does not exist raises."""
    from dvx.history import history_of

    h = history_of(repo)
    if "@" in spec:
        whole = _pointer(h, spec, None)  # a tracked path may hold "@" itself: it wins
        if whole is not None:
            return whole
        path, _, rev = spec.rpartition("@")
        return _pointer(h, path, rev)
    return _pointer(h, spec, None)


def _pointer(h: Any, path: str, rev: str | None) -> str | None:
    """``data:<id>`` of the pointer of ``path`` at ``rev`` (None: the work tree's, else
    HEAD's)."""
    path = path.strip("/")
    if path.startswith("./"):
        path = path[2:]
    if not path:
        return None
    try:
        if rev is not None:
            p = h.pointer_at(rev, path)
        else:
            p = h.pointer_at(None, path)
            if p is None and h.git.head() is not None:
                p = h.pointer_at("HEAD", path)
    except DvxError as exc:
        if rev is not None and "revision" in str(exc):
            raise
        return None
    return node_key(DATA, p.id) if p is not None else None


def resolve(repo: Repository, ix: Index, target: str) -> str:
    """The node key a target names (see the module's docstring)."""
    t = str(target).strip()
    if not t:
        raise LineageError("empty lineage target", "name a tracked path, artifact:NAME, run:ID or a content id")
    kind, colon, rest = t.partition(":")
    if colon and kind == "artifact":
        return _artifact(ix, rest)
    if colon and kind == "run":
        return _run(ix, rest)
    if colon and kind in ("id", "data"):
        if not _HEX.match(rest):
            raise LineageError(f"{rest!r} is not a content id (6 to 64 lowercase hex digits)",
                               "copy an id from `dvx ls --json` or `dvx artifacts show`")
        found = _content(ix, rest)
        if found is None:
            raise LineageError(f"no data version with content id {rest!r} in any commit, run or artifact",
                               "see `dvx log` or `dvx runs show ID` for the ids")
        return found
    if colon and kind == "commit":
        from dvx.history import history_of

        sha = history_of(repo).resolve(rest)
        return node_key(COMMIT, sha)
    if colon and kind == "path":
        found = _path(repo, rest)
        if found is None:
            raise LineageError(f"{rest!r} is not a tracked path", "see `dvx ls` (or `dvx ls --rev REV`)")
        return found
    if t.startswith("./"):
        found = _path(repo, t)
        if found is None:
            raise LineageError(f"{t!r} is not a tracked path", "see `dvx ls` (or `dvx ls --rev REV`)")
        return found
    candidates: list[tuple[str, str, str]] = []  # (what, how to say it, node key)
    found = _path(repo, t)
    if found is not None:
        candidates.append(("a tracked path", f"./{t}", found))
    arts = ix.state.get("artifacts") or {}
    if t.partition(":")[0] in arts:
        candidates.append(("an artifact", f"artifact:{t}", _artifact(ix, t)))
    if ix.find(node_key(RUN, t)) is not None:
        candidates.append(("a run", f"run:{t}", node_key(RUN, t)))
    if _HEX.match(t):
        found = _content(ix, t)
        if found is not None:
            candidates.append(("a content id", f"id:{t}", found))
    if len({k for _, _, k in candidates}) == 1:  # one node, however it is named
        return candidates[0][2]
    if not candidates:
        raise LineageError(f"unknown lineage target {t!r}: not a tracked path, artifact, run or content id",
                           "name a tracked path (PATH or PATH@REV), artifact:NAME[:vN|:ALIAS], run:ID "
                           "or id:HEX")
    ways = " or ".join(f"`{w}`" for _, w, _ in candidates)
    what = " and ".join(w for w, _, _ in candidates)
    raise LineageError(f"lineage target {t!r} is ambiguous: it is {what}", f"say which: {ways}")
