"""``dvx://`` URLs (``protocols/read.md`` §1): a tracked path, and optionally the
revision, repository and remote to read it from.

    dvx://data/train.csv
    dvx://data/train.csv?rev=v1
    dvx://data/train.csv?rev=v1&repo=https%3A%2F%2Fgithub.com%2Fteam%2Fproject.git

The path is taken literally (no percent-decoding: file names with ``%`` stay as they
are). The text after the last ``?`` is a query only if every ``&``-separated part is
``rev=``, ``repo=`` or ``remote=`` with a non-empty value; otherwise the ``?`` belongs
to the path. Values are percent-decoded.
"""

from __future__ import annotations

from urllib.parse import unquote

from dvx.errors import UsageError

SCHEME = "dvx://"
KEYS = ("rev", "repo", "remote")


def strip_scheme(url: str) -> str:
    """``url`` without ``dvx://`` (or ``dvx::``), as fsspec hands paths around."""
    for prefix in (SCHEME, "dvx::"):
        if url.startswith(prefix):
            return url[len(prefix):]
    return url


def _query(text: str) -> dict[str, str] | None:
    out: dict[str, str] = {}
    for part in text.split("&"):
        key, sep, value = part.partition("=")
        if not sep or key not in KEYS or not value:
            return None
        if key in out:
            raise UsageError(f"{key}= is given twice in a dvx:// URL", "give each of rev=, repo=, remote= once")
        out[key] = unquote(value)
    return out


def parse_url(url: str) -> tuple[str, dict[str, str]]:
    """``(path, options)`` of a ``dvx://`` URL (or of a path without the scheme). The
    path is relative to the repository root, ``/``-separated, without leading or
    trailing slashes; ``options`` holds the ``rev``, ``repo`` and ``remote`` given."""
    rest = strip_scheme(url)
    options: dict[str, str] = {}
    head, sep, tail = rest.rpartition("?")
    if sep:
        found = _query(tail)
        if found is not None:
            rest, options = head, found
    parts = [p for p in rest.split("/") if p and p != "."]
    if ".." in parts:
        raise UsageError(f"{url}: '..' is not allowed in a dvx:// path",
                         "give the path from the repository root")
    return "/".join(parts), options


def merge_options(given: dict[str, str], url: str, **explicit: str | None) -> dict[str, str | None]:
    """The URL's options and the keyword arguments together; the two must agree."""
    out: dict[str, str | None] = dict.fromkeys(KEYS)
    for key in KEYS:
        a, b = given.get(key), explicit.get(key)
        if a is not None and b is not None and a != b:
            raise UsageError(f"{url} says {key}={a!r} but {key}={b!r} was passed",
                             f"give {key} in one place")
        out[key] = a if a is not None else b
    return out


__all__ = ["KEYS", "SCHEME", "merge_options", "parse_url", "strip_scheme"]
