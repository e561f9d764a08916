"""Pointer files (``PATH.dvx``): the small text files that go into git.

Implements ``protocols/format.md`` §6. A pointer is a few ``key: value`` lines in a
fixed order, so diffs stay readable; its values are validated by the pydantic model
``dvx.models.PointerModel``. The tracked path is the pointer's own path without ``.dvx``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

from dvx.errors import FormatVersionError, PointerError
from dvx.hashing import is_hex_id
from dvx.validcache import NO_MEMO, ValidationMemo

POINTER_SUFFIX = ".dvx"
POINTER_VERSION = 1
MAX_POINTER_BYTES = 64 * 1024
HEADER_COMMENT = "# dvx pointer: the data lives in the DVX store; see protocols/format.md"

_FIELD_ORDER = ("dvx", "kind", "id", "size", "files", "b3", "exec")


@dataclass(frozen=True)
class Pointer:
    """Validated contents of a pointer file (see ``PointerModel`` for the rules)."""

    dvx: int
    kind: str  # "file" | "tree"
    id: str
    size: int
    files: int
    b3: str | None = None
    exec: bool = False

    @classmethod
    def create(cls, **values: Any) -> Pointer:
        """Build a pointer from values DVX computed.

        Values that plainly meet ``PointerModel``'s rules (the normal case) are taken
        as they are, so ``dvx add`` need not import pydantic (~60 ms); anything else
        goes through the model, which accepts it or names the problem. A test checks
        that the shortcut never accepts what the model refuses.
        """
        if plainly_valid(values):
            return cls(**values)
        from dvx.models import PointerModel

        return cls(**PointerModel.model_validate(values).model_dump())

    @property
    def oid(self) -> bytes:
        return bytes.fromhex(self.id)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def render(self) -> str:
        values = {
            "dvx": str(self.dvx),
            "kind": self.kind,
            "id": self.id,
            "size": str(self.size),
            "files": str(self.files),
            "b3": self.b3,
            "exec": "true" if self.exec else None,
        }
        lines = [HEADER_COMMENT]
        lines.extend(f"{k}: {values[k]}" for k in _FIELD_ORDER if values[k] is not None)
        return "\n".join(lines) + "\n"


_REQUIRED = frozenset(("dvx", "kind", "id", "size", "files"))
_ALLOWED = frozenset(_FIELD_ORDER)


def plainly_valid(values: dict[str, Any]) -> bool:
    """True only for values ``PointerModel`` accepts unchanged (exact types, no
    coercion). False means "ask the model", not "invalid"."""
    if not (_REQUIRED <= values.keys() <= _ALLOWED):
        return False
    kind, b3, exe = values["kind"], values.get("b3"), values.get("exec", False)
    if not (type(values["dvx"]) is int and type(values["size"]) is int and type(values["files"]) is int
            and type(exe) is bool and values["size"] >= 0 and values["files"] >= 0):
        return False
    if not (type(values["id"]) is str and is_hex_id(values["id"])):
        return False
    if kind == "file":
        return values["files"] == 1 and type(b3) is str and is_hex_id(b3)
    return kind == "tree" and b3 is None and not exe


def parse_pointer(text: str | bytes, where: str, memo: ValidationMemo = NO_MEMO) -> Pointer:
    """Parse pointer text; ``where`` names the file in error messages."""
    hint = f"restore it with `git checkout -- {where}` or re-add the data with `dvx add`"
    raw = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    if len(raw) > MAX_POINTER_BYTES:
        raise PointerError(f"{where} is {len(raw)} bytes, too large for a pointer", hint)
    known = memo.get("pointer", raw)
    if known is not None:
        return Pointer(*known)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PointerError(f"{where} is not a valid pointer file (not UTF-8 text)", hint) from None
    _refuse_conflict_markers(text, where)
    values: dict[str, object] = {}
    for lineno, line_raw in enumerate(text.splitlines(), 1):
        line = line_raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise PointerError(f"{where}:{lineno}: expected 'key: value', got {line_raw[:60]!r}", hint)
        if key.startswith("x-"):  # extension fields are ignorable by definition
            continue
        if key in values:
            raise PointerError(f"{where}:{lineno}: duplicate field {key!r}", hint)
        if key == "exec":
            if value not in ("true", "false"):
                raise PointerError(f"{where}:{lineno}: exec must be true or false", hint)
            values[key] = value == "true"
        elif key in ("dvx", "size", "files"):
            if not value.isdigit() or not value.isascii():
                raise PointerError(f"{where}:{lineno}: {key} must be a whole number", hint)
            values[key] = int(value)
        else:
            values[key] = value
    version = values.get("dvx")
    if version is None:
        raise PointerError(f"{where} is not a DVX pointer (no 'dvx:' version line)", hint)
    if version != POINTER_VERSION:
        raise FormatVersionError(
            f"{where} uses pointer format {version}; this DVX reads format {POINTER_VERSION}",
            "upgrade dvx (pip install -U dvx)",
        )
    from pydantic import ValidationError

    from dvx.models import PointerModel

    try:
        model = PointerModel.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        msg = first["msg"].removeprefix("Value error, ")
        raise PointerError(f"{where}: {'field ' + repr(loc) + ': ' if loc else ''}{msg}", hint) from None
    pointer = Pointer(**model.model_dump())
    memo.put("pointer", raw, tuple(model.model_dump().values()))
    return pointer


_CONFLICT_MARKERS = ("<<<<<<<", "=======", ">>>>>>>", "|||||||")


def _refuse_conflict_markers(text: str, where: str) -> None:
    """A pointer both sides of a merge changed holds git's conflict markers."""
    if not any(line.startswith(_CONFLICT_MARKERS) and line[7:8] in ("", " ")
               for line in text.splitlines()):
        return
    target = where[: -len(POINTER_SUFFIX)] if where.endswith(POINTER_SUFFIX) else where
    raise PointerError(
        f"{where} has merge conflict markers: both sides of the merge changed {target}",
        f"pick one side with `dvx checkout --ours {target}` or `dvx checkout --theirs {target}` "
        f"(or keep one side's lines in {where}), then `git add {where}` or `dvx commit`",
    )


