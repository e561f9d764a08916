"""The shared chunk cache under the user cache directory (``protocols/cache.md`` §1).

Objects read from a remote (chunks, and the manifests, chunk lists and trees that lead
to them) are kept here so a second read of the same bytes makes no request. The cache
is content-addressed: a file is named by the object's id and holds the object's bytes,
so any number of repositories and processes share it safely. Every read is verified
against the id (a damaged file is removed and counts as a miss); every write is a
temporary file renamed into place. Its size is capped (``DVX_CACHE_SIZE`` or ``[cache]
size`` in ``.dvx/config``), least recently used first out: a hit refreshes the file's
modification time, eviction removes the oldest files.

Only objects the local store lacks are cached (the caller, ``dvx.remote.reader``, asks
the store first): the cache never holds a second copy of data a repository already has.
A cache directory that cannot be written is read without caching, with one warning.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
import time
import warnings
import weakref
from typing import TYPE_CHECKING

from dvx.fsutil import random_token, write_all
from dvx.hashing import id_matches, is_hex_id
from dvx.pools import LazyPool
from dvx.settings import parse_size

if TYPE_CHECKING:
    from concurrent.futures import Future

LAYOUT_DIR = "chunks-v1"  # protocols/cache.md §1: bump the name if the layout changes
DEFAULT_SIZE = 10 << 30
TEMP_PREFIX = ".tmp-"
TEMP_MAX_AGE = 3600.0  # a temporary file older than this was left by a killed process


class CacheWarning(UserWarning):
    """The chunk cache cannot be used (reads go on without it)."""


def user_cache_dir() -> str:
    """DVX's directory under the user cache: ``DVX_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/dvx``, else ``~/.cache/dvx``."""
    explicit = os.environ.get("DVX_CACHE_DIR")
    if explicit:
        return os.path.abspath(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return os.path.join(xdg, "dvx")
    return os.path.join(os.path.expanduser("~"), ".cache", "dvx")


def configured_size(config_size: str | None = None) -> int:
    """The cap in bytes: ``DVX_CACHE_SIZE``, else the repository's ``[cache] size``,
    else 10 GiB. 0 turns the cache off."""
    env = os.environ.get("DVX_CACHE_SIZE")
    if env:
        return parse_size(env, "DVX_CACHE_SIZE")
    if config_size:
        return parse_size(config_size, ".dvx/config: [cache] size")
    return DEFAULT_SIZE


class ChunkCache:
    """Objects by id under ``<root>/chunks-v1/<aa>/<id hex>``; thread- and fork-safe."""

    def __init__(self, root: str | None = None, max_size: int | None = None) -> None:
        self.root = os.path.abspath(root) if root else user_cache_dir()
        self.dir = os.path.join(self.root, LAYOUT_DIR)
        self.max_size = configured_size() if max_size is None else max(0, max_size)
        self._lock = threading.Lock()
        self._usable: bool | None = None  # None: not tried yet
        self._estimate: int | None = None  # bytes in the cache (scanned, plus what we wrote)
        self._since_scan = 0
        self.hits = 0
        self.misses = 0
        # eviction scans the whole cache: done on a thread of its own, so the read that
        # triggered it (often a process's first) does not wait for it
        self._pool = LazyPool(1, "dvx-cache-evict")
        self._evicting: Future[None] | None = None
        self._evict_running = False
        self._evict_again = False  # a put found the cache due while an eviction ran
        _CACHES.add(self)

    @property
    def enabled(self) -> bool:
        return self.max_size > 0 and self._usable is not False

    def path_of(self, oid: bytes) -> str:
        h = oid.hex()
        return os.path.join(self.dir, h[:2], h)

    # -- reading ----------------------------------------------------------------------
    def get(self, oid: bytes, kind: int) -> bytes | None:
        """The object's bytes, verified against ``oid``; None when absent (or damaged:
        the damaged file is removed)."""
        if self.max_size <= 0:
            return None
        path = self.path_of(oid)
        try:
            data = _read_regular(path)
        except OSError:
            data = None
        if data is None:
            with self._lock:
                self.misses += 1
            return None
        if not id_matches(kind, data, oid):
            with contextlib.suppress(OSError):
                os.unlink(path)
            with self._lock:
                self.misses += 1
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # least recently used goes first
        with self._lock:
            self.hits += 1
        return data

    def has(self, oid: bytes) -> bool:
        return self.max_size > 0 and os.path.exists(self.path_of(oid))

    # -- writing ----------------------------------------------------------------------
    def put(self, oid: bytes, data: bytes | memoryview) -> bool:
        """Keep verified bytes (the caller checked them against ``oid``). Best effort:
        False when not cached (cache off, not writable: warned once)."""
        if not self.enabled or len(data) > self.max_size:
            return False
        path = self.path_of(oid)
        with contextlib.suppress(OSError):
            if stat.S_ISREG(os.lstat(path).st_mode):
                return True
        tmp = os.path.join(os.path.dirname(path), f"{TEMP_PREFIX}{random_token(8)}")
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                write_all(fd, data)
            finally:
                os.close(fd)
            os.replace(tmp, path)  # atomic: readers see the whole file or none
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            self._unusable(exc)
            return False
        with self._lock:
            self._usable = True
            if self._estimate is not None:
                self._estimate += len(data)
            self._since_scan += len(data)
            due = (self._estimate is None or self._estimate > self.max_size
                   or self._since_scan > self.max_size // 4)
        if due:
            with self._lock:
                self._evict_again = True
                if not self._evict_running:
                    self._evict_running = True
                    self._evicting = self._pool.submit(self._evict_loop)
        return True

    def _evict_loop(self) -> None:
        """Evict until no put asked for it while the last eviction ran (a scan that
        started before a write does not see it)."""
        while True:
            with self._lock:
                if not self._evict_again:
                    self._evict_running = False
                    return
                self._evict_again = False
            try:
                self.evict()
            except Exception:  # noqa: BLE001 - a cache: the next put tries again
                with self._lock:
                    self._evict_running = False
                return

    def flush(self) -> None:
        """Wait for an eviction in progress (tests; a process that wants it done)."""
        with self._lock:
            pending = self._evicting
        if pending is not None:
            pending.result()

    def _unusable(self, exc: OSError) -> None:
        with self._lock:
            self._usable = False
        with _WARNED_LOCK:
            first = self.root not in _WARNED
            _WARNED.add(self.root)
        if first:
            warnings.warn(f"the chunk cache {self.root} cannot be written ({exc.strerror or exc}); "
                          "reading without it (set DVX_CACHE_DIR to a writable directory)",
                          CacheWarning, stacklevel=4)

    # -- size --------------------------------------------------------------------------
    def entries(self) -> list[tuple[float, int, str]]:
        """``(mtime, size, path)`` of every cached object; removes temporary files
        left by killed writers."""
        out = []
        now = time.time()
        try:
            subdirs = [d for d in os.scandir(self.dir) if len(d.name) == 2 and d.is_dir()]
        except OSError:
            return []
        for sub in subdirs:
            try:
                files = list(os.scandir(sub.path))
            except OSError:
                continue
            for f in files:
                try:
                    st = f.stat()
                except OSError:
                    continue
                if f.name.startswith(TEMP_PREFIX):
                    if now - st.st_mtime > TEMP_MAX_AGE:
                        with contextlib.suppress(OSError):
                            os.unlink(f.path)
                    continue
                if is_hex_id(f.name):
                    out.append((st.st_mtime, st.st_size, f.path))
        return out

    def size(self) -> int:
        return sum(s for _m, s, _p in self.entries())

    def evict(self) -> int:
        """Remove least recently used objects until the cache is under 90% of its
        cap (so eviction does not run on every write). Returns bytes removed."""
        entries = self.entries()
        total = sum(s for _m, s, _p in entries)
        removed = 0
        if total > self.max_size:
            target = self.max_size * 9 // 10
            for _mtime, size, path in sorted(entries):
                if total - removed <= target:
                    break
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass  # another process evicted it
                except OSError:
                    continue
                removed += size
        with self._lock:
            self._estimate = total - removed
            self._since_scan = 0
        return removed

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._evicting = None  # the parent's thread is not here (the pool renews itself)
        self._evict_running = False


def _read_regular(path: str) -> bytes | None:
    """The bytes of ``path`` if it is a regular file (not followed if a link, not
    waited on if a FIFO: anyone who can write the cache directory could put one there);
    None otherwise."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(fd, "rb") as f:
            fd = -1
            return f.read()
    finally:
        if fd >= 0:
            os.close(fd)


_CACHES: weakref.WeakSet[ChunkCache] = weakref.WeakSet()
_WARNED: set[str] = set()  # cache roots found unwritable: warned once per process
_WARNED_LOCK = threading.Lock()


def _caches_after_fork() -> None:
    global _WARNED_LOCK
    _WARNED_LOCK = threading.Lock()
    for cache in list(_CACHES):
        cache._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_caches_after_fork)
