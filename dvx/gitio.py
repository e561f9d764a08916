"""The one module that talks to git (through dulwich).

Everything DVX needs from git goes through here, so the rest of the code never touches
dulwich objects, and what DVX writes stays acceptable to the git CLI. Tree lookups are
cached by tree id (unchanged subtrees are shared between commits), which is what keeps
``dvx log`` and ``dvx gc`` fast on long histories.
"""

from __future__ import annotations

import os
import stat as stat_mod
import time
from collections.abc import Iterator
from dataclasses import dataclass

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


def ensure_repo(root: str) -> bool:
    """Create a git repository at ``root`` unless one contains it. Returns created."""
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

    # -- revisions ---------------------------------------------------------------
    def head(self) -> str | None:
        """The commit HEAD points at, or None in a repository with no commits."""
        try:
            return self.repo.head().decode()
        except KeyError:
            return None

    def resolve(self, rev: str) -> str:
        """A commit sha for any revision spelling: HEAD~2, branch, tag, short sha, X^."""
        from dulwich.objects import Commit

        spec = rev.strip()
        if not spec:
            raise GitError("empty revision", "name a branch, tag or commit")
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
        for op, n in ops:
            for _ in range(n if op == "~" else 1):
                parents = commit.parents
                index = 0 if op == "~" else n - 1
                if index >= len(parents):
                    raise GitError(f"unknown revision {rev!r}: the history is not that deep",
                                   "check `git log --oneline`")
                obj = self._object(parents[index])
                if not isinstance(obj, Commit):
                    raise GitError(f"git object {parents[index].decode()} is not a commit", "run `git fsck`")
                commit = obj
        return commit.id.decode()

    def _object(self, sha: bytes):  # type: ignore[no-untyped-def]
        try:
            return self.repo.object_store[sha]  # type: ignore[index]
        except KeyError:
            raise GitError(f"git object {sha.decode()} is missing",
                           "run `git fsck`; the clone may be shallow or damaged") from None
        except Exception as exc:
            raise GitError(f"git object {sha.decode()} cannot be read: {exc}", "run `git fsck`") from None

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

    def reachable_commits(self) -> list[str]:
        heads = sorted(set(self.ref_commits().values()))
        if not heads:
            return []
        walker = self.repo.get_walker(include=[h.encode() for h in heads])  # type: ignore[misc]
        return [e.commit.id.decode() for e in walker]

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
    def stage(self, paths: list[str]) -> None:
        """Stage work-tree paths (relative to the DVX root); removed files are unstaged."""
        if not paths:
            return
        wt = self.repo.get_worktree()
        present = [self._full(p) for p in paths if os.path.lexists(os.path.join(self.root, self._full(p)))]
        gone = [self._full(p) for p in paths if not os.path.lexists(os.path.join(self.root, self._full(p)))]
        try:
            if present:
                wt.stage(present)
            if gone:
                index = self.repo.open_index()
                changed = False
                for p in gone:
                    if p.encode() in index:
                        del index[p.encode()]
                        changed = True
                if changed:
                    index.write()
        except OSError as exc:
            raise GitError(f"cannot update the git index: {exc.strerror}", "check .git permissions") from None

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

    def index_tree(self) -> bytes:
        index = self.repo.open_index()
        return index.commit(self.repo.object_store)  # type: ignore[no-any-return]

    def commit(self, message: str) -> str:
        """Commit the index to HEAD's branch (or detached HEAD). Author and committer
        come from GIT_AUTHOR_* / GIT_COMMITTER_* or git config, as git does."""
        from dulwich.errors import CommitError, HookError
        from dulwich.repo import InvalidUserIdentity

        if self.has_conflicts():
            raise GitError("the index has unmerged paths", "resolve the conflicts and stage them first")
        tree = self.index_tree()
        head = self.head()
        if head is not None and self.commit_info(head).tree == tree:
            raise GitError("nothing to commit: the index matches HEAD", "change or add something first")
        ts = _env_date("GIT_AUTHOR_DATE")
        cts = _env_date("GIT_COMMITTER_DATE")
        try:
            sha = self.repo.get_worktree().commit(
                message=message.encode(), tree=tree,  # type: ignore[arg-type]
                author_timestamp=ts[0] if ts else None, author_timezone=ts[1] if ts else None,
                commit_timestamp=cts[0] if cts else None, commit_timezone=cts[1] if cts else None,
            )
        except InvalidUserIdentity as exc:
            raise GitError(f"git does not know who you are: {exc}",
                           "set user.name and user.email with `git config`") from None
        except (CommitError, HookError) as exc:
            raise GitError(f"commit refused by a hook: {exc}",
                           "fix what the hook reports, then retry") from None
        return sha.decode()

    def hooks_dir(self) -> str:
        return os.path.join(self.repo.controldir(), "hooks")


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
