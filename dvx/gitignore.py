"""Keeping ``.gitignore`` right: a tracked path is ignored by git, its pointer is not.

Each tracked path gets an anchored entry (``/name``) in the ``.gitignore`` of its parent
directory, escaped per gitignore rules. Entries are only ever added or removed one line
at a time; everything else in the file is left as it was.
"""

from __future__ import annotations

import os

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


def ensure_ignored(target_abs: str) -> bool:
    """Add the entry for a tracked path; returns whether the file changed."""
    path, line = _split(target_abs)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        text = ""
    lines = text.splitlines()
    if line in lines:
        return False
    if text and not text.endswith("\n"):
        text += "\n"
    atomic_write_bytes(path, (text + line + "\n").encode("utf-8"), fsync=False)
    return True


def remove_ignored(target_abs: str) -> None:
    path, line = _split(target_abs)
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return
    if line in lines:
        kept = [x for x in lines if x != line]
        atomic_write_bytes(path, ("\n".join(kept) + "\n" if kept else "").encode(), fsync=False)
