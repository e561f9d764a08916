"""Progress reporting as a callback object, so core code never imports a UI library."""

from __future__ import annotations


class Progress:
    """No-op progress; the CLI passes a rich-backed subclass."""

    def start(self, description: str, total: int | None = None, unit: str = "files") -> None:
        pass

    def advance(self, amount: int = 1) -> None:
        pass

    def finish(self) -> None:
        pass

    def note(self, message: str) -> None:
        """A one-line notice while work goes on (e.g. a remote call being retried)."""


NULL_PROGRESS = Progress()
