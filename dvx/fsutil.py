"""Small filesystem helpers with the crash-safety rules of ``protocols/format.md`` §7."""

from __future__ import annotations

import contextlib
import errno
import os

from dvx.errors import StoreError


def random_token(nbytes: int) -> str:
    """Hex for temporary names (``secrets`` would load OpenSSL: ~5 ms per command)."""
    return os.urandom(nbytes).hex()


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """``os.write`` until every byte is written (it may write fewer than asked)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_TMP_BASE_MAX = 200  # bytes of the original name kept in a temporary name


def tmp_name(path: str) -> str:
    """A temporary name beside ``path`` that fits NAME_MAX (255 bytes) whatever the
    length of ``path``'s own name: long names are shortened in the temporary name."""
    d, base = os.path.split(path)
    raw = os.fsencode(base)
    if len(raw) > _TMP_BASE_MAX:
        base = os.fsdecode(raw[:_TMP_BASE_MAX])
    return os.path.join(d, f".{base}.{random_token(6)}.tmp")


def atomic_write_bytes(path: str, data: bytes, *, fsync: bool = True, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so readers see the old or the new file, never a mix."""
    tmp = tmp_name(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            write_all(fd, data)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise os_error(exc, f"write {path}") from None
    if fsync:
        fsync_dir(os.path.dirname(path) or ".")


def write_cache_file(path: str, data: bytes) -> bool:
    """Best-effort write of a cache file (``.dvx/state/...``): creates its directory,
    replaces it atomically, without fsync. A cache that cannot be written (disk full,
    read-only file system, permissions) only makes a later command slower, so a failure
    is silent; the result says whether it was written."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write_bytes(path, data, fsync=False)
    except (OSError, StoreError):
        return False
    return True


def os_error(exc: OSError, action: str) -> StoreError:
    """Turn an OSError into a one-line StoreError with a hint."""
    if exc.errno == errno.ENOSPC:
        return StoreError(f"cannot {action}: no space left on device",
                          "free some disk space and re-run; nothing was lost")
    if exc.errno == errno.EDQUOT:
        return StoreError(f"cannot {action}: disk quota exceeded", "free some space and re-run")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return StoreError(f"cannot {action}: permission denied", "check file permissions")
    if exc.errno == errno.EROFS:
        return StoreError(f"cannot {action}: read-only file system", "remount it read-write")
    return StoreError(f"cannot {action}: {exc.strerror or exc}",
                      "check the path named above (does it exist, is it the right kind of file?), then re-run")
