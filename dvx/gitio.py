"""The one module that talks to git (through dulwich).

Everything DVX needs from git goes through here, so the rest of the code never touches
dulwich objects, and what DVX writes stays acceptable to the git CLI. Tree lookups are
cached by tree id (unchanged subtrees are shared between commits), which is what keeps
``dvx log`` and ``dvx gc`` fast on long histories.
"""

from __future__ import annotations

import contextlib
import os
import stat as stat_mod
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from dvx.errors import GitError

POINTER_SUFFIX = b".dvx"


def find_git_root(path: str) -> str | None:
    cur = os.path.realpath(path)
    while True:
        if os.path.exists(os.path.join(cur, ".git")):
            return cur
        parent = os.path.dirname(cur)
        if parent == cur:
            return None
        cur = parent


#: what `.git/info/exclude` must hide (relative to the DVX root), whatever the branch
EXCLUDED = (".dvx/store/", ".dvx/tmp/", ".dvx/state/", ".dvx/config.local")


def common_git_dir(git_root: str) -> str | None:
    """The common git directory of the work tree at ``git_root``: ``.git`` itself, or
    for a linked work tree or a submodule (``.git`` is a ``gitdir:`` file) the directory
    it names, followed to its ``commondir``. None if unreadable."""
    dotgit = os.path.join(git_root, ".git")
    if os.path.isdir(dotgit):
        gitdir = dotgit
    else:
        try:
            with open(dotgit, encoding="utf-8") as f:
                line = f.read(4096).strip()
        except (OSError, UnicodeDecodeError):
            return None
        if not line.startswith("gitdir:"):
            return None
        gitdir = os.path.join(git_root, line[len("gitdir:"):].strip())
    try:
        with open(os.path.join(gitdir, "commondir"), encoding="utf-8") as f:
            return os.path.normpath(os.path.join(gitdir, f.read(4096).strip()))
    except (OSError, UnicodeDecodeError):
        return os.path.normpath(gitdir)


def ensure_info_exclude(dvx_root: str) -> bool:
    """Add DVX's local directories to ``info/exclude`` of the common git directory (the
    per-clone exclude file git always reads), so the store stays ignored on a branch
    whose commits lack ``.dvx/.gitignore``. Only missing lines are appended; the file's
    other lines are kept. Returns whether it wrote. Cheap when nothing is missing."""
    root = os.path.realpath(dvx_root)
    git_root = find_git_root(root)
    if git_root is None:
        return False
    common = common_git_dir(git_root)
    if common is None:
        return False
    rel = os.path.relpath(root, git_root)
    prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
    path = os.path.join(common, "info", "exclude")
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "surrogateescape")
    except FileNotFoundError:
        text = ""
    have = {line.strip() for line in text.splitlines()}
    missing = [f"/{prefix}{p}" for p in EXCLUDED if f"/{prefix}{p}" not in have]
    if not missing:
        return False
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "ab") as f:
        f.write((b"\n" if text and not text.endswith("\n") else b"")
                + b"# DVX: the local store and state, never committed (dvx init)\n"
                + "".join(m + "\n" for m in missing).encode("utf-8", "surrogateescape"))
    return True


def nested_repo_above(root: str, rel: str) -> str | None:
    """The first directory of ``rel`` (a path below ``root``; itself included) that
    holds its own ``.git``: a submodule or another nested git repository, whose files
    belong to that repository, not to ``root``'s. None if there is none."""
    parts = [p for p in rel.split("/") if p]
    cur = root
    for i, part in enumerate(parts):
        cur = os.path.join(cur, part)
        if os.path.lexists(os.path.join(cur, ".git")):
            return "/".join(parts[: i + 1])
    return None


def _is_git_dir(path: str) -> bool:
    """git's own test (setup.c is_git_directory): HEAD, objects/ and refs/."""
    return (os.path.isfile(os.path.join(path, "HEAD")) and os.path.isdir(os.path.join(path, "objects"))
            and os.path.isdir(os.path.join(path, "refs")))


def refuse_git_dir(path: str) -> None:
    """Refuse to work in a git directory: a bare repository or the inside of ``.git/``.

    DVX needs a work tree; creating ``.git`` or ``.dvx`` inside a git directory would
    make a nested repository that pushes and clones reach instead of the real one."""
    cur = os.path.realpath(path)
    while True:
        if _is_git_dir(cur):
            if os.path.basename(cur) == ".git" or f"{os.sep}.git{os.sep}" in cur + os.sep:
                top = cur.split(f"{os.sep}.git{os.sep}")[0] if f"{os.sep}.git{os.sep}" in cur \
                    else os.path.dirname(cur)
                raise GitError(f"{path} is inside the git directory {cur}, not in a work tree",
                               f"run dvx in the work tree {top}")
            raise GitError(f"{cur} is a bare git repository: a bare repository has no work tree",
                           f"clone it (`git clone {cur} DIR`) and run dvx in the clone")
        if os.path.lexists(os.path.join(cur, ".git")):
            return  # a work tree (we are not inside its .git: that was checked below us)
        parent = os.path.dirname(cur)
        if parent == cur:
            return
        cur = parent


def ensure_repo(root: str) -> bool:
    """Create a git repository at ``root`` unless one contains it. Returns created."""
    refuse_git_dir(root)
    if find_git_root(root) is not None:
        return False
    from dulwich.repo import Repo

    try:
        Repo.init(root)
    except OSError as exc:
        raise GitError(f"cannot create a git repository in {root}: {exc.strerror}") from None
    return True


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    tree: bytes
    parents: tuple[str, ...]
    author: str
    time: int
    timezone: int
    message: str

    @property
    def summary(self) -> str:
        return self.message.splitlines()[0] if self.message else ""

    def iso_time(self) -> str:
        offset = self.timezone
        t = time.gmtime(self.time + offset)
        sign = "+" if offset >= 0 else "-"
        hours, minutes = abs(offset) // 3600, abs(offset) % 3600 // 60
        return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f"{sign}{hours:02d}:{minutes:02d}"


