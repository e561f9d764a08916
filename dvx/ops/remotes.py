"""``dvx remote add / list / remove / modify``: remotes in ``.dvx/config`` (shared) or
``.dvx/config.local`` (``--local``: this machine only, never committed)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import partial

from dvx.errors import ConfigError, DvxError
from dvx.ini import IniFile, check_setting
from dvx.progress import NULL_PROGRESS, Progress
from dvx.remote.layout import Remote
from dvx.remote.storage import looks_secret, parse_url, timeout_settings
from dvx.repo import Repository
from dvx.settings import edit_config

_NAME = re.compile(r"^[A-Za-z0-9_.-]+\Z")


def _section(name: str) -> str:
    return f'remote "{name}"'


def parse_options(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise DvxError(f"option {pair!r} is not KEY=VALUE", "write it as -o endpoint_url=http://...")
        out[key.strip()] = value.strip()
    return out


def _check_secrets(options: dict[str, str], local: bool) -> None:
    if local:
        return
    secret = [k for k in options if looks_secret(k)]
    if secret:
        raise DvxError(f"option {secret[0]!r} looks like a secret and .dvx/config is committed to git",
                       "pass --local to keep it in .dvx/config.local, or use environment variables")


def _prepare_directory(name: str, url: str, base: str) -> str | None:
    """A directory remote's directory, created now if missing (its parent must exist:
    a missing parent is a typo or an unmounted drive). Returns the path it created."""
    spec = parse_url(name, url, base)
    if spec.protocol != "file" or os.path.isdir(spec.root):
        return None
    parent = os.path.dirname(spec.root)
    if not os.path.isdir(parent):
        raise DvxError(f"remote {name!r}: directory {parent} does not exist",
                       "check the path (is the drive mounted?), or create it first")
    try:
        os.mkdir(spec.root)
    except FileExistsError:
        return None
    except OSError as exc:
        raise DvxError(f"remote {name!r}: cannot create directory {spec.root} ({exc.strerror})",
                       "check the path and its permissions") from None
    return spec.root


def remote_add(repo: Repository, name: str, url: str, options: dict[str, str], *,
               default: bool = False, local: bool = False) -> str | None:
    """Add a remote; returns the directory it created for a directory remote, if any."""
    if not _NAME.match(name):
        raise DvxError(f"invalid remote name {name!r}", "use letters, digits, '.', '-' and '_'")
    if name in repo.config.remotes:
        raise DvxError(f"remote {name!r} already exists", f"change it with `dvx remote modify {name}`")
    return _write_remote(repo, name, url, options, [], default=default, local=local)


def remote_modify(repo: Repository, name: str, url: str | None, options: dict[str, str],
                  unset: list[str], *, default: bool = False, local: bool = False) -> str | None:
    """Change a remote; returns the directory it created for a new directory URL, if any."""
    if name not in repo.config.remotes:
        raise DvxError(f"no remote named {name!r}", "see `dvx remote list`")
    return _write_remote(repo, name, url, options, unset, default=default, local=local)


def _write_remote(repo: Repository, name: str, url: str | None, options: dict[str, str],
                  unset: list[str], *, default: bool, local: bool) -> str | None:
    """Check the settings, create a directory remote's directory, then write them into
    the config file (every other line of it stays as it was)."""
    settings = {"url": url, **options} if url is not None else dict(options)
    for k, v in settings.items():
        check_setting(k, v)
    if url is not None:
        parse_url(name, url, repo.root)
    timeout_settings(name, options)
    _check_secrets(options, local)

    def edit(ini: IniFile) -> None:
        for k, v in settings.items():
            ini.set(_section(name), k, v)
        for k in unset:
            ini.unset(_section(name), k)
        if default:
            ini.set("core", "default_remote", name)

    created = _prepare_directory(name, url, repo.root) if url is not None else None
    edit_config(repo.dvx_dir, local, edit)
    return created


def remote_remove(repo: Repository, name: str) -> None:
    if name not in repo.config.remotes:
        raise DvxError(f"no remote named {name!r}", "see `dvx remote list`")
    for local in (False, True):
        edit_config(repo.dvx_dir, local, partial(_forget, name))


def _forget(name: str, ini: IniFile) -> None:
    ini.remove_section(_section(name))
    if ini.get("core", "default_remote") == name:
        ini.unset("core", "default_remote")


@dataclass
class RemoteInfo:
    name: str
    url: str
    default: bool
    options: dict[str, str]

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "url": self.url, "default": self.default, "options": self.options}


def remote_list(repo: Repository) -> list[RemoteInfo]:
    out = []
    for name, r in sorted(repo.config.remotes.items()):
        opts = {k: ("***" if looks_secret(k) else v) for k, v in r.options.items()}
        out.append(RemoteInfo(name, r.url, repo.config.core.default_remote == name, opts))
    return out


def open_remote(repo: Repository, name: str | None, progress: Progress = NULL_PROGRESS) -> Remote:
    """The named remote, or the default one, ready to use (retries of its calls are
    announced through ``progress.note``)."""
    if name is None:
        name = repo.config.core.default_remote
        if name is None:
            if len(repo.config.remotes) == 1:
                name = next(iter(repo.config.remotes))
            elif not repo.config.remotes:
                raise ConfigError("no remote is configured",
                                  "add one with `dvx remote add NAME URL --default`")
            else:
                raise ConfigError("no default remote is set",
                                  "pass -r NAME or set one with `dvx remote modify NAME --default`")
    cfg = repo.config.remotes.get(name)
    if cfg is None:
        raise ConfigError(f"no remote named {name!r}", "see `dvx remote list`")
    remote = Remote(cfg, repo.state_dir, repo.root)
    remote.on_retry = progress.note
    return remote
