"""One repository seen by the read API: what a path names at a revision, and its bytes
(``protocols/read.md`` §2).

A :class:`Source` is kept per repository for the life of the process
(:func:`source_for`), with the repository, its :class:`~dvx.history.History` and
caches keyed by immutable ids (DVX trees, parsed manifests and their chunk offsets),
so that ``dvx.open(path, rev=old)`` costs a ref read and a few dictionary look-ups
when warm. Revisions are resolved afresh on every call (a branch moves); only what a
commit or object id names is cached.

Bytes come from the local store; an object it lacks comes from the repository's DVX
remote through ``dvx.remote.reader`` (imported when first needed). Every byte is
verified against its chunk id before it is returned; a read that meets a missing or
corrupt chunk raises and returns nothing.
"""

from __future__ import annotations

import io
import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dvx.errors import CorruptObjectError, DvxError, GitError, MissingObjectError, NotTrackedError, UsageError
from dvx.hashing import KIND_TREE
from dvx.objects import ENTRY_FILE, ENTRY_TREE, Manifest, TreeRow, tree_rows

if TYPE_CHECKING:
    from dvx.history import History
    from dvx.pointer import Pointer
    from dvx.repo import Repository

MAX_CACHED_MANIFESTS = 512
MAX_CACHED_TREES = 4096
MAX_CACHED_TREE_BYTES = 256 << 20  # raw tree bytes: ~40 bytes per entry
VERSIONS_SCAN = 200
COPY_BLOCK = 8 << 20  # commits searched for the revisions that have an untracked path


@dataclass(slots=True)  # not frozen: a listing builds one per file, and frozen init is slow
class Node:
    """What a repository path names at a revision.

    ``kind``: ``file`` and ``tree`` (tracked data, or inside a tracked directory),
    ``link`` (a symbolic link inside a tracked directory), or ``directory`` (a plain
    directory of the work tree that holds tracked paths)."""

    path: str  # relative to the DVX root, "/"-separated ("" for the root)
    kind: str
    size: int
    files: int
    oid: bytes | None = field(default=None, repr=False)  # manifest id (file), tree id (tree)
    executable: bool = False
    link_target: str | None = None
    tracked: str | None = None  # the tracked path that holds it (None for a directory)
    digest: str | None = None  # the pointer's whole-file BLAKE3 (tracked files only)

    @property
    def id(self) -> str | None:
        """``oid`` in hex."""
        return self.oid.hex() if self.oid else None

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"path": self.path, "kind": self.kind, "size": self.size,
                                  "files": self.files, "id": self.oid.hex() if self.oid else None,
                                  "tracked": self.tracked}
        if self.executable:
            out["executable"] = True
        if self.link_target is not None:
            out["target"] = self.link_target
        if self.digest is not None:
            out["b3"] = self.digest
        return out


class _Opened:
    """A manifest and its chunk offsets, kept per manifest id."""

    __slots__ = ("locs", "manifest", "starts")

    def __init__(self, manifest: Manifest) -> None:
        from dvx.access.local import Locations
        from dvx.store.reader import chunk_starts

        self.manifest = manifest
        self.starts = chunk_starts(manifest)
        self.locs = Locations(len(manifest.chunks))


