"""Local advisory locks for the store (``.dvx/store/lock``, fcntl.flock).

Commands that write or read the store hold a shared lock; ``gc`` holds an exclusive
one, so it can never delete an object that a running ``add`` relies on. This is local
only: remotes never need a lock (see remote.md).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from dvx.errors import StoreError

try:
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX
    fcntl = None  # type: ignore[assignment]


@contextlib.contextmanager
def store_lock(store_path: str, exclusive: bool = False, wait: bool = True) -> Iterator[None]:
    if fcntl is None:
        yield
        return
    path = os.path.join(store_path, "lock")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield  # read-only store: nothing can be deleted underneath us by this user
        return
    try:
        flags = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        if not wait:
            flags |= fcntl.LOCK_NB
        try:
            fcntl.flock(fd, flags)
        except BlockingIOError:
            raise StoreError("another dvx command is using the store",
                             "wait for it to finish and retry") from None
        yield
    finally:
        os.close(fd)