class IndexLock:
    """``.git/index.lock``, held as git holds it: created exclusively (a lock someone
    else holds is a one-line error, never a wait or a traceback), the new index written
    into it, and renamed over the index to commit, or removed to roll back.

    ``dvx commit`` holds it across the whole stage → commit sequence, so concurrent
    commits (DVX's or git's) are serialized and none is built on a stale index."""

    def __init__(self, git: GitRepo) -> None:
        self.git = git
        self.index_path = git.repo.index_path()
        self.path = self.index_path + ".lock"
        self._held = False
        self._tmp = ""

    def __enter__(self) -> IndexLock:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            shown = os.path.relpath(self.path, self.git.root)
            if shown.startswith(".."):
                shown = self.path
            raise GitError(f"another git process seems to be running in this repository ({shown} exists)",
                           "wait for it or remove the lock if it crashed") from None
        except OSError as exc:
            raise GitError(f"cannot lock the git index {self.path}: {exc.strerror}",
                           "check .git permissions") from None
        os.close(fd)
        self._held = True
        self._tmp = f"{self.index_path}.dvx-{os.getpid()}-{os.urandom(4).hex()}"
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self._tmp)
        if self._held:  # not committed: roll back, the index stays as it was
            self._held = False
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    def read(self) -> Any:
        """The current index as a dulwich ``Index`` over a private copy (format version
        and extensions kept); change it, then ``install`` it."""
        import shutil

        from dulwich.index import Index

        try:
            shutil.copyfile(self.index_path, self._tmp)
        except FileNotFoundError:
            pass  # no index yet: an empty one
        except OSError as exc:
            raise GitError(f"cannot read the git index: {exc.strerror}", "check .git permissions") from None
        try:
            return Index(self._tmp)
        except Exception as exc:
            raise GitError(f"cannot read the git index: {exc}", "run `git status`") from None

    def install(self, index: Any) -> None:
        """Write ``index`` into the lock file (what git's hooks see as GIT_INDEX_FILE)."""
        try:
            index.write()
            os.replace(self._tmp, self.path)
        except OSError as exc:
            raise GitError(f"cannot update the git index: {exc.strerror}", "check .git permissions") from None

    def reread(self) -> Any:
        """The locked index again (a hook may have staged more)."""
        import shutil

        from dulwich.index import Index

        try:
            shutil.copyfile(self.path, self._tmp)
            return Index(self._tmp)
        except OSError as exc:
            raise GitError(f"cannot read the git index: {exc.strerror}", "check .git permissions") from None

    def commit(self) -> None:
        """Rename the lock over the index: the new index is in place, the lock released."""
        try:
            os.replace(self.path, self.index_path)
        except OSError as exc:
            raise GitError(f"cannot update the git index: {exc.strerror}", "check .git permissions") from None
        self._held = False


