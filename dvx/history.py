"""The history layer: which pointers a repository has, in the work tree and in git.

Every verb that reads pointers anywhere but the work tree's files goes through here
(``ls --rev``, ``diff``, ``checkout --rev``, ``log``, ``push``/``fetch`` with
``--rev``/``--all-commits``, ``gc``), and so do the runs, lineage and read API built
on top. One :class:`History` per repository (:func:`history_of`) holds the git handle
and caches keyed by immutable git ids, so a process that asks many questions pays for
each git object once:

* trees by tree id (in :class:`dvx.gitio.GitRepo`): a commit that changes one
  directory costs one new tree per level, whatever the size of the rest;
* parsed pointers by blob id: a pointer that lives through a thousand commits is read
  and validated once;
* commits by id.

What is a pointer, and which are refused (``protocols/git.md`` §7):

* A pointer of a commit is a regular file ``NAME.dvx`` (``NAME`` not empty) in the git
  tree below the DVX root, outside any directory named ``.git`` or ``.dvx``; its
  tracked path (the *target*) is its path without ``.dvx``, relative to the DVX root.
* Pointer names come from git, so possibly from an attacker. Every target is checked
  with :func:`dvx.pointer.check_target` before its pointer is returned, and every
  pointer is parsed and validated (:func:`dvx.pointer.parse_pointer`). A refused or
  malformed pointer is, when the caller passes a ``bad`` mapping, recorded there
  (key -> error) and left out, so the command does the rest, reports the bad ones and
  exits non-zero; without a mapping the first one raises. Keys are the target for
  the work tree and for one revision, ``COMMIT12:TARGET`` for all commits.
* A *version* of a path is a commit whose pointer blob for it differs from the one in
  its first parent (a root commit: from nothing); see :meth:`History.versions`.

Nothing here writes: git is read through :mod:`dvx.gitio` (dulwich), the work tree
through :mod:`dvx.tracked`.
"""

from __future__ import annotations

import os
import stat as stat_mod
import threading
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dvx.errors import DvxError, PointerError
from dvx.pointer import POINTER_SUFFIX, Pointer, check_target, parse_pointer

if TYPE_CHECKING:
    from dvx.gitio import CommitInfo, GitRepo
    from dvx.repo import Repository

Bad = dict[str, DvxError]

_SUFFIX = POINTER_SUFFIX.encode()
_SKIP_DIRS = (b".git", b".dvx")
ARTIFACT_REFS = "refs/dvx/artifacts/"  # protocols/artifacts.md: one ref per artifact


@dataclass(frozen=True)
class Version:
    """One version of a tracked path: a commit that changed its pointer."""

    commit: str  # full commit id
    date: str  # author date, ISO 8601 with the author's offset
    time: int  # author date, unix seconds
    author: str
    message: str  # the whole commit message
    target: str  # tracked path, relative to the DVX root
    change: str  # added | modified | deleted
    pointer: Pointer | None  # None: deleted, or unreadable (``error`` says why)
    previous: Pointer | None = None  # the first parent's pointer, if any and readable
    error: DvxError | None = None  # why ``pointer`` could not be read (malformed)

    @property
    def summary(self) -> str:
        return self.message.splitlines()[0] if self.message else ""


