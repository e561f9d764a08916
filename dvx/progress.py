"""Progress reporting as a callback object, so core code never imports a UI library.

Operations take a :class:`Progress` and call ``start``/``advance``/``finish`` and
``note``. :data:`NULL_PROGRESS` draws nothing; :func:`terminal` gives what the CLI
uses (bars on a terminal, drawn by rich, imported only when a bar starts). Before
anything else is written to stderr (an error, a warning), :func:`clear_live` takes
every live bar off the screen, so an ``error:`` line is never drawn into a bar.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any


class Progress:
    """No-op progress; subclass it to show progress your own way."""

    def start(self, description: str, total: int | None = None, unit: str = "files") -> None:
        pass

    def advance(self, amount: int = 1) -> None:
        pass

    def finish(self) -> None:
        pass

    def note(self, message: str) -> None:
        """A one-line notice while work goes on (e.g. a remote call being retried)."""


NULL_PROGRESS = Progress()

_live: list[RichProgress] = []  # bars on the screen now
_live_lock = threading.Lock()


def clear_live() -> None:
    """Stop every progress bar on the screen (a transient bar leaves no trace), so
    that what is written to stderr next stands on its own lines."""
    with _live_lock:
        bars = list(_live)
    for bar in bars:
        bar.finish()


def _stderr_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class NoteProgress(Progress):
    """No bars, but notices go to stderr as ``note:`` lines (stderr is not a terminal:
    scripts, CI, logs)."""

    def note(self, message: str) -> None:
        clear_live()
        sys.stderr.write(f"note: {message}\n")
        sys.stderr.flush()


class RichProgress(NoteProgress):
    """Draws a bar on stderr (rich). ``DVX_NO_PROGRESS=1`` turns bars off."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._task: Any = None
        self._enabled = not os.environ.get("DVX_NO_PROGRESS")

    def start(self, description: str, total: int | None = None, unit: str = "files") -> None:
        if not self._enabled:
            return
        self.finish()
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as RichBar

        cols: list[Any] = [TextColumn("{task.description}"), BarColumn()]
        cols += ([DownloadColumn(), TransferSpeedColumn()] if unit == "bytes"
                 else [MofNCompleteColumn()])
        cols.append(TimeRemainingColumn())
        bar = RichBar(*cols, console=Console(stderr=True), transient=True)
        bar.start()
        self._task = bar.add_task(description, total=total)
        self._bar = bar
        with _live_lock:
            _live.append(self)

    def advance(self, amount: int = 1) -> None:
        bar = self._bar
        if bar is not None:
            bar.advance(self._task, amount)

    def finish(self) -> None:
        bar, self._bar = self._bar, None
        if bar is not None:
            with _live_lock:
                if self in _live:
                    _live.remove(self)
            bar.stop()

    def note(self, message: str) -> None:
        bar = self._bar
        if bar is None:
            super().note(message)
            return
        from rich.markup import escape

        # printed above the live bar by the bar's own console: never inside it
        bar.console.print(f"[yellow]note:[/] {escape(message)}", highlight=False, soft_wrap=True)


def terminal() -> Progress:
    """What the CLI shows: bars when stderr is a terminal, else only ``note:`` lines."""
    return RichProgress() if _stderr_tty() else NoteProgress()