class GitRepo:
    """A git repository seen from a DVX work tree at ``dvx_root``."""

    def __init__(self, dvx_root: str) -> None:
        from dulwich.errors import NotGitRepository
        from dulwich.repo import Repo

        root = find_git_root(dvx_root)
        if root is None:
            raise GitError(f"{dvx_root} is not inside a git repository", "run `git init` or `dvx init`")
        try:
            self.repo = Repo(root)
        except NotGitRepository:
            raise GitError(f"{root} is not a valid git repository", "check its .git directory") from None
        self.root = root
        rel = os.path.relpath(os.path.realpath(dvx_root), root)
        #: path of the DVX work tree inside the git tree ("" at the top), POSIX
        self.prefix = "" if rel == "." else rel.replace(os.sep, "/")
        self._tree_cache: dict[bytes, list[tuple[bytes, int, bytes]]] = {}
        self._pointer_cache: dict[bytes, dict[str, bytes]] = {}
        self._parents_cache: dict[bytes, tuple[bytes, ...]] = {}

    # -- revisions ---------------------------------------------------------------
    def head(self) -> str | None:
        """The commit HEAD points at, or None in a repository with no commits."""
        try:
            return self.repo.head().decode()
        except KeyError:
            return None

    def resolve(self, rev: str) -> str:
        """A commit sha for any revision spelling: HEAD~2, branch, tag, short sha, X^."""
        spec = rev.strip()
        if not spec:
            raise GitError("empty revision", "name a branch, tag or commit")
        if len(spec) == 40 and spec.encode() in self._parents_cache:
            return spec  # a full commit id met before (commits never change): the read API's hot path
        if self.head() is None and spec.split("~")[0].split("^")[0] in ("HEAD", "@"):
            raise GitError("this repository has no commits yet", "make one with `dvx commit -m MSG`")
        base, ops = _split_rev(spec)
        if base == "@":
            base = "HEAD"
        try:
            from dulwich.objectspec import parse_commit

            commit = parse_commit(self.repo, base.encode())
        except (KeyError, ValueError):
            raise GitError(f"unknown revision {rev!r}",
                           "check `git log --oneline` or `git tag` for valid names") from None
        except Exception as exc:  # corrupt object store, unreadable pack...
            raise GitError(f"cannot read git revision {rev!r}: {exc}", "run `git fsck`") from None
        sha: bytes = commit.id
        self._parents_cache.setdefault(sha, tuple(commit.parents))
        for op, n in ops:
            for _ in range(n if op == "~" else 1):
                parents = self._parents(sha)
                index = 0 if op == "~" else n - 1
                if index >= len(parents):
                    raise GitError(f"unknown revision {rev!r}: the history is not that deep",
                                   "check `git log --oneline`")
                sha = parents[index]
                self._parents(sha)  # it must be a commit
        return sha.decode()

    def _parents(self, sha: bytes) -> tuple[bytes, ...]:
        """A commit's parents (cached: commits never change)."""
        parents = self._parents_cache.get(sha)
        if parents is None:
            from dulwich.objects import Commit

            obj = self._object(sha)
            if not isinstance(obj, Commit):
                raise GitError(f"git object {sha.decode()} is not a commit", "run `git fsck`")
            parents = self._parents_cache[sha] = tuple(obj.parents)
        return parents

    def _object(self, sha: bytes):  # type: ignore[no-untyped-def]
        try:
            return self.repo.object_store[sha]  # type: ignore[index]
        except KeyError:
            raise GitError(f"git object {sha.decode()} is missing",
                           "run `git fsck`; the clone may be shallow or damaged") from None
        except Exception as exc:
            raise GitError(f"git object {sha.decode()} cannot be read: {exc}", "run `git fsck`") from None

    def orig_head(self) -> str | None:
        """ORIG_HEAD (where merge, rebase and reset found HEAD), if it names a commit."""
        try:
            with open(os.path.join(self.repo.controldir(), "ORIG_HEAD"), "rb") as f:
                sha = f.read(41).strip().decode("ascii")
        except (OSError, UnicodeDecodeError):
            return None
        return sha if len(sha) == 40 and sha.strip("0") else None

    def tracks(self, commit: CommitInfo, path: str) -> bool:
        """Whether git tracks anything (file, directory, link) at ``path`` in ``commit``."""
        return self._lookup(commit.tree, self._full(path)) is not None

    def commit_info(self, sha: str) -> CommitInfo:
        from dulwich.objects import Commit

        c = self._object(sha.encode())
        if not isinstance(c, Commit):
            raise GitError(f"{sha} is not a commit")
        return CommitInfo(sha, c.tree, tuple(p.decode() for p in c.parents),
                          c.author.decode("utf-8", "replace"), c.author_time,
                          c.author_timezone, c.message.decode("utf-8", "replace"))

    def walk(self, start: str, max_entries: int | None = None) -> Iterator[CommitInfo]:
        """Commits reachable from ``start``, newest first."""
        walker = self.repo.get_walker(include=[start.encode()], max_entries=max_entries)  # type: ignore[list-item]
        for entry in walker:
            c = entry.commit
            yield CommitInfo(c.id.decode(), c.tree, tuple(p.decode() for p in c.parents),
                             c.author.decode("utf-8", "replace"), c.author_time,
                             c.author_timezone, c.message.decode("utf-8", "replace"))

    def ref_commits(self) -> dict[str, str]:
        """Every ref (branches, tags, remotes, DVX's refs/dvx/*, HEAD) that names a commit."""
        from dulwich.objects import Commit, Tag

        out: dict[str, str] = {}
        for name, sha in self.repo.get_refs().items():
            try:
                obj = self.repo.object_store[sha]
                while isinstance(obj, Tag):
                    obj = self.repo.object_store[obj.object[1]]
            except KeyError:
                continue
            if isinstance(obj, Commit):
                out[name.decode("utf-8", "replace")] = obj.id.decode()
        return out

    def index_pointer_blobs(self) -> set[bytes]:
        """Blob ids of every ``*.dvx`` in git's index (every conflict stage too) and in
        the index of each linked work tree: staged but uncommitted pointers, which gc
        must keep alive as git's own gc keeps the index's blobs."""
        from dulwich.index import ConflictedIndexEntry, Index

        common = self.repo.commondir()
        files = [os.path.join(self.repo.controldir(), "index"), os.path.join(common, "index")]
        with contextlib.suppress(OSError):
            files += [os.path.join(common, "worktrees", w, "index")
                      for w in os.listdir(os.path.join(common, "worktrees"))]
        found: set[bytes] = set()
        for path in dict.fromkeys(files):
            if not os.path.exists(path):
                continue
            try:
                index = Index(path, read=True)
            except Exception:  # noqa: BLE001 - an unreadable index protects nothing extra
                continue
            for name in index:
                if not name.endswith(POINTER_SUFFIX):
                    continue
                entry = index[name]
                if isinstance(entry, ConflictedIndexEntry):
                    found.update(e.sha for e in (entry.ancestor, entry.this, entry.other) if e is not None)
                else:
                    found.add(entry.sha)
        return found

    def reflog_commits(self, max_age_days: int) -> set[str]:
        """Commits named by reflog entries (old and new side) younger than ``max_age_days``,
        in every reflog: HEAD (of each work tree), branches, remotes, the stash. These are
        what ``git reset --hard HEAD~1`` and friends leave recoverable; git keeps them for
        gc.reflogExpire (90 days). Entries naming missing objects are skipped."""
        from dulwich.objects import Commit

        if max_age_days <= 0:
            return set()
        cutoff = time.time() - max_age_days * 86400
        common = self.repo.commondir()
        files = [os.path.join(self.repo.controldir(), "logs", "HEAD"), os.path.join(common, "logs", "HEAD")]
        with contextlib.suppress(OSError):
            files += [os.path.join(common, "worktrees", w, "logs", "HEAD")
                      for w in os.listdir(os.path.join(common, "worktrees"))]
        for dirpath, _dirs, names in os.walk(os.path.join(common, "logs", "refs")):
            files += [os.path.join(dirpath, n) for n in names]
        found: set[str] = set()
        for path in dict.fromkeys(files):
            try:
                with open(path, "rb") as f:
                    lines = f.read().splitlines()
            except OSError:
                continue
            for line in lines:
                head = line.split(b"\t", 1)[0].split()
                try:
                    when = int(head[-2])
                except (IndexError, ValueError):
                    continue
                if when >= cutoff:
                    found.update(sha.decode("ascii", "replace") for sha in head[:2] if len(sha) == 40)
        out = set()
        for sha in found:
            if sha.strip("0"):
                try:
                    if isinstance(self.repo.object_store[sha.encode()], Commit):  # type: ignore[index]
                        out.add(sha)
                except (KeyError, ValueError):
                    continue
        return out

    def reachable_commits(self, extra: set[str] | None = None, tips_only: str | None = None) -> list[str]:
        """Commits reachable from every ref, and from ``extra`` (e.g. reflog entries).
        Refs under the prefix ``tips_only`` add only the commit they name, not its
        history (unless another ref reaches it)."""
        refs = self.ref_commits()
        tips = sorted({sha for name, sha in refs.items() if tips_only and name.startswith(tips_only)})
        heads = sorted({sha for name, sha in refs.items() if not (tips_only and name.startswith(tips_only))}
                       | (extra or set()))
        found: list[str] = []
        if heads:
            walker = self.repo.get_walker(include=[h.encode() for h in heads])  # type: ignore[misc]
            found = [e.commit.id.decode() for e in walker]
        seen = set(found)
        return found + [t for t in tips if t not in seen]

    def reachable_from(self, include: list[str], exclude: list[str] | None = None) -> list[str]:
        """Commits reachable from ``include`` and from none of ``exclude``, newest first;
        ids this repository does not hold as commits are ignored on either side."""
        from dulwich.objects import Commit

        def present(shas: list[str]) -> list[bytes]:
            out = []
            for s in dict.fromkeys(shas):
                try:
                    if isinstance(self.repo.object_store[s.encode()], Commit):  # type: ignore[index]
                        out.append(s.encode())
                except (KeyError, ValueError):
                    continue
            return out

        heads = present(include)
        if not heads:
            return []
        walker = self.repo.get_walker(include=heads, exclude=present(exclude or []) or None)  # type: ignore[arg-type]
        return [e.commit.id.decode() for e in walker]

    def peel_commit(self, sha: str) -> str | None:
        """The commit ``sha`` names (an annotated tag peeled), or None if it is not a
        commit or not in this repository."""
        from dulwich.objects import Commit, Tag

        try:
            obj = self.repo.object_store[sha.encode()]  # type: ignore[index]
            while isinstance(obj, Tag):
                obj = self.repo.object_store[obj.object[1]]
        except (KeyError, ValueError):
            return None
        except Exception as exc:
            raise GitError(f"git object {sha} cannot be read: {exc}", "run `git fsck`") from None
        return obj.id.decode() if isinstance(obj, Commit) else None

    def commits_between(self, include: str, exclude: list[str]) -> list[str]:
        """Commits reachable from ``include`` and from none of ``exclude`` (``git
        rev-list include --not exclude...``)."""
        try:
            walker = self.repo.get_walker(include=[include.encode()],  # type: ignore[list-item]
                                          exclude=[e.encode() for e in exclude] or None)  # type: ignore[misc]
            return [e.commit.id.decode() for e in walker]
        except KeyError as exc:
            raise GitError(f"git object {exc} is missing", "run `git fsck`; the clone may be shallow") from None

    # -- trees ---------------------------------------------------------------------
    def _tree_entries(self, tree_id: bytes) -> list[tuple[bytes, int, bytes]]:
        entries = self._tree_cache.get(tree_id)
        if entries is None:
            from dulwich.objects import Tree

            tree = self._object(tree_id)
            if not isinstance(tree, Tree):
                raise GitError(f"git object {tree_id.decode()} is not a tree", "run `git fsck`")
            entries = [(e.path, e.mode, e.sha) for e in tree.iteritems()]
            self._tree_cache[tree_id] = entries
        return entries

    def _lookup(self, tree_id: bytes, path: str) -> tuple[int, bytes] | None:
        cur = tree_id
        parts = [p.encode() for p in path.split("/") if p]
        mode = stat_mod.S_IFDIR
        for i, part in enumerate(parts):
            for name, m, sha in self._tree_entries(cur):
                if name == part:
                    if i < len(parts) - 1 and not stat_mod.S_ISDIR(m):
                        return None
                    cur, mode = sha, m
                    break
            else:
                return None
        return mode, cur

    def _full(self, path: str) -> str:
        return f"{self.prefix}/{path}" if self.prefix and path else (self.prefix or path)

    def blob_at(self, commit: CommitInfo, path: str) -> tuple[bytes, bytes] | None:
        """``(blob id, content)`` of a file in a commit (path relative to the DVX root)."""
        found = self._lookup(commit.tree, self._full(path))
        if found is None or not stat_mod.S_ISREG(found[0]):
            return None
        return found[1], self._object(found[1]).data

    def blob_id_at(self, commit: CommitInfo, path: str) -> bytes | None:
        found = self._lookup(commit.tree, self._full(path))
        if found is None or not stat_mod.S_ISREG(found[0]):
            return None
        return found[1]

    def read_blob(self, blob_id: bytes) -> bytes:
        return self._object(blob_id).data  # type: ignore[no-any-return]

    def pointer_blobs(self, commit: CommitInfo) -> dict[str, bytes]:
        """Every ``*.dvx`` file in a commit (below the DVX root): path -> blob id.

        Memoized per tree id, so a history where most directories do not change costs
        about one walk of the distinct trees."""
        start = self._lookup(commit.tree, self.prefix) if self.prefix else (stat_mod.S_IFDIR, commit.tree)
        if start is None or not stat_mod.S_ISDIR(start[0]):
            return {}
        return self._pointers_below(start[1])

    def dvx_tree(self, commit: CommitInfo) -> bytes | None:
        """The id of the git tree at the DVX root in ``commit`` (None if there is none)."""
        if not self.prefix:
            return commit.tree
        found = self._lookup(commit.tree, self.prefix)
        return found[1] if found is not None and stat_mod.S_ISDIR(found[0]) else None

    def tree_entries(self, tree_id: bytes) -> list[tuple[bytes, int, bytes]]:
        """``(name, mode, id)`` of each entry of a git tree, cached by tree id."""
        return self._tree_entries(tree_id)

    def reopened(self) -> GitRepo:
        """A new handle on the same repository that shares this one's tree caches (git
        objects never change): for a forked child, which must not share open pack
        files with its parent."""
        new = GitRepo.__new__(GitRepo)
        new.__dict__.update(self.__dict__)
        from dulwich.repo import Repo

        new.repo = Repo(self.root)
        return new

    def _pointers_below(self, tree_id: bytes) -> dict[str, bytes]:
        cached = self._pointer_cache.get(tree_id)
        if cached is not None:
            return cached
        found: dict[str, bytes] = {}
        for name, mode, sha in self._tree_entries(tree_id):
            if stat_mod.S_ISDIR(mode):
                if name in (b".git", b".dvx"):
                    continue
                for sub, blob in self._pointers_below(sha).items():
                    found[name.decode("utf-8", "surrogateescape") + "/" + sub] = blob
            elif stat_mod.S_ISREG(mode) and name.endswith(POINTER_SUFFIX) and len(name) > 4:
                found[name.decode("utf-8", "surrogateescape")] = sha
        self._pointer_cache[tree_id] = found
        return found

    # -- writing -----------------------------------------------------------------------
    def index_lock(self) -> IndexLock:
        """git's index lock, ``.git/index.lock``: the commit lock (see ``IndexLock``)."""
        return IndexLock(self)

    def stage(self, paths: list[str]) -> None:
        """Stage work-tree paths (relative to the DVX root); removed files are unstaged.

        Inside a git hook that git runs with ``GIT_INDEX_FILE`` (``git commit -a`` or
        ``git commit PATH`` hold ``.git/index.lock`` and point their hooks at it), the
        paths are staged into that index, as ``git add`` would; otherwise under the
        index lock."""
        if not paths:
            return
        from dulwich.index import Index

        override = os.environ.get("GIT_INDEX_FILE")
        if override:
            index = Index(os.path.join(self.root, override))
            self._stage_into(index, paths)
            try:
                index.write()
            except OSError as exc:
                raise GitError(f"cannot update the git index: {exc.strerror}",
                               "check .git permissions") from None
            except Exception as exc:  # dulwich's FileLocked
                raise GitError(f"cannot update the git index {override}: {exc}") from None
            return
        with self.index_lock() as lock:
            index = lock.read()
            self._stage_into(index, paths)
            lock.install(index)
            lock.commit()

    def _stage_into(self, index: Any, paths: list[str]) -> None:
        """Stage work-tree paths into an in-memory ``Index`` (what ``git add`` does for
        a file, a symbolic link or a removed path; a directory is left as it is)."""
        from dulwich.index import blob_from_path_and_stat, index_entry_from_stat

        normalizer = self.repo.get_blob_normalizer()
        for p in paths:
            full = self._full(p)
            key = full.encode("utf-8", "surrogateescape")
            fs_path = os.path.join(self.root, *full.split("/")).encode("utf-8", "surrogateescape")
            try:
                st = os.lstat(fs_path)
            except (FileNotFoundError, NotADirectoryError):
                if key in index:
                    del index[key]
                continue
            except OSError as exc:
                raise GitError(f"cannot stage {p}: {exc.strerror}") from None
            if stat_mod.S_ISDIR(st.st_mode):
                continue
            if not (stat_mod.S_ISREG(st.st_mode) or stat_mod.S_ISLNK(st.st_mode)):
                if key in index:
                    del index[key]
                continue
            try:
                blob = normalizer.checkin_normalize(blob_from_path_and_stat(fs_path, st), key)
            except OSError as exc:
                raise GitError(f"cannot stage {p}: {exc.strerror}") from None
            self.repo.object_store.add_object(blob)
            index[key] = index_entry_from_stat(st, blob.id)

    def _merge_heads(self) -> list[bytes]:
        try:
            with open(os.path.join(self.repo.controldir(), "MERGE_HEAD"), "rb") as f:
                return [line.strip() for line in f if len(line.strip()) == 40]
        except OSError:
            return []

    def commit(self, message: str, stage: list[str] | None = None, only: bool = False,
               lock: IndexLock | None = None) -> str:
        """Stage ``stage`` (work-tree paths relative to the DVX root) and commit, under
        the index lock (``lock`` if the caller already holds it), as ``git commit``:

        * the commit is built on the HEAD read under the lock and the branch (or a
          detached HEAD) moves by compare-and-swap against it, so a concurrent commit
          can never be overwritten;
        * ``only``: git's ``--only`` (``git commit PATH``): the commit's tree is HEAD's
          tree plus the staged paths; other staged changes stay staged, not committed;
        * the reflogs of the branch and of HEAD get git's ``commit: <subject>`` entry
          (``commit (initial)``, ``commit (merge)``);
        * hooks: pre-commit and commit-msg run with ``GIT_INDEX_FILE`` naming the locked
          index, post-commit after the branch moved.

        The new index is installed only when the commit is made; on any failure the
        index is left as it was. Author and committer come from GIT_AUTHOR_* /
        GIT_COMMITTER_* or git config, as git does."""
        if lock is None:
            with self.index_lock() as own:
                return self.commit(message, stage, only, own)
        from dulwich.errors import HookError
        from dulwich.index import ConflictedIndexEntry

        merge_heads = self._merge_heads()
        if only and merge_heads:
            raise GitError("cannot do a partial commit during a merge",
                           "commit without paths to conclude the merge")
        head = self.head()
        index = lock.read()
        self._stage_into(index, stage or [])
        if any(isinstance(v, ConflictedIndexEntry) for _, v in index.items()):
            raise GitError("the index has unmerged paths", "resolve the conflicts and stage them first")
        lock.install(index)
        saved = {k: os.environ.get(k) for k in ("GIT_INDEX_FILE", "DVX_IN_COMMIT")}
        os.environ["GIT_INDEX_FILE"] = lock.path  # as git: hooks see (and may change) this index
        os.environ["DVX_IN_COMMIT"] = "1"  # DVX's own pre-commit hook: commit re-added the data
        try:
            try:
                self.repo.hooks["pre-commit"].execute()
            except KeyError:
                pass
            except HookError as exc:
                raise GitError(f"commit refused by a hook: {exc}", HOOK_HINT) from None
            index = lock.reread()  # what the hook may have staged
            tree = self._only_tree(index, stage or [], head) if only else index.commit(self.repo.object_store)
            if head is not None and self.commit_info(head).tree == tree and not merge_heads:
                raise GitError("nothing to commit: the index matches HEAD", "change or add something first")
            sha = self._make_commit(message, tree, head, merge_heads)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        self._move_head(sha, head, merge_heads, lock)
        lock.commit()  # the new index, now that HEAD names the commit built from it
        for name in ("MERGE_MSG", "MERGE_MODE"):  # the merge is concluded, as git does
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self.repo.controldir(), name))
        try:
            self.repo.hooks["post-commit"].execute()
        except KeyError:
            pass
        except HookError as exc:  # git ignores its status too
            import sys

            sys.stderr.write(f"warning: post-commit hook failed: {exc}\n")
        return sha.decode()

    def _only_tree(self, index: Any, stage: list[str], head: str | None) -> bytes:
        """HEAD's tree with the entries of ``stage`` taken from ``index`` (git --only)."""
        from dulwich.index import commit_tree
        from dulwich.object_store import iter_tree_contents

        entries: dict[bytes, tuple[bytes, int]] = {}
        if head is not None:
            for e in iter_tree_contents(self.repo.object_store, self.commit_info(head).tree):  # type: ignore[arg-type]
                entries[e.path] = (e.sha, e.mode)
        for p in stage:
            key = self._full(p).encode("utf-8", "surrogateescape")
            if key in index:
                entry = index[key]
                entries[key] = (entry.sha, entry.mode)
            else:
                entries.pop(key, None)
        return commit_tree(self.repo.object_store,  # type: ignore[no-any-return]
                           [(p, sha, mode) for p, (sha, mode) in sorted(entries.items())])  # type: ignore[misc]

    def _make_commit(self, message: str, tree: bytes, head: str | None, merge_heads: list[bytes]) -> bytes:
        """The commit object (commit-msg hook, signing and signoff as configured), not yet
        on any ref."""
        from dulwich.errors import CommitError, HookError
        from dulwich.repo import InvalidUserIdentity

        ts = _env_date("GIT_AUTHOR_DATE")
        cts = _env_date("GIT_COMMITTER_DATE")
        config = self.repo.get_config_stack()
        author = git_identity(config, "author")
        committer = git_identity(config, "committer")
        msg = message.encode()
        try:
            new = self.repo.hooks["commit-msg"].execute(msg)
            if new is not None:
                msg = new
        except KeyError:
            pass
        except HookError as exc:
            raise GitError(f"commit refused by a hook: {exc}", HOOK_HINT) from None
        hooks = self.repo.hooks
        post = hooks.pop("post-commit", None)  # run once the branch has moved
        try:
            return self.repo.get_worktree().commit(  # type: ignore[no-any-return]
                message=msg, tree=tree,  # type: ignore[arg-type]
                author=author, committer=committer,
                author_timestamp=ts[0] if ts else None, author_timezone=ts[1] if ts else None,
                commit_timestamp=cts[0] if cts else None, commit_timezone=cts[1] if cts else None,
                ref=None, merge_heads=[*([head.encode()] if head else []), *merge_heads],  # type: ignore[list-item]
                no_verify=True,
            )
        except InvalidUserIdentity as exc:
            raise GitError(f"git does not know who you are: {exc}",
                           "set user.name and user.email with `git config`") from None
        except (CommitError, HookError) as exc:
            raise GitError(f"commit refused by a hook: {exc}",
                           "fix what the hook reports, then retry") from None
        finally:
            if post is not None:
                hooks["post-commit"] = post

    def _move_head(self, sha: bytes, head: str | None, merge_heads: list[bytes], lock: IndexLock) -> None:
        """Move HEAD's branch (or a detached HEAD) from ``head`` to ``sha`` by
        compare-and-swap and write git's reflog entries."""
        from dulwich.objects import ZERO_SHA, Commit

        try:
            refnames, _ = self.repo.refs.follow(b"HEAD")  # type: ignore[arg-type]
        except Exception as exc:  # a symref loop, an unreadable HEAD
            raise GitError(f"cannot read HEAD: {exc}", "run `git status`") from None
        target = refnames[-1] if refnames else b"HEAD"
        old = head.encode() if head else ZERO_SHA
        try:
            ok = self.repo.refs.set_if_equals(target, old, sha)  # type: ignore[arg-type]
        except OSError as exc:
            ok = False
            why = exc.strerror or str(exc)
        except Exception as exc:  # dulwich's FileLocked: git is updating the ref
            ok = False
            why = f"{target.decode('utf-8', 'replace')} is locked ({exc})"
        else:
            why = f"{target.decode('utf-8', 'replace')} moved during the commit"
        if not ok:
            if merge_heads:  # dulwich concluded the merge; it is not concluded
                with contextlib.suppress(OSError), \
                        open(os.path.join(self.repo.controldir(), "MERGE_HEAD"), "wb") as f:
                    f.write(b"".join(h + b"\n" for h in merge_heads))
            raise GitError(f"commit not recorded: {why}",
                           "nothing was changed; check `git log` and retry")
        c = self.repo.object_store[sha]  # type: ignore[index]
        assert isinstance(c, Commit)
        kind = "commit (merge)" if merge_heads else "commit (initial)" if head is None else "commit"
        lines = c.message.decode("utf-8", "replace").strip().splitlines()
        subject = " ".join(lines[0].split()) if lines else ""
        tz = c.commit_timezone
        line = (old + b" " + sha + b" " + c.committer + f" {c.commit_time} {'-' if tz < 0 else '+'}"
                f"{abs(tz) // 3600:02d}{abs(tz) % 3600 // 60:02d}\t{kind}: {subject}\n".encode())
        logs = [os.path.join(self.repo.controldir(), "logs", "HEAD")]
        if target != b"HEAD":
            logs.append(os.path.join(self.repo.commondir(), "logs", *target.decode().split("/")))
        log_all = _config_value(self.repo.get_config_stack(), "core", "logallrefupdates")
        for path in logs:
            if (log_all or "true").lower() in ("false", "no", "off", "0") and not os.path.exists(path):
                continue  # core.logAllRefUpdates=false: git appends only to existing logs
            try:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "ab") as f:
                    f.write(line)
            except OSError as exc:  # the commit is made; say what is missing
                import sys

                sys.stderr.write(f"warning: cannot write the reflog {path}: {exc.strerror}\n")

    def modified_tracked_files(self) -> list[str]:
        """Files git tracks whose work-tree content differs from the index (for -a),
        relative to the DVX root."""
        from dulwich.index import get_unstaged_changes

        index = self.repo.open_index()
        out = []
        for p in get_unstaged_changes(index, self.root):
            path = p.decode("utf-8", "surrogateescape")
            if self.prefix:
                if not path.startswith(self.prefix + "/"):
                    continue
                path = path[len(self.prefix) + 1:]
            out.append(path)
        return out

    def conflict_side(self, path: str, side: str) -> tuple[bool, bytes | None]:
        """For an unmerged path (relative to the DVX root): ``(True, content)`` of its
        ``ours`` (stage 2) or ``theirs`` (stage 3) version, content None if that side
        deleted it; ``(False, None)`` if the path is not unmerged."""
        from dulwich.index import ConflictedIndexEntry

        try:
            entry = self.repo.open_index()[self._full(path).encode("utf-8", "surrogateescape")]
        except KeyError:
            return False, None
        if not isinstance(entry, ConflictedIndexEntry):
            return False, None
        chosen = entry.this if side == "ours" else entry.other
        return True, None if chosen is None else self.read_blob(chosen.sha)

    def index_paths_under(self, paths: list[str]) -> dict[str, list[str]]:
        """For each path (relative to the DVX root): the files git's index holds at or
        below it, sorted (what `git ls-files PATH` prints). Paths git does not track
        are left out."""
        if not paths:
            return {}
        index = self.repo.open_index()
        wanted = {self._full(p).encode("utf-8", "surrogateescape"): p for p in paths}
        found: dict[str, list[str]] = {}
        cut = len(self.prefix) + 1 if self.prefix else 0
        for name in index:
            key = name
            while True:  # the path itself, then each parent directory
                p = wanted.get(key)
                if p is not None:
                    found.setdefault(p, []).append(name.decode("utf-8", "surrogateescape")[cut:])
                    break
                slash = key.rfind(b"/")
                if slash < 0:
                    break
                key = key[:slash]
        return {p: sorted(v) for p, v in found.items()}

    def has_conflicts(self) -> bool:
        from dulwich.index import ConflictedIndexEntry

        index = self.repo.open_index()
        return any(isinstance(v, ConflictedIndexEntry) for _, v in index.items())

    def hooks_dir(self) -> str:
        return os.path.join(self.repo.controldir(), "hooks")

    def head_branch(self) -> str | None:
        """The ref HEAD points at (``refs/heads/main``), or None when detached."""
        try:
            target = self.repo.refs.get_symrefs().get(b"HEAD")  # type: ignore[arg-type, call-overload, assignment, misc]
        except (KeyError, OSError):
            return None
        return target.decode("utf-8", "replace") if target else None

    def worktree_diff(self, commit: str | None, limit: int) -> tuple[bytes, bool]:
        """What ``git diff COMMIT`` shows for files git tracks (staged and unstaged,
        untracked files left out), as a unified diff; at most ``limit`` bytes.
        Returns ``(diff, truncated)``."""
        import difflib

        from dulwich.index import ConflictedIndexEntry, get_unstaged_changes
        from dulwich.object_store import iter_tree_contents

        store = self.repo.object_store
        head: dict[bytes, bytes] = {}
        if commit is not None:
            for entry in iter_tree_contents(store, self.commit_info(commit).tree):  # type: ignore[arg-type, call-overload, assignment, misc]
                if stat_mod.S_ISREG(entry.mode):
                    head[entry.path] = entry.sha
        index = self.repo.open_index()
        changed = {p for p in get_unstaged_changes(index, self.root)}
        for path, entry in index.items():  # type: ignore[arg-type, call-overload, assignment, misc]
            if isinstance(entry, ConflictedIndexEntry) or head.get(path) != entry.sha:
                changed.add(path)
        changed.update(p for p in head if p not in index)
        out: list[bytes] = []
        size = 0
        for path in sorted(changed):
            old = self.read_blob(head[path]) if path in head else None
            try:
                with open(os.path.join(self.root, os.fsdecode(path)), "rb") as f:
                    new: bytes | None = f.read()
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                new = None
            if old == new:
                continue
            name = path.decode("utf-8", "surrogateescape").encode("utf-8", "surrogateescape")
            part = [b"diff --git a/" + name + b" b/" + name + b"\n"]
            if (old is not None and b"\0" in old[:8000]) or (new is not None and b"\0" in new[:8000]):
                part.append(b"Binary files a/" + name + b" and b/" + name + b" differ\n")
            else:
                a = b"a/" + name if old is not None else b"/dev/null"
                b = b"b/" + name if new is not None else b"/dev/null"
                lines = difflib.diff_bytes(difflib.unified_diff, (old or b"").splitlines(True),
                                           (new or b"").splitlines(True), a, b, n=3)
                for line in lines:
                    part.append(line if line.endswith(b"\n") else line + b"\n\\ No newline at end of file\n")
            chunk = b"".join(part)
            if size + len(chunk) > limit:
                return b"".join(out), True
            out.append(chunk)
            size += len(chunk)
        return b"".join(out), False

    # -- commits off the branch (runs: protocols/runs.md §7) ------------------------------
    def refs_under(self, prefix: str) -> dict[str, str]:
        """Refs whose names start with ``prefix`` (e.g. ``refs/dvx/runs/``): name -> sha."""
        refs = self.repo.refs.as_dict(prefix.rstrip("/").encode())  # type: ignore[arg-type, call-overload, assignment, misc]
        return {prefix + k.decode("utf-8", "replace"): v.decode() for k, v in refs.items()}

    def ref_value(self, ref: str) -> str | None:
        """The sha a ref names (a symbolic ref followed), or None when it does not exist."""
        try:
            value = self.repo.refs[ref.encode()]  # type: ignore[index]
        except KeyError:
            return None
        return value.decode() if value else None

    def commit_on_ref(self, ref: str, *, base: str | None, subtree: str, files: dict[str, bytes],
                      parents: list[str], message: str, old: str | None, when: int | None = None) -> str:
        """Write a commit whose tree is ``base``'s tree (empty without one) with the
        directory ``subtree`` (relative to the DVX root) replaced by exactly ``files``
        (paths relative to it), and point ``ref`` at it if ``ref`` still names ``old``
        (None: the ref must not exist). HEAD, the branch, the index and the work tree
        are never touched. Identity by git's rules, else ``DVX <dvx@localhost>``."""
        sha = self.write_commit(base=base, subtree=subtree, files=files, parents=parents,
                                message=message, when=when)
        if not self.set_ref(ref, sha, old):
            raise GitError(f"{ref} was changed by another process meanwhile",
                           f"this run's commit is {sha}")
        return sha

    def write_commit(self, *, base: str | None, subtree: str, files: dict[str, bytes],
                     parents: list[str], message: str, when: int | None = None) -> str:
        """The commit of :meth:`commit_on_ref`, written to the object store and named by
        no ref. ``subtree`` "" replaces the whole tree at the DVX root."""
        from dulwich.objects import Blob, Commit, Tree

        store = self.repo.object_store
        nested: dict[str, Any] = {}
        for path, data in files.items():
            node = nested
            parts = path.split("/")
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = data

        def write_tree(node: dict[str, Any]) -> bytes:
            tree = Tree()
            for name, value in node.items():
                if isinstance(value, dict):
                    tree.add(name.encode(), stat_mod.S_IFDIR, write_tree(value))  # type: ignore[arg-type, call-overload, assignment, misc]
                else:
                    blob = Blob.from_string(value)
                    store.add_object(blob)
                    tree.add(name.encode(), 0o100644, blob.id)
            store.add_object(tree)
            return tree.id  # type: ignore[no-any-return]

        sub_id = write_tree(nested)

        def insert(tree_id: bytes | None, parts: list[str]) -> bytes:
            tree = Tree()
            child: bytes | None = None
            name = parts[0].encode()
            if tree_id is not None:
                for entry_name, mode, sha in self._tree_entries(tree_id):
                    tree.add(entry_name, mode, sha)  # type: ignore[arg-type, call-overload, assignment, misc]
                    if entry_name == name and stat_mod.S_ISDIR(mode):
                        child = sha
            tree.add(name, stat_mod.S_IFDIR, sub_id if len(parts) == 1 else insert(child, parts[1:]))  # type: ignore[arg-type, call-overload, assignment, misc]
            store.add_object(tree)
            return tree.id  # type: ignore[no-any-return]

        base_tree = self.commit_info(base).tree if base else None
        full = self._full(subtree)
        root_tree = insert(base_tree, full.split("/")) if full else sub_id
        config = self.repo.get_config_stack()
        idents = []
        for kind in ("author", "committer"):
            try:
                idents.append(git_identity(config, kind))
            except GitError:  # a run is never lost for want of an email address
                idents.append(b"DVX <dvx@localhost>")
        when = int(time.time()) if when is None else when
        commit = Commit()
        commit.tree = root_tree
        commit.parents = [p.encode() for p in parents]  # type: ignore[arg-type, call-overload, assignment, misc]
        commit.author, commit.committer = idents
        commit.author_time = commit.commit_time = when
        commit.author_timezone = commit.commit_timezone = time.localtime(when).tm_gmtoff
        commit.message = message.encode()
        store.add_object(commit)
        return commit.id.decode()  # type: ignore[no-any-return]

    # -- refs to and from a git remote (runs travel: protocols/runs.md §9) ----------------
    def config_value(self, section: str, name: str, sub: str | None = None) -> str | None:
        """A git config value (``section.sub.name``), or None."""
        config = self.repo.get_config_stack()
        key = (section.encode(),) if sub is None else (section.encode(), sub.encode())
        try:
            value = config.get(key, name.encode())  # type: ignore[arg-type]
        except KeyError:
            return None
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)

    def remote_location(self, name: str) -> str | None:
        """The URL of git remote ``name`` (``remote.NAME.url``), or None."""
        return self.config_value("remote", "url", name)

    def upstream_remote(self) -> str | None:
        """The git remote the current branch tracks (``branch.B.remote``), or None."""
        branch = self.head_branch()
        if not branch or not branch.startswith("refs/heads/"):
            return None
        return self.config_value("branch", "remote", branch[len("refs/heads/"):])

    def _client(self, location: str) -> tuple[Any, str]:
        from dulwich.client import get_transport_and_path

        try:
            config = self.repo.get_config_stack()
            return get_transport_and_path(location, config=config)  # type: ignore[no-any-return]
        except (ValueError, KeyError) as exc:
            raise GitError(f"cannot reach git remote {location}: {exc}", "check `git remote -v`") from None

    def _remote_call(self, location: str, what: str, fn: Any) -> Any:
        from dulwich.errors import GitProtocolError, HangupException, NotGitRepository

        try:
            return fn()
        except NotGitRepository:
            raise GitError(f"git remote {location} is not a git repository", "check `git remote -v`") from None
        except (GitProtocolError, HangupException, OSError) as exc:
            raise GitError(f"cannot {what} git remote {location}: {exc}",
                           "check the remote and your connection, then retry") from None

    def remote_refs(self, location: str, prefix: str) -> dict[str, str]:
        """The refs of a git remote whose names start with ``prefix``: name -> sha."""
        client, path = self._client(location)
        got = self._remote_call(location, "read the refs of",
                                lambda: client.get_refs(path.encode(), ref_prefix=[prefix.encode()]))
        refs = getattr(got, "refs", got)
        return {k.decode("utf-8", "replace"): v.decode() for k, v in refs.items()
                if v and k.startswith(prefix.encode())}

    def push_refs(self, location: str,
                  updates: dict[str, tuple[str | None, str | None]]) -> dict[str, str | None]:
        """Set refs on a git remote with dulwich's client (no hooks run here, so a
        pre-push hook may call it without recursing). ``updates``: ref -> (the value
        the remote must have now, None for absent; the new value, None to delete).
        A ref whose remote value differs is not touched. Returns ref -> None when
        set, else the reason (one line)."""
        from dulwich.objects import ZERO_SHA

        client, path = self._client(location)
        status: dict[str, str | None] = {}

        def update_refs(refs: dict[bytes, bytes]) -> dict[bytes, bytes]:
            out: dict[bytes, bytes] = {}
            for ref, (old, new) in updates.items():
                have = refs.get(ref.encode())
                have_s = have.decode() if have and have != ZERO_SHA else None
                if have_s != old:
                    status[ref] = ("changed on the remote meanwhile" if have_s != new else None)
                    continue
                if new is None and old is None:
                    continue
                out[ref.encode()] = new.encode() if new is not None else ZERO_SHA
                status[ref] = None
            return out

        def generate(have: Any, want: Any, *, ofs_delta: bool = False, progress: Any = None) -> Any:
            return self.repo.generate_pack_data(set(have), set(want), progress=progress, ofs_delta=ofs_delta)

        result = self._remote_call(location, "push to", lambda: client.send_pack(
            path.encode(), update_refs, generate_pack_data=generate))
        for ref, error in (getattr(result, "ref_status", None) or {}).items():
            if error is not None:
                status[ref.decode("utf-8", "replace")] = str(error)
        return status

    def fetch_objects(self, location: str, prefix: str) -> dict[str, str]:
        """Download from a git remote the commits (and their history) of its refs under
        ``prefix`` that this repository lacks; local refs are not touched. Returns the
        remote's refs under ``prefix``: name -> sha."""
        p = prefix.encode()
        client, path = self._client(location)
        store = self.repo.object_store

        def determine_wants(refs: dict[bytes, bytes], depth: int | None = None) -> list[bytes]:
            return sorted({sha for name, sha in refs.items()
                           if name.startswith(p) and sha and sha not in store})  # type: ignore[operator]

        got = self._remote_call(location, "fetch from", lambda: client.fetch(
            path, self.repo, determine_wants=determine_wants, ref_prefix=[p]))
        return {k.decode("utf-8", "replace"): v.decode() for k, v in (got.refs or {}).items()
                if v and k.startswith(p)}

    def has_commit(self, sha: str) -> bool:
        try:
            self._parents(sha.encode())
            return True
        except (GitError, KeyError):
            return False

    def is_ancestor(self, ancestor: str, descendant: str, limit: int = 100000) -> bool:
        """Whether ``ancestor`` is ``descendant`` or in its history (False when unknown here)."""
        target = ancestor.encode()
        todo = [descendant.encode()]
        seen: set[bytes] = set()
        while todo and len(seen) < limit:
            sha = todo.pop()
            if sha == target:
                return True
            if sha in seen:
                continue
            seen.add(sha)
            try:
                todo.extend(self._parents(sha))
            except (GitError, KeyError):
                continue
        return False

    def set_ref(self, ref: str, new: str | None, old: str | None) -> bool:
        """Compare-and-swap a local ref from ``old`` (None: must be absent) to ``new``
        (None: delete it). False when the ref held something else. While another
        process holds the ref's lock (``<ref>.lock``) this waits for it (up to ~5 s),
        then compares."""
        from dulwich.file import FileLocked

        refs: Any = self.repo.refs
        for attempt in range(100):
            try:
                if new is None:
                    return bool(refs.remove_if_equals(ref.encode(), old.encode() if old else None))
                if old is None:
                    return bool(refs.add_if_new(ref.encode(), new.encode()))
                return bool(refs.set_if_equals(ref.encode(), old.encode(), new.encode()))
            except FileLocked:
                time.sleep(0.005 * min(attempt + 1, 10))
            except OSError as exc:
                raise GitError(f"cannot update {ref}: {exc.strerror}", "check .git permissions") from None
        raise GitError(f"cannot update {ref}: {ref}.lock has been held by another process for seconds",
                       "if no DVX or git process is running, delete the .lock file in .git")


