"""DVX's error hierarchy: one root, each error says what is wrong and what to do.

Every message is one line meant for a person: what happened, the object/path/remote
involved, and a hint. The CLI prints ``error: <message>`` and exits non-zero; a
traceback appears only with ``--verbose`` or for real bugs.
"""

from __future__ import annotations


class DvxError(Exception):
    """Root of all DVX errors. ``exit_code`` is what the CLI exits with."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message} ({hint})")

    def __str__(self) -> str:
        return self.message if self.hint is None else f"{self.message}; {self.hint}"


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
