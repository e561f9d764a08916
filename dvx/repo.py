"""A DVX repository: a git work tree with a ``.dvx/`` directory.

Finds the repository root, loads its config (refusing unknown format versions), and
maps user paths to repository-relative paths, refusing anything outside the tree.
"""

from __future__ import annotations

import contextlib
import os
import stat
from functools import cached_property
from typing import TYPE_CHECKING

from dvx.errors import DvxError, NotARepositoryError, PathOutsideRepoError
from dvx.fsutil import atomic_write_bytes, os_error
from dvx.settings import ChunkerConfig, RepoConfig, load_config, write_initial_config
from dvx.store.local import Store

if TYPE_CHECKING:
    from dvx.chunking import Chunker

DVX_DIR = ".dvx"
DVX_GITIGNORE = "/store/\n/tmp/\n/state/\n/config.local\n"


def _refuse_links(dvx_dir: str) -> None:
    """``.dvx`` and its directories must be this repository's own: a symbolic link (which
    a commit can carry) could make ``gc`` delete another project's objects or make
    checkout write outside the work tree."""
    for sub in ("", "store", "state", "tmp"):
        path = os.path.join(dvx_dir, sub) if sub else dvx_dir
        if os.path.islink(path):
            rel = os.path.join(DVX_DIR, sub) if sub else DVX_DIR
            raise NotARepositoryError(
                f"{rel} is a symbolic link (to {os.readlink(path)}); DVX uses only a store it owns",
                "replace the link with a directory (to share data between repositories, push to "
                "and pull from a common remote; to use another disk, mount it there)")




class Repository:
    """Paths, config and store of one DVX repository.

    A context manager: ``with Repository.find() as repo:`` saves the repository's
    caches and closes the store's open pack files at the end (:meth:`close`).
    """

    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(root)
        self.dvx_dir = os.path.join(self.root, DVX_DIR)
        if not os.path.isdir(self.dvx_dir):
            raise NotARepositoryError(f"{self.root} is not a DVX repository", "run `dvx init`")
        _refuse_links(self.dvx_dir)
        from dvx.gitio import ensure_info_exclude

        # the store stays ignored on branches whose commits lack .dvx/.gitignore
        with contextlib.suppress(OSError):  # a read-only .git must not stop a read
            ensure_info_exclude(self.root)
        self.state_dir = os.path.join(self.dvx_dir, "state")
        self.config: RepoConfig = load_config(self.dvx_dir)
        self.store = Store(os.path.join(self.dvx_dir, "store"), fsync=self.config.core.fsync,
                           direct_io=self.config.core.direct_io)
        if not (os.path.isdir(self.store.tmp_dir) and os.path.isdir(self.store.packs_dir)):
            # a fresh clone: .dvx/store is not in git
            try:
                Store.create(self.store.path)
                os.makedirs(self.state_dir, exist_ok=True)
            except OSError as exc:
                raise os_error(exc, f"create {self.store.path}") from None

    def close(self) -> None:
        """Close the pack files the store opened (caches are written as they change).
        The object stays usable: files are reopened on demand."""
        self.store.close()

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- discovery --------------------------------------------------------------
    @classmethod
    def find(cls, start: str | None = None) -> Repository:
        from dvx.gitio import refuse_git_dir

        path = os.path.realpath(start or os.getcwd())
        refuse_git_dir(path)  # never from inside .git/ or in a bare repository
        cur = path
        while True:
            if os.path.isdir(os.path.join(cur, DVX_DIR)):
                return cls(cur)
            parent = os.path.dirname(cur)
            if parent == cur:
                raise NotARepositoryError(
                    f"not a DVX repository (or any parent up to /): {path}", "run `dvx init` first"
                )
            cur = parent

    @classmethod
    def init(cls, root: str, chunker: ChunkerConfig | None = None) -> tuple[Repository, bool]:
        """Create ``.dvx/`` (idempotent). Returns ``(repo, created)``."""
        root = os.path.realpath(root)
        dvx_dir = os.path.join(root, DVX_DIR)
        if os.path.lexists(dvx_dir):
            _refuse_links(dvx_dir)
        created = not os.path.exists(os.path.join(dvx_dir, "config"))
        try:
            os.makedirs(dvx_dir, exist_ok=True)
            if created:
                write_initial_config(dvx_dir, chunker or ChunkerConfig())
            gi = os.path.join(dvx_dir, ".gitignore")
            if not os.path.exists(gi):
                atomic_write_bytes(gi, DVX_GITIGNORE.encode())
            Store.create(os.path.join(dvx_dir, "store"))
            os.makedirs(os.path.join(dvx_dir, "state"), exist_ok=True)
        except OSError as exc:
            raise os_error(exc, f"create {dvx_dir}") from None
        return cls(root), created

    # -- helpers ----------------------------------------------------------------
    @cached_property
    def chunker(self) -> Chunker:
        from dvx.chunking import Chunker

        c = self.config.chunker
        return Chunker(c.min_size, c.avg_size, c.max_size, c.normalization, c.seed)

    def abspath(self, rel: str) -> str:
        return os.path.join(self.root, rel) if rel else self.root

    def data_path(self, target: str, where: str | None = None) -> str:
        """Absolute path of a tracked path, checked before anything reads, writes or
        deletes there: the name must be safe (``protocols/format.md`` §6) and every
        existing parent directory must be a real directory, never a symbolic link."""
        from dvx.pointer import POINTER_SUFFIX, check_target

        where = where or target + POINTER_SUFFIX
        check_target(target, where)
        path = self.root
        for part in target.split("/")[:-1]:
            path = os.path.join(path, part)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                break
            except OSError as exc:
                raise os_error(exc, f"inspect {path}") from None
            if not stat.S_ISDIR(st.st_mode):
                what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a directory"
                raise PathOutsideRepoError(
                    f"{where} is refused: {os.path.relpath(path, self.root)} is {what}",
                    "DVX never writes through a link or replaces a file above a tracked path; "
                    "move it away first")
        return os.path.join(self.root, *target.split("/"))

    def relpath(self, user_path: str, *, must_exist: bool = False) -> str:
        """Repository-relative POSIX path for a user path; refuses escapes.

        The path's parent directories are resolved (symlinks included) and must stay
        inside the repository; the last component itself is not followed.
        """
        absolute = os.path.abspath(user_path)
        parent, name = os.path.split(absolute.rstrip(os.sep) or os.sep)
        real_parent = os.path.realpath(parent)
        full = os.path.join(real_parent, name) if name else real_parent
        if full != self.root and not full.startswith(self.root + os.sep):
            raise PathOutsideRepoError(
                f"{user_path} is outside the repository {self.root}",
                "move the data into the repository first",
            )
        rel = os.path.relpath(full, self.root)
        if rel == ".":
            rel = ""
        parts = rel.split(os.sep) if rel else []
        if parts and parts[0] in (DVX_DIR, ".git"):
            raise PathOutsideRepoError(f"{user_path} is inside {parts[0]}/, which DVX manages",
                                       "pick a path in the work tree")
        from dvx.gitio import nested_repo_above

        nested = nested_repo_above(self.root, "/".join(parts))
        if nested is not None:
            raise PathOutsideRepoError(
                f"{user_path} is in the git repository {nested} (a submodule or nested repository), "
                "not in this one",
                f"run dvx inside that repository (`cd {nested}`)")
        if must_exist and not os.path.lexists(full):
            raise DvxError(f"{user_path} does not exist", "check the path")
        return "/".join(parts)