HOOK_HINT = "fix what the hook reports, then retry"
IDENTITY_HINT = ('run `git config --global user.email "you@example.com"` and '
                 '`git config --global user.name "Your Name"` to set your account\'s default identity '
                 '(omit --global to set it only in this repository)')


def _config_value(config: Any, section: str, name: str) -> str | None:
    try:
        value = config.get((section.encode(),), name.encode())
    except KeyError:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def git_identity(config: Any, kind: str) -> bytes:
    """``Name <email>`` for ``kind`` "author" or "committer", by git's rules (ident.c):
    GIT_<KIND>_NAME/EMAIL, then ``<kind>.name/email``, then ``user.name/email``, then
    $EMAIL; the name may come from the account's full name, but an email address is
    never guessed from a host name without a domain, and ``user.useConfigOnly`` turns
    guessing off. Otherwise refuse, with git's message and hint."""
    what = kind.capitalize()
    email = os.environ.get(f"GIT_{kind.upper()}_EMAIL") or _config_value(config, kind, "email") \
        or _config_value(config, "user", "email")
    config_only = (_config_value(config, "user", "useconfigonly") or "").lower() in ("true", "yes", "on", "1")
    if not email:
        if config_only:
            raise GitError(f"{what} identity unknown: no email was given and auto-detection is disabled",
                           IDENTITY_HINT)
        email = os.environ.get("EMAIL") or ""
    if not email:
        guessed, bogus = _default_email()
        if bogus:
            raise GitError(f"{what} identity unknown: unable to auto-detect email address "
                           f"(got '{guessed}')", IDENTITY_HINT)
        email = guessed
    name = os.environ.get(f"GIT_{kind.upper()}_NAME") or _config_value(config, kind, "name") \
        or _config_value(config, "user", "name")
    if not name:
        if config_only:
            raise GitError(f"{what} identity unknown: no name was given and auto-detection is disabled",
                           IDENTITY_HINT)
        name = _default_name()
    name = name.strip()
    email = email.strip().removeprefix("<").removesuffix(">")
    if not name:
        raise GitError(f"{what} identity unknown: empty ident name (for <{email}>) not allowed",
                       IDENTITY_HINT)
    return f"{name} <{email}>".encode()


