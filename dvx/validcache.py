"""Memo of inputs the pydantic models already accepted (see ``dvx.models``).

Maps the exact bytes of a pointer file or config to the validated values. Stored in
``.dvx/state/validated.cache`` (marshal); any problem reading it means "empty". Only
successful validations are remembered; failures are re-validated (and reported) every
time.
"""

from __future__ import annotations

import contextlib
import marshal
from typing import Any

from dvx.fsutil import write_cache_file

MAGIC = b"DVXVC1"
MAX_ENTRIES = 20_000


class ValidationMemo:
    def __init__(self, path: str | None) -> None:
        self.path = path
        self._data: dict[bytes, Any] | None = None
        self._dirty = False

    def _load(self) -> dict[bytes, Any]:
        if self._data is None:
            self._data = {}
            if self.path:
                with contextlib.suppress(OSError, EOFError, ValueError, TypeError):
                    with open(self.path, "rb") as f:
                        raw = f.read()
                    if raw.startswith(MAGIC):
                        data = marshal.loads(raw[len(MAGIC):])
                        if isinstance(data, dict):
                            self._data = data
        return self._data

    def get(self, kind: str, raw: bytes) -> Any:
        return self._load().get(kind.encode() + b"\0" + raw)

    def put(self, kind: str, raw: bytes, value: Any) -> None:
        data = self._load()
        if len(data) >= MAX_ENTRIES:
            data.clear()
        data[kind.encode() + b"\0" + raw] = value
        self._dirty = True

    def save(self) -> None:
        if self._dirty and self.path and self._data is not None:
            # best effort: runs at exit (atexit), where an error would print a traceback
            # after the command's real outcome; a lost memo only means re-validating
            write_cache_file(self.path, MAGIC + marshal.dumps(self._data))
            self._dirty = False


NO_MEMO = ValidationMemo(None)
