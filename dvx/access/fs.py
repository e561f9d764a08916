"""``DVXFileSystem``: the tracked data of a DVX repository, at one revision, as a
read-only fsspec filesystem (protocol ``dvx``, ``protocols/read.md`` §1).

    import fsspec, pandas as pd, pyarrow.parquet as pq
    with fsspec.open("dvx://data/train.csv", repo="https://host/team/project.git", rev="v1") as f:
        ...
    pd.read_csv("dvx://data/train.csv", storage_options={"rev": "v1"})
    pq.read_table("data/x.parquet", filesystem=DVXFileSystem(rev="v1"))

Paths are relative to the repository's DVX root. The tree is what the revision's
pointers track: tracked files, tracked directories and what they hold, and the plain
directories that lead to them. Listings and ``info`` come from git trees and DVX
trees (cached by id; a tree the local store lacks is read from the remote); file
bytes come chunk by chunk, every chunk verified. Anything that would write raises
:class:`~dvx.errors.ReadOnlyError` (a ``PermissionError``).
"""

from __future__ import annotations

import errno
from typing import Any

from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

from dvx.access.source import Node, Source, source_for
from dvx.access.url import parse_url
from dvx.errors import ReadOnlyError

_FSSPEC_TYPE = {"file": "file", "link": "link", "tree": "directory", "directory": "directory"}


def _read_only(what: str) -> ReadOnlyError:
    return ReadOnlyError(f"the dvx:// filesystem is read-only: cannot {what}",
                         "change the data in a work tree and `dvx add` it; dvx:// reads versions")


class DVXFileSystem(AbstractFileSystem):  # type: ignore[misc]
    """Read-only view of the tracked data of ``repo`` (a path inside a repository, a
    git URL, or None for the current directory) at ``rev`` (None: the work tree's
    pointers; for a URL, its default branch). ``remote`` names the DVX remote that
    serves chunks the local store lacks (default: the repository's default)."""

    protocol = "dvx"
    root_marker = ""
    async_impl = False

    def __init__(self, repo: Any = None, rev: str | None = None, remote: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(repo=repo, rev=rev, remote=remote, **kwargs)
        self.repo = repo
        self.rev = rev
        self.remote = remote
        self._source: Source | None = None

    # -- paths -------------------------------------------------------------------------
    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        return parse_url(str(path))[0]

    @staticmethod
    def _get_kwargs_from_urls(path: str) -> dict[str, str]:
        return parse_url(path)[1]

    def unstrip_protocol(self, name: str) -> str:
        return "dvx://" + name

    @property
    def source(self) -> Source:
        src = self._source
        if src is None:
            src = self._source = source_for(self.repo, self.remote)[0]
        return src

    def _node(self, path: str) -> tuple[Node, str | None]:
        src = self.source
        rel = self._strip_protocol(path)
        commit = src.commit(self.rev)
        node = src.find(rel, commit)
        if node is None:
            where = f" at {self.rev}" if self.rev else ""
            raise FileNotFoundError(errno.ENOENT, f"{rel} is not tracked{where}", rel)
        return node, commit

    @staticmethod
    def _info(node: Node) -> dict[str, Any]:
        kind = _FSSPEC_TYPE[node.kind]
        out: dict[str, Any] = {"name": node.path, "size": node.size, "type": kind, "dvx_kind": node.kind,
                               "files": node.files, "id": node.oid.hex() if node.oid else None,
                               "tracked": node.tracked}
        if node.executable:
            out["executable"] = True
        if node.link_target is not None:
            out["destination"] = node.link_target
        return out

    # -- reading the tree ------------------------------------------------------------------
    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        node, commit = self._node(path)
        nodes = self.source.children(node, commit) if node.kind in ("tree", "directory") else [node]
        if detail:
            return [self._info(n) for n in nodes]
        return [n.path for n in nodes]

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        return self._info(self._node(path)[0])

    def exists(self, path: str, **kwargs: Any) -> bool:
        try:
            self._node(path)
        except FileNotFoundError:
            return False
        return True

    def checksum(self, path: str) -> int:
        info = self.info(path)
        return int((info["id"] or "0")[:16], 16)

    def ukey(self, path: str) -> str:
        return str(self.info(path)["id"])

    # -- reading bytes ---------------------------------------------------------------------
    def _file_node(self, path: str) -> Node:
        node, _commit = self._node(path)
        if node.kind in ("tree", "directory"):
            raise IsADirectoryError(errno.EISDIR, f"{node.path or '/'} is a directory", node.path)
        if node.kind != "file" or node.oid is None:
            raise OSError(errno.EINVAL, f"{node.path} is a symbolic link (to {node.link_target})", node.path)
        return node

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        node = self._file_node(path)
        assert node.oid is not None
        size = node.size
        lo = 0 if start is None else (max(0, size + start) if start < 0 else min(start, size))
        hi = size if end is None else (max(0, size + end) if end < 0 else min(end, size))
        if hi <= lo:
            return b""
        return self.source.read_range(node.oid, lo, hi)

    def _open(self, path: str, mode: str = "rb", block_size: Any = None, autocommit: bool = True,
              cache_options: Any = None, **kwargs: Any) -> DVXFile:
        if mode != "rb":
            raise _read_only(f"open {path} with mode {mode!r}")
        node = self._file_node(path)
        kwargs.pop("size", None)  # fsspec's reopen (unpickling) passes it: the node has it
        return DVXFile(self, node, mode, block_size="default" if block_size is None else block_size,
                       cache_options=cache_options, **kwargs)

    # -- read-only -------------------------------------------------------------------------
    def rm_file(self, path: str) -> None:
        raise _read_only(f"remove {path}")

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:
        raise _read_only(f"remove {path}")

    def _rm(self, path: str) -> None:
        raise _read_only(f"remove {path}")

    def rmdir(self, path: str) -> None:
        raise _read_only(f"remove {path}")

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        raise _read_only(f"create {path}")

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        raise _read_only(f"create {path}")

    def touch(self, path: str, truncate: bool = True, **kwargs: Any) -> None:
        raise _read_only(f"touch {path}")

    def put_file(self, lpath: str, rpath: str, callback: Any = None, mode: str = "overwrite",
                 **kwargs: Any) -> None:
        raise _read_only(f"write {rpath}")

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        raise _read_only(f"write {path}")

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        raise _read_only(f"copy to {path2}")

    def mv(self, path1: str, path2: str, recursive: bool = False, maxdepth: int | None = None,
           **kwargs: Any) -> None:
        raise _read_only(f"move {path1}")


class DVXFile(AbstractBufferedFile):  # type: ignore[misc]
    """A tracked file opened through fsspec: blocks are read with ``_fetch_range``,
    which reads (and verifies) only the chunks that cover the range."""

    def __init__(self, fs: DVXFileSystem, node: Node, mode: str, **kwargs: Any) -> None:
        self.node = node
        super().__init__(fs, node.path, mode, size=node.size, **kwargs)

    def _fetch_range(self, start: int, end: int) -> bytes:
        assert self.node.oid is not None
        end = min(end, self.size)
        if end <= start:
            return b""
        return self.fs.source.read_range(self.node.oid, start, end)  # type: ignore[no-any-return]


__all__ = ["DVXFile", "DVXFileSystem"]
