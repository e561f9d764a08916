"""DVX's error hierarchy: one root, each error says what is wrong and what to do.

An error has a ``message`` (what happened, naming the object, path or remote) and an
optional ``hint`` (what to do). The CLI prints them as git and pip do, each on its own
line on stderr, and exits with ``exit_code`` (2 for a usage error, 1 for a failure)::

    error: remote 'origin' already exists
    hint: change it with `dvx remote modify origin`

``str(error)`` is the one-line form ``"message; hint"``, which is what results carry
for the parts of an operation that failed (``CheckoutResult.error``,
``FetchReport.errors``...) and what ``--json`` shows. That string is an
:class:`ErrorText`: it still knows its ``message`` and ``hint``, so the CLI prints
such a collected error on two lines as well. A traceback appears only with
``dvx --verbose`` or for real bugs.
"""

from __future__ import annotations


class ErrorText(str):
    """``"message; hint"`` that remembers its two parts (``str(DvxError)``). It is a
    plain ``str`` everywhere else: compares, formats and serializes as one."""

    message: str
    hint: str | None

    def __new__(cls, message: str, hint: str | None = None) -> ErrorText:
        self = super().__new__(cls, message if hint is None else f"{message}; {hint}")
        self.message = message
        self.hint = hint
        return self


def error_parts(error: object) -> tuple[str, str | None]:
    """``(message, hint)`` of an error or of an error's text; a plain string (or any
    other exception) is all message."""
    if isinstance(error, DvxError):
        return error.message, error.hint
    if isinstance(error, ErrorText):
        return error.message, error.hint
    return str(error), None


class DvxError(Exception):
    """Root of all DVX errors. ``exit_code`` is what the CLI exits with."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message} ({hint})")

    def __str__(self) -> str:
        return ErrorText(self.message, self.hint)


class UsageError(DvxError):
    """The command was called wrongly: options that exclude each other, a missing or
    malformed argument. Nothing was done. The CLI exits with 2, as for a bad option."""

    exit_code = 2


class PartialFailureError(DvxError):
    """Raised by :func:`dvx.raise_on_error` when an operation did what it could but
    some of its parts failed; ``errors`` lists every failure, one line each."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        first, hint = error_parts(errors[0]) if errors else ("the operation failed", None)
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(first + more, hint)


class NotARepositoryError(DvxError):
    """No DVX repository (``.dvx/``) was found."""


class FormatVersionError(DvxError):
    """A file declares a format version or extension this DVX does not understand."""


class ConfigError(DvxError):
    """The repository configuration is missing or invalid."""


class PointerError(DvxError):
    """A pointer file (``PATH.dvx``) is malformed."""


class CorruptObjectError(DvxError):
    """Stored bytes do not match their id, or cannot be parsed."""


class MissingObjectError(DvxError):
    """An object a pointer or tree refers to is not in the store."""


class PathOutsideRepoError(DvxError):
    """A path given by the user lies outside the repository."""


class NotTrackedError(DvxError):
    """A path is not tracked by DVX."""


class WorkspaceConflictError(DvxError):
    """An operation would overwrite unsaved changes."""


class StoreError(DvxError):
    """The local store cannot be read or written (permissions, disk full...)."""


class GitError(DvxError):
    """A git operation failed or a revision could not be resolved."""


class RemoteError(DvxError):
    """A remote failed; the message names the remote and its URL."""


class ReadOnlyError(DvxError, PermissionError):
    """A write through a read-only view of versioned data (the ``dvx://`` filesystem).
    Also a ``PermissionError``, which is what file-system code expects."""
