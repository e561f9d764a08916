"""Repositories named by a git URL: cloned once into the user cache, then only fetched
(``protocols/read.md`` §3).

``dvx.open(path, repo="https://host/team/project.git")`` and ``dvx get URL PATH``
read a repository that is not on this machine. Its git history (pointers only: the
data is in its DVX remote) is cloned once into ``<cache>/repos/<key>/repo``, where
``<cache>`` is :func:`user_cache_dir` and ``<key>`` the first 32 hex digits of the
BLAKE3 of the normalized URL; every later process only fetches. An exclusive
``fcntl`` lock on ``<cache>/repos/<key>/lock`` serializes clone and fetch between
processes. The clone has no checkout but ``.dvx/`` (its config names the remotes);
its branches and tags mirror the source's (``+refs/heads/*:refs/heads/*``), so a
branch name means what it means upstream, and ``HEAD`` is the source's default
branch.

When the cache directory cannot be written, the clone goes to a temporary directory
of this process (removed at exit) with one warning.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import warnings

from dvx.errors import GitError, NotARepositoryError

_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9._-]+:")
_MIRROR = ("+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")
_GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "LC_ALL": "C"}

LOCK_WAIT_S = 600.0  # how long to wait for another process's clone or fetch of one URL
_warned = False
_temp_root: str | None = None
_lock = threading.Lock()


def user_cache_dir() -> str:
    """Where DVX keeps caches shared by all repositories of this user:
    ``$DVX_CACHE_DIR``, else ``$XDG_CACHE_HOME/dvx``, else ``~/.cache/dvx``."""
    explicit = os.environ.get("DVX_CACHE_DIR")
    if explicit:
        return os.path.abspath(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return os.path.join(xdg, "dvx")
    return os.path.join(os.path.expanduser("~"), ".cache", "dvx")


def is_git_url(repo: str) -> bool:
    """Whether ``repo`` names a repository to clone rather than a local work tree: a URL
    (``scheme://...``), scp-like ``user@host:path``, or a local bare git repository."""
    if "://" in repo or _SCP_LIKE.match(repo):
        return True
    return _is_bare_git_dir(repo)


def _is_bare_git_dir(path: str) -> bool:
    return (os.path.isfile(os.path.join(path, "HEAD")) and os.path.isdir(os.path.join(path, "objects"))
            and os.path.isdir(os.path.join(path, "refs")) and not os.path.isdir(os.path.join(path, ".dvx")))


def normalize_url(url: str) -> str:
    """The spelling that names a clone: a local path made absolute and real, ``file://``
    spelled as a path, a trailing slash dropped."""
    if url.startswith("file://"):
        url = url[len("file://"):]
    if "://" not in url and not _SCP_LIKE.match(url):
        return os.path.realpath(url)
    return url.rstrip("/")


def clone_key(url: str) -> str:
    from blake3 import blake3

    return blake3(normalize_url(url).encode("utf-8", "surrogateescape")).hexdigest()[:32]


def _git(args: list[str], cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, **_GIT_ENV)
    return subprocess.run(["git", *args], cwd=cwd, env=env, text=True, capture_output=True)


def _fail(url: str, what: str, proc: subprocess.CompletedProcess[str]) -> GitError:
    lines = [ln for ln in (proc.stderr or "").strip().splitlines() if ln.strip()]
    why = lines[-1].removeprefix("fatal: ") if lines else f"git exited with {proc.returncode}"
    return GitError(f"cannot {what} {url}: {why}", "check the URL and that git can reach it "
                    "(`git ls-remote URL`)")


def _fetch(url: str, root: str) -> None:
    proc = _git(["fetch", "--quiet", "--prune", "--force", "--update-head-ok", "origin", *_MIRROR], cwd=root)
    if proc.returncode != 0:
        raise _fail(url, "fetch", proc)
    if _git(["rev-parse", "--quiet", "--verify", "HEAD^{commit}"], cwd=root).returncode != 0:
        _choose_head(url, root)
    _checkout_dvx(url, root)


def _choose_head(url: str, root: str) -> None:
    """HEAD names no commit (the source's HEAD names a branch it lacks): take
    ``main``, else ``master``, else the first branch."""
    heads = _git(["for-each-ref", "--format=%(refname)", "refs/heads/"], cwd=root).stdout.split()
    if not heads:
        raise NotARepositoryError(f"{url} has no branches", "push a branch to it first")
    pick = next((h for h in ("refs/heads/main", "refs/heads/master") if h in heads), heads[0])
    _git(["symbolic-ref", "HEAD", pick], cwd=root)


def _checkout_dvx(url: str, root: str) -> None:
    """``.dvx/`` of the source's HEAD (its config names the remotes), nothing else."""
    proc = _git(["checkout", "--quiet", "--force", "HEAD", "--", ".dvx"], cwd=root)
    if proc.returncode != 0:
        raise NotARepositoryError(f"{url} is not a DVX repository (its HEAD has no .dvx/ directory)",
                                  "check the URL; `dvx init` makes a git repository a DVX repository")


def _clone(url: str, dest: str) -> None:
    parent = os.path.dirname(dest)
    tmp = tempfile.mkdtemp(prefix="clone-", dir=parent)
    try:
        proc = _git(["clone", "--quiet", "--no-checkout", "--", url, tmp])
        if proc.returncode != 0:
            raise _fail(url, "clone", proc)
        _fetch(url, tmp)
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def cached_clone(url: str, *, update: bool = True) -> str:
    """The work tree of the cached clone of ``url`` (cloned now if absent; fetched
    when ``update``). Safe to call from many processes at once."""
    key = clone_key(url)
    base = os.path.join(user_cache_dir(), "repos", key)
    try:
        os.makedirs(base, exist_ok=True)
        fd = os.open(os.path.join(base, "lock"), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        return _temporary_clone(url, key, exc)
    try:
        _wait_for_lock(fd, url, os.path.join(base, "lock"))
        dest = os.path.join(base, "repo")
        if _is_clone(dest):
            if update:
                _fetch(url, dest)
        else:
            _discard(dest)  # a broken leftover: a file, a link, a directory git does not take
            _clone(url, dest)
            with open(os.path.join(base, "url"), "w", encoding="utf-8", errors="surrogateescape") as f:
                f.write(normalize_url(url) + "\n")
        return dest
    except PermissionError as exc:
        return _temporary_clone(url, key, exc)
    finally:
        os.close(fd)


def _wait_for_lock(fd: int, url: str, path: str) -> None:
    """The exclusive lock of one clone. Another process holding it is cloning or
    fetching: say so once, instead of waiting in silence, and give up after
    ``LOCK_WAIT_S`` (a holder stuck that long is not coming back)."""
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    warnings.warn(f"dvx: waiting for another process that is cloning or fetching {url} (it holds {path})",
                  RuntimeWarning, stacklevel=4)
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        time.sleep(0.05)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise GitError(f"another process has held the clone of {url} for over {LOCK_WAIT_S:.0f} s",
                               f"if it is stuck, end it (`fuser {path}` names it) and re-run") from None


def _is_clone(dest: str) -> bool:
    """Whether ``dest`` is a real directory holding its own git repository (not a file,
    a symbolic link, an empty ``.git``, or a directory inside some other repository)."""
    if os.path.islink(dest) or not os.path.isdir(os.path.join(dest, ".git")):
        return False
    proc = _git(["rev-parse", "--absolute-git-dir"], cwd=dest)
    return proc.returncode == 0 and os.path.realpath(proc.stdout.strip()) == os.path.realpath(
        os.path.join(dest, ".git"))


def _discard(path: str) -> None:
    if os.path.islink(path) or (os.path.lexists(path) and not os.path.isdir(path)):
        os.unlink(path)
    else:
        shutil.rmtree(path, ignore_errors=True)


def _temporary_clone(url: str, key: str, exc: OSError) -> str:
    """A clone for this process only, when the cache cannot be written."""
    global _warned, _temp_root
    with _lock:
        if not _warned:
            _warned = True
            warnings.warn(f"dvx: cannot write the cache directory {user_cache_dir()} "
                          f"({exc.strerror or exc}); reading without caching "
                          "(set DVX_CACHE_DIR to a writable directory)", RuntimeWarning, stacklevel=4)
        if _temp_root is None:
            _temp_root = tempfile.mkdtemp(prefix="dvx-clones-")
            atexit.register(shutil.rmtree, _temp_root, True)
        dest = os.path.join(_temp_root, key)
        if os.path.isdir(dest):
            _fetch(url, dest)
        else:
            _clone(url, dest)
        return dest


__all__ = ["cached_clone", "clone_key", "is_git_url", "normalize_url", "user_cache_dir"]