def read_pointer(path: str, where: str | None = None, memo: ValidationMemo = NO_MEMO) -> Pointer:
    where = where or path
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_POINTER_BYTES + 1)
    except FileNotFoundError:
        raise PointerError(f"{where} does not exist", "run `dvx add` on the data first") from None
    except OSError as exc:
        raise PointerError(f"cannot read {where}: {exc.strerror}", "check its permissions") from None
    return parse_pointer(data, where, memo)


_RESERVED = (".git", ".dvx")
_SHORT_NAMES = ("git~1", "dvx~1")  # NTFS 8.3 names of .git and .dvx
# code points HFS+ ignores in names (git's is_hfs_dotgit list), so ".g\u200cit" is ".git" there
_HFS_IGNORED = dict.fromkeys([0x200C, 0x200D, 0x200E, 0x200F, *range(0x202A, 0x202F),
                              *range(0x206A, 0x2070), 0xFEFF])


def _folds_to_reserved(part: str) -> bool:
    """Whether some file system (case-insensitive, HFS+, NTFS) takes ``part`` for
    ``.git`` or ``.dvx``: git's own rules (is_hfs_dotgit, is_ntfs_dotgit), on every
    platform, since a repository travels between them."""
    folded = part.translate(_HFS_IGNORED).lower()
    if folded in _RESERVED or folded in _SHORT_NAMES:
        return True
    return folded.rstrip(" .") in _RESERVED  # NTFS drops trailing dots and spaces
_BAD_CHARS = ("\n", "\r", "\0")


def target_problem(target: str) -> str | None:
    """Why a tracked path (repository-relative, ``/``-separated) is unsafe, or None.

    The rule of ``protocols/format.md`` §6: pointer names come from git, so possibly
    from an attacker, and a name like ``..dvx`` (tracked path ``.``) must never lead a
    write or delete outside its own path."""
    if not target:
        return "its tracked path is empty"
    for part in target.split("/"):
        if not part:
            return f"its tracked path {target!r} has an empty component"
        if part in (".", ".."):
            return f"its tracked path {target!r} has a {part!r} component"
        if _folds_to_reserved(part):
            return f"its tracked path {target!r} lies inside {part}/ (or what a file system takes for it)"
    if any(c in target for c in _BAD_CHARS):
        return f"its tracked path {target!r} holds a newline or NUL"
    if "\\" in target or ":" in target:
        return f"its tracked path {target!r} holds a backslash or colon (a separator or stream on Windows)"
    try:
        target.encode("utf-8")
    except UnicodeEncodeError:
        return f"its tracked path {target!r} is not valid UTF-8"
    return None


def check_target(target: str, where: str | None = None) -> None:
    """Raise ``PointerError`` naming the pointer file if ``target`` is unsafe."""
    problem = target_problem(target)
    if problem is not None:
        import shlex

        ptr = target + POINTER_SUFFIX
        shown = shlex.quote(ptr)
        if "\n" in shown or "\r" in shown:  # one line: as git quotes such names
            shown = "$" + repr(ptr).replace("\\\\", "\\")
        where = where or (shown if shown != shlex.quote(ptr) else ptr)
        if where in (ptr, shown):
            hint = f"rename or delete that pointer file (`git rm --cached -- {shown}`)"
        else:  # from history: a commit carries it
            hint = f"remove it in a new commit (`git rm --cached -- {shown}`, then commit)"
        raise PointerError(f"{where} is refused: {problem}", hint)


def pointer_path_for(target: str) -> str:
    return target.rstrip(os.sep) + POINTER_SUFFIX


def target_for_pointer(pointer_path: str) -> str:
    assert pointer_path.endswith(POINTER_SUFFIX)
    return pointer_path[: -len(POINTER_SUFFIX)]