class Source:
    """A repository opened for reading (thread-safe; usable in a forked child)."""

    def __init__(self, repo: Repository, *, cloned_from: str | None = None,
                 remote: str | None = None, owns_repo: bool = True) -> None:
        from dvx.history import history_of

        self.repo = repo
        self.owns_repo = owns_repo  # False: the caller's Repository, closed by the caller
        self.remote_name = remote  # None: the repository's default remote
        self.root = repo.root
        self.cloned_from = cloned_from  # the URL of a cached clone; None: the user's repository
        self.history: History = history_of(repo)
        self._data: dict[bytes, bytes] = {}
        self._data_bytes = 0
        self._rows: dict[bytes, list[TreeRow]] = {}
        self._trees: dict[bytes, dict[str, TreeRow]] = {}
        self._opened: dict[bytes, _Opened] = {}
        self._readers: dict[str | None, Any] = {}
        self._lock = threading.Lock()
        from dvx.pools import LazyPool

        self.verify_pool = LazyPool(1, "dvx-read-verify")  # the second thread of long reads

    # -- revisions -----------------------------------------------------------------------
    def commit(self, rev: str | None) -> str | None:
        """The commit ``rev`` names now (None: the work tree; a clone has none, so None
        is its ``HEAD``, the source's default branch)."""
        if rev is None and self.cloned_from is None:
            return None
        spec = "HEAD" if rev is None else rev
        try:
            return self.history.resolve(spec)
        except GitError:
            if self.cloned_from is None:
                raise
        from dvx.access.clones import cached_clone

        cached_clone(self.cloned_from)  # a new branch or tag upstream: fetch once, retry
        return self.history.resolve(spec)

    def pointers(self, commit: str | None) -> dict[str, Pointer]:
        """Tracked path -> pointer at a commit (None: the work tree). Malformed
        pointers are left out."""
        bad: dict[str, DvxError] = {}
        if commit is None:
            return self.history.workspace(bad=bad)
        return self.history.at(commit, bad=bad)

    # -- what a path names -------------------------------------------------------------------
    def node(self, path: str, commit: str | None, rev: str | None = None) -> Node:
        """The node of ``path`` at ``commit``; ``NotTrackedError`` when there is none
        (``rev`` is the user's spelling, for messages)."""
        found = self._find(path, commit)
        if found is not None:
            return found
        if path == "" or self._has_tracked_below(path, commit):
            return Node(path, "directory", 0, 0)
        raise self._not_tracked(path, rev)

    def find(self, path: str, commit: str | None) -> Node | None:
        """The node of ``path`` at ``commit``, or None (directories included)."""
        found = self._find(path, commit)
        if found is not None:
            return found
        if path == "" or self._has_tracked_below(path, commit):
            return Node(path, "directory", 0, 0)
        return None

    def _find(self, path: str, commit: str | None) -> Node | None:
        if not path:
            return None
        _check_user_path(path)
        located = self.history.locate(commit, path)
        if located is None:
            return None
        target, p = located
        self.ensure_local(target, p.oid, commit)
        if target == path:
            kind = "file" if p.kind == "file" else "tree"
            return Node(path, kind, p.size, p.files, p.oid, p.exec, None, target, p.b3)
        tid = p.oid
        parts = path[len(target) + 1:].split("/")
        for i, part in enumerate(parts):
            entry = self.tree(tid).get(part)
            if entry is None:
                return None
            sub = "/".join([target, *parts[: i + 1]])
            if i == len(parts) - 1:
                return self._entry_node(sub, entry, target)
            if entry[1] != ENTRY_TREE or entry[4] is None:
                return None
            tid = entry[4]
        return None  # pragma: no cover - the loop returns

    @staticmethod
    def _entry_node(path: str, e: TreeRow, tracked: str) -> Node:
        _name, kind, size, files, oid, executable, target = e
        if kind == ENTRY_FILE:
            return Node(path, "file", size, 1, oid, executable, None, tracked)
        if kind == ENTRY_TREE:
            return Node(path, "tree", size, files, oid, False, None, tracked)
        return Node(path, "link", size, 0, None, False, target, tracked)

    def _has_tracked_below(self, path: str, commit: str | None) -> bool:
        prefix = path + "/"
        return any(t.startswith(prefix) for t in self.pointers(commit))

    def _not_tracked(self, path: str, rev: str | None) -> NotTrackedError:
        where = "in the work tree" if rev is None and self.cloned_from is None else f"at {rev or 'HEAD'}"
        hint = "see `dvx ls" + (f" --rev {rev}`" if rev else "`") + " for tracked paths"
        others = self._versions_with(path)
        if others:
            hint = f"it is tracked at {', '.join(others)}; pass one as rev="
        return NotTrackedError(f"{path} is not tracked {where}", hint)

    def _versions_with(self, path: str) -> list[str]:
        """Up to three commits (short ids) near HEAD whose pointer for ``path`` exists:
        the cheap part of "which revisions have it" (one tree look-up per commit)."""
        try:
            found: list[str] = []
            for n, c in enumerate(self.history.git.walk(self.history.resolve("HEAD"))):
                if n >= VERSIONS_SCAN or len(found) >= 3:
                    break
                if self.history.git.blob_id_at(c, path + ".dvx") is not None:
                    found.append(c.sha[:12])
            return found
        except DvxError:
            return []

    def children(self, node: Node, commit: str | None) -> list[Node]:
        """What a directory or tracked tree holds, sorted by path."""
        if node.kind == "tree":
            assert node.oid is not None
            tracked = node.tracked or node.path
            if tracked == node.path:
                self.ensure_local(tracked, node.oid, commit)
            pre = node.path + "/"
            return [self._entry_node(pre + row[0], row, tracked) for row in self.tree_rows(node.oid)]
        if node.kind != "directory":
            return [node]
        prefix = node.path + "/" if node.path else ""
        out: dict[str, Node] = {}
        for target, p in self.pointers(commit).items():
            if not target.startswith(prefix):
                continue
            rest = target[len(prefix):]
            head, sep, _ = rest.partition("/")
            if sep:
                out.setdefault(head, Node(prefix + head, "directory", 0, 0))
            else:
                kind = "file" if p.kind == "file" else "tree"
                out[head] = Node(target, kind, p.size, p.files, p.oid, p.exec, None, target, p.b3)
        return [out[k] for k in sorted(out)]

    def walk_files(self, node: Node, commit: str | None) -> list[Node]:
        """Every file and link at or below ``node``, sorted by path."""
        if node.kind in ("file", "link"):
            return [node]
        out: list[Node] = []
        stack = [node]
        while stack:
            cur = stack.pop()
            for child in self.children(cur, commit):
                if child.kind in ("file", "link"):
                    out.append(child)
                else:
                    stack.append(child)
        out.sort(key=lambda n: n.path)
        return out

    # -- objects (cached by id: ids never change meaning) ----------------------------------------
    def tree_data(self, oid: bytes) -> bytes:
        """A DVX tree's bytes (verified against ``oid`` by the store or the remote
        reader; parsed and checked by whoever uses them). Kept by id: a listing at a
        revision reads each tree once per process, and these bytes are ~6x smaller
        than the parsed rows."""
        data = self._data.get(oid)
        if data is None:
            data = self._local_or_remote(lambda: self.repo.store.read(oid, KIND_TREE),
                                         lambda r: r.read_object(oid, KIND_TREE))
            data = bytes(data)
            if (len(self._data) >= MAX_CACHED_TREES
                    or self._data_bytes + len(data) > MAX_CACHED_TREE_BYTES):
                self._data.clear()
                self._data_bytes = 0
            self._data[oid] = data
            self._data_bytes += len(data)
        return data

    def tree_rows(self, oid: bytes) -> list[TreeRow]:
        """A DVX tree's entries as rows (``objects.tree_rows``), sorted by name."""
        rows = self._rows.get(oid)
        if rows is None:
            rows = tree_rows(self.tree_data(oid))
            if len(self._rows) >= MAX_CACHED_TREES:
                self._rows.clear()
                self._trees.clear()
            self._rows[oid] = rows
        return rows

    def tree(self, oid: bytes) -> dict[str, TreeRow]:
        """A DVX tree's entries by name."""
        entries = self._trees.get(oid)
        if entries is None:
            entries = {row[0]: row for row in self.tree_rows(oid)}
            if len(self._trees) >= MAX_CACHED_TREES:
                self._trees.clear()
            self._trees[oid] = entries
        return entries

    def opened(self, oid: bytes) -> _Opened:
        """The manifest ``oid`` names, from the local store (its index refreshed once
        when it lacks it); ``MissingObjectError`` where it does not hold it: the remote
        reads it by id then, only the chunk lists a read reaches (``ReadFile``)."""
        got = self._opened.get(oid)
        if got is None:
            try:
                manifest = self.repo.store.read_manifest(oid)
            except MissingObjectError:
                self.repo.store.refresh()
                manifest = self.repo.store.read_manifest(oid)
            got = _Opened(manifest)
            if len(self._opened) >= MAX_CACHED_MANIFESTS:
                self._opened.clear()
            self._opened[oid] = got
        return got

    def _local_or_remote(self, local: Any, remote: Any) -> Any:
        """``local()``; where the store lacks an object, again after a refresh of its
        index (another process may have stored it), then ``remote(reader)``."""
        try:
            return local()
        except MissingObjectError:
            pass
        self.repo.store.refresh()
        try:
            return local()
        except MissingObjectError as exc:
            return remote(self.remote_reader(exc))

    # -- bytes ------------------------------------------------------------------------------
    def open_raw(self, node: Node) -> ReadFile:
        """A seekable, verified binary file (unbuffered) for a file node."""
        if node.kind != "file" or node.oid is None:
            raise _not_a_file(node)
        return ReadFile(self, node.oid, node.path)

    def read_range(self, oid: bytes, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of the file a manifest id names, all verified."""
        with ReadFile(self, oid, "") as f:
            f.seek(start)
            return f.read(max(0, end - start))

    # -- the remote -------------------------------------------------------------------------
    def remote_reader(self, missing: MissingObjectError | None = None) -> Any:
        """The reader of the DVX remote (the one this source was opened with, else the
        repository's default), made once. ``missing``: what the local store lacked,
        raised as is when this DVX has no remote reader."""
        name = self.remote_name
        reader = self._readers.get(name)
        if reader is None:
            with self._lock:
                reader = self._readers.get(name)
                if reader is None:
                    try:
                        from dvx.remote.reader import open_remote
                    except ImportError:
                        raise missing or MissingObjectError(
                            "data is not in the local store", "run `dvx fetch` in the repository") from None
                    reader = self._readers[name] = open_remote(self.repo, name)
        return reader

    def ensure_local(self, tracked: str, oid: bytes, commit: str | None) -> None:
        """Where this DVX has no remote range reads (``dvx.remote.reader``), download
        the version of ``tracked`` (whose object is ``oid``) into a cached clone's
        store first (``dvx fetch``). The user's own repositories are never changed:
        for them, data missing locally is an error naming the chunk."""
        if self.cloned_from is None or _has_remote_reader() or self.repo.store.contains(oid):
            return
        from dvx.ops.fetch import fetch
        from dvx.progress import NULL_PROGRESS

        with self._lock:
            fetch(self.repo, self.remote_name, commit, False,
                  [os.path.join(self.root, *tracked.split("/"))], 8, NULL_PROGRESS)
            self.repo.store.refresh()


_REMOTE_READER: list[bool] = []


def _check_user_path(path: str) -> None:
    """A path the caller gave that no tracked data can have (``.git/...``, a NUL):
    a UsageError about that path, not a PointerError about a pointer file that does
    not exist (the look-up below would check it as a pointer's tracked path)."""
    from dvx.pointer import target_problem

    first = path.split("/", 1)[0]
    problem = target_problem(first) or (target_problem(path) if any(c in path for c in "\0\n\r") else None)
    if problem is not None:
        raise UsageError(f"{path!r} cannot name tracked data: {problem.removeprefix('its tracked path ')}",
                         "give the path of tracked data from the repository root (see `dvx ls`)")


def _has_remote_reader() -> bool:
    if not _REMOTE_READER:
        import importlib.util

        _REMOTE_READER.append(importlib.util.find_spec("dvx.remote.reader") is not None)
    return _REMOTE_READER[0]


def _not_a_file(node: Node) -> DvxError:
    if node.kind in ("tree", "directory"):
        return UsageError(f"{node.path or '/'} is a directory, not a file",
                          "list it with dvx.ls(), or read one of its files")
    return UsageError(f"{node.path} is a symbolic link (to {node.link_target}), not a file",
                      "open the file it points to")


class ReadFile(io.RawIOBase):
    """A stored file opened for reading: seekable, every chunk verified before a byte
    of it is returned. Reads from the local store; when the store lacks a chunk, from
    the remote (the whole read is redone there, so no partial bytes are returned)."""

    def __init__(self, source: Source, oid: bytes, name: str) -> None:
        super().__init__()
        from dvx.access.local import LocalFile

        self._source = source
        self.name = name
        try:
            opened = source.opened(oid)
        except MissingObjectError as exc:
            # the store lacks the manifest: read it from the remote by id, so a range
            # read of a huge file fetches only the chunk lists that cover it
            self._file: Any = source.remote_reader(missing=exc).open_manifest(oid)
            self._remote = True
            self.manifest: Manifest | None = None
            self.size: int = self._file.size
            return
        self._opened = opened
        self.manifest = opened.manifest
        self.size = opened.manifest.size
        self._file = LocalFile(source.repo.store, opened.manifest, opened.starts, opened.locs,
                               source.verify_pool)
        self._remote = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    @property
    def mode(self) -> str:
        return "rb"

    def tell(self) -> int:
        self._check()
        return int(self._file.tell())

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check()
        return int(self._file.seek(offset, whence))

    def readinto(self, buffer: Any) -> int:
        self._check()
        return int(self._attempt(lambda: self._file.readinto(buffer)))

    def read(self, size: int | None = -1) -> bytes:
        self._check()
        return bytes(self._attempt(lambda: self._file.read(size)))

    def readall(self) -> bytes:
        return self.read(-1)

    def _attempt(self, op: Any) -> Any:
        """``op()`` on the local file. Where the store lacks a chunk, or a cached
        location no longer holds it (``gc`` repacked), again after a refresh of the
        store's index (another process may have fetched it); a chunk still missing is
        read from the remote, from the same position. A chunk still corrupt is
        refused. A failed read returns nothing."""
        pos = self._file.tell()
        try:
            return op()
        except (MissingObjectError, CorruptObjectError):
            if self._remote:
                raise
        store = self._source.repo.store
        store.refresh()
        self._opened.locs.forget()
        self._file.seek(pos)
        try:
            return op()
        except MissingObjectError as exc:
            assert self.manifest is not None  # a local file (a remote one raised above)
            remote = self._source.remote_reader(missing=exc).open_file(self.manifest)
        remote.seek(pos)
        self._file.close()
        self._file = remote
        self._remote = True
        return op()

    def copy_to(self, fd: int) -> int:
        """Write the whole file to ``fd`` (an empty file, at its start), verified;
        from the store at full speed (``VerifiedFile.copy_to``) when it holds every
        chunk. Returns the bytes written."""
        self._check()
        if not self._remote and self.manifest is not None:
            from dvx.store.reader import VerifiedFile

            try:
                with VerifiedFile(self._source.repo.store, self.manifest, self._opened.starts) as whole:
                    return int(whole.copy_to(fd))
            except MissingObjectError:
                os.ftruncate(fd, 0)
                os.lseek(fd, 0, os.SEEK_SET)
        self.seek(0)
        done = 0
        while True:
            block = self.read(COPY_BLOCK)
            if not block:
                return done
            view = memoryview(block)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            done += len(block)

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()

    def _check(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")


# -- one Source per repository, per process ----------------------------------------------------

_SOURCES: dict[tuple[str, str | None], Source] = {}
_BY_ARG: dict[str, str] = {}  # absolute path given as repo= -> the repository root
_LOCK = threading.Lock()
_FETCHED: set[str] = set()  # clone keys fetched by this process


def source_for(repo: Any = None, remote: str | None = None) -> tuple[Source, str]:
    """The :class:`Source` of ``repo`` (a path inside a repository, a git URL, an open
    :class:`~dvx.repo.Repository`, or None for the current directory) and the
    directory relative paths start from ("" for a URL: paths are from its root)."""
    from dvx.repo import Repository

    if isinstance(repo, Repository):
        key = (repo.root, remote)
        src = _SOURCES.get(key)
        if src is None or src.repo is not repo:
            src = Source(repo, remote=remote, owns_repo=False)
            _SOURCES[key] = src
        return src, repo.root
    text = os.fspath(repo) if repo is not None else "."
    from dvx.access.clones import cached_clone, clone_key, is_git_url

    if is_git_url(text):
        ck = clone_key(text)
        key = ("url:" + ck, remote)
        src = _SOURCES.get(key)
        if src is None:
            with _LOCK:
                src = _SOURCES.get(key)
                if src is None:
                    root = cached_clone(text, update=ck not in _FETCHED)
                    _FETCHED.add(ck)
                    src = Source(Repository(root), cloned_from=text, remote=remote)
                    _SOURCES[key] = src
        return src, ""
    base = os.path.abspath(text)
    known = _BY_ARG.get(base)
    if known is not None:
        root = known
    else:
        found = Repository.find(base)
        root = found.root
        with _LOCK:
            _BY_ARG[base] = root
            if (root, remote) not in _SOURCES:
                src = Source(found, remote=remote)
                _SOURCES[(root, remote)] = src
    src = _SOURCES.get((root, remote))
    if src is None:
        with _LOCK:
            src = _SOURCES.get((root, remote))
            if src is None:
                src = Source(Repository(root), remote=remote)
                _SOURCES[(root, remote)] = src
    return src, base


def repo_path(src: Source, base: str, path: str | os.PathLike[str] | None) -> str:
    """A user path as a path relative to the DVX root ("/"-separated). Relative paths
    start at ``base`` (the ``repo=`` directory; the root for a URL)."""
    text = os.fspath(path) if path is not None else ""
    if src.cloned_from is not None or not base:
        parts = [p for p in text.replace(os.sep, "/").split("/") if p and p != "."]
        if ".." in parts:
            raise UsageError(f"{text}: '..' is not allowed in a path of a repository given by URL",
                             "give the path from the repository's root")
        return "/".join(parts)
    full = os.path.normpath(os.path.join(base, text)) if text else os.path.normpath(base)
    root = src.root
    if full == root:
        return ""
    if full.startswith(root + os.sep):
        rel = full[len(root) + 1:]
        if os.sep != "/":  # pragma: no cover - POSIX only
            rel = rel.replace(os.sep, "/")
        first = rel.split("/", 1)[0]
        if first not in (".git", ".dvx"):
            return rel
    return src.repo.relpath(full)  # symbolic links in between, or refused: its rules


def forget_sources() -> None:
    """Drop every cached source, closing the pack files of the repositories this
    module opened (tests; a process that wants to start afresh)."""
    with _LOCK:
        for src in _SOURCES.values():
            if src.owns_repo:
                src.repo.close()
        _SOURCES.clear()
        _BY_ARG.clear()
        _FETCHED.clear()


def _after_fork_in_child() -> None:
    global _LOCK
    _LOCK = threading.Lock()
    for src in list(_SOURCES.values()):
        src._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


__all__ = ["Node", "ReadFile", "Source", "forget_sources", "repo_path", "source_for"]