class History:
    """Pointers of one repository: in the work tree, at a revision, in all commits.

    Cheap to create, but meant to be kept: :func:`history_of` gives the one of a
    :class:`~dvx.repo.Repository`. Thread-safe; after a fork the child reopens git.
    Revisions are resolved anew on every call (refs move); what is cached is keyed by
    git object ids, which never change meaning."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self._git: GitRepo | None = None
        self._pid = os.getpid()
        self._lock = threading.RLock()
        self._parsed: dict[bytes, Pointer] = {}  # blob id -> pointer (valid ones only)
        self._commits: dict[str, CommitInfo] = {}
        _LIVE.add(self)

    # -- git ---------------------------------------------------------------------------
    @property
    def git(self) -> GitRepo:
        """The git repository (opened on first use; reopened in a forked child)."""
        if self._git is None:
            from dvx.gitio import GitRepo

            self._git = GitRepo(self.repo.root)
            self._pid = os.getpid()
        elif self._pid != os.getpid():
            self._git = self._git.reopened()
            self._pid = os.getpid()
        return self._git

    def resolve(self, rev: str) -> str:
        """The commit id a revision names (any spelling git users know)."""
        with self._lock:
            return self.git.resolve(rev)

    def commit(self, sha: str) -> CommitInfo:
        """A commit by its full id (cached)."""
        info = self._commits.get(sha)
        if info is None:
            with self._lock:
                info = self._commits[sha] = self.git.commit_info(sha)
        return info

    # -- one pointer -------------------------------------------------------------------
    def _parse(self, blob: bytes, where: str) -> Pointer:
        """The pointer in a git blob (cached by blob id; errors are not cached, so each
        message names the file it was asked about)."""
        p = self._parsed.get(blob)
        if p is None:
            p = parse_pointer(self.git.read_blob(blob), where)
            self._parsed[blob] = p
        return p

    def _checked(self, target: str, blob: bytes, where: str) -> Pointer:
        check_target(target, where)
        return self._parse(blob, where)

    def pointer_at(self, rev: str | None, target: str) -> Pointer | None:
        """The pointer of one tracked path at a revision (``None``: the work tree's
        pointer file), or None if there is none. ``target`` is the tracked path relative
        to the DVX root, ``/``-separated, without ``.dvx``. A refused name or a
        malformed pointer raises ``PointerError``. Warm, this is a ref read and a few
        dictionary look-ups (the read API's ``dvx.open(path, rev=...)``)."""
        if rev is None:
            where = target + POINTER_SUFFIX
            check_target(target, where)
            path = self.repo.data_path(target, where) + POINTER_SUFFIX
            if not os.path.isfile(path) or os.path.islink(path):
                return None
            from dvx.pointer import read_pointer

            return read_pointer(path, where)
        with self._lock:
            info = self.commit(self.git.resolve(rev))
            where = f"{rev}:{target}{POINTER_SUFFIX}"
            check_target(target, where)
            blob = self.git.blob_id_at(info, target + POINTER_SUFFIX)
            return None if blob is None else self._parse(blob, where)

    def locate(self, rev: str | None, path: str) -> tuple[str, Pointer] | None:
        """The tracked path that holds ``path`` at ``rev`` (``path`` itself, or the
        tracked directory it lies in) and its pointer; None if none does."""
        parts = [p for p in path.split("/") if p]
        for n in range(len(parts), 0, -1):
            target = "/".join(parts[:n])
            p = self.pointer_at(rev, target)
            if p is not None:
                return (target, p) if n == len(parts) or p.kind == "tree" else None
        return None

    # -- all pointers of one place -----------------------------------------------------
    def workspace(self, paths: list[str] | None = None, *, bad: Bad | None = None) -> dict[str, Pointer]:
        """Target -> pointer for the work tree's pointer files (those user ``paths``
        name, all without paths). Bad keys: the target."""
        from dvx.tracked import find_tracked

        out: dict[str, Pointer] = {}
        for t in find_tracked(self.repo):
            try:
                out[t.target] = t.load(self.repo)
            except DvxError as exc:
                if bad is None:
                    raise
                bad[t.target] = exc
        return self._select(out, paths, bad, "", "track it with `dvx add`")

    def at(self, rev: str, paths: list[str] | None = None, *, bad: Bad | None = None,
           label: str | None = None) -> dict[str, Pointer]:
        """Target -> pointer at a git revision (those user ``paths`` name, all without
        paths). ``label`` names the revision in messages (default: ``rev``). Bad keys:
        the target."""
        label = label or rev
        with self._lock:
            info = self.commit(self.git.resolve(rev))
            out: dict[str, Pointer] = {}
            for path, blob in self.git.pointer_blobs(info).items():
                target = path[: -len(POINTER_SUFFIX)]
                try:
                    out[target] = self._checked(target, blob, f"{label}:{path}")
                except DvxError as exc:
                    if bad is None:
                        raise
                    bad[target] = exc
        return self._select(out, paths, bad, f" at {label}", f"see `dvx ls --rev {label}`")

    def _select(self, pointers: dict[str, Pointer], paths: list[str] | None, bad: Bad | None,
                where: str, hint: str) -> dict[str, Pointer]:
        """The pointers that user paths select (all without paths). ``bad`` is narrowed
        to the selection too, so an unrelated broken pointer does not fail a command."""
        if not paths:
            return pointers
        from dvx.tracked import match_targets

        chosen = set(match_targets(self.repo, set(pointers) | set(bad or ()), paths, where, hint))
        if bad is not None:
            for t in [t for t in bad if t not in chosen]:
                del bad[t]
        return {t: pointers[t] for t in sorted(chosen) if t in pointers}

    # -- all commits -------------------------------------------------------------------
    def commits(self, *, reflog_days: int = 0) -> list[str]:
        """Ids of every commit reachable from any ref (branches, tags, remote branches,
        ``refs/dvx/*``, HEAD), newest first; with ``reflog_days`` > 0 also from every
        reflog entry younger than that many days (what gc keeps live, git.md §3).
        An artifact ref (``refs/dvx/artifacts/*``) adds only its newest commit: the
        older ones are the artifact's history, and the versions retention dropped from
        it must not stay live through them (protocols/artifacts.md §7)."""
        with self._lock:
            git = self.git
            extra = git.reflog_commits(reflog_days) if reflog_days > 0 else None
            return git.reachable_commits(extra, tips_only=ARTIFACT_REFS)

    def all_commits(self, paths: list[str] | None = None, *, bad: Bad | None = None,
                    commits: Iterable[str] | None = None, workspace: bool = False,
                    check_names: bool = True) -> dict[str, Pointer]:
        """Every distinct version in history: ``TARGET@ID12`` -> pointer, for the
        pointers of ``commits`` (default: :meth:`commits`), newest commit first, then
        (with ``workspace``) the work tree's. A path in ``paths`` must name something
        in one of them. Bad keys: ``COMMIT12:TARGET`` (the newest commit holding that
        pointer blob), the target for the work tree. ``check_names=False`` (gc: data a
        refused name points to is still kept) skips only the name check.

        Each distinct git tree is read once per path it appears at, and each pointer
        blob once, so walking all history is about one walk of its distinct trees."""
        found: dict[str, Pointer] = {}
        targets: dict[str, str] = {}  # label or bad key -> target
        mine: Bad = {}
        with self._lock:
            for sha, path, blob in self._distinct_pointer_blobs(commits):
                target = path[: -len(POINTER_SUFFIX)]
                where = f"{sha[:12]}:{path}"
                try:
                    p = self._checked(target, blob, where) if check_names else self._parse(blob, where)
                except DvxError as exc:
                    key = f"{sha[:12]}:{target}"
                    if bad is None:
                        raise
                    if key not in mine:
                        mine[key], targets[key] = exc, target
                    continue
                label = f"{target}@{p.id[:12]}"
                if label not in found:
                    found[label], targets[label] = p, target
        if workspace:
            ws_bad: Bad | None = {} if bad is not None else None
            for target, p in self.workspace(bad=ws_bad).items():
                label = f"{target}@{p.id[:12]}"
                if label not in found:
                    found[label], targets[label] = p, target
            for target, err in (ws_bad or {}).items():
                mine.setdefault(target, err)
                targets.setdefault(target, target)
        if paths:
            from dvx.tracked import match_targets

            where = " in any commit" + (" or in the work tree" if workspace else "")
            chosen = set(match_targets(self.repo, set(targets.values()), paths, where,
                                       "see `dvx log` for the tracked paths of the history"))
            found = {k: v for k, v in found.items() if targets[k] in chosen}
            mine = {k: v for k, v in mine.items() if targets[k] in chosen}
        if bad is not None:
            for k, v in mine.items():
                bad.setdefault(k, v)
        return found

    def _distinct_pointer_blobs(self, commits: Iterable[str] | None) -> Iterator[tuple[str, str, bytes]]:
        """``(commit, pointer path, blob id)`` for each distinct (path, blob) in the
        commits, attributed to the first commit (in the order given) that holds it."""
        git = self.git
        seen_trees: set[tuple[str, bytes]] = set()
        seen: set[tuple[str, bytes]] = set()
        for sha in self.commits() if commits is None else commits:
            root = git.dvx_tree(self.commit(sha))
            if root is None:
                continue
            stack = [("", root)]
            while stack:
                prefix, tree = stack.pop()
                if (prefix, tree) in seen_trees:
                    continue
                seen_trees.add((prefix, tree))
                for name, mode, sub in git.tree_entries(tree):
                    if stat_mod.S_ISDIR(mode):
                        if name not in _SKIP_DIRS:
                            stack.append((prefix + name.decode("utf-8", "surrogateescape") + "/", sub))
                    elif _is_pointer_file(name, mode):
                        path = prefix + name.decode("utf-8", "surrogateescape")
                        if (path, sub) not in seen:
                            seen.add((path, sub))
                            yield sha, path, sub

    def commits_from(self, include: Iterable[str], exclude: Iterable[str] = ()) -> list[str]:
        """Ids of the commits reachable from ``include`` and from none of ``exclude``
        (``git rev-list INCLUDE... --not EXCLUDE...``), newest first. Commits ``include``
        names that this repository lacks are left out (a hand-edited record may name
        one)."""
        with self._lock:
            return self.git.reachable_from(list(include), list(exclude))

    def changes(self, sha: str, *, bad: Bad | None = None) -> list[tuple[str, Pointer | None, Pointer | None]]:
        """``(target, old, new)`` for each pointer that commit ``sha`` changes against its
        first parent (a root commit: against nothing), sorted by target; ``old`` or
        ``new`` is None where the pointer is absent. A refused name or a malformed
        pointer is recorded in ``bad`` (key ``COMMIT12:TARGET``) and left out, or raises
        without it. Only the directories that changed are read (the lineage graph,
        ``dvx.lineage``, walks every commit this way)."""
        out: list[tuple[str, Pointer | None, Pointer | None]] = []
        with self._lock:
            c = self.commit(sha)
            parent = self.commit(c.parents[0]) if c.parents else None
            for target, (old, new) in sorted(self._changes(parent, c, None).items()):
                where = f"{sha[:12]}:{target}{POINTER_SUFFIX}"
                try:
                    check_target(target, where)
                    a = self._parse(old, f"{sha[:12]}^:{target}{POINTER_SUFFIX}") if old is not None else None
                    b = self._parse(new, where) if new is not None else None
                except DvxError as exc:
                    if bad is None:
                        raise
                    bad.setdefault(f"{sha[:12]}:{target}", exc)
                    continue
                out.append((target, a, b))
        return out

    # -- versions of a path ------------------------------------------------------------
    def versions(self, target: str | None = None, *, rev: str = "HEAD",
                 bad: Bad | None = None) -> Iterator[Version]:
        """The versions (newest first) of ``target`` — or of every tracked path, when
        None — in the history of ``rev``: each commit reachable from ``rev`` whose
        pointer blob for the path differs from its first parent's (``git log`` order:
        by commit date). Within one commit, paths come sorted. A renamed pointer is a
        deletion and an addition. Refused names are recorded in ``bad`` (key
        ``COMMIT12:TARGET``) and skipped, or raise without it; a malformed pointer is a
        version with ``pointer`` None and ``error`` set.

        With a target, each commit costs one path look-up in cached trees; without,
        only the directories that changed between a commit and its first parent are
        read, so the cost grows with what changed."""
        with self._lock:
            walk = list(self.git.walk(self.git.resolve(rev)))  # parents come later in the walk
            for c in walk:
                self._commits.setdefault(c.sha, c)
        for c in walk:
            with self._lock:
                parent = self.commit(c.parents[0]) if c.parents else None
                changes = self._changes(parent, c, target)
                versions = [self._version(c, t, old, new, bad) for t, (old, new) in sorted(changes.items())]
            yield from (v for v in versions if v is not None)

    def _changes(self, old: CommitInfo | None, new: CommitInfo,
                 target: str | None) -> dict[str, tuple[bytes | None, bytes | None]]:
        """Target -> (old blob, new blob) for the pointers that differ."""
        git = self.git
        if target is not None:
            name = target + POINTER_SUFFIX
            a = git.blob_id_at(old, name) if old is not None else None
            b = git.blob_id_at(new, name)
            return {target: (a, b)} if a != b else {}
        out: dict[str, tuple[bytes | None, bytes | None]] = {}
        self._tree_changes(git.dvx_tree(old) if old is not None else None, git.dvx_tree(new), "", out)
        return out

    def _tree_changes(self, old: bytes | None, new: bytes | None, prefix: str,
                      out: dict[str, tuple[bytes | None, bytes | None]]) -> None:
        if old == new:
            return
        git = self.git
        a = {name: (mode, sha) for name, mode, sha in git.tree_entries(old)} if old is not None else {}
        b = {name: (mode, sha) for name, mode, sha in git.tree_entries(new)} if new is not None else {}
        for name in a.keys() | b.keys():
            ea, eb = a.get(name), b.get(name)
            if ea == eb:
                continue
            da = ea[1] if ea is not None and stat_mod.S_ISDIR(ea[0]) and name not in _SKIP_DIRS else None
            db = eb[1] if eb is not None and stat_mod.S_ISDIR(eb[0]) and name not in _SKIP_DIRS else None
            if da is not None or db is not None:
                self._tree_changes(da, db, prefix + name.decode("utf-8", "surrogateescape") + "/", out)
            fa = ea[1] if ea is not None and _is_pointer_file(name, ea[0]) else None
            fb = eb[1] if eb is not None and _is_pointer_file(name, eb[0]) else None
            if fa != fb:
                out[prefix + name.decode("utf-8", "surrogateescape")[: -len(POINTER_SUFFIX)]] = (fa, fb)

    def _version(self, c: CommitInfo, target: str, old: bytes | None, new: bytes | None,
                 bad: Bad | None) -> Version | None:
        try:
            check_target(target, f"{c.sha[:12]}:{target}{POINTER_SUFFIX}")
        except PointerError as exc:
            if bad is None:
                raise
            bad.setdefault(f"{c.sha[:12]}:{target}", exc)
            return None
        pointer = previous = None
        error: DvxError | None = None
        if new is not None:
            try:
                pointer = self._parse(new, f"{c.sha[:12]}:{target}{POINTER_SUFFIX}")
            except DvxError as exc:
                error = exc
        if old is not None:
            try:
                previous = self._parse(old, f"{c.sha[:12]}^:{target}{POINTER_SUFFIX}")
            except DvxError:
                previous = None
        change = "added" if old is None else "deleted" if new is None else "modified"
        return Version(c.sha, c.iso_time(), c.time, c.author, c.message, target, change,
                       pointer, previous, error)


def _is_pointer_file(name: bytes, mode: int) -> bool:
    return stat_mod.S_ISREG(mode) and name.endswith(_SUFFIX) and len(name) > len(_SUFFIX)


_LIVE: weakref.WeakSet[History] = weakref.WeakSet()
_HISTORIES_LOCK = threading.Lock()


def history_of(repo: Repository) -> History:
    """The :class:`History` of a repository object (one per object, living as long as it)."""
    h: History | None = repo.__dict__.get("_dvx_history")
    if h is None:
        with _HISTORIES_LOCK:
            h = repo.__dict__.setdefault("_dvx_history", History(repo))
    return h


def _after_fork_in_child() -> None:
    """A lock held by another thread at the fork stays held in the child: start afresh
    (git itself is reopened on next use, see ``History.git``)."""
    global _HISTORIES_LOCK
    _HISTORIES_LOCK = threading.Lock()
    for h in list(_LIVE):
        h._lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


__all__ = ["Bad", "History", "Version", "history_of"]
