"""Console capture: ``sys.stdout`` and ``sys.stderr`` tee'd into the run
(``protocols/runs.md`` §5). What the program writes still reaches the terminal first;
a copy goes to an in-memory list that the background writer appends to
``console.log``."""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO


class Tee:
    """A text stream that writes through to ``inner`` and keeps a copy. Everything
    else (``fileno``, ``isatty``, ``encoding``...) is the inner stream's."""

    def __init__(self, inner: TextIO, chunks: list[str], owner_pid: int) -> None:
        self._inner = inner
        self._chunks = chunks
        self._pid = owner_pid
        self.active = True

    def write(self, s: str) -> int:
        n = self._inner.write(s)
        if self.active and s and os.getpid() == self._pid and isinstance(s, str):
            self._chunks.append(s)
        return n

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class ConsoleCapture:
    def __init__(self) -> None:
        self.chunks: list[str] = []
        self._tees: list[tuple[str, Tee]] = []

    def start(self) -> None:
        pid = os.getpid()
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if stream is None:
                continue
            tee = Tee(stream, self.chunks, pid)
            setattr(sys, name, tee)
            self._tees.append((name, tee))

    def take(self) -> str:
        """What was written since the last call (single consumer)."""
        n = len(self.chunks)
        if not n:
            return ""
        text = "".join(self.chunks[:n])
        del self.chunks[:n]
        return text

    def stop(self) -> None:
        for name, tee in self._tees:
            tee.active = False
            if getattr(sys, name) is tee:  # someone wrapped it again: leave theirs in place
                setattr(sys, name, tee._inner)
        self._tees = []
