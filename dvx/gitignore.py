"""Keeping ``.gitignore`` right: a tracked path is ignored by git, its pointer is not.

Each tracked path gets an anchored entry (``/name``) in the ``.gitignore`` of its parent
directory, escaped per gitignore rules. Entries are only ever added or removed one line
at a time; everything else in the file is left as it was.
"""

from __future__ import annotations

import errno
import os
import stat

from dvx.errors import DvxError
from dvx.fsutil import atomic_write_bytes

_SPECIAL = set("*?[]\\!#")


def ignore_line(name: str) -> str:
    escaped = "".join("\\" + c if c in _SPECIAL else c for c in name)
    if escaped.endswith(" "):
        escaped = escaped[:-1] + "\\ "
    return "/" + escaped


def _split(target_abs: str) -> tuple[str, str]:
    parent, name = os.path.split(target_abs.rstrip(os.sep))
    return os.path.join(parent, ".gitignore"), ignore_line(name)


MAX_GITIGNORE = 16 << 20


def _read(path: str) -> bytes:
    """A ``.gitignore``'s bytes (empty if absent). It comes from git, so possibly from
    an attacker: a symlink (to a secret DVX would then copy into a commit, or to
    ``/dev/zero``) or anything but a regular file is refused, never followed."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return b""
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DvxError(f"{path} is a symbolic link; DVX does not follow it",
                           "replace it with a regular .gitignore file") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise DvxError(f"{path} is not a regular file", "replace it with a regular .gitignore file")
        if st.st_size > MAX_GITIGNORE:
            raise DvxError(f"{path} is {st.st_size} bytes, too large for a .gitignore",
                           "check what that file is")
        chunks = []
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks)
    finally:
        os.close(fd)


def check_writable(target_abs: str) -> None:
    """Raise the error ``ensure_ignored`` would raise, without changing anything."""
    _read(_split(target_abs)[0])


def ensure_ignored(target_abs: str) -> bool:
    """Add the entry for a tracked path; returns whether the file changed."""
    path, line = _split(target_abs)
    raw = _read(path)
    entry = line.encode("utf-8")
    if entry in raw.splitlines():
        return False
    if raw and not raw.endswith(b"\n"):
        raw += b"\n"
    atomic_write_bytes(path, raw + entry + b"\n", fsync=False)
    return True


def remove_ignored(target_abs: str) -> None:
    path, line = _split(target_abs)
    lines = _read(path).splitlines()
    entry = line.encode("utf-8")
    if entry in lines:
        kept = [x for x in lines if x != entry]
        atomic_write_bytes(path, b"\n".join(kept) + b"\n" if kept else b"", fsync=False)