def _default_name() -> str:
    """The account's full name (GECOS up to the first comma, ``&`` = the login name)."""
    try:
        import pwd

        pw = pwd.getpwuid(os.getuid())
    except (ImportError, KeyError):
        return ""
    gecos = pw.pw_gecos.split(",")[0]
    return gecos.replace("&", pw.pw_name[:1].upper() + pw.pw_name[1:])


def _default_email() -> tuple[str, bool]:
    """git's guess ``login@host.domain`` and whether it is bogus (no domain found)."""
    import socket

    try:
        import pwd

        user = pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        user = "unknown"
    try:
        host = socket.gethostname()
    except OSError:
        return f"{user}@(none)", True
    if "." not in host:
        try:
            canonical = socket.getaddrinfo(host, None, flags=socket.AI_CANONNAME)[0][3]
        except (OSError, IndexError):
            canonical = ""
        if "." not in canonical:
            return f"{user}@{host}.(none)", True
        host = canonical
    return f"{user}@{host}", False


def _env_date(name: str) -> tuple[int, int] | None:
    """GIT_*_DATE in git's internal ``@<unix> <+hhmm>`` or ``<unix> <+hhmm>`` form."""
    value = os.environ.get(name)
    if not value:
        return None
    parts = value.lstrip("@").split()
    try:
        ts = int(parts[0])
        tz = 0
        if len(parts) > 1:
            sign = -1 if parts[1].startswith("-") else 1
            digits = parts[1].lstrip("+-")
            tz = sign * (int(digits[:2]) * 3600 + int(digits[2:4]) * 60)
        return ts, tz
    except (ValueError, IndexError):
        raise GitError(f"{name}={value!r} is not a date DVX understands",
                       "use the '<unix seconds> <+hhmm>' form") from None


def _split_rev(spec: str) -> tuple[str, list[tuple[str, int]]]:
    """Split ``base~2^1`` suffixes off a revision (parse_commit resolves the base)."""
    i = len(spec)
    while i > 0 and (spec[i - 1].isdigit() or spec[i - 1] in "~^"):
        i -= 1
    # don't eat trailing digits of a hex sha or a name like v1
    j = i
    while j < len(spec) and spec[j].isdigit():
        j += 1
    base, rest = spec[:j], spec[j:]
    if not base:
        return spec, []
    ops: list[tuple[str, int]] = []
    k = 0
    while k < len(rest):
        op = rest[k]
        if op not in "~^":
            return spec, []
        k += 1
        m = k
        while m < len(rest) and rest[m].isdigit():
            m += 1
        ops.append((op, int(rest[k:m]) if m > k else 1))
        k = m
    return base, ops

