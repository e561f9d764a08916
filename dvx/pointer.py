"""Pointer files (``PATH.dvx``): the small text files that go into git.

Implements ``protocols/format.md`` §6. A pointer is a few ``key: value`` lines in a
fixed order, so diffs stay readable. ``check_values`` holds the rules, written out by
hand like ``dvx.objects``: one validator for pointers DVX parses and pointers it builds.
The tracked path is the pointer's own path without ``.dvx``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

from dvx.errors import FormatVersionError, PointerError
from dvx.hashing import is_hex_id

POINTER_SUFFIX = ".dvx"
POINTER_VERSION = 1
MAX_POINTER_BYTES = 64 * 1024
HEADER_COMMENT = "# dvx pointer: the data lives in the DVX store; see protocols/format.md"

_FIELD_ORDER = ("dvx", "kind", "id", "size", "files", "b3", "exec")


@dataclass(frozen=True)
class Pointer:
    """Validated contents of a pointer file (rules: ``check_values``)."""

    dvx: int
    kind: str  # "file" | "tree"
    id: str
    size: int
    files: int
    b3: str | None = None
    exec: bool = False

    @classmethod
    def create(cls, **values: Any) -> Pointer:
        """Build a pointer from values DVX computed; ``PointerError`` if they break a rule."""
        problem = check_values(values)
        if problem is None and values["dvx"] != POINTER_VERSION:
            problem = "dvx", f"must be {POINTER_VERSION}, the version this DVX writes"
        if problem is not None:
            raise PointerError(f"invalid pointer values: {_say(*problem)}")
        return cls(**values)

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


_REQUIRED = ("dvx", "kind", "id", "size", "files")
_TYPES: dict[str, type] = {"dvx": int, "kind": str, "id": str, "size": int, "files": int, "b3": str,
                           "exec": bool}
_TYPE_WORDS = {int: "a whole number", str: "text", bool: "true or false"}


def check_values(values: dict[str, Any]) -> tuple[str | None, str] | None:
    """The rules of a pointer (``protocols/format.md`` §6), on typed values.

    Returns None when ``values`` make a valid pointer, else ``(field, why)`` (field None
    for a rule between fields). Types are exact: ``True`` is not a number, ``"1"`` not
    an int. The version is checked by the caller (``parse_pointer`` refuses unknown
    versions as ``FormatVersionError``), so any version number passes here."""
    for key in values:
        if key not in _TYPES:
            return key, "is not a pointer field"
    for key in _REQUIRED:
        if key not in values:
            return key, "is missing"
    for key, value in values.items():
        if type(value) is not _TYPES[key] and not (key == "b3" and value is None):
            return key, f"must be {_TYPE_WORDS[_TYPES[key]]}"
    if values["kind"] not in ("file", "tree"):
        return "kind", f"must be 'file' or 'tree', not {values['kind'][:20]!r}"
    for key in ("id", "b3"):
        if values.get(key) is not None and not is_hex_id(values[key]):
            return key, "must be 64 lowercase hex digits"
    for key in ("size", "files"):
        if values[key] < 0:
            return key, "must not be negative"
    if values["kind"] == "file":
        if values["files"] != 1 or values.get("b3") is None:
            return None, "a file pointer needs 'files: 1' and a 'b3' digest"
    elif values.get("b3") is not None or values.get("exec", False):
        return None, "a tree pointer has no 'b3' or 'exec' field"
    return None


def _say(field: str | None, why: str) -> str:
    return why if field is None else f"{field} {why}"


def parse_pointer(text: str | bytes, where: str) -> Pointer:
    """Parse pointer text; ``where`` names the file in error messages."""
    if ":" in where:  # REV:PATH, a pointer in history (a tracked path has no colon)
        hint = (f"it is in git history: see it with `git show {where}`; fix it in a new commit "
                "(restore a good version of the pointer, or re-add the data with `dvx add`)")
    else:
        hint = f"restore it with `git checkout -- {where}` or re-add the data with `dvx add`"
    raw = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    if len(raw) > MAX_POINTER_BYTES:
        raise PointerError(f"{where} is {len(raw)} bytes, too large for a pointer", hint)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PointerError(f"{where} is not a valid pointer file (not UTF-8 text)", hint) from None
    _refuse_conflict_markers(text, where)
    fields: dict[str, tuple[int, str]] = {}
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
        if key in fields:
            raise PointerError(f"{where}:{lineno}: duplicate field {key[:40]!r}", hint)
        fields[key] = (lineno, value)
    # the version gate comes first: another version may have other fields and syntax
    if "dvx" not in fields:
        raise PointerError(f"{where} is not a DVX pointer (no 'dvx:' version line)", hint)
    version = fields["dvx"][1]
    if version.isascii() and version.isdigit() and version.lstrip("0") != str(POINTER_VERSION):
        raise FormatVersionError(
            f"{where} uses pointer format {version[:20]}; this DVX reads format {POINTER_VERSION}",
            "upgrade dvx (pip install -U dvx)",
        )
    values: dict[str, object] = {}
    for key, (lineno, value) in fields.items():
        if key not in _TYPES:
            raise PointerError(f"{where}:{lineno}: unknown field {key[:40]!r}", hint)
        if key == "exec":
            if value not in ("true", "false"):
                raise PointerError(f"{where}:{lineno}: exec must be true or false", hint)
            values[key] = value == "true"
        elif _TYPES[key] is int:
            if not value.isdigit() or not value.isascii():
                raise PointerError(f"{where}:{lineno}: {key} must be a whole number", hint)
            try:
                values[key] = int(value)
            except ValueError:  # more digits than Python converts (sys.int_info)
                raise PointerError(f"{where}:{lineno}: {key} is too large", hint) from None
        else:
            values[key] = value
    problem = check_values(values)
    if problem is not None:
        field, why = problem
        at = f"{where}:{fields[field][0]}" if field in fields else where
        raise PointerError(f"{at}: {_say(field, why)}", hint)
    return Pointer(**values)  # type: ignore[arg-type]


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


def read_pointer(path: str, where: str | None = None) -> Pointer:
    where = where or path
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_POINTER_BYTES + 1)
    except FileNotFoundError:
        raise PointerError(f"{where} does not exist", "run `dvx add` on the data first") from None
    except OSError as exc:
        raise PointerError(f"cannot read {where}: {exc.strerror}", "check its permissions") from None
    return parse_pointer(data, where)


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
