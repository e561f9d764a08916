"""``dvx.open``, ``dvx.read``, ``dvx.info``: one version of one tracked path, from
Python, without a checkout (``protocols/read.md`` §2)."""

from __future__ import annotations

import io
import os
from typing import Any

from dvx.access.source import Node, Source, _not_a_file, repo_path, source_for
from dvx.errors import UsageError

BUFFER_SIZE = 1 << 17  # the file object's buffer (128 KiB): larger reads bypass it
_MODES = ("rb", "r", "rt")


def resolve(path: str | os.PathLike[str] | None, rev: str | None, repo: Any,
            remote: str | None) -> tuple[Source, Node, str | None]:
    """The source, the node ``path`` names at ``rev``, and the commit it was read at."""
    src, base = source_for(repo, remote)
    rel = repo_path(src, base, path)
    commit = src.commit(rev)
    return src, src.node(rel, commit, rev), commit


def open_path(path: str | os.PathLike[str], rev: str | None = None, repo: Any = None,
              remote: str | None = None, mode: str = "rb", encoding: str | None = None,
              errors: str | None = None, newline: str | None = None) -> Any:
    """A seekable, verified file object: binary (``mode="rb"``, an
    ``io.BufferedReader``) or text (``mode="r"``, UTF-8 unless ``encoding``)."""
    if mode not in _MODES:
        from dvx.errors import ReadOnlyError

        if any(c in mode for c in "wax+"):
            raise ReadOnlyError(f"cannot open {path} with mode {mode!r}: versions are read-only",
                                "open it with mode 'rb' or 'r'")
        raise UsageError(f"invalid mode {mode!r}", "use 'rb' (bytes) or 'r' (text)")
    if mode == "rb" and (encoding is not None or errors is not None or newline is not None):
        raise UsageError("encoding, errors and newline are for text mode", "pass mode='r'")
    src, node, commit = resolve(path, rev, repo, remote)
    if node.kind != "file":
        raise _not_a_file(node)
    raw = src.open_raw(node)
    buffered = io.BufferedReader(raw, BUFFER_SIZE)
    if mode == "rb":
        return buffered
    return io.TextIOWrapper(buffered, encoding or "utf-8", errors, newline)


def read_path(path: str | os.PathLike[str], rev: str | None = None, repo: Any = None,
              remote: str | None = None, mode: str = "rb", encoding: str | None = None,
              errors: str | None = None) -> bytes | str:
    """The whole content of a tracked file: bytes, or str with ``mode="r"``."""
    if mode not in _MODES:
        raise UsageError(f"invalid mode {mode!r}", "use 'rb' (bytes) or 'r' (text)")
    src, node, commit = resolve(path, rev, repo, remote)
    if node.kind != "file":
        raise _not_a_file(node)
    with src.open_raw(node) as f:
        data = f.read()
    if mode == "rb":
        if encoding is not None or errors is not None:
            raise UsageError("encoding and errors are for text mode", "pass mode='r'")
        return data
    text = data.decode(encoding or "utf-8", errors or "strict")
    return text.replace("\r\n", "\n").replace("\r", "\n")  # universal newlines, as open(mode="r")


def info_path(path: str | os.PathLike[str] | None = None, rev: str | None = None, repo: Any = None,
              remote: str | None = None) -> Node:
    """What ``path`` is at ``rev``: kind, size, file count, id, the tracked path that
    holds it. From git and DVX trees only: no file content is read."""
    return resolve(path, rev, repo, remote)[1]


def ls_url(path: str | os.PathLike[str] | None, rev: str | None, repo: Any,
           remote: str | None = None) -> list[Any]:
    """``dvx ls`` for any source (a URL included): ``LsEntry`` rows as ``dvx.ops.ls``
    makes them, read through the read API's caches (trees the local store lacks
    come from the remote)."""
    from dvx.ops.ls import LsEntry, ls_pointers

    src, base = source_for(repo, remote)
    commit = src.commit(rev)
    rel = repo_path(src, base, path).removesuffix(".dvx")
    if not rel:
        return ls_pointers(src.pointers(commit))
    node = src.node(rel, commit, rev)
    if node.kind == "directory":
        return ls_pointers({t: p for t, p in src.pointers(commit).items() if t.startswith(rel + "/")})
    if node.tracked == node.path and node.kind == "file":
        return ls_pointers({rel: src.pointers(commit)[rel]}) if commit is not None else [
            LsEntry(node.path, "file", node.size, 1, node.oid.hex() if node.oid else None, node.executable)]
    return [LsEntry(n.path, n.kind, n.size, 1 if n.kind == "file" else 0,
                    n.oid.hex() if n.oid else None, n.executable, n.link_target)
            for n in src.walk_files(node, commit)]


__all__ = ["info_path", "ls_url", "open_path", "read_path", "resolve"]
