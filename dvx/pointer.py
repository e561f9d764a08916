"""Pointer files (``PATH.dvx``): the small text files that go into git.

Implements ``protocols/format.md`` §6. A pointer is a few ``key: value`` lines, sorted
in a fixed order so diffs stay readable, validated by a pydantic model. The tracked
path is the pointer's own path without the ``.dvx`` suffix.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dvx.errors import FormatVersionError, PointerError
from dvx.hashing import is_hex_id

POINTER_SUFFIX = ".dvx"
POINTER_VERSION = 1
MAX_POINTER_BYTES = 64 * 1024
HEADER_COMMENT = "# dvx pointer: the data lives in the DVX store; see protocols/format.md"

_FIELD_ORDER = ("dvx", "kind", "id", "size", "files", "b3", "exec")


class Pointer(BaseModel):
    """Validated contents of a pointer file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dvx: int = Field(description="pointer format version")
    kind: Literal["file", "tree"]
    id: str = Field(description="manifest id (file) or tree id (tree), 64 lowercase hex")
    size: int = Field(ge=0)
    files: int = Field(ge=0)
    b3: str | None = Field(default=None, description="plain BLAKE3 of the file (files only)")
    exec: bool = False

    @field_validator("id", "b3")
    @classmethod
    def _hex(cls, v: str | None) -> str | None:
        if v is not None and not is_hex_id(v):
            raise ValueError("must be 64 lowercase hex digits")
        return v

    @property
    def oid(self) -> bytes:
        return bytes.fromhex(self.id)

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


def parse_pointer(text: str | bytes, where: str) -> Pointer:
    """Parse pointer text; ``where`` names the file in error messages."""
    hint = f"restore it with `git checkout -- {where}` or re-add the data with `dvx add`"
    if isinstance(text, bytes):
        if len(text) > MAX_POINTER_BYTES:
            raise PointerError(f"{where} is {len(text)} bytes, too large for a pointer", hint)
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise PointerError(f"{where} is not a valid pointer file (not UTF-8 text)", hint) from None
    values: dict[str, object] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise PointerError(f"{where}:{lineno}: expected 'key: value', got {raw[:60]!r}", hint)
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
    try:
        pointer = Pointer.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(x) for x in first["loc"]) or "pointer"
        raise PointerError(f"{where}: field {loc!r}: {first['msg']}", hint) from None
    if pointer.kind == "file" and (pointer.files != 1 or pointer.b3 is None):
        raise PointerError(f"{where}: a file pointer needs 'files: 1' and a 'b3' digest", hint)
    if pointer.kind == "tree" and (pointer.b3 is not None or pointer.exec):
        raise PointerError(f"{where}: a tree pointer has no 'b3' or 'exec' field", hint)
    return pointer


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


def pointer_path_for(target: str) -> str:
    return target.rstrip(os.sep) + POINTER_SUFFIX


def target_for_pointer(pointer_path: str) -> str:
    assert pointer_path.endswith(POINTER_SUFFIX)
    return pointer_path[: -len(POINTER_SUFFIX)]
